//! Every site operation, shared by the owner portal and the operator's
//! commands: register, verify, change, remove, show and list sites. An
//! owner acts only on their own sites; the operator (no owner) on any, and
//! only the operator sets categories. Owners' money is in `accounts`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::ledger::{Ledger, LedgerError, Owner, Prices, Site};
use crate::metering::clock::today;
use crate::request::fetch::Fetch;
use crate::request::guard::UpstreamGuard;
use crate::sites::input::{parse_category, parse_host, FieldError, PricesInput};
use crate::sites::{secret, verify};
use crate::state_dir::StateDir;
use crate::units::format_amount;

/// Why an operation failed; each becomes an HTTP status in the portal.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// 400: a field is wrong.
    #[error("{0}")]
    Input(#[from] FieldError),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 403: not this owner's site.
    #[error("{0}")]
    Forbidden(String),
    /// 409: taken, or nothing to do.
    #[error("{0}")]
    Conflict(String),
    /// 422: the verification fetch did not find the token.
    #[error("{0}")]
    Unverified(String),
    /// 503: the ledger could not record it (nothing changed).
    #[error("{0}")]
    Ledger(String),
}

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> OpError {
        match e {
            LedgerError::Refused(m) => OpError::Conflict(m),
            LedgerError::NoAccount(m) => OpError::NotFound(format!("no {m}")),
            LedgerError::Insufficient { .. } => OpError::Conflict(e.to_string()),
            e => OpError::Ledger(e.to_string()),
        }
    }
}

/// Who asks: the operator, or one owner.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator,
    Owner(&'a str),
}

/// The registry's operations over a gateway's ledger.
#[derive(Clone)]
pub struct SiteOps {
    pub ledger: Arc<Ledger>,
    pub state: StateDir,
    pub guard: UpstreamGuard,
    pub currency: String,
    /// The guarded fetch that verification uses (the serving gateway's own).
    pub fetch: Option<Fetch>,
}

/// What a registration returns (the secret only when an owner was made).
pub struct Registered {
    pub owner: String,
    pub secret: Option<zeroize::Zeroizing<String>>,
    pub token: String,
    pub verify_url: String,
    pub name: String,
}

impl Registered {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "owner": self.owner,
            "host": self.name,
            "token": self.token,
            "verify_url": self.verify_url,
        });
        if let Some(s) = &self.secret {
            v["secret"] = Value::String(s.to_string());
        }
        v
    }
}

/// The registry name of a host as someone names it ("127.0.0.1:8123" → "127.0.0.1").
pub fn name_of(raw: &str) -> Result<String, OpError> {
    let open = UpstreamGuard {
        allow_private: true,
    };
    parse_host(raw, &open)
        .map(|h| h.name)
        .map_err(OpError::from)
}

impl SiteOps {
    /// Register `host` with `prices`; for [`Actor::Operator`] and for a new
    /// owner (`None`) a new owner is made and its secret returned once.
    pub fn register(
        &self,
        actor: Actor<'_>,
        host: &str,
        prices: &PricesInput,
        category: Option<&str>,
    ) -> Result<Registered, OpError> {
        let host = parse_host(host, &self.guard)?;
        let prices = prices.apply(&Prices::default())?;
        let category = category.map(parse_category).transpose()?;
        let token = secret::new_token();
        let (owner, made) = match actor {
            Actor::Owner(o) => (o.to_string(), None),
            Actor::Operator => {
                let id = secret::new_owner_id();
                let (secret, hash) = secret::new_secret(&id).map_err(OpError::Ledger)?;
                (id, Some((secret, hash)))
            }
        };
        let site = Site {
            owner: owner.clone(),
            host: host.authority.clone(),
            prices,
            category,
            verified: false,
            token: token.clone(),
        };
        let name = host.name.clone();
        let hash = made.as_ref().map(|(_, h)| h.clone());
        self.ledger.change_now(|b| {
            // Checked before the new owner is made: a refusal leaves nothing.
            b.check_claim(&name, &owner)?;
            let mut changes = match &hash {
                Some(h) => b.add_owner(
                    &owner,
                    Owner {
                        secret_hash: h.clone(),
                        created: today(),
                    },
                )?,
                None => Default::default(),
            };
            changes.sites.extend(b.register_site(&name, site)?.sites);
            Ok(((), changes))
        })?;
        Ok(Registered {
            verify_url: verify::verify_url(&host.authority, &token),
            owner,
            secret: made.map(|(s, _)| s),
            token,
            name,
        })
    }

    /// The site `raw` names, if `actor` may act on it.
    fn site_for(&self, actor: Actor<'_>, raw: &str) -> Result<(String, Site), OpError> {
        let name = name_of(raw)?;
        let site = self
            .ledger
            .read(|b| b.sites.get(&name).cloned())
            .ok_or_else(|| OpError::NotFound(format!("no site {name} is registered")))?;
        if let Actor::Owner(o) = actor {
            if site.owner != o {
                return Err(OpError::Forbidden(format!(
                    "{name} is not registered to this owner"
                )));
            }
        }
        Ok((name, site))
    }

