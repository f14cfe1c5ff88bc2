//! Site owners in the book: owners and their accounts, registered sites with
//! their prices, and per owner, site and UTC day statements (aggregates, never
//! a pad). The movements that involve owners live here: funding, cash-out and
//! the site part of a capture.

use serde::{Deserialize, Serialize};

use super::{Account, Book, Changes, LedgerError, Micros};

/// A site owner. The secret is kept only as its (argon2) hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub secret_hash: String,
    /// Day (since the epoch, UTC) the owner was made.
    pub created: i64,
}

/// A price for requests whose path starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Premium {
    pub prefix: String,
    pub per_hit: Micros,
}

/// A site's prices. A negative `per_hit` pays the user (from the owner's balance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub per_hit: Micros,
    pub per_mib: Micros,
    pub premium: Vec<Premium>,
}

/// A registered site, by its host name (lower case, no port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub owner: String,
    /// The host as registered, perhaps with a port (where the token is fetched).
    pub host: String,
    pub prices: Prices,
    /// The operator's category for it (owners do not set their own).
    pub category: Option<String>,
    pub verified: bool,
    /// What the owner serves at `/.well-known/padnet/<token>` to prove control.
    pub token: String,
}

/// Which statement: owner, site name, day.
pub type StatementKey = (String, String, i64);

/// One owner's takings from one site on one day. Aggregates only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub hits: u64,
    /// Body bytes carried both ways for the site's requests.
    pub bytes: u64,
    /// What pads paid for the site (before commission).
    pub charged: Micros,
    /// The owner's share of `charged`.
    pub credits: Micros,
    /// Paid out of the owner's balance for negative hit prices.
    pub ad_paid: Micros,
}

/// The site part of a capture: what pads paid one site, and the owner's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCharge {
    pub owner: String,
    pub site: String,
    /// Taken from the hold (≥ 0).
    pub charged: Micros,
    /// Credited to the owner (0 ≤ credits ≤ charged); the rest is revenue.
    pub credits: Micros,
    pub hits: u64,
    pub bytes: u64,
}

/// A negative hit price: the owner pays `paid`, the pad receives `credit`
/// (≤ paid; the rest is revenue). Applied only while the owner's balance
/// covers it; otherwise the page was simply free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdCredit {
    pub owner: String,
    pub site: String,
    pub paid: Micros,
    pub credit: Micros,
}

/// Everything one capture moves: transport to revenue, site charges split
/// between owners and revenue, advertisers' credits to the pad.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    pub transport: Micros,
    /// Bytes carried (for the pad's daily counters).
    pub bytes: u64,
    pub sites: Vec<SiteCharge>,
    pub ads: Vec<AdCredit>,
}

impl Capture {
    /// A capture of transport only.
    pub fn transport(amount: Micros, bytes: u64) -> Capture {
        Capture {
            transport: amount,
            bytes,
            ..Capture::default()
        }
    }

