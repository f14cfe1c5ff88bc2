//! The ledger's rules, pure and in memory: accounts, reservations (holds) and
//! the issued/redeemed totals, and every movement between them. No I/O here;
//! the stores persist what each operation reports as changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod accounts;
mod owners;
mod policies;
mod retail;
pub use accounts::{UserAccount, FIRST_LOCK_SECS, PIN_FAILURES_TO_LOCK};
pub use owners::{
    AdCredit, Capture, Owner, Premium, Prices, Site, SiteCharge, Statement, StatementKey,
};
pub use retail::{PadState, Retailer};

/// Micro-units of the currency (1 = 0.000001).
pub type Micros = i64;

/// An account in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Account {
    /// Where issued value comes from; its balance is −(issued − redeemed).
    Issuance,
    /// The gateway's earnings.
    Revenue,
    /// A pad's spendable value, by serial.
    Pad(String),
    /// A site owner's earnings (and an advertiser's budget), by owner id.
    Owner(String),
    /// A user's anonymous account, by account number.
    User(String),
}

impl Account {
    pub fn kind(&self) -> &'static str {
        match self {
            Account::Issuance => "issuance",
            Account::Revenue => "revenue",
            Account::Pad(_) => "pad",
            Account::Owner(_) => "owner",
            Account::User(_) => "account",
        }
    }

    /// The key form ("pad:abcd-...", "revenue", "issuance").
    pub fn key(&self) -> String {
        match self {
            Account::Issuance => "issuance".into(),
            Account::Revenue => "revenue".into(),
            Account::Pad(s) => format!("pad:{s}"),
            Account::Owner(o) => format!("owner:{o}"),
            Account::User(u) => format!("account:{u}"),
        }
    }

    pub fn from_key(k: &str) -> Option<Account> {
        match k {
            "issuance" => Some(Account::Issuance),
            "revenue" => Some(Account::Revenue),
            _ => k
                .strip_prefix("pad:")
                .map(|s| Account::Pad(s.to_string()))
                .or_else(|| {
                    k.strip_prefix("owner:")
                        .map(|o| Account::Owner(o.to_string()))
                })
                .or_else(|| {
                    k.strip_prefix("account:")
                        .map(|u| Account::User(u.to_string()))
                }),
        }
    }
}

/// A reservation: value moved out of a pad's balance, not yet settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub pad: String,
    pub amount: Micros,
    /// The gateway holding it (its id; empty on a store one gateway owns):
    /// it releases its own at start, and its peers release those of a
    /// gateway that stopped renewing its lease.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// Per-pad counters for the current day, for policy limits. Aggregates only:
/// never which sites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    /// Days since the Unix epoch (UTC) these counters are for.
    pub day: i64,
    pub spent: Micros,
    pub bytes: u64,
}

/// Why an operation was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient value: balance {balance}, needed at least {needed}")]
    Insufficient { balance: Micros, needed: Micros },
    #[error("no such pad account {0}")]
    NoAccount(String),
    #[error("pad account {0} already exists")]
    AccountExists(String),
    #[error("no open reservation {0}")]
    NoHold(u64),
    #[error("settling {charge} against a reservation of {held}")]
    OverCharge { charge: Micros, held: Micros },
    #[error("amount must be positive, got {0}")]
    BadAmount(Micros),
    #[error("amounts overflow")]
    Overflow,
    #[error("ledger store: {0}")]
    Store(String),
    /// An owner or site operation that does not apply (named).
    #[error("{0}")]
    Refused(String),
}

/// Which persisted entries an operation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub accounts: Vec<Account>,
    pub holds: Vec<u64>,
    pub days: Vec<String>,
    pub totals: bool,
    pub owners: Vec<String>,
    pub sites: Vec<String>,
    pub statements: Vec<StatementKey>,
    pub pad_states: Vec<String>,
    pub retailers: Vec<String>,
    pub user_accounts: Vec<String>,
    pub policies: Vec<String>,
    pub policy_names: Vec<String>,
}

