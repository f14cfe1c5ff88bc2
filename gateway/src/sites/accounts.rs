//! Owners' money: the statement an owner reads (balance, and per site per
//! UTC day hits, MiB and credits), an advertiser's funding, the cash-out
//! into a freshly minted pad, and the export of every record kept.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::ledger::{Account, Micros};
use crate::metering::clock::date_of;
use crate::mint::{mint_pads, plan, MintRequest};
use crate::sites::ops::{site_json, OpError, SiteOps};
use crate::units::{format_amount, parse_size};

/// A cash-out pad's key material when none is asked for.
pub const DEFAULT_CASHOUT_SIZE: &str = "64MiB";

impl SiteOps {
    /// An owner's balance, sites and statement (per site per UTC day).
    pub fn owner_view(&self, owner: &str) -> Result<Value, OpError> {
        self.ledger.read(|b| {
            if !b.owners.contains_key(owner) {
                return Err(OpError::NotFound(format!("no owner {owner}")));
            }
            let statement: Vec<Value> = b
                .statements_of(owner)
                .map(|((_, site, day), st)| {
                    json!({
                        "site": site,
                        "day": date_of(*day),
                        "hits": st.hits,
                        "bytes": st.bytes,
                        "mib": format!("{:.3}", st.bytes as f64 / f64::from(1u32 << 20)),
                        "charged": format_amount(st.charged),
                        "credits": format_amount(st.credits),
                        "ad_paid": format_amount(st.ad_paid),
                    })
                })
                .collect();
            let sites: Vec<Value> = b
                .sites_of(owner)
                .map(|(n, s)| site_json(b, n, s, &self.currency))
                .collect();
            Ok(json!({
                "owner": owner,
                "currency": self.currency,
                "balance": format_amount(b.owner_balance(owner)),
                "balance_micros": b.owner_balance(owner),
                "sites": sites,
                "statement": statement,
            }))
        })
    }

    /// An advertiser prepaid the operator: issuance → the owner's balance.
    pub fn fund(&self, owner: &str, amount: Micros) -> Result<Value, OpError> {
        self.ledger
            .change_now(|b| Ok(((), b.fund_owner(owner, amount)?)))?;
        self.owner_view(owner)
    }

    /// Mint a pad into `out` holding the owner's whole balance; the balance
    /// falls by exactly that in the ledger operation that credits the pad.
    /// A pad whose credit fails is removed whole. Returns its path.
    pub fn cash_out(
        &self,
        owner: &str,
        out: &Path,
        size: Option<&str>,
    ) -> Result<PathBuf, OpError> {
        let field = |why: String| {
            OpError::Input(crate::sites::input::FieldError {
                field: "size".into(),
                why,
            })
        };
        let size = size.unwrap_or(DEFAULT_CASHOUT_SIZE);
        let data_size = parse_size(size).map_err(field)?;
        let amount = self.ledger.read(|b| {
            b.owners
                .contains_key(owner)
                .then(|| b.owner_balance(owner))
                .ok_or_else(|| OpError::NotFound(format!("no owner {owner}")))
        })?;
        if amount <= 0 {
            return Err(OpError::Conflict(format!(
                "owner {owner} has nothing to cash out (balance {})",
                format_amount(amount)
            )));
        }
        let req = MintRequest {
            value_micros: amount,
            data_size,
            count: 1,
            out: out.to_path_buf(),
            gateways: Vec::new(),
            ticket_slots: None,
            inactive: false,
            policy_id: [0; 32],
            twins_out: None,
        };
        let plan = plan(&self.state, &req).map_err(|e| field(format!("{e:#}")))?;
        let paths = mint_pads(&self.state, &req, &plan, |p| {
            let serial = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            self.ledger
                .change_now(|b| Ok(((), b.cash_out(owner, &serial, amount)?)))?;
            Ok(())
        })
        .map_err(|e| OpError::Conflict(format!("{e:#}")))?;
        paths
            .into_iter()
            .next()
            .ok_or_else(|| OpError::Ledger("the mint made no pad".into()))
    }

    /// Every record the ledger and registry keep, for audits: balances by
    /// account, open reservations, pads' day counters, owners (without
    /// secrets' hashes), sites, statements, retailers (without tokens'
    /// hashes), blank pads, totals. Nothing joins a pad to
    /// a site: that join is never stored.
    pub fn export(&self) -> Value {
        self.ledger.read(|b| {
            let accounts: Vec<Value> = b
                .balances
                .iter()
                .map(|(a, v)| json!({ "account": a.key(), "kind": a.kind(), "balance": v }))
                .collect();
            let holds: Vec<Value> = b
                .holds
                .iter()
                .map(|(id, h)| json!({ "reservation": id, "pad": h.pad, "amount": h.amount }))
                .collect();
            let days: Vec<Value> = b
                .days
                .iter()
                .map(|(pad, d)| json!({ "pad": pad, "day": date_of(d.day), "spent": d.spent, "bytes": d.bytes }))
                .collect();
            let owners: Vec<Value> = b
                .owners
                .iter()
                .map(|(id, o)| json!({ "owner": id, "created": date_of(o.created), "balance": b.balance(&Account::Owner(id.clone())).unwrap_or(0) }))
                .collect();
            let sites: Vec<Value> = b
                .sites
                .iter()
                .map(|(n, s)| json!({
                    "site": n, "owner": s.owner, "fetch_from": s.host, "verified": s.verified,
                    "category": s.category, "per_hit": s.prices.per_hit, "per_mib": s.prices.per_mib,
                    "premium": s.prices.premium.iter().map(|p| json!({"prefix": p.prefix, "per_hit": p.per_hit})).collect::<Vec<_>>(),
                }))
                .collect();
            let statements: Vec<Value> = b
                .statements
                .iter()
                .map(|((o, s, d), st)| json!({
                    "owner": o, "site": s, "day": date_of(*d), "hits": st.hits, "bytes": st.bytes,
                    "charged": st.charged, "credits": st.credits, "ad_paid": st.ad_paid,
                }))
                .collect();
            let retailers: Vec<Value> = b
                .retailers
                .iter()
                .map(|(n, r)| json!({ "retailer": n, "created": date_of(r.created), "activated": r.count, "sum": r.sum }))
                .collect();
            let blanks: Vec<Value> = b
                .pad_states
                .iter()
                .map(|(pad, st)| match st {
                    crate::ledger::PadState::Inactive { value } => {
                        json!({ "pad": pad, "status": "inactive", "value": value })
                    }
                    crate::ledger::PadState::Cancelled { to } => {
                        json!({ "pad": pad, "status": "cancelled", "value_to": to.key() })
                    }
                })
                .collect();
            // What an account links (the pads registered to it), never a PIN's hash.
            let user_accounts: Vec<Value> = b
                .accounts
                .iter()
                .map(|(id, a)| json!({
                    "account": id, "created": date_of(a.created), "pads": a.pads,
                    "balance": b.balance(&Account::User(id.clone())).unwrap_or(0),
                }))
                .collect();
            json!({
                "currency": self.currency,
                "retailers": retailers,
                "pad_states": blanks,
                "user_accounts": user_accounts,
                "issued": b.issued,
                "redeemed": b.redeemed,
                "accounts": accounts,
                "reservations": holds,
                "pad_days": days,
                "owners": owners,
                "sites": sites,
                "statements": statements,
            })
        })
    }
}
