//! The operator's policy requests: store a policy (`mint --policy`) or
//! replace one (`policy update`) in this gateway's policy store and, on a
//! shared ledger, in the book, so every gateway applies it.

use policy::Policy;
use serde_json::{json, Value};

use super::AdminApi;
use crate::policies::PolicyStore;

impl AdminApi {
    /// Store `source`; with `update`, it becomes current for its name,
    /// which must have a policy already (here or, shared, in the book).
    pub(super) fn store_policy(&self, source: &str, update: bool) -> Result<Value, String> {
        let p = Policy::parse(source, "the policy").map_err(|e| e.to_string())?;
        let id = p.id_hex();
        let store = PolicyStore::open(&self.state.root).map_err(|e| format!("{e:#}"))?;
        let shared = self.ledger.is_shared();
        if shared {
            // What other gateways stored first, so an update finds its name.
            let (sources, current) = self
                .ledger
                .read(|b| (b.policies.clone(), b.policy_current.clone()));
            store
                .adopt(&sources, &current)
                .map_err(|e| format!("{e:#}"))?;
        }
        if update && store.current_id(p.name()).is_none() {
            return Err(format!(
                "no pads are bound to a policy named {:?} on this gateway (policy update replaces an existing policy; mint with --policy to use a new one)",
                p.name()
            ));
        }
        if shared {
            self.ledger
                .put_policy(id, p.name(), source, update)
                .map_err(|e| e.to_string())?;
        }
        store
            .store(source, &p, update)
            .map_err(|e| format!("{e:#}"))?;
        let applied = match &self.on_reload {
            Some(reload) => {
                reload()?;
                true
            }
            None => false,
        };
        Ok(json!({ "id": id, "name": p.name(), "applied": applied, "shared": shared }))
    }
}
