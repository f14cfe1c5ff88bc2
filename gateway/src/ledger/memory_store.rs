//! A book kept in memory: the store the request path's unit tests run on
//! (nothing persists; every batch lands at once). It can be told to refuse
//! writes, as a failing disk would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::ledger::{Book, Changes, LedgerError, Persist};

#[derive(Default)]
pub struct MemoryStore {
    book: Mutex<Book>,
    /// While set, every write fails (and changes nothing).
    pub refuse_writes: Arc<AtomicBool>,
    /// While set, every flush fails (writes land, none becomes durable).
    pub refuse_flushes: Arc<AtomicBool>,
}

impl Persist for MemoryStore {
    fn load(&self) -> Result<Book, LedgerError> {
        Ok(self.book.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn write(&self, book: &Book, _changes: &Changes) -> Result<(), LedgerError> {
        if self.refuse_writes.load(Ordering::Relaxed) {
            return Err(LedgerError::Store("the test store refuses writes".into()));
        }
        *self.book.lock().unwrap_or_else(|p| p.into_inner()) = book.clone();
        Ok(())
    }

    fn flush(&self) -> Result<(), LedgerError> {
        if self.refuse_flushes.load(Ordering::Relaxed) {
            return Err(LedgerError::Store("the test store refuses flushes".into()));
        }
        Ok(())
    }
}
