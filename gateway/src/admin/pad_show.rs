//! `pad show`: one pad's value, reservations, key material and status, from
//! its twin here and the book, or from the book alone when its twin is at
//! another gateway of a shared ledger.

use std::sync::Arc;

use serde_json::{json, Value};
use tunnel::pad::Serial;
use tunnel::store::{AllocatingPad, PadStatus};

use super::AdminApi;
use crate::ledger::Account;
use crate::state_dir::lease_len_for;
use crate::units::format_amount;

impl AdminApi {
    pub(super) fn pad_show(&self, serial: &str) -> Result<Value, String> {
        let parsed: Serial = serial
            .parse()
            .map_err(|e| format!("{serial:?} is not a pad serial: {e}"))?;
        // A serving gateway's own twin (picking up a pad minted a moment ago):
        // a second handle would take the pad's lock from the registry.
        let served = self.registry.as_ref().and_then(|r| {
            r.get(&parsed).or_else(|| {
                let _ = r.scan();
                r.get(&parsed)
            })
        });
        let pad = match served {
            Some(p) => p,
            None => {
                let path = self.state.pads_dir().join(format!("{parsed}.pad"));
                if !path.exists() && self.ledger.is_shared() {
                    return self.pad_show_elsewhere(&parsed.to_string());
                }
                if !path.exists() {
                    return Err(format!(
                        "no pad {parsed} in {}",
                        self.state.pads_dir().display()
                    ));
                }
                let probe = tunnel::pad::PadFile::open(&path).map_err(|e| e.to_string())?;
                let lease = lease_len_for(probe.header().twin_data_len(), self.state.max_lease);
                drop(probe);
                Arc::new(AllocatingPad::open(&path, lease, None).map_err(|e| e.to_string())?)
            }
        };
        let key = parsed.to_string();
        let (ledger_balance, ledger_held) = self
            .ledger
            .read(|b| (b.balance(&Account::Pad(key.clone())), b.held_for(&key)));
        // Value in live tunnels' floats is still the pad's until a request
        // uses it: spendable = balance + unassigned float; in use = assigned.
        let (float_free, float_assigned) = self.floats.as_ref().map_or((0, 0), |f| f.totals(&key));
        let balance = ledger_balance.map(|b| b + float_free);
        let held = if self.ledger.is_shared() {
            // Other gateways' floats are reservations in the shared book.
            ledger_held - float_free
        } else if self.floats.is_some() {
            float_assigned
        } else {
            ledger_held
        };
        let status = match (pad.status(), balance) {
            (PadStatus::Cancelled, _) => "cancelled",
            (PadStatus::Inactive, _) => "inactive",
            (_, None) => "unfunded",
            _ if pad.key_left() == 0 => "key-exhausted",
            (_, Some(0)) if held == 0 => "value-exhausted",
            _ => "active",
        };
        let h = pad.header();
        Ok(json!({
            "serial": key,
            "balance": format_amount(balance.unwrap_or(0)),
            "reserved": format_amount(held),
            "issued": format_amount(h.value_micros),
            "currency": self.currency,
            "key_bytes_left": pad.key_left(),
            "key_bytes_total": h.twin_data_len(),
            "tickets_left": pad.tickets_left(),
            "share": h.holds.map_or(Value::Null, |k| json!(format!("{} of {}", k + 1, h.shares.len()))),
            "status": status,
            "policy": if h.policy_id == [0; 32] { Value::Null } else { Value::String(hex::encode(h.policy_id)) },
        }))
    }

    /// A pad another gateway of the shared ledger holds the twin of: what
    /// the book says (its key material is not here).
    fn pad_show_elsewhere(&self, serial: &str) -> Result<Value, String> {
        let (balance, held, cancelled, inactive) = self.ledger.read(|b| {
            (
                b.balance(&Account::Pad(serial.to_string())),
                b.held_for(serial),
                b.is_cancelled(serial),
                b.is_inactive(serial),
            )
        });
        let Some(balance) = balance else {
            return Err(format!(
                "no pad {serial} in {} nor in the shared ledger",
                self.state.pads_dir().display()
            ));
        };
        let status = match () {
            _ if cancelled => "cancelled",
            _ if inactive => "inactive",
            _ if balance == 0 && held == 0 => "value-exhausted",
            _ => "active",
        };
        Ok(json!({
            "serial": serial,
            "balance": format_amount(balance),
            "reserved": format_amount(held),
            "currency": self.currency,
            "status": status,
            "twin": "at another gateway",
        }))
    }
}
