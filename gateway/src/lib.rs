//! padnet's gateway: terminates OTP tunnels from agents and fetches on their
//! behalf, never an open proxy into private networks.
//!
//! # Layout
//!
//! - [`cmd`]: one file per subcommand of `padnet-gateway` (main.rs dispatches).
//! - [`admin`]: operator commands, through the running gateway or directly.
//! - [`state_dir`]: the state directory, its config and the serve lock.
//! - [`mint`]: minting pads (twin + user copy).
//! - [`registry`]: the pads being served and their ticket index.
//! - [`accept`]: the gateway side of the handshake (with probe hold).
//! - [`serve`]: the listener and the HTTP/2 server per tunnel.
//! - [`stack`]: the per-request tower stack, in request order.
//! - [`context`]: services shared by tunnels, and each tunnel's pad.
//! - [`admit`]: policy, rate and daily limits per request; [`limits`]: the
//!   policy checks running streams repeat; [`rate_limit`]: per-pad limiters.
//! - [`destination`]: host and port of a request; [`clock`]: now and today.
//! - [`policies`]: the policy store (by id, current per name).
//! - [`float`]: a tunnel's durable reservation its requests draw from.
//! - [`meter`]: reserve, meter and settle each request; [`metering_rules`]:
//!   its sizes and delays.
//! - [`fetch`]: upstream fetch and CONNECT splice; [`guard`]: address guard.
//! - [`headers`]: request/response normalisation; [`error`]: status pages.
//! - [`ledger`]: value accounts, reservations, group commit (sled).
//! - [`tariff`]: prices and the pricing arithmetic.
//! - [`units`]: money and sizes as people write them.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod admit;
pub mod clock;
pub mod cmd;
pub mod context;
pub mod destination;
pub mod error;
pub mod fetch;
pub mod float;
pub mod guard;
pub mod headers;
pub mod ledger;
pub mod limits;
pub mod meter;
pub mod metering_rules;
pub mod mint;
pub mod policies;
pub mod rate_limit;
pub mod registry;
pub mod serve;
pub mod stack;
pub mod state_dir;
pub mod tariff;
pub mod units;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body type of the whole stack.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
