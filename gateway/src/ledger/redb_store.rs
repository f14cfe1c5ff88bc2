//! The ledger on redb: one table in the layout of [`super::entries`]. Writes
//! gather in memory; a flush commits them all in one transaction with
//! `Durability::Immediate` (an fsync), so a group commit is one fsync.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::book::{Book, Changes, LedgerError};
use super::entries::{decode, encode, store_err, Entry};
use super::Persist;

const LEDGER: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger");

pub struct RedbStore {
    db: Database,
    /// Written, not yet committed: key → new value (`None`: remove). Each
    /// `write` lands here whole, and a flush commits all of it atomically.
    pending: Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Held across a whole flush, so flushes commit in the order they took
    /// their batches (an older batch never lands over a newer one).
    flushing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedbStore {
    /// Open (or create, owner-only) the ledger database file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, LedgerError> {
        let at = |e: &dyn std::fmt::Display| LedgerError::Store(format!("{}: {e}", path.display()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| at(&e))?;
        let db = Database::create(path).map_err(|e| at(&e))?;
        let store = RedbStore {
            db,
            pending: Mutex::new(BTreeMap::new()),
            flushing: Mutex::new(()),
        };
        // Make sure the table exists, durably, so a fresh ledger loads.
        store.commit(Vec::new())?;
        Ok(store)
    }

    /// Copy a whole book into this (empty) store, durably.
    pub fn import(&self, book: &Book) -> Result<(), LedgerError> {
        self.commit(super::entries::encode_all(book)?)
    }

    /// Apply `entries` in one durable (fsynced) transaction.
    fn commit(&self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        let mut txn = self.db.begin_write().map_err(store_err)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(LEDGER).map_err(store_err)?;
            for (k, v) in &entries {
                match v {
                    Some(v) => table.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                    None => table.remove(k.as_slice()).map(|_| ()),
                }
                .map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)
    }
}

impl Persist for RedbStore {
    fn load(&self) -> Result<Book, LedgerError> {
        self.flush()?; // what was written is part of the book
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(LEDGER).map_err(store_err)?;
        let iter = table.iter().map_err(store_err)?;
        decode(iter.map(|kv| {
            kv.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(store_err)
        }))
    }

    fn write(&self, book: &Book, changes: &Changes) -> Result<(), LedgerError> {
        let entries = encode(book, changes)?;
        lock(&self.pending).extend(entries);
        Ok(())
    }

    fn flush(&self) -> Result<(), LedgerError> {
        let _order = lock(&self.flushing);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return Ok(());
        }
        let entries: Vec<Entry> = batch.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Err(e) = self.commit(entries) {
            // Keep it for the next flush, under anything written since.
            let mut p = lock(&self.pending);
            for (k, v) in batch {
                p.entry(k).or_insert(v);
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Open a state directory's ledger at `path` (redb). If it does not exist
/// yet but a sled ledger does at `old`, copy the book across once, durably,
/// and say so; the sled copy is left in place, unused.
pub fn open_migrating(path: &Path, old: &Path) -> Result<RedbStore, LedgerError> {
    if path.exists() || !old.exists() {
        return RedbStore::open(path);
    }
    let book = super::sled_store::SledStore::open(old)?.load()?;
    let tmp = path.with_extension("redb.migrating");
    let _ = std::fs::remove_file(&tmp);
    RedbStore::open(&tmp)?.import(&book)?;
    std::fs::rename(&tmp, path).map_err(store_err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(store_err)?;
    }
    tracing::warn!(
        "migrated the ledger from sled ({}) to redb ({}): {} accounts, {} open holds; \
         the sled copy is no longer used and may be removed",
        old.display(),
        path.display(),
        book.balances.len(),
        book.holds.len()
    );
    RedbStore::open(path)
}

#[cfg(test)]
mod tests {
    use super::super::{Account, Ledger};
    use super::*;

    #[tokio::test]
    async fn survives_reopen_and_releases_open_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        {
            let (l, released) = Ledger::open(Box::new(RedbStore::open(&path).unwrap())).unwrap();
            assert_eq!(released, 0);
            l.issue("p", 1_000).unwrap();
            let (h, amt) = l.reserve("p", 10, 400).await.unwrap();
            assert_eq!(amt, 400);
            let (h2, _) = l.reserve("p", 10, 100).await.unwrap();
            assert_eq!(l.settle(h, 150, 1 << 20, 3).unwrap(), 750);
            let _ = h2; // left open: as if the gateway crashed mid-stream
            l.flush_now().unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the ledger file is owner-only");
        let (l, released) = Ledger::open(Box::new(RedbStore::open(&path).unwrap())).unwrap();
        assert_eq!(released, 1);
        assert_eq!(l.pad_balance("p"), Some(850));
        l.read(|b| {
            assert!(b.audit().problems.is_empty(), "{:?}", b.audit());
            assert_eq!(b.usage("p", 3).bytes, 1 << 20);
            assert_eq!(b.balance(&Account::Revenue), Some(150));
        });
        let (h3, _) = l.reserve("p", 1, 1).await.unwrap();
        assert!(h3 >= 2, "hold ids are never reused");
    }

    #[tokio::test]
    async fn a_sled_ledger_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("ledger"), dir.path().join("ledger.redb"));
        {
            let store = super::super::sled_store::SledStore::open(&old).unwrap();
            let (l, _) = Ledger::open(Box::new(store)).unwrap();
            l.issue("p", 1_000).unwrap();
            let (h, _) = l.reserve("p", 10, 400).await.unwrap();
            l.settle(h, 150, 1 << 20, 3).unwrap();
            l.flush_now().unwrap();
        }
        let before = super::super::sled_store::SledStore::open(&old)
            .unwrap()
            .load()
            .unwrap();
        let store = open_migrating(&new, &old).unwrap();
        assert_eq!(store.load().unwrap(), before);
        drop(store);
        // Once migrated, the redb file is the ledger; sled is not read again.
        std::fs::remove_dir_all(&old).unwrap();
        let (l, _) = Ledger::open(Box::new(open_migrating(&new, &old).unwrap())).unwrap();
        assert_eq!(l.pad_balance("p"), Some(850));
    }

    #[test]
    fn a_flush_commits_every_write_since_the_last_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("l.redb")).unwrap();
        let mut book = Book::default();
        for i in 0..50 {
            let changes = book.issue(&format!("p{i}"), 10).unwrap();
            store.write(&book, &changes).unwrap();
        }
        store.flush().unwrap();
        assert!(lock(&store.pending).is_empty());
        drop(store);
        let again = RedbStore::open(&dir.path().join("l.redb")).unwrap();
        assert_eq!(again.load().unwrap(), book);
    }
}