impl Changes {
    /// Add what `other` names (for one write of several operations).
    pub fn absorb(&mut self, other: Changes) {
        fn join<T: Ord>(a: &mut Vec<T>, b: Vec<T>) {
            a.extend(b);
            a.sort();
            a.dedup();
        }
        join(&mut self.accounts, other.accounts);
        join(&mut self.holds, other.holds);
        join(&mut self.days, other.days);
        self.totals |= other.totals;
        join(&mut self.owners, other.owners);
        join(&mut self.sites, other.sites);
        join(&mut self.statements, other.statements);
        join(&mut self.pad_states, other.pad_states);
        join(&mut self.retailers, other.retailers);
        join(&mut self.user_accounts, other.user_accounts);
        join(&mut self.policies, other.policies);
        join(&mut self.policy_names, other.policy_names);
    }
}

/// The whole ledger state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Book {
    pub balances: BTreeMap<Account, Micros>,
    pub holds: BTreeMap<u64, Hold>,
    pub next_hold: u64,
    pub issued: Micros,
    pub redeemed: Micros,
    pub days: BTreeMap<String, DayUsage>,
    pub owners: BTreeMap<String, Owner>,
    /// Registered sites by host name (lower case, no port).
    pub sites: BTreeMap<String, Site>,
    pub statements: BTreeMap<StatementKey, Statement>,
    /// Pads that are not simply active (blanks waiting for a till).
    pub pad_states: BTreeMap<String, PadState>,
    pub retailers: BTreeMap<String, Retailer>,
    /// Users' anonymous accounts, by account number.
    pub accounts: BTreeMap<String, UserAccount>,
    /// Employer policies every gateway of a shared ledger applies: each
    /// source by id (hex), and the current id per policy name.
    pub policies: BTreeMap<String, String>,
    pub policy_current: BTreeMap<String, String>,
    /// The gateway this book's process serves as: the holds it opens carry
    /// it. Not persisted.
    pub gateway: String,
}

/// What `audit` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub issued: Micros,
    pub redeemed: Micros,
    /// Σ balances of every account except issuance.
    pub balances: Micros,
    pub held: Micros,
    pub open_holds: usize,
    pub accounts: usize,
    /// Empty when the ledger is sound; otherwise each discrepancy, named.
    pub problems: Vec<String>,
}

impl Book {
    pub fn balance(&self, a: &Account) -> Option<Micros> {
        self.balances.get(a).copied()
    }

    fn pad_balance(&self, pad: &str) -> Result<Micros, LedgerError> {
        self.balance(&Account::Pad(pad.to_string()))
            .ok_or_else(|| LedgerError::NoAccount(pad.to_string()))
    }

    fn add(&mut self, a: &Account, delta: Micros) -> Result<(), LedgerError> {
        let v = self.balances.get(a).copied().unwrap_or(0);
        let n = v.checked_add(delta).ok_or(LedgerError::Overflow)?;
        self.balances.insert(a.clone(), n);
        Ok(())
    }

    /// Issue `amount` to a new pad account: issuance → pad.
    pub fn issue(&mut self, pad: &str, amount: Micros) -> Result<Changes, LedgerError> {
        if amount < 0 {
            return Err(LedgerError::BadAmount(amount));
        }
        let acct = Account::Pad(pad.to_string());
        if self.balances.contains_key(&acct) {
            return Err(LedgerError::AccountExists(pad.to_string()));
        }
        let issued = self
            .issued
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        self.add(&Account::Issuance, -amount)?;
        self.balances.insert(acct.clone(), amount);
        self.issued = issued;
        Ok(Changes {
            accounts: vec![Account::Issuance, acct],
            totals: true,
            ..Changes::default()
        })
    }

    /// Reserve between `min` and `max` from a pad (as much of `max` as the
    /// balance allows, refused below `min`). Returns the hold id and amount.
    pub fn reserve(
        &mut self,
        pad: &str,
        min: Micros,
        max: Micros,
    ) -> Result<(u64, Micros, Changes), LedgerError> {
        if min < 0 || max < min {
            return Err(LedgerError::BadAmount(min));
        }
        let balance = self.pad_balance(pad)?;
        let amount = balance.min(max);
        if amount < min || (amount == 0 && max > 0) {
            return Err(LedgerError::Insufficient {
                balance,
                needed: min.max(1),
            });
        }
        let id = self.next_hold;
        self.next_hold += 1;
        let acct = Account::Pad(pad.to_string());
        self.add(&acct, -amount)?;
        self.holds.insert(
            id,
            Hold {
                pad: pad.to_string(),
                amount,
                gateway: self.gateway.clone(),
            },
        );
        Ok((
            id,
            amount,
            Changes {
                accounts: vec![acct],
                holds: vec![id],
                totals: true,
                ..Changes::default()
            },
        ))
    }

