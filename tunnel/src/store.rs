//! The two sides' per-pad key sources. The gateway's `AllocatingPad` owns the
//! durable high-water mark and burns ticket slots; the agent's `FollowingPad`
//! durably marks ticket slots used before a hello is sent. Both erase what they
//! take. A crash wastes at most the rest of a lease and never reuses a byte.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::handshake::Slot;
use crate::lease::{Lease, LeaseAllocator};
use crate::pad::{PadFile, PadFileError, PadHeader};
use crate::secret::KeyBytes;
use crate::state::{field_u64, DurableCell, Fields};
use crate::stream::KeySource;

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

// === impl AllocatingPad ===

struct GatewayState {
    cell: DurableCell,
    next_slot: u32,
    alloc: LeaseAllocator,
    status: PadStatus,
}

impl GatewayState {
    fn store(&mut self) -> io::Result<()> {
        let f = Fields::default()
            .put_u64(u64::from(self.next_slot))
            .put_u64(self.alloc.hwm)
            .put_u64(self.status as u64);
        self.cell.store(&f.bytes)
    }
}

/// The gateway's twin of one pad: the one allocator of its leases.
pub struct AllocatingPad {
    pad: PadFile,
    state: Mutex<GatewayState>,
    lease_len: u64,
    journal: Option<LeaseJournal>,
}

impl std::fmt::Debug for AllocatingPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllocatingPad({})", self.pad.header().serial)
    }
}

/// An error opening a pad at the gateway, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Pad(#[from] PadFileError),
    #[error("{path}: {source}")]
    State { path: PathBuf, source: io::Error },
}

impl AllocatingPad {
    /// Write the initial state file for a freshly minted gateway copy.
    pub fn create_state(pad_path: &Path, status: PadStatus) -> io::Result<()> {
        let f = Fields::default()
            .put_u64(0)
            .put_u64(0)
            .put_u64(status as u64);
        DurableCell::create(&state_path(pad_path), &f.bytes).map(drop)
    }

    /// Open a gateway pad and its state.
    pub fn open(
        pad_path: &Path,
        lease_len: u64,
        journal: Option<LeaseJournal>,
    ) -> Result<AllocatingPad, OpenError> {
        let pad = PadFile::open(pad_path)?;
        let sp = state_path(pad_path);
        let (cell, payload) = DurableCell::open(&sp).map_err(|source| OpenError::State {
            path: sp.clone(),
            source,
        })?;
        let next_slot = u32::try_from(field_u64(&payload, 0)).unwrap_or(u32::MAX);
        let hwm = field_u64(&payload, 1);
        let data_size = pad.header().data_size;
        if hwm > data_size {
            return Err(OpenError::State {
                path: sp,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("high-water mark {hwm} is past the data region ({data_size})"),
                ),
            });
        }
        let state = GatewayState {
            cell,
            next_slot,
            alloc: LeaseAllocator { hwm, data_size },
            status: PadStatus::from_u64(field_u64(&payload, 2)),
        };
        Ok(AllocatingPad {
            pad,
            state: Mutex::new(state),
            lease_len,
            journal,
        })
    }

    pub fn header(&self) -> &PadHeader {
        self.pad.header()
    }

    pub fn status(&self) -> PadStatus {
        self.lock().status
    }

    /// The first unused ticket slot.
    pub fn next_slot(&self) -> u32 {
        self.lock().next_slot
    }

    /// Key bytes not yet handed out.
    pub fn key_left(&self) -> u64 {
        self.lock().alloc.left()
    }

    /// Read slot `i` (to index its ticket, or to open a hello).
    pub fn read_slot(&self, i: u32) -> io::Result<Slot> {
        Ok(Slot::new(self.pad.read_slot(i)?))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GatewayState> {
        // A panic while holding the lock cannot leave the state half-written:
        // the durable copy is only replaced by a completed store().
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accept a hello on `slot`: burn it and every earlier slot, and allocate
    /// the first upstream and downstream leases, all in one durable update.
    /// `Ok(None)`: the slot was already burned, or key material is used up.
    pub fn open_tunnel(&self, slot: u32) -> io::Result<Option<(Lease, Lease)>> {
        let mut st = self.lock();
        if slot < st.next_slot {
            return Ok(None);
        }
        let first_unburned = st.next_slot;
        st.next_slot = slot + 1;
        let mut alloc = st.alloc;
        let leases = match (
            alloc.allocate(self.lease_len),
            alloc.allocate(self.lease_len),
        ) {
            (Some(up), Some(down)) => {
                st.alloc = alloc;
                Some((up, down))
            }
            _ => None,
        };
        st.store()?;
        drop(st);
        self.pad.erase_slots(first_unburned, slot + 1)?;
        if let Some(j) = &self.journal {
            j.line(format!("gateway slot {slot}\n"));
        }
        Ok(leases)
    }

    /// Burn `slot` (and every earlier one) without opening a tunnel: a hello
    /// on it failed authentication, and its keys must never be tried again.
    pub fn burn_slot(&self, slot: u32) -> io::Result<()> {
        let mut st = self.lock();
        if slot < st.next_slot {
            return Ok(());
        }
        let first_unburned = st.next_slot;
        st.next_slot = slot + 1;
        st.store()?;
        drop(st);
        self.pad.erase_slots(first_unburned, slot + 1)
    }

    /// Change the pad's status durably.
    pub fn set_status(&self, status: PadStatus) -> io::Result<()> {
        let mut st = self.lock();
        st.status = status;
        st.store()
    }
}

impl KeySource for AllocatingPad {
    fn take(&self, lease: Lease) -> io::Result<KeyBytes> {
        self.pad.take(lease)
    }

    fn allocate(&self) -> io::Result<Option<Lease>> {
        let mut st = self.lock();
        let mut alloc = st.alloc;
        let Some(lease) = alloc.allocate(self.lease_len) else {
            return Ok(None);
        };
        let before = st.alloc;
        st.alloc = alloc;
        if let Err(e) = st.store() {
            st.alloc = before;
            return Err(e);
        }
        Ok(Some(lease))
    }

    fn note_use(&self, lease: Lease) {
        if let Some(j) = &self.journal {
            j.line(format!("gateway lease {} {}\n", lease.offset, lease.len));
        }
    }
}

// === impl FollowingPad ===

struct AgentState {
    cell: DurableCell,
    next_slot: u32,
}

/// The agent's pad: takes the leases the gateway gives it.
pub struct FollowingPad {
    pad: PadFile,
    state: Mutex<AgentState>,
    journal: Option<LeaseJournal>,
}

impl std::fmt::Debug for FollowingPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FollowingPad({})", self.pad.header().serial)
    }
}

