//! Pads as money: the operator's side (cancel a pad — a retailer's stolen
//! stock, a user's lost pad — into a user's account or into a freshly
//! minted replacement pad, and show an account) and, in `service`, the
//! users' side their agents reach through the tunnel. The movements' rules
//! are the ledger's (ledger/book/accounts.rs); this is where they meet pad
//! files and tunnels.

mod service;
pub use service::AccountService;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tunnel::pad::Serial;

use crate::conn::live::LiveTunnels;
use crate::ledger::{Account, Book, Ledger, LedgerError};
use crate::mint::{mint_pads, plan, MintRequest};
use crate::sites::input::FieldError;
use crate::sites::ops::OpError;
use crate::state_dir::StateDir;
use crate::units::{format_amount, parse_size};

/// A replacement pad's key material when none is asked for.
pub const DEFAULT_REPLACEMENT_SIZE: &str = "64MiB";

/// Account operations over a gateway's ledger.
#[derive(Clone)]
pub struct AccountOps {
    pub ledger: Arc<Ledger>,
    pub state: StateDir,
    pub currency: String,
    /// The serving gateway's open tunnels (`None` when no gateway runs):
    /// a cancelled pad's are closed at once.
    pub live: Option<Arc<LiveTunnels>>,
}

/// Where a cancelled pad's value goes.
pub enum CancelTo<'a> {
    Account(&'a str),
    /// A new pad in this directory, of this size (or the default).
    Replacement {
        out: &'a Path,
        size: Option<&'a str>,
    },
}

fn bad(field: &str, why: impl Into<String>) -> OpError {
    OpError::Input(FieldError {
        field: field.into(),
        why: why.into(),
    })
}

fn serial_of(raw: &str) -> Result<String, OpError> {
    raw.trim()
        .parse::<Serial>()
        .map(|s| s.to_string())
        .map_err(|e| bad("serial", format!("{raw:?} is not a pad serial: {e}")))
}

fn account_of(raw: &str) -> Result<proto::account::AccountNumber, OpError> {
    proto::account::AccountNumber::parse(raw).map_err(|e| bad(&e.field, e.why))
}

fn not_found_pad(serial: &str) -> impl Fn(LedgerError) -> OpError + '_ {
    move |e| match e {
        LedgerError::NoAccount(m) if m == serial => {
            OpError::NotFound(format!("no pad {serial} at this gateway"))
        }
        e => e.into(),
    }
}

impl AccountOps {
    /// An account's balance and its registered pads (balance and status).
    pub fn show(&self, id: &str) -> Result<Value, OpError> {
        let id = account_of(id)?;
        let id = id.as_str();
        self.ledger.read(|b| {
            if !b.accounts.contains_key(id) {
                return Err(OpError::NotFound(format!("no account {id}")));
            }
            Ok(show(b, id, &self.currency))
        })
    }

    /// Cancel `serial`: its hellos are refused from now on and its value
    /// moves, in one durable ledger transaction, to `to`. Returns
    /// `{"serial", "moved", "to"}` (and the replacement's path).
    pub fn cancel(&self, serial: &str, to: CancelTo<'_>) -> Result<Value, OpError> {
        let serial = serial_of(serial)?;
        let done = self.cancel_into(&serial, to);
        if done.is_ok() {
            if let Some(live) = &self.live {
                live.close(&serial, tunnel::stream::CloseReason::Cancelled);
            }
        }
        done
    }

    fn cancel_into(&self, serial: &str, to: CancelTo<'_>) -> Result<Value, OpError> {
        let serial = serial.to_string();
        match to {
            CancelTo::Account(id) => {
                let id = account_of(id)?;
                let id = id.as_str();
                let dest = Account::User(id.to_string());
                if self.ledger.read(|b| !b.accounts.contains_key(id)) {
                    return Err(OpError::NotFound(format!("no account {id}")));
                }
                let moved = self
                    .ledger
                    .change_now(|b| b.cancel_pad(&serial, &dest))
                    .map_err(not_found_pad(&serial))?;
                Ok(json!({ "serial": serial, "moved": format_amount(moved), "to": dest.key() }))
            }
            CancelTo::Replacement { out, size } => self.replace(&serial, out, size),
        }
    }

    /// Mint a replacement pad into `out` and cancel `serial` into it, in the
    /// ledger operation that records the new pad. A replacement whose
    /// recording fails is removed whole.
    fn replace(&self, serial: &str, out: &Path, size: Option<&str>) -> Result<Value, OpError> {
        let data_size =
            parse_size(size.unwrap_or(DEFAULT_REPLACEMENT_SIZE)).map_err(|e| bad("size", e))?;
        // Checked before anything is minted (and again in the transaction).
        self.ledger
            .read(|b| b.cancellable(serial))
            .map_err(not_found_pad(serial))?;
        let req = MintRequest {
            value_micros: 0,
            data_size,
            count: 1,
            out: out.to_path_buf(),
            gateways: Vec::new(),
            ticket_slots: None,
            inactive: false,
            policy_id: [0; 32],
            twins_out: None,
        };
        let plan = plan(&self.state, &req).map_err(|e| bad("size", format!("{e:#}")))?;
        let mut moved = 0;
        let paths: Vec<PathBuf> = mint_pads(&self.state, &req, &plan, |p| {
            let new = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            moved = self.ledger.change_now(|b| {
                // Everything that could refuse is checked before anything changes.
                b.cancellable(serial)?;
                if b.balance(&Account::Pad(new.clone())).is_some() {
                    return Err(LedgerError::AccountExists(new.clone()));
                }
                let mut changes = b.issue(&new, 0)?;
                let (moved, more) = b.cancel_pad(serial, &Account::Pad(new.clone()))?;
                changes.accounts.extend(more.accounts);
                changes.pad_states.extend(more.pad_states);
                Ok((moved, changes))
            })?;
            Ok(())
        })
        .map_err(|e| OpError::Conflict(format!("{e:#}")))?;
        let path = paths
            .into_iter()
            .next()
            .ok_or_else(|| OpError::Ledger("the mint made no pad".into()))?;
        Ok(json!({
            "serial": serial,
            "moved": format_amount(moved),
            "replacement": path.display().to_string(),
        }))
    }
}

/// An account's balance and its pads, as `show` answers.
pub fn show(b: &Book, id: &str, currency: &str) -> Value {
    let pads: Vec<Value> = b
        .accounts
        .get(id)
        .map(|a| a.pads.iter().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let status = if b.is_cancelled(p) {
                "cancelled"
            } else if b.is_inactive(p) {
                "inactive"
            } else {
                "active"
            };
            json!({
                "serial": p,
                "balance": format_amount(b.balance(&Account::Pad(p.clone())).unwrap_or(0)),
                "status": status,
            })
        })
        .collect();
    json!({
        "account": id,
        "balance": format_amount(b.account_balance(id).unwrap_or(0)),
        "currency": currency,
        "pads": pads,
    })
}
