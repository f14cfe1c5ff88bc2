//! The gateway's one clock: Unix seconds now, and today's UTC day number
//! (the key of daily limits and day counters).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Today's UTC day, as days since the Unix epoch.
pub fn today() -> i64 {
    now_unix() / 86_400
}
