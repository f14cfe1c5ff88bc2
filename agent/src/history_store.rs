//! Where the agent keeps the spending history: in the file beside the pad
//! (the default), or for this session only, in memory (`--no-history`).
//! Charges settled by `spend` land here; the page reads from here.

use std::path::Path;
use std::sync::Mutex;

use crate::history::{History, HistoryError, HistoryFile};
use crate::spend::Settled;

/// The agent's spending history.
#[derive(Debug)]
pub enum HistoryStore {
    /// Kept in a file beside the pad, saved on a timer and at exit.
    File(HistoryFile),
    /// This session only: never written anywhere.
    Session(Mutex<History>),
}

impl Default for HistoryStore {
    fn default() -> HistoryStore {
        HistoryStore::Session(Mutex::new(History::new()))
    }
}

impl HistoryStore {
    /// Record settled charges at `at` (Unix seconds).
    pub fn record(&self, at: i64, settled: &[Settled]) {
        for s in settled {
            match self {
                HistoryStore::File(f) => f.record(at, &s.site, 1, s.bytes, s.amount),
                HistoryStore::Session(m) => {
                    let mut h = m.lock().unwrap_or_else(|p| p.into_inner());
                    h.record(at, &s.site, 1, s.bytes, s.amount);
                    h.roll_up(at);
                }
            }
        }
    }

    /// Run `f` on the history as it is now.
    pub fn with<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        match self {
            HistoryStore::File(file) => file.with(f),
            HistoryStore::Session(m) => f(&m.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    /// The file it is kept in, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            HistoryStore::File(f) => Some(f.path()),
            HistoryStore::Session(_) => None,
        }
    }

    /// Save what changed (blocking: call it off the async threads).
    pub fn save_if_dirty(&self) -> Result<bool, HistoryError> {
        match self {
            HistoryStore::File(f) => f.save_if_dirty(),
            HistoryStore::Session(_) => Ok(false),
        }
    }

    /// Forget everything, file included.
    pub fn forget(&self) -> Result<(), HistoryError> {
        match self {
            HistoryStore::File(f) => f.forget(),
            HistoryStore::Session(m) => {
                *m.lock().unwrap_or_else(|p| p.into_inner()) = History::new();
                Ok(())
            }
        }
    }
}
