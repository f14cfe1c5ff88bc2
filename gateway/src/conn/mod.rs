//! Connection handling: the listener and its tunnel threads, the gateway's
//! side of the handshake, and the registry of pads being served.

pub mod accept;
pub mod pending;
pub mod registry;
pub mod serve;
