//! What a listener does when `accept` fails (out of file descriptors, most
//! often, and then it fails again at once until one is freed): wait, 10 ms
//! doubling to 1 s, back to 10 ms after a success; and say so at most once
//! a second, counting the failures it did not report. The agent's and the
//! gateway's accept loops share this rule; it only decides, they sleep and
//! log.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// The wait after the first failure since a success.
pub const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// At most one report per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The state of one accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The last wait; `None` after a success.
    wait: Option<Duration>,
    last_report: Option<Instant>,
    unreported: u64,
}

/// What to do after a failed accept.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before accepting again.
    pub wait: Duration,
    /// `Some(n)` when this failure is to be reported, `n` being the
    /// failures before it that were not.
    pub report: Option<u64>,
}

impl AcceptBackoff {
    /// An accept succeeded: the next failure waits [`FIRST_WAIT`] again.
    pub fn succeeded(&mut self) {
        self.wait = None;
    }

    /// An accept failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Failure {
        let wait = self
            .wait
            .map_or(FIRST_WAIT, |w| w.saturating_mul(2).min(MAX_WAIT));
        self.wait = Some(wait);
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY);
        let report = if due {
            self.last_report = Some(now);
            Some(std::mem::take(&mut self.unreported))
        } else {
            self.unreported += 1;
            None
        };
        Failure { wait, report }
    }
}

impl Failure {
    /// The log line for `error`, when this failure is to be reported.
    pub fn line(&self, error: &dyn Display) -> Option<String> {
        let unreported = self.report?;
        let more = match unreported {
            0 => String::new(),
            n => format!(" ({n} more failures since the last report)"),
        };
        Some(format!(
            "accept failed: {error}; retrying in {:?}{more}",
            self.wait
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let now = Instant::now();
        let waits: Vec<u128> = (0..10).map(|_| b.failed(now).wait.as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(now).wait, FIRST_WAIT);
    }

    #[test]
    fn reports_at_most_once_a_second_with_the_count_left_out() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.failed(t0).report, Some(0));
        for ms in [1, 200, 999] {
            assert_eq!(b.failed(t0 + Duration::from_millis(ms)).report, None);
        }
        // A success between failures does not reopen reporting early.
        b.succeeded();
        assert_eq!(b.failed(t0 + Duration::from_millis(999)).report, None);
        let f = b.failed(t0 + Duration::from_millis(1000));
        assert_eq!(f.report, Some(4));
        let line = f.line(&"Too many open files").unwrap();
        assert!(line.contains("Too many open files"), "{line}");
        assert!(line.contains("4 more failures"), "{line}");
        assert_eq!(b.failed(t0 + Duration::from_millis(1500)).line(&"x"), None);
    }
}
