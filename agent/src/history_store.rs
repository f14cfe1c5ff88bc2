//! Where the agent keeps the spending history: in the file beside the pad
//! (the default), or for this session only, in memory (`--no-history`).
//! Charges settled by `spend` land here; the page reads from here.

use std::path::Path;
use std::sync::Mutex;

use crate::history::{History, HistoryError, HistoryFile};
use crate::spend::Settled;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The start of today (UTC).
pub fn today_start(now: i64) -> i64 {
    now - now.rem_euclid(86_400)
}

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
        // A request refused before it carried anything cost nothing: it is
        // not spending (the refusals table has it).
        for s in settled.iter().filter(|s| s.amount != 0 || s.bytes != 0) {
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
