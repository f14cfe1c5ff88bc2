//! The gateway's pads: every twin in `state/pads/`, opened, plus an in-memory
//! index of the next few unused tickets of each, so a hello finds its pad
//! without any identifier on the wire. Pads minted while serving are picked up
//! by a rescan (periodic, and on an unknown ticket).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tunnel::handshake::Ticket;
use tunnel::pad::Serial;
use tunnel::store::{state_path, AllocatingPad, LeaseJournal};

use crate::state_dir::lease_len_for;

/// Unused tickets indexed per pad: a hello lost in transit does not desynchronise.
pub const TICKET_WINDOW: u32 = 8;
/// Unknown tickets trigger a rescan at most this often.
const RESCAN_MIN_INTERVAL: Duration = Duration::from_millis(200);

pub struct Registry {
    dir: PathBuf,
    max_lease: u64,
    journal: Option<PathBuf>,
    pads: RwLock<HashMap<Serial, Arc<AllocatingPad>>>,
    tickets: RwLock<HashMap<Ticket, (Arc<AllocatingPad>, u32)>>,
    refused: Mutex<HashSet<PathBuf>>,
    last_scan: Mutex<Option<Instant>>,
}

impl Registry {
    pub fn new(dir: PathBuf, max_lease: u64, journal: Option<PathBuf>) -> Registry {
        Registry {
            dir,
            max_lease,
            journal,
            pads: RwLock::default(),
            tickets: RwLock::default(),
            refused: Mutex::default(),
            last_scan: Mutex::default(),
        }
    }

    pub fn get(&self, serial: &Serial) -> Option<Arc<AllocatingPad>> {
        self.pads.read().ok()?.get(serial).cloned()
    }

    /// Open every pad in the directory not yet known. Bad files are reported
    /// once each, naming the file, and skipped: one damaged pad does not stop
    /// the gateway serving the others. Blocking.
    pub fn scan(&self) -> std::io::Result<usize> {
        if let Ok(mut t) = self.last_scan.lock() {
            *t = Some(Instant::now());
        }
        let mut added = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pad")
                || !state_path(&path).exists()
            {
                continue;
            }
            if self.is_known(&path) {
                continue;
            }
            match self.open_pad(&path) {
                Ok(pad) => {
                    let serial = pad.header().serial;
                    let pad = Arc::new(pad);
                    self.index(&pad);
                    if let Ok(mut pads) = self.pads.write() {
                        pads.insert(serial, pad);
                    }
                    added += 1;
                }
                Err(e) => {
                    if self
                        .refused
                        .lock()
                        .map(|mut r| r.insert(path.clone()))
                        .unwrap_or(false)
                    {
                        tracing::error!("skipping pad: {e}");
                    }
                }
            }
        }
        Ok(added)
    }

    fn is_known(&self, path: &Path) -> bool {
        let Some(serial) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<Serial>().ok())
        else {
            return self
                .refused
                .lock()
                .map(|r| r.contains(path))
                .unwrap_or(false);
        };
        self.pads
            .read()
            .map(|p| p.contains_key(&serial))
            .unwrap_or(false)
            || self
                .refused
                .lock()
                .map(|r| r.contains(path))
                .unwrap_or(false)
    }

    fn open_pad(&self, path: &Path) -> anyhow::Result<AllocatingPad> {
        let journal = match &self.journal {
            Some(j) => Some(LeaseJournal::open(j)?),
            None => None,
        };
        // Lease length depends on the pad's size: read the header first.
        let probe = tunnel::pad::PadFile::open(path)?;
        let lease_len = lease_len_for(probe.header().data_size, self.max_lease);
        drop(probe);
        Ok(AllocatingPad::open(path, lease_len, journal)?)
    }

    /// (Re)index a pad's window of unused tickets, dropping burned ones.
    pub fn index(&self, pad: &Arc<AllocatingPad>) {
        let next = pad.next_slot();
        let last = next
            .saturating_add(TICKET_WINDOW)
            .min(pad.header().ticket_slots);
        let Ok(mut tickets) = self.tickets.write() else {
            return;
        };
        tickets.retain(|_, (p, slot)| !(Arc::ptr_eq(p, pad) && *slot < next));
        for i in next..last {
            match pad.read_slot(i) {
                Ok(slot) => {
                    tickets.insert(slot.ticket(), (pad.clone(), i));
                }
                Err(e) => {
                    tracing::error!(serial = %pad.header().serial, "cannot read ticket slot {i}: {e}")
                }
            }
        }
    }

    /// Find the pad and slot of a ticket; on a miss, rescan for newly minted
    /// pads (rate-limited) and look again.
    pub async fn lookup(self: &Arc<Self>, ticket: &Ticket) -> Option<(Arc<AllocatingPad>, u32)> {
        if let Some(hit) = self.tickets.read().ok()?.get(ticket).cloned() {
            return Some(hit);
        }
        let stale = self
            .last_scan
            .lock()
            .ok()?
            .is_none_or(|t| t.elapsed() >= RESCAN_MIN_INTERVAL);
        if stale {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.scan()).await;
            return self.tickets.read().ok()?.get(ticket).cloned();
        }
        None
    }
}
