//! The resend rule: which ticket slot the next hello uses. A hello that got
//! no reply is sent again, unchanged, rather than burning a new slot, so a
//! network that swallows hellos cannot push the agent past the gateway's
//! window of indexed tickets. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// A pending hello is sent at least this many times before a new slot is taken.
pub const MIN_SENDS: u32 = 3;
/// The first wait before giving up on an unanswered hello; each further
/// slot given up in a row (no reply in between) waits twice as long.
pub const FIRST_WAIT: Duration = Duration::from_secs(30);
/// Doublings stop here (30 s × 2^24 ≈ 16 years per slot).
const MAX_DOUBLINGS: u32 = 24;

/// What the agent knows of its unanswered hellos.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HelloPlan {
    /// The slot whose hello is out unanswered, as last sent.
    slot: Option<u32>,
    /// How many connections it was written on.
    sends: u32,
    /// When it was first written.
    first_sent: Option<Instant>,
    /// Slots given up in a row, with no reply in between.
    given_up: u32,
    /// The pending slot may not be sent again (a reply failed authentication:
    /// its reply key must not be tried against a second message).
    spoiled: bool,
}

impl HelloPlan {
    /// Whether the next hello should resend `pending` (the slot the pad
    /// holds as sent and unanswered) rather than claim a new slot.
    pub fn resend(&self, pending: Option<u32>, now: Instant) -> bool {
        let Some(pending) = pending else {
            return false;
        };
        if self.spoiled && self.slot == Some(pending) {
            return false;
        }
        if self.slot != Some(pending) {
            // Pending from before a restart: what was sent then is unknown here.
            return true;
        }
        let waited = self
            .first_sent
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.sends < MIN_SENDS || waited < self.wait()
    }

    /// How long the current slot is kept before it is given up.
    pub fn wait(&self) -> Duration {
        FIRST_WAIT * 2u32.pow(self.given_up.min(MAX_DOUBLINGS))
    }

    /// The hello on `slot` was written to a connection.
    pub fn sent(&mut self, slot: u32, now: Instant) {
        if self.slot != Some(slot) {
            if self.slot.is_some() {
                self.given_up += 1;
            }
            self.slot = Some(slot);
            self.sends = 0;
            self.first_sent = Some(now);
            self.spoiled = false;
        }
        self.sends += 1;
    }

    /// An authentic reply arrived: the slot is done, and the streak ends.
    pub fn answered(&mut self) {
        *self = HelloPlan::default();
    }

    /// A reply failed authentication: never send this slot's hello again.
    pub fn spoil(&mut self) {
        self.spoiled = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swallowed_hello_is_resent_then_given_up_ever_more_slowly() {
        let t0 = Instant::now();
        let mut plan = HelloPlan::default();
        assert!(!plan.resend(None, t0), "nothing pending: claim a slot");
        // Twenty dials in 20 s to a black hole use one slot.
        for i in 0..20 {
            let now = t0 + Duration::from_secs(i);
            if i > 0 {
                assert!(plan.resend(Some(0), now), "dial {i}");
            }
            plan.sent(0, now);
        }
        assert!(
            !plan.resend(Some(0), t0 + FIRST_WAIT),
            "given up after 30 s"
        );
        plan.sent(1, t0 + FIRST_WAIT);
        assert_eq!(
            plan.wait(),
            2 * FIRST_WAIT,
            "the next slot is kept twice as long"
        );
        for i in 1..MIN_SENDS {
            plan.sent(1, t0 + FIRST_WAIT + Duration::from_secs(100 * u64::from(i)));
        }
        assert!(plan.resend(Some(1), t0 + FIRST_WAIT + Duration::from_secs(59)));
        assert!(!plan.resend(Some(1), t0 + 3 * FIRST_WAIT));
        // A reply ends the streak.
        plan.answered();
        plan.sent(2, t0);
        assert_eq!(plan.wait(), FIRST_WAIT);
    }

    #[test]
    fn slots_given_up_over_any_time_stay_within_the_gateways_window() {
        // A year of dials every 10 s, none answered.
        let t0 = Instant::now();
        let mut plan = HelloPlan::default();
        let (mut pending, mut next) = (None, 0u32);
        for i in 0..(365 * 24 * 360u64) {
            let now = t0 + Duration::from_secs(10 * i);
            if !plan.resend(pending, now) {
                pending = Some(next);
                next += 1;
            }
            plan.sent(pending.unwrap(), now);
        }
        // The gateway indexes 32 unused tickets per pad.
        assert!(next <= 21, "{next} slots used");
    }

    #[test]
    fn a_hello_pending_from_before_a_restart_is_resent_and_a_spoiled_one_is_not() {
        let now = Instant::now();
        let mut plan = HelloPlan::default();
        assert!(plan.resend(Some(7), now));
        plan.sent(7, now);
        plan.spoil();
        assert!(!plan.resend(Some(7), now));
    }
}
