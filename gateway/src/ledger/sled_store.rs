//! The ledger on sled (before redb): one tree in the layout of [`super::entries`],
//! each operation one atomic batch. Its flush is not an fsync, so it is only
//! read now, to migrate a state directory's old ledger to redb.

use std::path::Path;

use super::book::{Book, Changes, LedgerError};
use super::entries::{decode, encode, store_err};
use super::Persist;

pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
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

impl Persist for SledStore {
    fn load(&self) -> Result<Book, LedgerError> {
        decode(
            self.tree
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(store_err)),
        )
    }

    fn write(&self, book: &Book, changes: &Changes) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for (k, v) in encode(book, changes)? {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(store_err)
    }

    /// Not durable against power loss: sled's flush is `sync_file_range`,
    /// which neither flushes file metadata nor the disk's write cache
    /// (`tests/tests/power_loss_e2e.rs`). Kept to migrate old state directories.
    fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush().map(|_| ()).map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Account, Ledger};
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