    /// Add between `min` and `max` more to an open hold.
    pub fn extend(
        &mut self,
        hold: u64,
        min: Micros,
        max: Micros,
    ) -> Result<(Micros, Changes), LedgerError> {
        if min < 1 || max < min {
            return Err(LedgerError::BadAmount(min));
        }
        let pad = self
            .holds
            .get(&hold)
            .ok_or(LedgerError::NoHold(hold))?
            .pad
            .clone();
        let balance = self.pad_balance(&pad)?;
        let amount = balance.min(max);
        if amount < min {
            return Err(LedgerError::Insufficient {
                balance,
                needed: min,
            });
        }
        let acct = Account::Pad(pad);
        let h = self.holds.get_mut(&hold).ok_or(LedgerError::NoHold(hold))?;
        h.amount = h.amount.checked_add(amount).ok_or(LedgerError::Overflow)?;
        self.add(&acct, -amount)?;
        Ok((
            amount,
            Changes {
                accounts: vec![acct],
                holds: vec![hold],
                ..Changes::default()
            },
        ))
    }

    /// An open hold, if `amount` is within 0..=its amount.
    fn hold_covering(&self, hold: u64, amount: Micros) -> Result<Hold, LedgerError> {
        let h = self.holds.get(&hold).ok_or(LedgerError::NoHold(hold))?;
        if amount < 0 || amount > h.amount {
            return Err(LedgerError::OverCharge {
                charge: amount,
                held: h.amount,
            });
        }
        Ok(h.clone())
    }

    /// Close a hold: `charge` goes to revenue, the rest back to the pad, and
    /// the pad's day counters grow by `charge` and `bytes`.
    pub fn settle(
        &mut self,
        hold: u64,
        charge: Micros,
        bytes: u64,
        day: i64,
    ) -> Result<Changes, LedgerError> {
        self.settle_with(hold, &Capture::transport(charge, bytes), day)
    }

    /// Close a hold: what `capture` names is charged (transport and site
    /// charges to revenue and owners, advertisers' credits to the pad), the
    /// rest goes back to the pad, all in one change.
    pub fn settle_with(
        &mut self,
        hold: u64,
        capture: &Capture,
        day: i64,
    ) -> Result<Changes, LedgerError> {
        let mut changes = self.capture_with(hold, capture, day)?;
        let h = self.holds.remove(&hold).ok_or(LedgerError::NoHold(hold))?;
        let acct = Account::Pad(h.pad.clone());
        self.add(&acct, h.amount)?;
        changes.accounts.push(acct);
        changes.accounts.sort();
        changes.accounts.dedup();
        self.sweep_cancelled(&h.pad, &mut changes);
        Ok(changes)
    }

    /// Charge part of an open hold now (a long transfer pays as it goes, so
    /// a crash forgives only its unpaid tail). The hold stays open.
    pub fn capture(
        &mut self,
        hold: u64,
        charge: Micros,
        bytes: u64,
        day: i64,
    ) -> Result<Changes, LedgerError> {
        self.capture_with(hold, &Capture::transport(charge, bytes), day)
    }

    /// Charge what `capture` names from an open hold, in one change: pads'
    /// debit, owners' credits and revenue together. The hold stays open.
    pub fn capture_with(
        &mut self,
        hold: u64,
        capture: &Capture,
        day: i64,
    ) -> Result<Changes, LedgerError> {
        let total = self.check_capture(capture)?;
        let h = self.hold_covering(hold, total)?;
        let mut changes = Changes {
            holds: vec![hold],
            ..Changes::default()
        };
        // Validates every sum before it changes anything, so it goes first.
        self.apply_sites(&h.pad, capture, day, &mut changes)?;
        if let Some(open) = self.holds.get_mut(&hold) {
            open.amount -= total;
        }
        self.count_day(&h.pad, total, capture.bytes, day, &mut changes);
        // An advertiser's credit to a pad cancelled meanwhile goes on with its value.
        self.sweep_cancelled(&h.pad, &mut changes);
        Ok(changes)
    }

