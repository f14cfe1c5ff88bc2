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
use tunnel::store::{state_path, AllocatingPad, LeaseJournal, OpenError};

fn is_locked(e: &OpenError) -> bool {
    matches!(e, OpenError::Locked { .. })
}

use crate::state_dir::lease_len_for;

/// Unused tickets indexed per pad: hellos lost in transit do not
/// desynchronise. The agent resends an unanswered hello, moving to a new
/// slot only after ever longer waits, so it stays inside this window for
/// years of swallowed dials (docs/protocol.md); 32 tickets cost a pad
/// about 3 KiB of memory here.
pub const TICKET_WINDOW: u32 = 32;
/// Unknown tickets trigger a rescan at most this often.
const RESCAN_MIN_INTERVAL: Duration = Duration::from_millis(200);

pub struct Registry {
    dir: PathBuf,
    max_lease: u64,
    journal: Option<PathBuf>,
    /// One twin per serial: the one allocator of that pad's leases.
    pads: RwLock<HashMap<Serial, Arc<AllocatingPad>>>,
    /// Files loaded (as given by the directory listing), so a rescan opens
    /// each at most once whatever its name.
    loaded: Mutex<HashMap<PathBuf, Serial>>,
    tickets: RwLock<HashMap<Ticket, (Arc<AllocatingPad>, u32)>>,
    refused: Mutex<HashSet<PathBuf>>,
    last_scan: Mutex<Option<Instant>>,
    /// One scan at a time: two would open the same new file twice.
    scanning: Mutex<()>,
}

impl Registry {
    pub fn new(dir: PathBuf, max_lease: u64, journal: Option<PathBuf>) -> Registry {
        Registry {
            dir,
            max_lease,
            journal,
            pads: RwLock::default(),
            loaded: Mutex::default(),
            tickets: RwLock::default(),
            refused: Mutex::default(),
            last_scan: Mutex::default(),
            scanning: Mutex::default(),
        }
    }

    /// Every twin loaded.
    pub fn all(&self) -> Vec<Arc<AllocatingPad>> {
        self.pads
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, serial: &Serial) -> Option<Arc<AllocatingPad>> {
        self.pads.read().ok()?.get(serial).cloned()
    }

