//! padnet's gateway: terminates OTP tunnels from agents and fetches on their
//! behalf, never an open proxy into private networks.
//!
//! # Layout
//!
//! Imports point down this list (checked by `scripts/check-cycles.py`).
//! Only `cmd` (for the binary) and `ledger` (for its benchmark) are public,
//! and `fuzzing`, hidden, for the fuzz targets.
//!
//! - [`cmd`]: one file per subcommand of `padnet-gateway` (main.rs dispatches).
//! - `admin`: operator commands, through the running gateway or directly.
//! - `conn`: the listener and tunnel threads, the handshake (with probe
//!   hold), the registry of pads and their ticket index.
//! - `request`: the per-request tower stack in request order: admission
//!   (policy, rate, daily limits), charging, the guarded fetch and CONNECT
//!   splice, request normalisation.
//! - `metering`: the services shared by tunnels and each tunnel's pad
//!   (`context`); reserve, meter and settle each request; a tunnel's float;
//!   the checks running streams repeat; rate limiters; sizes; the clock.
//! - `destination`: host and port of a request; `error`: failures and
//!   the page each becomes.
//! - [`ledger`]: value accounts, reservations, group commit (redb, one fsync per group).
//! - `metrics`: the operator's aggregate counters (no pad, host or
//!   address in any label) and their Prometheus page (`--metrics-listen`).
//! - `mint`: minting pads (twin + user copy); `policies`: the policy
//!   store (by id, current per name); `tariff`: prices and their
//!   arithmetic; `state_dir`: the state directory, its config and the serve
//!   lock; `units`: money and sizes as people write them.
#![forbid(unsafe_code)]

mod accounts;
mod admin;
pub mod cmd;
mod conn;
mod destination;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod ledger;
mod metering;
mod metrics;
mod mint;
mod policies;
mod portal;
mod pricing;
mod request;
mod retail;
mod rim;
mod sites;
mod state_dir;
mod tariff;
mod units;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body type of the whole stack.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