    /// Give back all of an open hold above `keep` (the request has ended and
    /// its charge is known; the hold stays open until settled).
    pub fn trim(&mut self, hold: u64, keep: Micros) -> Result<Changes, LedgerError> {
        let h = self.hold_covering(hold, keep)?;
        let acct = Account::Pad(h.pad.clone());
        self.add(&acct, h.amount - keep)?;
        if let Some(open) = self.holds.get_mut(&hold) {
            open.amount = keep;
        }
        let mut changes = Changes {
            accounts: vec![acct],
            holds: vec![hold],
            ..Changes::default()
        };
        self.sweep_cancelled(&h.pad, &mut changes);
        Ok(changes)
    }

    fn count_day(
        &mut self,
        pad: &str,
        charge: Micros,
        bytes: u64,
        day: i64,
        changes: &mut Changes,
    ) {
        if charge > 0 || bytes > 0 {
            let d = self.days.entry(pad.to_string()).or_default();
            if d.day != day {
                *d = DayUsage {
                    day,
                    ..DayUsage::default()
                };
            }
            d.spent = d.spent.saturating_add(charge);
            d.bytes = d.bytes.saturating_add(bytes);
            changes.days.push(pad.to_string());
        }
    }

    /// Give a hold back in full (nothing was served, or a crash interrupted it).
    pub fn release(&mut self, hold: u64) -> Result<Changes, LedgerError> {
        let day = self.days.values().map(|d| d.day).max().unwrap_or(0);
        self.settle(hold, 0, 0, day)
    }

    /// Today's usage of a pad.
    pub fn usage(&self, pad: &str, day: i64) -> DayUsage {
        match self.days.get(pad) {
            Some(d) if d.day == day => *d,
            _ => DayUsage {
                day,
                ..DayUsage::default()
            },
        }
    }

    /// Value currently held for a pad.
    pub fn held_for(&self, pad: &str) -> Micros {
        self.holds
            .values()
            .filter(|h| h.pad == pad)
            .map(|h| h.amount)
            .sum()
    }

    /// Check conservation: Σ balances (issuance aside) + Σ holds = issued −
    /// redeemed; issuance mirrors it; nothing but issuance is negative.
    pub fn audit(&self) -> AuditReport {
        let mut problems = Vec::new();
        let mut balances: i128 = 0;
        for (a, v) in &self.balances {
            if *a != Account::Issuance {
                balances += i128::from(*v);
                if *v < 0 {
                    problems.push(format!("account {} is negative: {v}", a.key()));
                }
            }
        }
        let mut held: i128 = 0;
        for (id, h) in &self.holds {
            held += i128::from(h.amount);
            if h.amount < 0 {
                problems.push(format!("reservation {id} is negative: {}", h.amount));
            }
            if !self.balances.contains_key(&Account::Pad(h.pad.clone())) {
                problems.push(format!("reservation {id} names unknown pad {}", h.pad));
            }
        }
        self.audit_owners(&mut problems);
        self.audit_retail(&mut problems);
        let outstanding = i128::from(self.issued) - i128::from(self.redeemed);
        if balances + held != outstanding {
            problems.push(format!(
                "balances {balances} + reservations {held} != issued {} - redeemed {} (off by {})",
                self.issued,
                self.redeemed,
                balances + held - outstanding
            ));
        }
        let issuance = i128::from(self.balance(&Account::Issuance).unwrap_or(0));
        if issuance != -outstanding {
            problems.push(format!(
                "issuance account {issuance} does not mirror issued - redeemed {outstanding}"
            ));
        }
        AuditReport {
            issued: self.issued,
            redeemed: self.redeemed,
            balances: clamp(balances),
            held: clamp(held),
            open_holds: self.holds.len(),
            accounts: self.balances.len(),
            problems,
        }
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests;
