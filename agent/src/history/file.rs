//! The history kept in a file beside the pad: read at start (missing = empty,
//! corrupt = an error naming file:line), saved crash-safely when asked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{History, HistoryError};

/// A [`History`] kept in a file beside the pad. Saving is crash-safe (temp
/// file, fsync, rename, fsync the directory) and blocking: from async code,
/// call it in `spawn_blocking`.
#[derive(Debug)]
pub struct HistoryFile {
    path: PathBuf,
    state: Mutex<State>,
    /// Held while saving, so two saves cannot rename out of order.
    saving: Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    history: History,
    dirty: bool,
}

impl HistoryFile {
    /// The history file of a pad: the pad's path with ".history" appended.
    pub fn path_for(pad: &Path) -> PathBuf {
        let mut name = pad.as_os_str().to_owned();
        name.push(".history");
        PathBuf::from(name)
    }

    /// Reads the file; a missing one is an empty history, a corrupt one an
    /// error naming file:line and field (the file is left untouched).
    pub fn open(path: impl Into<PathBuf>) -> Result<HistoryFile, HistoryError> {
        let path = path.into();
        let history = match fs::read_to_string(&path) {
            Ok(text) => History::decode(&text).map_err(|e| match e {
                HistoryError::Parse {
                    line,
                    field,
                    reason,
                } => HistoryError::Corrupt {
                    path: path.clone(),
                    line,
                    field,
                    reason,
                },
                other => other,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => History::new(),
            Err(source) => return Err(io_error("read", &path, source)),
        };
        Ok(HistoryFile {
            path,
            state: Mutex::new(State {
                history,
                dirty: false,
            }),
            saving: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one finished request, then rolls up as of `at`. In memory only.
    pub fn record(&self, at: i64, site: &str, requests: u64, bytes: u64, spent: i64) {
        let mut state = self.lock();
        state.history.record(at, site, requests, bytes, spent);
        state.history.roll_up(at);
        state.dirty = true;
    }

    /// Runs `f` on the history as it is now (for pages and charts).
    pub fn with<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        f(&self.lock().history)
    }

    /// A copy of the history as it is now.
    pub fn snapshot(&self) -> History {
        self.lock().history.clone()
    }

    /// Saves if anything was recorded since the last save; true if it saved.
    pub fn save_if_dirty(&self) -> Result<bool, HistoryError> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let text = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(false);
            }
            state.dirty = false;
            state.history.encode()
        };
        self.write(&text)
            .inspect_err(|_| self.lock().dirty = true)?;
        Ok(true)
    }

    /// Saves now, dirty or not.
    pub fn save(&self) -> Result<(), HistoryError> {
        self.lock().dirty = true;
        self.save_if_dirty().map(|_| ())
    }

    /// Empties the history and removes its file.
    pub fn forget(&self) -> Result<(), HistoryError> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        *self.lock() = State::default();
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(io_error("remove", &self.path, source)),
        }
        sync_dir(&self.path)
    }

    /// The state is plain tallies: a panic elsewhere while holding the lock
    /// leaves at worst one request half counted, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `text` to a temp file beside the history (mode 0600), fsyncs
    /// it, renames it over the history and fsyncs the directory.
    fn write(&self, text: &str) -> Result<(), HistoryError> {
        let tmp = {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".tmp");
            PathBuf::from(name)
        };
        // A temp file left by a crash may have other permissions: start anew.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error("remove", &tmp, source)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error("create", &tmp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("write", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| io_error("rename into place", &self.path, e))?;
        sync_dir(&self.path)
    }
}

fn sync_dir(path: &Path) -> Result<(), HistoryError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync the directory of", path, e))
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> HistoryError {
    HistoryError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
