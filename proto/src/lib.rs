//! padnet's protocol vocabulary: what the agent and the gateway must agree
//! on above the wire format (`tunnel` keeps records, handshake and pad files),
//! and the few rules both sides' servers share.
//!
//! # Layout
//!
//! - [`account`]: the account service's reserved authority and its requests.
//! - [`headers`]: the hop-by-hop list, `x-padnet-*` names, error codes, stop reasons, site prices.
//! - [`h2`]: the HTTP/2 settings of the tunnel, one builder per side.
//! - [`page`]: the one HTML page template and escaper for every page a browser sees.
//! - [`lease`]: how long a lease is for a pad of a given size.
//! - [`accept`]: how the agent's and the gateway's listeners back off when accept fails.
#![forbid(unsafe_code)]

pub mod accept;
pub mod account;
pub mod h2;
pub mod headers;
pub mod lease;
pub mod page;
