//! The resend rule: which ticket slot the next hello uses. A hello that got
//! no reply is sent again, unchanged, rather than burning a new slot, so a
//! network that swallows hellos cannot push the agent past the gateway's
//! window of indexed tickets; slots are given up only after ever longer
//! waits. Pure: the caller passes the pad's marks and the time.

use std::time::{Duration, Instant};

use tunnel::handshake::PROTOCOL_VERSION;
use tunnel::store::Pending;

/// A pending hello is sent at least this many times before a new slot is taken.
pub const MIN_SENDS: u32 = 3;
/// The first wait before giving up on an unanswered hello; each further
/// slot given up in a row (no reply in between) waits twice as long.
pub const FIRST_WAIT: Duration = Duration::from_secs(30);
/// Slots whose replies failed authentication may be replaced at once this
/// many times in a row; after that, they wait like unanswered ones.
pub const FREE_CLAIMS: u32 = 4;
/// Doublings stop here (30 s × 2^24 ≈ 16 years per slot).
const MAX_DOUBLINGS: u32 = 24;

/// What the next dial sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The pending hello, again.
    Resend(Pending),
    /// A hello on a newly claimed slot (the pending one, if any, is given up).
    Claim,
    /// Nothing yet: the pending hello may not be sent again (its reply key
    /// had its one try) and the next slot is not due for this long.
    Wait(Duration),
}

/// How long the current slot is kept before it is given up, after `streak`
/// slots given up in a row.
pub fn wait_for(streak: u32) -> Duration {
    FIRST_WAIT * 2u32.pow(streak.min(MAX_DOUBLINGS))
}

/// What this process saw of the pending hello (the pad keeps the rest).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HelloPlan {
    slot: Option<u32>,
    /// How many connections it was written on.
    sends: u32,
    /// When this process first had it pending.
    since: Option<Instant>,
}

impl HelloPlan {
    /// Decide the next hello from the pad's pending hello and streak.
    pub fn next(&mut self, pending: Option<Pending>, streak: u32, now: Instant) -> Next {
        let Some(p) = pending else {
            return Next::Claim;
        };
        if p.version != PROTOCOL_VERSION {
            // Sealed by another version: a resend would not be identical.
            return Next::Claim;
        }
        if self.slot != Some(p.slot) {
            // Pending from before a restart: its clock starts now.
            *self = HelloPlan {
                slot: Some(p.slot),
                sends: 0,
                since: Some(now),
            };
        }
        let waited = self
            .since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let wait = wait_for(streak);
        if p.spoiled {
            return if streak < FREE_CLAIMS || waited >= wait {
                Next::Claim
            } else {
                Next::Wait(wait - waited)
            };
        }
        if self.sends < MIN_SENDS || waited < wait {
            Next::Resend(p)
        } else {
            Next::Claim
        }
    }

    /// The hello on `slot` was written to a connection.
    pub fn sent(&mut self, slot: u32, now: Instant) {
        if self.slot != Some(slot) {
            *self = HelloPlan {
                slot: Some(slot),
                sends: 0,
                since: Some(now),
            };
        }
        self.sends += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(slot: u32, spoiled: bool) -> Option<Pending> {
        Some(Pending {
            slot,
            version: PROTOCOL_VERSION,
            spoiled,
        })
    }

    /// A pad's marks as the agent keeps them, driven by the plan alone.
    struct Sim {
        plan: HelloPlan,
        pending: Option<Pending>,
        streak: u32,
        next_slot: u32,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                plan: HelloPlan::default(),
                pending: None,
                streak: 0,
                next_slot: 0,
            }
        }
        /// One dial that gets no reply (or, with `junk`, a reply that fails
        /// authentication). Returns the slot sent, if any.
        fn dial(&mut self, now: Instant, junk: bool) -> Option<u32> {
            let slot = match self.plan.next(self.pending, self.streak, now) {
                Next::Wait(_) => return None,
                Next::Resend(p) => p.slot,
                Next::Claim => {
                    if self.pending.is_some() {
                        self.streak += 1;
                    }
                    self.pending = pending(self.next_slot, false);
                    self.next_slot += 1;
                    self.next_slot - 1
                }
            };
            self.plan.sent(slot, now);
            if junk {
                self.pending = pending(slot, true);
            }
            Some(slot)
        }
    }

    #[test]
    fn a_swallowed_hello_is_resent_then_given_up_ever_more_slowly() {
        let t0 = Instant::now();
        let mut sim = Sim::new();
        // Twenty dials in 20 s to a black hole use one slot.
        for i in 0..20 {
            assert_eq!(sim.dial(t0 + Duration::from_secs(i), false), Some(0));
        }
        assert_eq!(
            sim.dial(t0 + FIRST_WAIT, false),
            Some(1),
            "given up after 30 s"
        );
        assert_eq!(
            wait_for(sim.streak),
            2 * FIRST_WAIT,
            "the next is kept twice as long"
        );
        assert_eq!(sim.dial(t0 + FIRST_WAIT * 2, false), Some(1));
        assert_eq!(
            sim.dial(t0 + FIRST_WAIT * 3, false),
            Some(1),
            "three sends first"
        );
        assert_eq!(sim.dial(t0 + FIRST_WAIT * 3, false), Some(2));
    }

    #[test]
    fn a_year_of_swallowed_or_junk_answered_dials_stays_within_the_gateways_window() {
        for junk in [false, true] {
            let t0 = Instant::now();
            let mut sim = Sim::new();
            for i in 0..(365 * 24 * 360u64) {
                sim.dial(t0 + Duration::from_secs(10 * i), junk);
            }
            // The gateway indexes 32 unused tickets per pad.
            assert!(
                sim.next_slot <= 26,
                "junk {junk}: {} slots used",
                sim.next_slot
            );
        }
    }

    #[test]
    fn a_spoiled_hello_is_never_resent_and_a_pending_one_survives_a_restart() {
        let now = Instant::now();
        let mut plan = HelloPlan::default();
        assert_eq!(
            plan.next(pending(7, false), 0, now),
            Next::Resend(pending(7, false).unwrap())
        );
        assert_eq!(plan.next(pending(7, true), 0, now), Next::Claim);
        assert!(matches!(
            plan.next(pending(7, true), FREE_CLAIMS, now),
            Next::Wait(_)
        ));
        let other = Some(Pending {
            slot: 7,
            version: PROTOCOL_VERSION + 1,
            spoiled: false,
        });
        assert_eq!(
            plan.next(other, 0, now),
            Next::Claim,
            "another version's hello"
        );
    }
}
