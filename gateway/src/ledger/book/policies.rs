//! Employer policies in the book, for gateways sharing one ledger: a policy's
//! source by its content id, and which id is current for each policy name,
//! so a policy stored or updated on one gateway reaches every gateway.

use super::{Book, Changes, LedgerError};

impl Book {
    /// Record policy `id` (hex) named `name` with its `source`, and make it
    /// the name's current policy when `make_current` or when the name has
    /// none yet. Idempotent: what is already so changes nothing.
    pub fn put_policy(
        &mut self,
        id: &str,
        name: &str,
        source: &str,
        make_current: bool,
    ) -> Result<Changes, LedgerError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LedgerError::Refused(format!(
                "policy id {id:?} is not 64 hex digits"
            )));
        }
        let mut c = Changes::default();
        if self.policies.get(id).is_none_or(|s| s != source) {
            self.policies.insert(id.to_string(), source.to_string());
            c.policies.push(id.to_string());
        }
        let current = self.policy_current.get(name);
        if (make_current || current.is_none()) && current.is_none_or(|cur| cur != id) {
            self.policy_current.insert(name.to_string(), id.to_string());
            c.policy_names.push(name.to_string());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_policy_becomes_current_once_and_an_update_replaces_it() {
        let mut b = Book::default();
        let c = b.put_policy(A, "staff", "v1", false).unwrap();
        assert_eq!((c.policies.len(), c.policy_names.len()), (1, 1));
        // Stored again (another mint): nothing changes.
        let c = b.put_policy(A, "staff", "v1", false).unwrap();
        assert!(c.policies.is_empty() && c.policy_names.is_empty());
        // A second version stored without update stays not current...
        b.put_policy(B, "staff", "v2", false).unwrap();
        assert_eq!(b.policy_current["staff"], A);
        // ...and becomes current with it.
        let c = b.put_policy(B, "staff", "v2", true).unwrap();
        assert_eq!(c.policy_names, vec!["staff".to_string()]);
        assert_eq!(b.policy_current["staff"], B);
        assert!(b.put_policy("xyz", "staff", "v3", true).is_err());
    }
}
