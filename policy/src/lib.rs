//! Employer policies: parse a TOML policy file, compile it into a fast
//! matcher, and decide per request (built by the policy issue; the gateway's
//! request stack has its place reserved in `gateway/src/stack.rs`).
#![forbid(unsafe_code)]

pub mod units;
