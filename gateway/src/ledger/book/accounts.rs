//! Users' anonymous accounts in the book: a PIN (kept as its argon2 hash),
//! the pads registered to it, and its balance; the movements between an
//! account and its pads (top-up, withdrawal, cancellation of a lost pad) and
//! the PIN's lockout rule. An account links the pads registered to it and
//! nothing else: no site, no address.

use std::collections::BTreeSet;

use policy::units::format_amount;
use serde::{Deserialize, Serialize};

use super::{Account, Book, Changes, LedgerError, Micros, PadState};

/// Wrong PINs in a row that lock an account.
pub const PIN_FAILURES_TO_LOCK: u32 = 5;
/// The first lockout; each further one doubles it.
pub const FIRST_LOCK_SECS: i64 = 15 * 60;

/// An anonymous account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    pub pin_hash: String,
    /// Day (since the epoch, UTC) it was opened.
    pub created: i64,
    pub pads: BTreeSet<String>,
    /// Wrong PINs since the last right one or lockout.
    pub failures: u32,
    /// Unix seconds until which every PIN is refused (0: not locked).
    pub locked_until: i64,
    /// Lockouts so far (each doubles the next).
    pub lockouts: u32,
}

fn refused(msg: impl Into<String>) -> LedgerError {
    LedgerError::Refused(msg.into())
}

impl Book {
    /// An account's balance.
    pub fn account_balance(&self, id: &str) -> Option<Micros> {
        self.balance(&Account::User(id.to_string()))
    }

    /// The account a pad is registered to.
    pub fn account_of(&self, pad: &str) -> Option<&str> {
        self.accounts
            .iter()
            .find(|(_, a)| a.pads.contains(pad))
            .map(|(id, _)| id.as_str())
    }

    fn user(&self, id: &str) -> Result<&UserAccount, LedgerError> {
        self.accounts
            .get(id)
            .ok_or_else(|| LedgerError::NoAccount(format!("account {id}")))
    }

    fn pad_registrable(&self, pad: &str) -> Result<(), LedgerError> {
        if self.balance(&Account::Pad(pad.to_string())).is_none() {
            return Err(LedgerError::NoAccount(pad.to_string()));
        }
        if self.is_cancelled(pad) {
            return Err(refused(format!("pad {pad} is cancelled")));
        }
        if let Some(other) = self.account_of(pad) {
            return Err(refused(format!(
                "pad {pad} is already registered to account {other}"
            )));
        }
        Ok(())
    }

    /// Open account `id` with `pin_hash`, registering `pad` to it.
    pub fn open_account(
        &mut self,
        id: &str,
        pin_hash: String,
        created: i64,
        pad: &str,
    ) -> Result<Changes, LedgerError> {
        if self.accounts.contains_key(id) {
            return Err(refused(format!("account {id} already exists")));
        }
        self.pad_registrable(pad)?;
        self.accounts.insert(
            id.to_string(),
            UserAccount {
                pin_hash,
                created,
                pads: BTreeSet::from([pad.to_string()]),
                failures: 0,
                locked_until: 0,
                lockouts: 0,
            },
        );
        let acct = Account::User(id.to_string());
        self.balances.insert(acct.clone(), 0);
        Ok(Changes {
            accounts: vec![acct],
            user_accounts: vec![id.to_string()],
            ..Changes::default()
        })
    }

    /// Register `pad` to account `id`.
    pub fn register_pad(&mut self, id: &str, pad: &str) -> Result<Changes, LedgerError> {
        self.user(id)?;
        self.pad_registrable(pad)?;
        if let Some(a) = self.accounts.get_mut(id) {
            a.pads.insert(pad.to_string());
        }
        Ok(Changes {
            user_accounts: vec![id.to_string()],
            ..Changes::default()
        })
    }

    /// Whether a pad was cancelled.
    pub fn is_cancelled(&self, pad: &str) -> bool {
        matches!(self.pad_states.get(pad), Some(PadState::Cancelled { .. }))
    }

    /// Cancel `pad` (lost or stolen): it serves nothing from now on, and its
    /// balance moves to `to` (a user's account, or a replacement pad);
    /// value still reserved by its tunnels follows as each reservation
    /// closes. Returns what moved now.
    pub fn cancel_pad(
        &mut self,
        pad: &str,
        to: &Account,
    ) -> Result<(Micros, Changes), LedgerError> {
        let from = Account::Pad(pad.to_string());
        if *to == from || !matches!(to, Account::User(_) | Account::Pad(_)) {
            return Err(refused(format!(
                "pad {pad} cannot be cancelled into {}",
                to.key()
            )));
        }
        let Some(held) = self.balance(to) else {
            return Err(LedgerError::NoAccount(to.key()));
        };
        self.cancellable(pad)?;
        let amount = self.balance(&from).unwrap_or(0);
        if let Account::Pad(p) = to {
            if self.is_cancelled(p) || self.is_inactive(p) {
                return Err(refused(format!(
                    "pad {p} cannot receive value (not active)"
                )));
            }
        }
        let credited = held.checked_add(amount).ok_or(LedgerError::Overflow)?;
        self.balances.insert(from.clone(), 0);
        self.balances.insert(to.clone(), credited);
        self.pad_states
            .insert(pad.to_string(), PadState::Cancelled { to: to.clone() });
        Ok((
            amount,
            Changes {
                accounts: vec![from, to.clone()],
                pad_states: vec![pad.to_string()],
                ..Changes::default()
            },
        ))
    }

