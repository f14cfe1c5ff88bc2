//! Pads sold at a till: retailers (a name and a till token kept hashed),
//! the activation of blank pads (the ledger's transaction, then the twin's
//! status), a shop's count and sum, and the shop's inventory manifest. The
//! till's HTTP API is in [`till`]; the operator's commands in cmd/retail.rs.

pub mod till;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tunnel::pad::Serial;
use tunnel::store::{AllocatingPad, PadStatus};

use crate::conn::registry::Registry;
use crate::ledger::{Ledger, LedgerError, Micros, Retailer};
use crate::sites::input::FieldError;
use crate::sites::ops::OpError;
use crate::sites::secret;
use crate::state_dir::StateDir;
use crate::units::format_amount;

/// Retail operations over a gateway's ledger and pads.
#[derive(Clone)]
pub struct RetailOps {
    pub ledger: Arc<Ledger>,
    pub state: StateDir,
    /// The serving gateway's twins (`None` when no gateway runs).
    pub registry: Option<Arc<Registry>>,
    pub currency: String,
}

fn field(name: &str, why: impl Into<String>) -> OpError {
    OpError::Input(FieldError {
        field: name.into(),
        why: why.into(),
    })
}

impl RetailOps {
    /// Make a retailer; its till token is returned once.
    pub fn add(&self, name: &str) -> Result<Value, OpError> {
        if !secret::is_retailer_name(name) {
            return Err(field(
                "name",
                format!("{name:?} is not a retailer name; use 1 to 32 lower-case letters, digits and dashes, as in corner-shop"),
            ));
        }
        let (token, hash) = secret::new_retail_token(name).map_err(OpError::Ledger)?;
        let created = crate::metering::clock::today();
        self.ledger.change_now(|b| {
            Ok((
                (),
                b.add_retailer(
                    name,
                    Retailer {
                        token_hash: hash,
                        created,
                        count: 0,
                        sum: 0,
                    },
                )?,
            ))
        })?;
        Ok(json!({ "retailer": name, "token": token.as_str() }))
    }

    /// A retailer's count and sum of activations.
    pub fn show(&self, name: &str) -> Result<Value, OpError> {
        self.ledger.read(|b| {
            let r = b
                .retailers
                .get(name)
                .ok_or_else(|| OpError::NotFound(format!("no retailer {name}")))?;
            Ok(json!({
                "retailer": name,
                "activated": r.count,
                "sum": format_amount(r.sum),
                "currency": self.currency,
            }))
        })
    }

    /// The retailer a presented till token belongs to, if it matches.
    pub fn authenticate(&self, presented: &str) -> Option<String> {
        let name = secret::claimed_retailer(presented)?;
        let hash = self
            .ledger
            .read(|b| b.retailers.get(name).map(|r| r.token_hash.clone()))?;
        secret::matches(presented, &hash).then(|| name.to_string())
    }

    /// Activate the blank pad `serial` with `value` (or its minted value),
    /// for `retailer` if a till asks: one durable ledger transaction, then
    /// the twin's status. Returns `{"serial", "balance"}`.
    pub fn activate(
        &self,
        serial: &str,
        value: Option<Micros>,
        retailer: Option<&str>,
    ) -> Result<Value, OpError> {
        let parsed: Serial = serial
            .trim()
            .parse()
            .map_err(|e| field("serial", format!("{serial:?} is not a pad serial: {e}")))?;
        let key = parsed.to_string();
        let balance = self
            .ledger
            .change_now(|b| {
                if !b.is_inactive(&key)
                    && b.balance(&crate::ledger::Account::Pad(key.clone()))
                        .is_some()
                {
                    return Err(LedgerError::Refused(format!("pad {key} is already active")));
                }
                b.activate(&key, value, retailer)
            })
            .map_err(|e| match e {
                LedgerError::NoAccount(m) if m == key => {
                    OpError::NotFound(format!("no pad {key} at this gateway"))
                }
                e => e.into(),
            })?;
        // The ledger is the authority; the twin follows (a crash in
        // between is put right at the next start, see `sync_twins`).
        if let Err(e) = self.set_twin_active(&parsed) {
            tracing::warn!("pad {key} activated; its twin's status follows at the next start: {e}");
        }
        Ok(json!({ "serial": key, "balance": format_amount(balance), "currency": self.currency }))
    }

    fn set_twin_active(&self, serial: &Serial) -> Result<(), String> {
        if let Some(r) = &self.registry {
            let pad = r.get(serial).or_else(|| {
                let _ = r.scan();
                r.get(serial)
            });
            if let Some(pad) = pad {
                return pad.set_status(PadStatus::Active).map_err(|e| e.to_string());
            }
        }
        let path = self.state.pads_dir().join(format!("{serial}.pad"));
        set_file_active(&path, self.state.max_lease)
    }

    /// Put every loaded twin whose file still says inactive, while the
    /// ledger says active, right (a crash between the two writes).
    pub fn sync_twins(&self, registry: &Registry) {
        for pad in registry.all() {
            let key = pad.header().serial.to_string();
            if pad.status() == PadStatus::Inactive
                && !self.ledger.read(|b| b.is_inactive(&key))
                && self.ledger.pad_balance(&key).is_some()
            {
                if let Err(e) = pad.set_status(PadStatus::Active) {
                    tracing::warn!("pad {key}: could not mark its twin active: {e}");
                }
            }
        }
    }
}

fn set_file_active(path: &Path, max_lease: u64) -> Result<(), String> {
    let probe = tunnel::pad::PadFile::open(path).map_err(|e| e.to_string())?;
    let lease = crate::state_dir::lease_len_for(probe.header().data_size, max_lease);
    drop(probe);
    let pad = AllocatingPad::open(path, lease, None).map_err(|e| e.to_string())?;
    pad.set_status(PadStatus::Active).map_err(|e| e.to_string())
}
