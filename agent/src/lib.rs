//! padnet's agent: the browser's HTTP proxy on loopback, carrying every
//! request over one OTP tunnel to the gateway.
//!
//! # Layout
//!
//! - [`access`]: who may use the agent (`--proxy-auth`).
//! - [`account`]: the user's money operations (JSON API and `/account` forms),
//!   carried to the gateway's account service.
//! - `hello`: the resend rule (which ticket slot the next hello uses).
//! - `dial`: the agent side of the handshake.
//! - [`link`]: the one h2-over-OtpStream connection, kept up with backoff.
//! - [`listen`]: the browsers' listener: connection cap, header deadline, accept backoff.
//! - [`proxy`]: the browser-facing proxy: dispatch, `forward` (absolute-form), `connect`.
//! - [`sites`]: the priced sites' prices the gateway named, for the agent's pages.
//! - `home`: the agent's page `/` (the wallet, refusals, prices) and `/status`.
//! - [`refusals`]: the last refused requests, for that page.
//! - `pages`: the agent's own pages and error pages; `own_origin`: which
//!   requests may read them (Host and Origin naming the agent).
//! - `fuzzing`, hidden, for the fuzz targets.
#![forbid(unsafe_code)]

pub mod access;
pub mod account;
mod dial;
#[doc(hidden)]
pub mod fuzzing;
mod hello;
pub mod history;
pub mod history_chart;
pub mod history_store;
mod home;
pub mod link;
pub mod listen;
mod own_origin;
mod pages;
pub mod proxy;
pub mod refusals;
pub mod sites;
pub mod spend;
mod spending_page;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