    /// Whether `pad` can be cancelled (it exists, is active, not already
    /// cancelled). Changes nothing.
    pub fn cancellable(&self, pad: &str) -> Result<(), LedgerError> {
        if self.balance(&Account::Pad(pad.to_string())).is_none() {
            return Err(LedgerError::NoAccount(pad.to_string()));
        }
        if self.is_cancelled(pad) {
            return Err(refused(format!("pad {pad} is already cancelled")));
        }
        if self.is_inactive(pad) {
            return Err(refused(format!("pad {pad} was never activated")));
        }
        Ok(())
    }

    /// Value that came back to a cancelled pad (a reservation closed) goes
    /// on to the account it was cancelled into.
    pub(super) fn sweep_cancelled(&mut self, pad: &str, changes: &mut Changes) {
        let Some(PadState::Cancelled { to }) = self.pad_states.get(pad) else {
            return;
        };
        let (from, dest) = (Account::Pad(pad.to_string()), to.clone());
        let amount = self.balance(&from).unwrap_or(0);
        let Some(credited) = self.balance(&dest).and_then(|b| b.checked_add(amount)) else {
            return;
        };
        if amount > 0 {
            self.balances.insert(from.clone(), 0);
            self.balances.insert(dest.clone(), credited);
            changes.accounts.extend([from, dest]);
            changes.accounts.sort();
            changes.accounts.dedup();
        }
    }

    /// Move `amount` from account `id` to its registered `pad` (top-up), or
    /// back (withdrawal, `to_account`). Returns (pad balance, account balance).
    pub fn transfer(
        &mut self,
        id: &str,
        pad: &str,
        amount: Micros,
        to_account: bool,
    ) -> Result<(Micros, Micros, Changes), LedgerError> {
        if amount <= 0 {
            return Err(LedgerError::BadAmount(amount));
        }
        if !self.user(id)?.pads.contains(pad) {
            return Err(refused(format!(
                "pad {pad} is not registered to account {id}"
            )));
        }
        if self.is_cancelled(pad) {
            return Err(refused(format!("pad {pad} is cancelled")));
        }
        let (p, a) = (Account::Pad(pad.to_string()), Account::User(id.to_string()));
        let (pb, ab) = (self.balance(&p).unwrap_or(0), self.balance(&a).unwrap_or(0));
        let (from_balance, what) = if to_account {
            (pb, "the pad")
        } else {
            (ab, "the account")
        };
        if from_balance < amount {
            return Err(refused(format!(
                "{what} holds {}, less than the {} asked for",
                format_amount(from_balance),
                format_amount(amount)
            )));
        }
        let (pb, ab) = if to_account {
            (pb - amount, ab + amount)
        } else {
            (pb + amount, ab - amount)
        };
        self.balances.insert(p.clone(), pb);
        self.balances.insert(a.clone(), ab);
        Ok((
            pb,
            ab,
            Changes {
                accounts: vec![p, a],
                ..Changes::default()
            },
        ))
    }

    /// May a PIN be tried on account `id` at `now` (unix seconds)? `Err`
    /// says until when it is locked.
    pub fn pin_allowed(&self, id: &str, now: i64) -> Result<(), LedgerError> {
        let a = self.user(id)?;
        if a.locked_until > now {
            return Err(refused(format!(
                "account {id} is locked after {PIN_FAILURES_TO_LOCK} wrong PINs; try again in {} s",
                a.locked_until - now
            )));
        }
        Ok(())
    }

