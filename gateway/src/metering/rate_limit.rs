//! Per-pad rate limiters (governor), made on first use with the quota of
//! the pad's policy and remade when the policy's quota changes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Per-pad rate limiters, made on first use with the pad's policy quota.
#[derive(Default)]
pub struct RateLimiters {
    by_pad: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl RateLimiters {
    /// The limiter of `serial` at `per_minute`.
    pub fn get(&self, serial: &str, per_minute: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
        let mut m = self.by_pad.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(serial) {
            Some((n, l)) if *n == per_minute.get() => l.clone(),
            _ => {
                let l = Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)));
                m.insert(serial.to_string(), (per_minute.get(), l.clone()));
                l
            }
        }
    }
}
