//! The daily and per-minute limits a policy sets and the gateway enforces
//! (a plain record: the policy file fills it, the gateway's meter reads it).

/// Limits the gateway enforces; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Money per day in micro-units (see [`crate::units::parse_amount`]).
    pub spend_per_day: Option<i64>,
    /// Requests per minute, at least 1.
    pub requests_per_minute: Option<u32>,
    /// Traffic per day in MiB, at least 1.
    pub mib_per_day: Option<u64>,
}
