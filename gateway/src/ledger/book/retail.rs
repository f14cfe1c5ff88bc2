//! Pads sold as blanks in the book: a pad minted inactive holds no value
//! until a till activates it (issuance → pad, in one write), and each
//! retailer keeps only a count and a sum of what it activated, never which
//! pads. The ledger's word on a pad's status overrides its state file's.

use serde::{Deserialize, Serialize};

use super::{Account, Book, Changes, LedgerError, Micros};

/// What the ledger knows about a pad that is not simply active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PadState {
    /// Minted as a blank, waiting for a till; `value` is what it was
    /// minted with (used when the till names none).
    Inactive { value: Micros },
    /// Cancelled (lost or stolen): refused at every hello; value that comes
    /// back to it moves on to `to` (a user's account, or a replacement pad).
    Cancelled { to: Account },
}

/// A shop that activates pads at its tills. Its token is kept only as its
/// (argon2) hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retailer {
    pub token_hash: String,
    /// Day (since the epoch, UTC) the retailer was made.
    pub created: i64,
    /// Pads activated, and the value they were activated with (for
    /// settling with the shop).
    pub count: u64,
    pub sum: Micros,
}

fn refused(msg: impl Into<String>) -> LedgerError {
    LedgerError::Refused(msg.into())
}

impl Book {
    /// Record a newly minted blank pad: its account exists, empty, and it
    /// serves nothing until activated.
    pub fn mint_inactive(&mut self, pad: &str, value: Micros) -> Result<Changes, LedgerError> {
        if value < 0 {
            return Err(LedgerError::BadAmount(value));
        }
        let mut changes = self.issue(pad, 0)?;
        self.pad_states
            .insert(pad.to_string(), PadState::Inactive { value });
        changes.pad_states.push(pad.to_string());
        Ok(changes)
    }

    /// Activate a blank pad with `value` (or the value it was minted with):
    /// issuance → pad, the pad's status and the retailer's count and sum,
    /// all in one write. Returns the pad's balance.
    pub fn activate(
        &mut self,
        pad: &str,
        value: Option<Micros>,
        retailer: Option<&str>,
    ) -> Result<(Micros, Changes), LedgerError> {
        let acct = Account::Pad(pad.to_string());
        let minted = match (self.pad_states.get(pad), self.balances.contains_key(&acct)) {
            (Some(PadState::Inactive { value }), true) => *value,
            (None, true) => return Err(refused(format!("pad {pad} is already active"))),
            (Some(PadState::Cancelled { .. }), _) => {
                return Err(refused(format!("pad {pad} is cancelled")))
            }
            _ => return Err(LedgerError::NoAccount(pad.to_string())),
        };
        let value = value.unwrap_or(minted);
        if value <= 0 {
            return Err(refused(format!(
                "pad {pad} was minted without a value; name the value to activate it with"
            )));
        }
        if let Some(r) = retailer {
            if !self.retailers.contains_key(r) {
                return Err(LedgerError::NoAccount(format!("retailer {r}")));
            }
        }
        // Every sum is checked before anything changes.
        let issued = self
            .issued
            .checked_add(value)
            .ok_or(LedgerError::Overflow)?;
        let balance = self
            .balance(&acct)
            .unwrap_or(0)
            .checked_add(value)
            .ok_or(LedgerError::Overflow)?;
        let issuance = self
            .balance(&Account::Issuance)
            .unwrap_or(0)
            .checked_sub(value)
            .ok_or(LedgerError::Overflow)?;
        let shop = match retailer.and_then(|r| self.retailers.get(r)) {
            Some(r) => Some((
                r.count.checked_add(1).ok_or(LedgerError::Overflow)?,
                r.sum.checked_add(value).ok_or(LedgerError::Overflow)?,
            )),
            None => None,
        };
        self.issued = issued;
        self.balances.insert(acct.clone(), balance);
        self.balances.insert(Account::Issuance, issuance);
        self.pad_states.remove(pad);
        let mut changes = Changes {
            accounts: vec![Account::Issuance, acct],
            totals: true,
            pad_states: vec![pad.to_string()],
            ..Changes::default()
        };
        if let (Some(name), Some((count, sum))) = (retailer, shop) {
            if let Some(r) = self.retailers.get_mut(name) {
                r.count = count;
                r.sum = sum;
            }
            changes.retailers.push(name.to_string());
        }
        Ok((balance, changes))
    }

