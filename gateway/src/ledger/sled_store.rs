//! The ledger on sled: one tree, prefixed keys (`a/` accounts, `h/` holds,
//! `d/` day counters, `m/` totals), each operation one atomic batch. Balances
//! and aggregate counters only: nothing here names a host or an address.

use std::path::Path;

use super::book::{Account, Book, Changes, DayUsage, Hold, LedgerError};
use super::Persist;

pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn store_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store(e.to_string())
}

impl SledStore {
    /// Open (or create) the ledger database at `path`.
    pub fn open(path: &Path) -> Result<SledStore, LedgerError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 << 20)
            .open()
            .map_err(|e| LedgerError::Store(format!("{}: {e}", path.display())))?;
        let tree = db.open_tree("ledger").map_err(store_err)?;
        Ok(SledStore { db, tree })
    }
}

fn hold_key(id: u64) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn i64_of(v: &[u8], what: &str) -> Result<i64, LedgerError> {
    Ok(i64::from_be_bytes(v.try_into().map_err(|_| {
        LedgerError::Store(format!("corrupt entry {what}: {} bytes", v.len()))
    })?))
}

impl Persist for SledStore {
    fn load(&self) -> Result<Book, LedgerError> {
        let mut book = Book::default();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(store_err)?;
            let key = String::from_utf8_lossy(&k);
            if let Some(a) = k.strip_prefix(b"a/") {
                let name = std::str::from_utf8(a).map_err(store_err)?;
                let acct = Account::from_key(name)
                    .ok_or_else(|| LedgerError::Store(format!("unknown account {name:?}")))?;
                book.balances.insert(acct, i64_of(&v, &key)?);
            } else if let Some(h) = k.strip_prefix(b"h/") {
                let id = u64::from_be_bytes(
                    h.try_into()
                        .map_err(|_| LedgerError::Store("corrupt hold key".into()))?,
                );
                let hold: Hold = serde_json::from_slice(&v).map_err(store_err)?;
                book.holds.insert(id, hold);
            } else if let Some(d) = k.strip_prefix(b"d/") {
                let pad = String::from_utf8_lossy(d).into_owned();
                let usage: DayUsage = serde_json::from_slice(&v).map_err(store_err)?;
                book.days.insert(pad, usage);
            } else if &*k == b"m/issued" {
                book.issued = i64_of(&v, &key)?;
            } else if &*k == b"m/redeemed" {
                book.redeemed = i64_of(&v, &key)?;
            } else if &*k == b"m/next_hold" {
                book.next_hold = i64_of(&v, &key)? as u64;
            }
        }
        // Never reuse a hold id, even one whose hold is closed.
        let after_open = book.holds.keys().next_back().map_or(0, |m| m + 1);
        book.next_hold = book.next_hold.max(after_open);
        Ok(book)
    }

    fn write(&self, book: &Book, changes: &Changes) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for a in &changes.accounts {
            let k = format!("a/{}", a.key());
            match book.balances.get(a) {
                Some(v) => batch.insert(k.as_bytes(), &v.to_be_bytes()),
                None => batch.remove(k.as_bytes()),
            }
        }
        for id in &changes.holds {
            match book.holds.get(id) {
                Some(h) => batch.insert(hold_key(*id), serde_json::to_vec(h).map_err(store_err)?),
                None => batch.remove(hold_key(*id)),
            }
        }
        for pad in &changes.days {
            if let Some(d) = book.days.get(pad) {
                batch.insert(
                    format!("d/{pad}").as_bytes(),
                    serde_json::to_vec(d).map_err(store_err)?,
                );
            }
        }
        if changes.totals {
            batch.insert(b"m/issued", &book.issued.to_be_bytes());
            batch.insert(b"m/redeemed", &book.redeemed.to_be_bytes());
            batch.insert(b"m/next_hold", &(book.next_hold as i64).to_be_bytes());
        }
        self.tree.apply_batch(batch).map_err(store_err)
    }

    fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush().map(|_| ()).map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Ledger;
    use super::*;

    #[tokio::test]
    async fn survives_reopen_and_releases_open_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        {
            let (l, released) = Ledger::open(Box::new(SledStore::open(&path).unwrap())).unwrap();
            assert_eq!(released, 0);
            l.issue("p", 1_000).unwrap();
            let (h, amt) = l.reserve("p", 10, 400).await.unwrap();
            assert_eq!(amt, 400);
            let (h2, _) = l.reserve("p", 10, 100).await.unwrap();
            assert_eq!(l.settle(h, 150, 1 << 20, 3).unwrap(), 750);
            let _ = h2; // left open: as if the gateway crashed mid-stream
            l.flush_now().unwrap();
        }
        let (l, released) = Ledger::open(Box::new(SledStore::open(&path).unwrap())).unwrap();
        assert_eq!(released, 1);
        assert_eq!(l.pad_balance("p"), Some(850));
        l.read(|b| {
            assert!(b.audit().problems.is_empty(), "{:?}", b.audit());
            assert_eq!(b.usage("p", 3).bytes, 1 << 20);
            assert_eq!(b.balance(&Account::Revenue), Some(150));
        });
        // Hold ids are never reused.
        let (h3, _) = l.reserve("p", 1, 1).await.unwrap();
        assert!(h3 >= 2);
    }
}