    /// What the capture takes from the hold.
    pub fn total(&self) -> Result<Micros, LedgerError> {
        self.sites.iter().try_fold(self.transport, |t, s| {
            t.checked_add(s.charged).ok_or(LedgerError::Overflow)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.transport == 0 && self.bytes == 0 && self.sites.is_empty() && self.ads.is_empty()
    }

    /// Add `other` to this capture, merging site charges per owner and site.
    pub fn absorb(&mut self, other: Capture) {
        self.transport = self.transport.saturating_add(other.transport);
        self.bytes = self.bytes.saturating_add(other.bytes);
        for s in other.sites {
            match self
                .sites
                .iter_mut()
                .find(|m| m.owner == s.owner && m.site == s.site)
            {
                Some(m) => {
                    m.charged = m.charged.saturating_add(s.charged);
                    m.credits = m.credits.saturating_add(s.credits);
                    m.hits = m.hits.saturating_add(s.hits);
                    m.bytes = m.bytes.saturating_add(s.bytes);
                }
                None => self.sites.push(s),
            }
        }
        self.ads.extend(other.ads);
    }

    fn check(&self) -> Result<(), LedgerError> {
        if self.transport < 0 {
            return Err(LedgerError::BadAmount(self.transport));
        }
        for s in &self.sites {
            if s.charged < 0 || s.credits < 0 || s.credits > s.charged {
                return Err(LedgerError::BadAmount(s.credits));
            }
        }
        for a in &self.ads {
            if a.paid < 0 || a.credit < 0 || a.credit > a.paid {
                return Err(LedgerError::BadAmount(a.credit));
            }
        }
        Ok(())
    }
}

/// Why an owner or site operation was refused.
fn refused(msg: impl Into<String>) -> LedgerError {
    LedgerError::Refused(msg.into())
}

impl Book {
    /// An owner's balance (0 for an owner that has none yet).
    pub fn owner_balance(&self, owner: &str) -> Micros {
        self.balance(&Account::Owner(owner.to_string()))
            .unwrap_or(0)
    }

    /// Make a new owner account.
    pub fn add_owner(&mut self, id: &str, owner: Owner) -> Result<Changes, LedgerError> {
        if self.owners.contains_key(id) {
            return Err(refused(format!("owner {id} already exists")));
        }
        self.owners.insert(id.to_string(), owner);
        self.balances.insert(Account::Owner(id.to_string()), 0);
        Ok(Changes {
            owners: vec![id.to_string()],
            accounts: vec![Account::Owner(id.to_string())],
            ..Changes::default()
        })
    }

    /// Register (or re-register) a site under its name. A verified site
    /// belongs to its owner; an unverified claim is replaced by a newer one
    /// (whoever proves control first keeps it).
    pub fn register_site(&mut self, name: &str, site: Site) -> Result<Changes, LedgerError> {
        if !self.owners.contains_key(&site.owner) {
            return Err(LedgerError::NoAccount(format!("owner {}", site.owner)));
        }
        self.check_claim(name, &site.owner)?;
        self.sites.insert(name.to_string(), site);
        Ok(Changes {
            sites: vec![name.to_string()],
            ..Changes::default()
        })
    }

    /// Whether `owner` may register `name`: refused when it is verified
    /// (by another owner, or already this one's). Nothing changes.
    pub fn check_claim(&self, name: &str, owner: &str) -> Result<(), LedgerError> {
        match self.sites.get(name) {
            Some(old) if old.verified && old.owner != owner => Err(refused(format!(
                "{name} is already registered and verified by another owner"
            ))),
            Some(old) if old.verified => Err(refused(format!(
                "{name} is already registered to this owner; change its prices instead"
            ))),
            _ => Ok(()),
        }
    }

    /// Change a site in place (prices, category, verification).
    pub fn update_site(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Site),
    ) -> Result<Changes, LedgerError> {
        let site = self
            .sites
            .get_mut(name)
            .ok_or_else(|| refused(format!("no site {name} is registered")))?;
        f(site);
        Ok(Changes {
            sites: vec![name.to_string()],
            ..Changes::default()
        })
    }

    /// Remove a site (its owner keeps the balance and the statements).
    pub fn remove_site(&mut self, name: &str) -> Result<Changes, LedgerError> {
        if self.sites.remove(name).is_none() {
            return Err(refused(format!("no site {name} is registered")));
        }
        Ok(Changes {
            sites: vec![name.to_string()],
            ..Changes::default()
        })
    }

    /// An advertiser prepaid the operator: issuance → owner.
    pub fn fund_owner(&mut self, owner: &str, amount: Micros) -> Result<Changes, LedgerError> {
        if amount <= 0 {
            return Err(LedgerError::BadAmount(amount));
        }
        if !self.owners.contains_key(owner) {
            return Err(LedgerError::NoAccount(format!("owner {owner}")));
        }
        let issued = self
            .issued
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        self.owner_balance(owner)
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        self.add(&Account::Issuance, -amount)?;
        self.add(&Account::Owner(owner.to_string()), amount)?;
        self.issued = issued;
        Ok(Changes {
            accounts: vec![Account::Issuance, Account::Owner(owner.to_string())],
            totals: true,
            ..Changes::default()
        })
    }

    /// Move `amount` of an owner's balance into a new pad account (a
    /// cash-out: the value stays issued, now spendable by whoever holds the
    /// pad). Refused when the balance is below `amount` or `amount` ≤ 0.
    pub fn cash_out(
        &mut self,
        owner: &str,
        pad: &str,
        amount: Micros,
    ) -> Result<Changes, LedgerError> {
        if !self.owners.contains_key(owner) {
            return Err(LedgerError::NoAccount(format!("owner {owner}")));
        }
        if amount <= 0 {
            return Err(refused(format!("owner {owner} has nothing to cash out")));
        }
        let balance = self.owner_balance(owner);
        if balance < amount {
            return Err(LedgerError::Insufficient {
                balance,
                needed: amount,
            });
        }
        let acct = Account::Pad(pad.to_string());
        if self.balances.contains_key(&acct) {
            return Err(LedgerError::AccountExists(pad.to_string()));
        }
        self.balances
            .insert(Account::Owner(owner.to_string()), balance - amount);
        self.balances.insert(acct.clone(), amount);
        Ok(Changes {
            accounts: vec![Account::Owner(owner.to_string()), acct],
            ..Changes::default()
        })
    }

    /// The site and advertising part of a capture from `pad`'s hold:
    /// owners' shares, the rest of each charge to revenue, advertisers'
    /// credits to the pad while the owner's balance covers them. Callers
    /// have checked the capture and take `capture.total()` from the hold.
    /// Every sum is formed and checked before anything changes.
    pub(super) fn apply_sites(
        &mut self,
        pad: &str,
        capture: &Capture,
        day: i64,
        changes: &mut Changes,
    ) -> Result<(), LedgerError> {
        use std::collections::BTreeMap;
        let mut deltas: BTreeMap<Account, i128> = BTreeMap::new();
        let mut stats: Vec<(&str, &str, Statement)> = Vec::new();
        let mut revenue = i128::from(capture.transport);
        for s in &capture.sites {
            if self.owners.contains_key(&s.owner) {
                *deltas.entry(Account::Owner(s.owner.clone())).or_default() +=
                    i128::from(s.credits);
                revenue += i128::from(s.charged - s.credits);
                let st = Statement {
                    hits: s.hits,
                    bytes: s.bytes,
                    charged: s.charged,
                    credits: s.credits,
                    ad_paid: 0,
                };
                stats.push((&s.owner, &s.site, st));
            } else {
                // No such owner (cannot happen: owners are never removed):
                // the charge stays with the gateway rather than vanish.
                revenue += i128::from(s.charged);
            }
        }
        let pad_acct = Account::Pad(pad.to_string());
        for a in &capture.ads {
            let owner = Account::Owner(a.owner.clone());
            let funds = i128::from(self.balance(&owner).unwrap_or(0))
                + deltas.get(&owner).copied().unwrap_or(0);
            if a.paid == 0 || funds < i128::from(a.paid) {
                continue; // the owner's budget is spent: the page was free
            }
            *deltas.entry(owner).or_default() -= i128::from(a.paid);
            *deltas.entry(pad_acct.clone()).or_default() += i128::from(a.credit);
            revenue += i128::from(a.paid - a.credit);
            let st = Statement {
                hits: 1,
                ad_paid: a.paid,
                ..Statement::default()
            };
            stats.push((&a.owner, &a.site, st));
        }
        *deltas.entry(Account::Revenue).or_default() += revenue;
        let mut new = Vec::with_capacity(deltas.len());
        for (acct, d) in deltas {
            let v = i128::from(self.balance(&acct).unwrap_or(0)) + d;
            new.push((acct, i64::try_from(v).map_err(|_| LedgerError::Overflow)?));
        }
        for (acct, v) in new {
            changes.accounts.push(acct.clone());
            self.balances.insert(acct, v);
        }
        for (owner, site, add) in stats {
            let st = self.statement_mut(owner, site, day, changes);
            st.hits = st.hits.saturating_add(add.hits);
            st.bytes = st.bytes.saturating_add(add.bytes);
            st.charged = st.charged.saturating_add(add.charged);
            st.credits = st.credits.saturating_add(add.credits);
            st.ad_paid = st.ad_paid.saturating_add(add.ad_paid);
        }
        Ok(())
    }

    fn statement_mut(
        &mut self,
        owner: &str,
        site: &str,
        day: i64,
        changes: &mut Changes,
    ) -> &mut Statement {
        let key = (owner.to_string(), site.to_string(), day);
        if !changes.statements.contains(&key) {
            changes.statements.push(key.clone());
        }
        self.statements.entry(key).or_default()
    }

    /// Whether `capture` can be applied (amounts in range); nothing changes.
    pub(super) fn check_capture(&self, capture: &Capture) -> Result<Micros, LedgerError> {
        capture.check()?;
        capture.total()
    }

    /// The owner's statements, oldest day first.
    pub fn statements_of<'a>(
        &'a self,
        owner: &'a str,
    ) -> impl Iterator<Item = (&'a StatementKey, &'a Statement)> + 'a {
        self.statements.iter().filter(move |(k, _)| k.0 == owner)
    }

    /// The sites an owner has registered, by name.
    pub fn sites_of<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = (&'a String, &'a Site)> {
        self.sites.iter().filter(move |(_, s)| s.owner == owner)
    }

    /// Problems with owners: statements crediting more than was charged.
    pub(super) fn audit_owners(&self, problems: &mut Vec<String>) {
        for ((owner, site, day), st) in &self.statements {
            if st.credits > st.charged {
                problems.push(format!(
                    "owner {owner} was credited {} for {site} on day {day}, more than the {} pads paid",
                    st.credits, st.charged
                ));
            }
        }
        for (name, s) in &self.sites {
            if !self.owners.contains_key(&s.owner) {
                problems.push(format!("site {name} names unknown owner {}", s.owner));
            }
        }
    }
}