    /// Make a new retailer.
    pub fn add_retailer(&mut self, name: &str, r: Retailer) -> Result<Changes, LedgerError> {
        if self.retailers.contains_key(name) {
            return Err(refused(format!("retailer {name} already exists")));
        }
        self.retailers.insert(name.to_string(), r);
        Ok(Changes {
            retailers: vec![name.to_string()],
            ..Changes::default()
        })
    }

    /// Whether a pad is waiting for activation.
    pub fn is_inactive(&self, pad: &str) -> bool {
        matches!(self.pad_states.get(pad), Some(PadState::Inactive { .. }))
    }

    /// Problems with blank pads: one that holds value before activation.
    pub(super) fn audit_retail(&self, problems: &mut Vec<String>) {
        for (pad, state) in &self.pad_states {
            let what = match state {
                PadState::Inactive { .. } => "inactive",
                PadState::Cancelled { .. } => "cancelled",
            };
            match self.balance(&Account::Pad(pad.clone())) {
                Some(0) => {}
                Some(v) => problems.push(format!("{what} pad {pad} holds {v}")),
                None => problems.push(format!("{what} pad {pad} has no account")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shop() -> Retailer {
        Retailer {
            token_hash: String::new(),
            created: 0,
            count: 0,
            sum: 0,
        }
    }

    #[test]
    fn a_blank_pad_is_worth_nothing_until_a_till_activates_it_once() {
        let mut b = Book::default();
        b.add_retailer("corner", shop()).unwrap();
        b.mint_inactive("p1", 20_000_000).unwrap();
        assert_eq!(b.balance(&Account::Pad("p1".into())), Some(0));
        assert!(b.is_inactive("p1"));
        assert!(b.audit().problems.is_empty());
        let (balance, _) = b.activate("p1", None, Some("corner")).unwrap();
        assert_eq!(balance, 20_000_000);
        assert!(!b.is_inactive("p1"));
        assert_eq!(
            (b.retailers["corner"].count, b.retailers["corner"].sum),
            (1, 20_000_000)
        );
        let before = b.clone();
        assert!(matches!(
            b.activate("p1", None, Some("corner")),
            Err(LedgerError::Refused(_))
        ));
        assert!(matches!(
            b.activate("nope", None, None),
            Err(LedgerError::NoAccount(_))
        ));
        assert_eq!(b, before, "refusals change nothing");
        assert!(b.audit().problems.is_empty());
    }

    #[test]
    fn the_till_may_name_the_value_and_an_unknown_shop_changes_nothing() {
        let mut b = Book::default();
        b.mint_inactive("p1", 0).unwrap();
        assert!(matches!(
            b.activate("p1", None, None),
            Err(LedgerError::Refused(_))
        ));
        let before = b.clone();
        assert!(matches!(
            b.activate("p1", Some(5_000_000), Some("ghost")),
            Err(LedgerError::NoAccount(_))
        ));
        assert_eq!(b, before);
        assert_eq!(
            b.activate("p1", Some(5_000_000), None).unwrap().0,
            5_000_000
        );
        assert_eq!(b.issued, 5_000_000);
    }

    proptest! {
        /// Any mix of blanks minted and activations (some refused) conserves
        /// value, and each shop's sum is what it activated.
        #[test]
        fn activation_conserves_value(ops in proptest::collection::vec((0u8..6, 0i64..50_000_000, any::<bool>()), 0..40)) {
            let mut b = Book::default();
            b.add_retailer("a", shop()).unwrap();
            let mut activated = 0i64;
            for (pad, value, named) in ops {
                let serial = format!("p{pad}");
                if b.balance(&Account::Pad(serial.clone())).is_none() {
                    b.mint_inactive(&serial, value).unwrap();
                    continue;
                }
                let before = b.clone();
                match b.activate(&serial, named.then_some(value), Some("a")) {
                    Ok((balance, _)) => activated += balance,
                    Err(_) => prop_assert_eq!(&b, &before),
                }
                prop_assert!(b.audit().problems.is_empty(), "{:?}", b.audit().problems);
            }
            prop_assert_eq!(b.retailers["a"].sum, activated);
            prop_assert_eq!(b.issued, activated);
        }
    }
}