    /// Fetch the site's token through the guard; mark it verified if the
    /// body is the token. The error says what was fetched and what came back.
    pub async fn verify(&self, actor: Actor<'_>, raw: &str) -> Result<Value, OpError> {
        let (name, site) = self.site_for(actor, raw)?;
        let fetch = match &self.fetch {
            Some(f) => f.clone(),
            None => Fetch::new(
                crate::request::fetch::FetchConfig {
                    guard: self.guard,
                    connect_ports: Vec::new(),
                    extra_roots: Vec::new(),
                },
                tokio::runtime::Handle::current(),
            )
            .map_err(|e| OpError::Ledger(e.to_string()))?,
        };
        verify::check(&fetch, &site.host, &site.token)
            .await
            .map_err(OpError::Unverified)?;
        let (ledger, n, token) = (self.ledger.clone(), name.clone(), site.token.clone());
        tokio::task::spawn_blocking(move || {
            ledger.change_now(|b| {
                // Unchanged since the fetch (not replaced by a newer claim).
                match b.sites.get(&n) {
                    Some(s) if s.token == token => {}
                    _ => {
                        return Err(LedgerError::Refused(format!(
                            "{n} changed while it was verified; try again"
                        )))
                    }
                }
                Ok(((), b.update_site(&n, |s| s.verified = true)?))
            })
        })
        .await
        .map_err(|e| OpError::Ledger(e.to_string()))??;
        Ok(json!({ "host": name, "verified": true }))
    }

    /// Change prices (fields not sent keep theirs) and, for the operator, the
    /// category (`Some(None)` clears it). Applies to the next request.
    pub fn set(
        &self,
        actor: Actor<'_>,
        raw: &str,
        prices: &PricesInput,
        category: Option<Option<&str>>,
    ) -> Result<Value, OpError> {
        let (name, site) = self.site_for(actor, raw)?;
        let prices = prices.apply(&site.prices)?;
        let category = match category {
            Some(Some(c)) => Some(Some(parse_category(c)?)),
            Some(None) => Some(None),
            None => None,
        };
        if category.is_some() && matches!(actor, Actor::Owner(_)) {
            return Err(OpError::Forbidden(
                "a site's category is the operator's to set".into(),
            ));
        }
        self.ledger.change_now(|b| {
            let c = b.update_site(&name, |s| {
                s.prices = prices;
                if let Some(c) = category {
                    s.category = c;
                }
            })?;
            Ok(((), c))
        })?;
        self.show(&name)
    }

    /// Remove a site; its owner keeps the balance and statements.
    pub fn remove(&self, actor: Actor<'_>, raw: &str) -> Result<Value, OpError> {
        let (name, _) = self.site_for(actor, raw)?;
        self.ledger
            .change_now(|b| Ok(((), b.remove_site(&name)?)))?;
        Ok(json!({ "host": name, "removed": true }))
    }

    /// A site: prices, category, verification, owner, totals.
    pub fn show(&self, raw: &str) -> Result<Value, OpError> {
        let (name, site) = self.site_for(Actor::Operator, raw)?;
        Ok(self
            .ledger
            .read(|b| site_json(b, &name, &site, &self.currency)))
    }

    /// Every registered site, by name.
    pub fn list(&self) -> Value {
        self.ledger.read(|b| {
            Value::Array(
                b.sites
                    .iter()
                    .map(|(n, s)| site_json(b, n, s, &self.currency))
                    .collect(),
            )
        })
    }

    /// The owner a bearer secret belongs to, if it matches (argon2, in
    /// constant time).
    pub fn authenticate(&self, presented: &str) -> Option<String> {
        let owner = secret::claimed_owner(presented)?;
        let hash = self
            .ledger
            .read(|b| b.owners.get(owner).map(|o| o.secret_hash.clone()))?;
        secret::matches(presented, &hash).then(|| owner.to_string())
    }
}

/// A site as JSON (prices as decimal strings, totals over all days).
pub fn site_json(b: &crate::ledger::Book, name: &str, s: &Site, currency: &str) -> Value {
    let (mut hits, mut bytes, mut credits) = (0u64, 0u64, 0i64);
    for ((o, site, _), st) in b.statements_of(&s.owner) {
        if o == &s.owner && site == name {
            hits += st.hits;
            bytes += st.bytes;
            credits += st.credits - st.ad_paid;
        }
    }
    json!({
        "host": name,
        "fetch_from": s.host,
        "owner": s.owner,
        "verified": s.verified,
        "category": s.category,
        "currency": currency,
        "per_hit": format_amount(s.prices.per_hit),
        "per_mib": format_amount(s.prices.per_mib),
        "premium": s.prices.premium.iter().map(|p| json!({
            "prefix": p.prefix, "per_hit": format_amount(p.per_hit),
        })).collect::<Vec<_>>(),
        "totals": { "hits": hits, "bytes": bytes, "credits": format_amount(credits) },
    })
}