    /// Open every pad in the directory not yet known. Bad files are reported
    /// once each, naming the file, and skipped: one damaged pad does not stop
    /// the gateway serving the others. Blocking.
    pub fn scan(&self) -> std::io::Result<usize> {
        let _one_at_a_time = self.scanning.lock().unwrap_or_else(|p| p.into_inner());
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
                    let Ok(mut pads) = self.pads.write() else {
                        continue;
                    };
                    if let Some(first) = pads.get(&serial) {
                        // A second file for a loaded serial would be a second
                        // allocator of the same key material.
                        let first = first.path().display().to_string();
                        drop(pads);
                        self.refuse(
                            &path,
                            format!(
                                "{}: pad {serial} is already served from {first}; \
                                 a second twin of one pad is refused",
                                path.display()
                            ),
                        );
                        continue;
                    }
                    let pad = Arc::new(pad);
                    pads.insert(serial, pad.clone());
                    drop(pads);
                    if let Ok(mut l) = self.loaded.lock() {
                        l.insert(path.clone(), serial);
                    }
                    self.index(&pad);
                    added += 1;
                }
                // Held by another process for now (an admin command): try again next scan.
                Err(e) if is_locked(&e) => tracing::debug!("pad busy, retrying: {e}"),
                Err(e) => self.refuse(&path, format!("skipping pad: {e}")),
            }
        }
        Ok(added)
    }

    /// Skip `path` from now on, reporting why once.
    fn refuse(&self, path: &Path, why: String) {
        if self
            .refused
            .lock()
            .map(|mut r| r.insert(path.to_path_buf()))
            .unwrap_or(false)
        {
            tracing::error!("{why}");
        }
    }

    fn is_known(&self, path: &Path) -> bool {
        self.loaded
            .lock()
            .map(|l| l.contains_key(path))
            .unwrap_or(false)
            || self
                .refused
                .lock()
                .map(|r| r.contains(path))
                .unwrap_or(false)
    }

    fn open_pad(&self, path: &Path) -> Result<AllocatingPad, OpenError> {
        let journal = match &self.journal {
            Some(j) => Some(LeaseJournal::open(j).map_err(|source| OpenError::State {
                path: j.clone(),
                source,
            })?),
            None => None,
        };
        // Lease length depends on the pad's size: read the header first.
        let probe = tunnel::pad::PadFile::open(path)?;
        let lease_len = lease_len_for(probe.header().twin_data_len(), self.max_lease);
        drop(probe);
        AllocatingPad::open(path, lease_len, journal)
    }

    /// (Re)index a pad's window of unused tickets, dropping burned ones.
    /// The tickets are read before the index is locked, and the mark is read
    /// again under the lock, so lookups never wait on disk reads or on a
    /// claim's fsync; an entry left stale by a racing claim can only lead to
    /// a claim that finds its slot burned. Blocking (disk reads).
    pub fn index(&self, pad: &Arc<AllocatingPad>) {
        let next = pad.next_slot();
        let last = next
            .saturating_add(TICKET_WINDOW)
            .min(pad.share().slots.end);
        let mut fresh = Vec::with_capacity((last - next) as usize);
        for i in next..last {
            match pad.read_ticket(i) {
                Ok(ticket) => fresh.push((ticket, i)),
                // Burned by a claim since `next` was read: nothing to index.
                Err(_) if pad.next_slot() > i => {}
                Err(e) => {
                    tracing::error!(serial = %pad.header().serial, "cannot read ticket slot {i}: {e}")
                }
            }
        }
        let Ok(mut tickets) = self.tickets.write() else {
            return;
        };
        let next = pad.next_slot();
        tickets.retain(|_, (p, slot)| !(Arc::ptr_eq(p, pad) && *slot < next));
        for (ticket, i) in fresh.into_iter().filter(|(_, i)| *i >= next) {
            tickets.insert(ticket, (pad.clone(), i));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tunnel::mint::mint;
    use tunnel::pad::{Mode, PadHeader, PAGE};
    use tunnel::store::PadStatus;

    fn mint_twin(path: &Path, serial: Serial) {
        let h = PadHeader {
            mode: Mode::Otp,
            serial,
            ticket_slots: 64,
            data_size: 64 * PAGE,
            created_unix: 0,
            value_micros: 0,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:1".into()],
            shares: Vec::new(),
            holds: None,
        };
        mint(&h, &[path.to_path_buf()], |_| {}).unwrap();
        AllocatingPad::create_state(path, PadStatus::Active).unwrap();
    }

    #[test]
    fn a_twin_whose_name_is_not_its_serial_is_loaded_once() {
        let dir = tempfile::tempdir().unwrap();
        let serial = Serial::random();
        mint_twin(&dir.path().join("renamed.pad"), serial);
        let reg = Registry::new(dir.path().to_path_buf(), 1 << 20, None);
        assert_eq!(reg.scan().unwrap(), 1);
        let first = reg.get(&serial).unwrap();
        for _ in 0..3 {
            assert_eq!(reg.scan().unwrap(), 0, "a rescan opens nothing new");
            assert!(Arc::ptr_eq(&first, &reg.get(&serial).unwrap()));
        }
        assert_eq!(
            reg.tickets.read().unwrap().len(),
            TICKET_WINDOW as usize,
            "one window of tickets, from one instance"
        );
    }

    #[test]
    fn a_second_file_for_a_loaded_serial_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let serial = Serial::random();
        mint_twin(&dir.path().join("a.pad"), serial);
        let reg = Registry::new(dir.path().to_path_buf(), 1 << 20, None);
        reg.scan().unwrap();
        let first = reg.get(&serial).unwrap();
        // A copy of the same pad appears under another name.
        std::fs::copy(dir.path().join("a.pad"), dir.path().join("b.pad")).unwrap();
        std::fs::copy(
            dir.path().join("a.pad.state"),
            dir.path().join("b.pad.state"),
        )
        .unwrap();
        assert_eq!(reg.scan().unwrap(), 0);
        assert!(Arc::ptr_eq(&first, &reg.get(&serial).unwrap()));
        assert!(reg
            .refused
            .lock()
            .unwrap()
            .contains(&dir.path().join("b.pad")));
    }

    #[test]
    fn the_index_follows_the_mark_and_skips_burned_slots() {
        let dir = tempfile::tempdir().unwrap();
        let serial = Serial::random();
        let path = dir.path().join("p.pad");
        mint_twin(&path, serial);
        let reg = Registry::new(dir.path().to_path_buf(), 1 << 20, None);
        reg.scan().unwrap();
        let pad = reg.get(&serial).unwrap();
        let t0 = pad.read_ticket(0).unwrap();
        // A forged hello on slot 3 burns slots 0..=3.
        let mut junk = [0u8; tunnel::handshake::HELLO_LEN];
        junk[..16].copy_from_slice(&pad.read_ticket(3).unwrap());
        pad.claim_slot(3, &junk).unwrap();
        reg.index(&pad);
        let tickets = reg.tickets.read().unwrap();
        assert!(!tickets.contains_key(&t0));
        let slots: Vec<u32> = tickets.values().map(|(_, i)| *i).collect();
        assert_eq!(slots.len(), TICKET_WINDOW as usize);
        assert!(slots.iter().all(|&i| (4..4 + TICKET_WINDOW).contains(&i)));
    }
}
