//! The metering's sizes and delays: how much value is reserved ahead of the
//! bytes, how far behind captures may lag, and when a charge becomes final.

/// The first reservation pays for this many bytes beyond the request charge
/// (small pages hold little); each extension doubles, up to [`CHUNK`].
pub const FIRST_CHUNK: u64 = 256 << 10;
/// The largest extension. Extensions start when less than half of the last
/// one is left, so the next is durable before the flow needs it.
pub const CHUNK: u64 = 4 << 20;
/// Bytes taken but possibly not yet delivered (buffered in h2 and the
/// sockets: at most the largest stream window plus a frame), never charged
/// until the request ends or this far behind: a crash forgives at most
/// this, plus the two newest chunks, per open request.
pub const CAPTURE_LAG: u64 = proto::h2::MAX_STREAM_WINDOW as u64 + CHUNK;
/// A finished request's charge becomes final this long after its last byte
/// was handed on, when it has surely left the gateway's buffers: a crash in
/// between forgives it rather than charging for bytes that died in a buffer.
pub const SETTLE_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// How often a running stream of a restricted pad asks its policy again
/// (hours end and policies are updated while bytes flow).
pub const POLICY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);
