//! padnet's tunnel: the pad store and the OTP record-layer protocol shared by
//! the agent and the gateway.
//!
//! # Layout
//!
//! - [`pad`]: pad files (header, ticket slots, data region), erasure.
//! - [`mint`]: new pads from the OS CSPRNG, written whole or not at all.
//! - `state`: crash-safe small state files (A/B copies, one fsync per update).
//! - [`lease`]: ranges of the data region and the allocation rule.
//! - [`record`]: pure record sealing/opening (the wire table lives there).
//! - [`handshake`]: pure hello/reply messages sealed with a ticket slot.
//! - [`stream`]: `OtpStream`, the async record stream with the lease protocol
//!   (split by job: send, receive, lease scheduling, control records, stats).
//! - [`secret`]: key bytes in memory, wiped on drop.
//! - [`process`]: what both binaries do to their process first (no core
//!   dumps, private files, the open-file limit raised).
//! - [`store`]: the two sides' per-pad key sources (allocating and following).
#![forbid(unsafe_code)]

pub mod handshake;
pub mod lease;
pub mod mint;
pub mod pad;
pub mod process;
pub mod record;
pub mod secret;
mod state;
pub mod store;
pub mod stream;

#[doc(hidden)]
pub mod fuzzing;
