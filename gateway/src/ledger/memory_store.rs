//! A book kept in memory: the store the request path's unit tests run on
//! (nothing persists; every batch lands at once).

use std::sync::Mutex;

use crate::ledger::{Book, Changes, LedgerError, Persist};

#[derive(Default)]
pub struct MemoryStore(Mutex<Book>);

impl Persist for MemoryStore {
    fn load(&self) -> Result<Book, LedgerError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn write(&self, book: &Book, _changes: &Changes) -> Result<(), LedgerError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = book.clone();
        Ok(())
    }

    fn flush(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}