impl FollowingPad {
    /// Open the user's pad and its state file (`FILE.state`, created on first use).
    pub fn open(pad_path: &Path, journal: Option<LeaseJournal>) -> Result<FollowingPad, OpenError> {
        let pad = PadFile::open(pad_path)?;
        let sp = state_path(pad_path);
        let state_err = |source| OpenError::State {
            path: sp.clone(),
            source,
        };
        let (cell, next_slot) = if sp.exists() {
            let (cell, payload) = DurableCell::open(&sp).map_err(state_err)?;
            (
                cell,
                u32::try_from(field_u64(&payload, 0)).unwrap_or(u32::MAX),
            )
        } else {
            (
                DurableCell::create(&sp, &Fields::default().put_u64(0).bytes).map_err(state_err)?,
                0,
            )
        };
        Ok(FollowingPad {
            pad,
            state: Mutex::new(AgentState { cell, next_slot }),
            journal,
        })
    }

    pub fn header(&self) -> &PadHeader {
        self.pad.header()
    }

    /// Ticket slots not yet used.
    pub fn slots_left(&self) -> u32 {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.pad.header().ticket_slots.saturating_sub(st.next_slot)
    }

    /// Take the next ticket slot: durably mark it used, read it, erase it on
    /// disk. Called before each hello; a slot is never offered twice.
    pub fn claim_slot(&self) -> io::Result<(u32, Slot)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = st.next_slot;
        if i >= self.pad.header().ticket_slots {
            return Err(io::Error::other(
                "every ticket slot of this pad is used: the pad cannot open more tunnels",
            ));
        }
        st.cell
            .store(&Fields::default().put_u64(u64::from(i) + 1).bytes)?;
        st.next_slot = i + 1;
        drop(st);
        let slot = Slot::new(self.pad.read_slot(i)?);
        self.pad.erase_slots(i, i + 1)?;
        if let Some(j) = &self.journal {
            j.line(format!("agent slot {i}\n"));
        }
        Ok((i, slot))
    }
}

impl KeySource for FollowingPad {
    fn take(&self, lease: Lease) -> io::Result<KeyBytes> {
        self.pad.take(lease)
    }

    fn allocate(&self) -> io::Result<Option<Lease>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the agent never allocates leases",
        ))
    }

    fn note_use(&self, lease: Lease) {
        if let Some(j) = &self.journal {
            j.line(format!("agent lease {} {}\n", lease.offset, lease.len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pad::{mint, Mode, Serial, PAGE};

    fn minted(dir: &Path) -> (PathBuf, PathBuf) {
        let h = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: 8,
            data_size: 64 * PAGE * 16,
            created_unix: 0,
            value_micros: 0,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:1".into()],
        };
        let g = dir.join("gw.pad");
        let u = dir.join("user.pad");
        mint(&h, &[g.clone(), u.clone()], |_| {}).unwrap();
        AllocatingPad::create_state(&g, PadStatus::Active).unwrap();
        (g, u)
    }

    #[test]
    fn gateway_state_survives_reopen_and_never_reallocates() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = minted(dir.path());
        let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let (up, down) = pad.open_tunnel(2).unwrap().unwrap();
        let third = pad.allocate().unwrap().unwrap();
        assert!(!up.overlaps(&down) && !down.overlaps(&third));
        drop(pad); // a crash: nothing but the durable state remains
        let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        assert_eq!(pad.next_slot(), 3, "slots 0..=2 are burned");
        assert_eq!(
            pad.open_tunnel(1).unwrap(),
            None,
            "a burned slot opens nothing"
        );
        let fourth = pad.allocate().unwrap().unwrap();
        assert!(fourth.offset >= third.end());
    }

    #[test]
    fn agent_never_claims_a_slot_twice_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (_, u) = minted(dir.path());
        let a = FollowingPad::open(&u, None).unwrap();
        let (i0, s0) = a.claim_slot().unwrap();
        drop(a);
        let a = FollowingPad::open(&u, None).unwrap();
        let (i1, s1) = a.claim_slot().unwrap();
        assert_eq!((i0, i1), (0, 1));
        assert_ne!(s0.ticket(), s1.ticket());
        assert_eq!(a.slots_left(), 6);
    }

    #[test]
    fn tickets_match_between_the_twins() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let gw = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let ag = FollowingPad::open(&u, None).unwrap();
        let (i, slot) = ag.claim_slot().unwrap();
        assert_eq!(gw.read_slot(i).unwrap().ticket(), slot.ticket());
    }
}
