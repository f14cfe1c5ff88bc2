//! Connection handling: the listener and its tunnel threads, the gateway's
//! side of the handshake, the registry of pads being served, and the
//! tunnels open now.

pub mod accept;
pub mod live;
pub mod pending;
pub mod registry;
pub mod serve;
