//! The last requests padnet refused, kept in memory for the agent's page:
//! a browser shows its own "tunnel connection failed" for a refused HTTPS
//! `CONNECT`, so the page is where the user learns why (policy rule, value
//! used up, daily limit). Never written to disk, never sent anywhere.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use proto::headers::{ERROR, REASON};

/// How many refusals are kept (the oldest goes first).
pub const KEPT: usize = 20;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The host the browser asked for (as it asked).
    pub host: String,
    pub status: u16,
    /// The refusal's code (`policy-denied`, `value-exhausted`...).
    pub code: String,
    /// What the gateway or the agent said, in words.
    pub reason: String,
}

/// The last [`KEPT`] refusals, newest first.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<VecDeque<Refusal>>);

impl Refusals {
    pub fn record(&self, host: &str, status: StatusCode, code: &str, reason: &str) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let r = Refusal {
            at,
            host: host.chars().take(256).collect(),
            status: status.as_u16(),
            code: code.chars().take(64).collect(),
            reason: reason.chars().take(512).collect(),
        };
        if let Ok(mut q) = self.0.lock() {
            q.push_front(r);
            q.truncate(KEPT);
        }
    }

    /// Record a gateway answer if it is a refusal (it names an `x-padnet-error`).
    pub fn record_answer(&self, host: &str, status: StatusCode, headers: &HeaderMap) {
        let Some(code) = headers.get(ERROR).and_then(|v| v.to_str().ok()) else {
            return;
        };
        let reason = headers
            .get(REASON)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(code);
        self.record(host, status, code, reason);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Refusal> {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// For `/status` (`recent_refusals`).
    pub fn json(&self) -> serde_json::Value {
        self.list()
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "at": r.at,
                    "host": r.host,
                    "status": r.status,
                    "code": r.code,
                    "reason": r.reason,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keeps_the_newest_first_and_at_most_kept() {
        let r = Refusals::default();
        for i in 0..KEPT + 5 {
            r.record(
                &format!("h{i}.example"),
                StatusCode::FORBIDDEN,
                "policy-denied",
                "no",
            );
        }
        let l = r.list();
        assert_eq!(l.len(), KEPT);
        assert_eq!(l[0].host, format!("h{}.example", KEPT + 4));
        assert_eq!(l[KEPT - 1].host, "h5.example");
    }

    #[test]
    fn records_only_answers_that_name_a_refusal() {
        let r = Refusals::default();
        r.record_answer("ok.example", StatusCode::OK, &HeaderMap::new());
        let mut h = HeaderMap::new();
        h.insert(ERROR, HeaderValue::from_static("daily-limit"));
        r.record_answer("a.example:443", StatusCode::PAYMENT_REQUIRED, &h);
        h.insert(REASON, HeaderValue::from_static("rule deny ads.example"));
        r.record_answer("ads.example:443", StatusCode::FORBIDDEN, &h);
        let l = r.list();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].reason, "rule deny ads.example");
        assert_eq!(
            l[1].reason, "daily-limit",
            "the code stands in for a missing reason"
        );
        assert_eq!(r.json()[1]["status"], 402);
    }

    #[test]
    fn bounds_what_it_keeps_of_each_field() {
        let r = Refusals::default();
        r.record(
            &"h".repeat(10_000),
            StatusCode::FORBIDDEN,
            &"c".repeat(999),
            &"r".repeat(9999),
        );
        let l = r.list();
        assert_eq!(l[0].host.len(), 256);
        assert_eq!(l[0].code.len(), 64);
        assert_eq!(l[0].reason.len(), 512);
    }
}