    /// Record a PIN check on account `id` at `now`: a right one clears the
    /// failures; the fifth wrong one in a row locks the account for 15
    /// minutes, doubling with each lockout.
    pub fn pin_checked(&mut self, id: &str, right: bool, now: i64) -> Result<Changes, LedgerError> {
        self.user(id)?;
        if let Some(a) = self.accounts.get_mut(id) {
            if right {
                a.failures = 0;
            } else {
                a.failures += 1;
                if a.failures >= PIN_FAILURES_TO_LOCK {
                    let secs = FIRST_LOCK_SECS.saturating_mul(1i64 << a.lockouts.min(20));
                    a.locked_until = now.saturating_add(secs);
                    a.lockouts = a.lockouts.saturating_add(1);
                    a.failures = 0;
                }
            }
        }
        Ok(Changes {
            user_accounts: vec![id.to_string()],
            ..Changes::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn book() -> Book {
        let mut b = Book::default();
        b.issue("a", 5_000_000).unwrap();
        b.issue("b", 3_000_000).unwrap();
        b.open_account("acct", "hash".into(), 0, "a").unwrap();
        b.register_pad("acct", "b").unwrap();
        b
    }

    #[test]
    fn a_lost_pad_loses_nothing_even_what_its_tunnel_held() {
        let mut b = book();
        let (hold, _, _) = b.reserve("b", 0, 1_000_000).unwrap();
        let (moved, _) = b.cancel_pad("b", &Account::User("acct".into())).unwrap();
        assert_eq!(moved, 2_000_000);
        assert!(b.is_cancelled("b"));
        // The tunnel's reservation closes having spent 0.1: the rest follows.
        b.settle(hold, 100_000, 1_000, 0).unwrap();
        assert_eq!(b.account_balance("acct"), Some(2_900_000));
        assert_eq!(b.balance(&Account::Pad("b".into())), Some(0));
        assert!(b.audit().problems.is_empty(), "{:?}", b.audit().problems);
        assert!(matches!(
            b.cancel_pad("b", &Account::User("acct".into())),
            Err(LedgerError::Refused(_))
        ));
        assert!(
            b.transfer("acct", "b", 1, false).is_err(),
            "no top-up of a cancelled pad"
        );
        // Top up the pad in use from what was saved.
        let (pad, acct, _) = b.transfer("acct", "a", 2_900_000, false).unwrap();
        assert_eq!((pad, acct), (7_900_000, 0));
    }

    #[test]
    fn a_replacement_pad_receives_the_value_and_what_follows() {
        let mut b = book();
        b.issue("new", 0).unwrap();
        let (hold, _, _) = b.reserve("a", 0, 1_000_000).unwrap();
        let (moved, _) = b.cancel_pad("a", &Account::Pad("new".into())).unwrap();
        assert_eq!(moved, 4_000_000);
        b.trim(hold, 10).unwrap();
        assert_eq!(b.balance(&Account::Pad("new".into())), Some(4_999_990));
        b.settle(hold, 10, 0, 0).unwrap();
        assert!(b.audit().problems.is_empty(), "{:?}", b.audit().problems);
        assert!(
            b.cancel_pad("new", &Account::Pad("new".into())).is_err(),
            "not into itself"
        );
        assert!(
            b.cancel_pad("b", &Account::Pad("a".into())).is_err(),
            "not into a cancelled pad"
        );
    }

    #[test]
    fn transfers_refuse_what_is_not_there_and_change_nothing() {
        let mut b = book();
        let before = b.clone();
        assert!(
            b.transfer("acct", "a", 1, false).is_err(),
            "the account is empty"
        );
        assert!(b.transfer("acct", "a", 5_000_001, true).is_err());
        assert!(b.transfer("acct", "a", 0, true).is_err());
        assert!(b.transfer("acct", "a", -5, true).is_err());
        assert!(b.transfer("ghost", "a", 5, true).is_err());
        b.issue("c", 1).unwrap();
        let before_c = b.clone();
        assert!(
            b.transfer("acct", "c", 1, true).is_err(),
            "not registered to it"
        );
        assert_eq!(b, before_c);
        b = before.clone();
        assert!(b.register_pad("acct", "a").is_err(), "registered once");
        assert_eq!(b, before);
    }

    #[test]
    fn five_wrong_pins_lock_the_account_and_each_lockout_doubles() {
        let mut b = book();
        for _ in 0..4 {
            b.pin_checked("acct", false, 1_000).unwrap();
        }
        assert!(b.pin_allowed("acct", 1_000).is_ok());
        b.pin_checked("acct", false, 1_000).unwrap();
        assert!(b.pin_allowed("acct", 1_000).is_err());
        assert!(b.pin_allowed("acct", 1_000 + FIRST_LOCK_SECS).is_ok());
        let t = 1_000 + FIRST_LOCK_SECS;
        for _ in 0..5 {
            b.pin_checked("acct", false, t).unwrap();
        }
        assert!(
            b.pin_allowed("acct", t + FIRST_LOCK_SECS).is_err(),
            "doubled"
        );
        assert!(b.pin_allowed("acct", t + 2 * FIRST_LOCK_SECS).is_ok());
        b.pin_checked("acct", true, t).unwrap();
        assert_eq!(b.accounts["acct"].failures, 0);
    }

    proptest! {
        /// Any sequence of top-ups, withdrawals, spending and cancellations
        /// conserves value and leaves nothing negative.
        #[test]
        fn account_movements_conserve_value(ops in proptest::collection::vec((0u8..5, any::<bool>(), 0i64..6_000_000), 0..40)) {
            let mut b = book();
            for (op, on_a, amount) in ops {
                let pad = if on_a { "a" } else { "b" };
                let before = b.clone();
                let r = match op {
                    0 => b.transfer("acct", pad, amount, false).map(drop),
                    1 => b.transfer("acct", pad, amount, true).map(drop),
                    2 => b.cancel_pad(pad, &Account::User("acct".into())).map(drop),
                    3 => b.reserve(pad, 0, amount).and_then(|(h, _, _)| b.settle(h, amount / 3, 0, 0)).map(drop),
                    _ => b.pin_checked("acct", amount % 2 == 0, amount).map(drop),
                };
                if r.is_err() && op != 3 {
                    prop_assert_eq!(&b, &before);
                }
                let report = b.audit();
                prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
            }
        }
    }
}
