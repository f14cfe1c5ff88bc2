//! The two sides' per-pad key sources. The gateway's `AllocatingPad` owns the
//! durable high-water mark and burns ticket slots; the agent's `FollowingPad`
//! durably marks ticket slots used before a hello is sent. Both erase what they
//! take. A crash wastes at most the rest of a lease and never reuses a byte.

mod allocating;
mod following;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::pad::PadFileError;

pub use allocating::{AllocatingPad, SlotClaim};
pub use following::{FollowingPad, Pending};

/// Run blocking pad I/O (reads, erasure, fsync) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// The status of a pad at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PadStatus {
    Active = 0,
    Inactive = 1,
    Cancelled = 2,
}

impl PadStatus {
    fn from_u64(v: u64) -> PadStatus {
        match v {
            1 => PadStatus::Inactive,
            2 => PadStatus::Cancelled,
            _ => PadStatus::Active,
        }
    }
}

/// An append-only journal of leases and ticket slots a side used. A debug aid
/// for audits and crash tests: it holds pad offsets only, never hosts.
#[derive(Debug)]
pub struct LeaseJournal {
    file: Mutex<File>,
}

impl LeaseJournal {
    pub fn open(path: &Path) -> io::Result<LeaseJournal> {
        Ok(LeaseJournal {
            file: Mutex::new(OpenOptions::new().create(true).append(true).open(path)?),
        })
    }

    fn line(&self, line: String) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The path of a pad's state file beside the pad.
pub fn state_path(pad_path: &Path) -> PathBuf {
    let mut s = pad_path.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

/// An error opening a pad at the gateway, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Pad(#[from] PadFileError),
    #[error("{path}: {source}")]
    State { path: PathBuf, source: io::Error },
    /// Another process holds the pad's lock.
    #[error("{path}: pad in use by {by} (the file is locked by another process): {source}")]
    Locked {
        path: PathBuf,
        by: &'static str,
        source: io::Error,
    },
}

#[cfg(test)]
mod tests;
