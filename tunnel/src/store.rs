//! The two sides' per-pad key sources. The gateway's `AllocatingPad` owns the
//! durable high-water mark and burns ticket slots; the agent's `FollowingPad`
//! durably marks ticket slots used before a hello is sent. Both erase what they
//! take. A crash wastes at most the rest of a lease and never reuses a byte.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::handshake::{open_hello, Slot, Ticket, HELLO_LEN};
use crate::lease::{Lease, LeaseAllocator, UsedRanges};
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

/// What a hello presented on one ticket slot came to at the gateway.
#[derive(Debug)]
#[non_exhaustive]
pub enum SlotClaim {
    /// This call claimed the slot: its caller, and no one else ever, may seal
    /// a reply with `slot`. `leases` are the first upstream and downstream
    /// leases (durable already), `None` when the pad is not active or its
    /// key material is used up.
    Claimed {
        slot: Slot,
        status: PadStatus,
        leases: Option<(Lease, Lease)>,
    },
    /// The slot was claimed or burned before (a replayed or duplicated
    /// hello): answer exactly as for an unknown ticket.
    AlreadyBurned,
    /// The hello failed authentication; the slot is burned now.
    BadHello,
}

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
    /// `state.next_slot`, readable without waiting on the lock (which a
    /// claim holds across an fsync); it may lag, never lead.
    next_slot_seen: AtomicU32,
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
    /// Another process holds the pad's lock.
    #[error("{path}: pad in use by {by} (the file is locked by another process): {source}")]
    Locked {
        path: PathBuf,
        by: &'static str,
        source: io::Error,
    },
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
        pad.lock_exclusive().map_err(|e| OpenError::Locked {
            path: pad_path.to_path_buf(),
            by: "another gateway process",
            source: e,
        })?;
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
            next_slot_seen: AtomicU32::new(state.next_slot),
            state: Mutex::new(state),
            lease_len,
            journal,
        })
    }

    pub fn header(&self) -> &PadHeader {
        self.pad.header()
    }

    /// The twin's file.
    pub fn path(&self) -> &Path {
        self.pad.path()
    }

    pub fn status(&self) -> PadStatus {
        self.lock().status
    }

    /// The first unused ticket slot (possibly a moment behind a claim in
    /// progress: never ahead of the durable mark).
    pub fn next_slot(&self) -> u32 {
        self.next_slot_seen.load(Ordering::Acquire)
    }

    /// Key bytes not yet handed out.
    pub fn key_left(&self) -> u64 {
        self.lock().alloc.left()
    }

    /// The ticket of slot `i` (for the index; the slot's keys stay on disk).
    pub fn read_ticket(&self, i: u32) -> io::Result<Ticket> {
        self.pad.read_ticket(i)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GatewayState> {
        // A panic while holding the lock cannot leave the state half-written:
        // the durable copy is only replaced by a completed store().
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Judge a hello presented on slot `i`, claiming the slot if it is unused.
    ///
    /// Under the pad's lock, in this order: a slot below the mark is
    /// [`SlotClaim::AlreadyBurned`] (nothing is read or tried); otherwise
    /// the slot is read, the hello checked against it once, the mark moved
    /// past it (burning every earlier slot too) together with the first
    /// leases, and that made durable; only then are the slots erased and
    /// the keys handed back. So one slot gives at most one
    /// [`SlotClaim::Claimed`], to one caller, ever: only that caller may seal
    /// a reply with it.
    pub fn claim_slot(&self, i: u32, hello: &[u8; HELLO_LEN]) -> io::Result<SlotClaim> {
        let mut st = self.lock();
        if i < st.next_slot {
            return Ok(SlotClaim::AlreadyBurned);
        }
        let first_unburned = st.next_slot;
        let read = self.pad.read_slot(i);
        let genuine = read
            .as_ref()
            .is_ok_and(|slot| open_hello(slot, hello).is_ok());
        // Whatever happened, the slot's keys are never tried again.
        st.next_slot = i + 1;
        let status = st.status;
        let mut leases = None;
        if genuine && status == PadStatus::Active {
            let mut alloc = st.alloc;
            if let (Some(up), Some(down)) = (
                alloc.allocate(self.lease_len),
                alloc.allocate(self.lease_len),
            ) {
                st.alloc = alloc;
                leases = Some((up, down));
            }
        }
        // On failure the marks stay advanced in memory: too far is safe.
        let stored = st.store();
        self.next_slot_seen.store(st.next_slot, Ordering::Release);
        stored?;
        drop(st);
        self.pad.erase_slots(first_unburned, i + 1)?;
        if let Some(j) = &self.journal {
            j.line(format!("gateway slot {i}\n"));
        }
        let slot = read?;
        if !genuine {
            return Ok(SlotClaim::BadHello);
        }
        Ok(SlotClaim::Claimed {
            slot,
            status,
            leases,
        })
    }

    /// Flush erasures to disk (at the end of a tunnel).
    pub fn sync_erasures(&self) -> io::Result<()> {
        self.pad.sync()
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

/// The hello sent on a slot and not answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub slot: u32,
    /// The protocol version its hello carried (a resend must be identical).
    pub version: u8,
    /// A reply to it failed authentication: its reply key has had its one
    /// try, so the hello is never sent again.
    pub spoiled: bool,
}

impl Pending {
    fn encode(p: Option<Pending>) -> u64 {
        p.map_or(0, |p| {
            (u64::from(p.slot) + 1) | u64::from(p.version) << 40 | u64::from(p.spoiled) << 48
        })
    }

    fn decode(v: u64, next_slot: u32) -> Option<Pending> {
        let slot = u32::try_from((v & 0xff_ffff_ffff).checked_sub(1)?).ok()?;
        (slot < next_slot).then_some(Pending {
            slot,
            version: (v >> 40) as u8,
            spoiled: (v >> 48) & 1 == 1,
        })
    }
}

/// The agent's durable marks: the next unused ticket slot, the floor below
/// which every data byte is spent, the slot whose hello is out unanswered
/// (kept on disk so it can be sent again, even after a restart), and how
/// many slots in a row were given up unanswered (which paces the next).
struct AgentState {
    cell: DurableCell,
    next_slot: u32,
    floor: u64,
    pending: Option<Pending>,
    streak: u32,
}

impl AgentState {
    fn store(&mut self) -> io::Result<()> {
        let f = Fields::default()
            .put_u64(u64::from(self.next_slot))
            .put_u64(self.floor)
            .put_u64(Pending::encode(self.pending))
            .put_u64(u64::from(self.streak));
        self.cell.store(&f.bytes)
    }
}

/// The agent's pad: takes the leases the gateway gives it, and only leases
/// that share no byte with anything it used before.
pub struct FollowingPad {
    pad: PadFile,
    state: Mutex<AgentState>,
    used: Mutex<UsedRanges>,
    journal: Option<LeaseJournal>,
}

impl std::fmt::Debug for FollowingPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FollowingPad({})", self.pad.header().serial)
    }
}

impl FollowingPad {
    /// Open the user's pad and its state file (`FILE.state`, created on first
    /// use), locking the pad: a second agent on the same file is refused.
    pub fn open(pad_path: &Path, journal: Option<LeaseJournal>) -> Result<FollowingPad, OpenError> {
        let pad = PadFile::open(pad_path)?;
        pad.lock_exclusive().map_err(|e| OpenError::Locked {
            path: pad_path.to_path_buf(),
            by: "another agent",
            source: e,
        })?;
        let sp = state_path(pad_path);
        let state_err = |source| OpenError::State {
            path: sp.clone(),
            source,
        };
        let (cell, payload) = if sp.exists() {
            DurableCell::open(&sp).map_err(state_err)?
        } else {
            let cell = DurableCell::create(&sp, &[0u8; 32]).map_err(state_err)?;
            (cell, [0u8; crate::state::PAYLOAD])
        };
        let next_slot = u32::try_from(field_u64(&payload, 0)).unwrap_or(u32::MAX);
        let floor = field_u64(&payload, 1);
        Ok(FollowingPad {
            pad,
            state: Mutex::new(AgentState {
                cell,
                next_slot,
                floor,
                pending: Pending::decode(field_u64(&payload, 2), next_slot),
                streak: u32::try_from(field_u64(&payload, 3)).unwrap_or(u32::MAX),
            }),
            used: Mutex::new(UsedRanges::below(floor)),
            journal,
        })
    }

    pub fn header(&self) -> &PadHeader {
        self.pad.header()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ticket slots not yet used (the pending one counts as used).
    pub fn slots_left(&self) -> u32 {
        self.pad
            .header()
            .ticket_slots
            .saturating_sub(self.lock().next_slot)
    }

    /// Slots given up unanswered in a row since the last reply.
    pub fn streak(&self) -> u32 {
        self.lock().streak
    }

    /// The hello sent and not answered, if any.
    pub fn pending(&self) -> Option<Pending> {
        self.lock().pending
    }

    /// The keys of the pending slot, to send the same hello again: a hello
    /// the network swallowed costs no new slot.
    pub fn pending_keys(&self, p: Pending) -> io::Result<Slot> {
        self.pad.read_slot(p.slot)
    }

    /// Give up on the pending hello (if any; it is erased, and counts in
    /// the streak) and take the next ticket slot: durably mark it used and
    /// pending with `version`, then read it. A slot is never claimed twice.
    pub fn claim_slot(&self, version: u8) -> io::Result<(u32, Slot)> {
        let mut st = self.lock();
        let i = st.next_slot;
        if i >= self.pad.header().ticket_slots {
            return Err(io::Error::other(
                "every ticket slot of this pad is used: the pad cannot open more tunnels",
            ));
        }
        let before = (st.next_slot, st.pending, st.streak);
        let abandoned = st.pending;
        st.next_slot = i + 1;
        st.pending = Some(Pending {
            slot: i,
            version,
            spoiled: false,
        });
        if abandoned.is_some() {
            st.streak = st.streak.saturating_add(1);
        }
        if let Err(e) = st.store() {
            (st.next_slot, st.pending, st.streak) = before;
            return Err(e);
        }
        drop(st);
        if let Some(old) = abandoned {
            self.pad.erase_slots(old.slot, old.slot + 1)?;
        }
        let slot = self.pad.read_slot(i)?;
        if let Some(j) = &self.journal {
            j.line(format!("agent slot {i}\n"));
        }
        Ok((i, slot))
    }

    /// A reply to the pending hello on slot `i` failed authentication: the
    /// hello is never sent again (durably: not after a restart either).
    pub fn spoil_pending(&self, i: u32) -> io::Result<()> {
        let mut st = self.lock();
        match &mut st.pending {
            Some(p) if p.slot == i && !p.spoiled => p.spoiled = true,
            _ => return Ok(()),
        }
        st.store()
    }

    /// The gateway answered the hello on slot `i` (authentically) without
    /// opening a tunnel: the slot is done with, and the streak ends.
    pub fn slot_answered(&self, i: u32) -> io::Result<()> {
        self.answered(self.lock(), i)
    }

    /// Slot `i` got an authentic reply: it is no longer pending and the
    /// streak ends (durably), then its keys are erased.
    fn answered(&self, mut st: std::sync::MutexGuard<'_, AgentState>, i: u32) -> io::Result<()> {
        if st.pending.is_some_and(|p| p.slot == i) {
            st.pending = None;
        }
        st.streak = 0;
        st.store()?;
        drop(st);
        self.pad.erase_slots(i, i + 1)
    }

    /// The gateway opened a tunnel on slot `i` with these first leases. Both
    /// must lie above the durable floor (everything below it is spent);
    /// whatever lies between the floor and them (leases of earlier tunnels,
    /// some announced but never taken) is erased, and the floor moves above
    /// them, durably, before either is used.
    pub fn begin_tunnel(&self, i: u32, up: Lease, down: Lease) -> io::Result<()> {
        let mut st = self.lock();
        let floor = st.floor;
        for l in [up, down] {
            if l.offset < floor || l.end() > self.pad.header().data_size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the gateway offered lease {l}, below key material already spent \
                         (up to {floor}) or past the pad: refusing it"
                    ),
                ));
            }
        }
        if up.overlaps(&down) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the gateway offered overlapping leases {up} and {down}"),
            ));
        }
        self.pad.erase_data(floor, up.offset.min(down.offset))?;
        st.floor = up.end().max(down.end());
        self.answered(st, i)
    }

    /// Flush erasures to disk (at the end of a tunnel).
    pub fn sync_erasures(&self) -> io::Result<()> {
        self.pad.sync()
    }
}

impl KeySource for FollowingPad {
    /// Take a lease, refusing one that shares a byte with anything taken
    /// before (or below the floor): the gateway never announces such a lease,
    /// so one is a fault or a forgery, and using it would be a two-time pad.
    fn take(&self, lease: Lease) -> io::Result<KeyBytes> {
        let admitted = self
            .used
            .lock()
            .map(|mut u| u.admit(lease))
            .unwrap_or(false);
        if !admitted {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("lease {lease} overlaps key material this pad already used: refusing it"),
            ));
        }
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
    use std::sync::Arc;

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

    fn hello_for(u: &Path, i: u32) -> [u8; HELLO_LEN] {
        let pad = PadFile::open(u).unwrap();
        crate::handshake::seal_hello(
            &pad.read_slot(i).unwrap(),
            crate::handshake::Hello {
                version: crate::handshake::PROTOCOL_VERSION,
            },
        )
    }

    fn claimed(c: SlotClaim) -> (Slot, Option<(Lease, Lease)>) {
        match c {
            SlotClaim::Claimed { slot, leases, .. } => (slot, leases),
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn gateway_state_survives_reopen_and_never_reallocates() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let hello1 = hello_for(&u, 1);
        let hello2 = hello_for(&u, 2);
        let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let (_, leases) = claimed(pad.claim_slot(2, &hello2).unwrap());
        let (up, down) = leases.unwrap();
        let third = pad.allocate().unwrap().unwrap();
        assert!(!up.overlaps(&down) && !down.overlaps(&third));
        drop(pad); // a crash: nothing but the durable state remains
        let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        assert_eq!(pad.next_slot(), 3, "slots 0..=2 are burned");
        assert!(
            matches!(
                pad.claim_slot(1, &hello1).unwrap(),
                SlotClaim::AlreadyBurned
            ),
            "a burned slot opens nothing"
        );
        let fourth = pad.allocate().unwrap().unwrap();
        assert!(fourth.offset >= third.end());
    }

    #[test]
    fn a_slot_is_claimed_once_and_a_bad_hello_burns_it() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let hello = hello_for(&u, 0);
        claimed(pad.claim_slot(0, &hello).unwrap());
        for _ in 0..3 {
            assert!(matches!(
                pad.claim_slot(0, &hello).unwrap(),
                SlotClaim::AlreadyBurned
            ));
        }
        let mut forged = hello_for(&u, 1);
        forged[20] ^= 1;
        assert!(matches!(
            pad.claim_slot(1, &forged).unwrap(),
            SlotClaim::BadHello
        ));
        // The genuine hello for that slot comes too late: its keys are gone.
        assert!(matches!(
            pad.claim_slot(1, &hello_for(&u, 1)).unwrap(),
            SlotClaim::AlreadyBurned
        ));
        assert!(pad.read_ticket(1).is_err(), "burned slots are erased");
    }

    /// Eight threads present the same genuine hello at the same instant:
    /// exactly one is handed the slot's keys.
    #[test]
    fn concurrent_identical_hellos_give_one_claim() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let pad = Arc::new(AllocatingPad::open(&g, 64 * 1024, None).unwrap());
        for (slot, threads) in [(0u32, 2usize), (1, 8)] {
            let hello = hello_for(&u, slot);
            let barrier = Arc::new(std::sync::Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (pad, barrier) = (pad.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        matches!(
                            pad.claim_slot(slot, &hello).unwrap(),
                            SlotClaim::Claimed { .. }
                        )
                    })
                })
                .collect();
            let claims = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&c| c)
                .count();
            assert_eq!(claims, 1, "{threads} threads on slot {slot}");
        }
    }

    #[test]
    fn agent_never_claims_a_slot_twice_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (_, u) = minted(dir.path());
        let a = FollowingPad::open(&u, None).unwrap();
        let (i0, s0) = a.claim_slot(1).unwrap();
        drop(a);
        let a = FollowingPad::open(&u, None).unwrap();
        // The unanswered hello survives the restart, to be sent again.
        let p = a.pending().unwrap();
        assert_eq!((p.slot, p.version, p.spoiled), (i0, 1, false));
        assert_eq!(a.pending_keys(p).unwrap().ticket(), s0.ticket());
        a.spoil_pending(i0).unwrap();
        drop(a);
        let a = FollowingPad::open(&u, None).unwrap();
        assert!(a.pending().unwrap().spoiled, "spoiled survives a restart");
        let (i1, s1) = a.claim_slot(1).unwrap();
        assert_eq!((i0, i1), (0, 1));
        assert_ne!(s0.ticket(), s1.ticket());
        assert_eq!(a.slots_left(), 6);
        assert_eq!(a.streak(), 1, "slot 0 was given up unanswered");
        assert!(
            PadFile::open(&u).unwrap().read_slot(0).is_err(),
            "a given-up slot is erased"
        );
        a.slot_answered(1).unwrap();
        assert!(a.pending().is_none());
        assert_eq!(a.streak(), 0, "a reply ends the streak");
    }

    #[test]
    fn a_second_agent_on_the_same_pad_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let _first = FollowingPad::open(&u, None).unwrap();
        let e = FollowingPad::open(&u, None).unwrap_err().to_string();
        assert!(e.contains("pad in use by another agent"), "{e}");
        let _gw = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let e = AllocatingPad::open(&g, 64 * 1024, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another gateway"), "{e}");
    }

    #[test]
    fn the_agent_refuses_leases_over_spent_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let (_, u) = minted(dir.path());
        let a = FollowingPad::open(&u, None).unwrap();
        let lease = |offset, len| Lease { offset, len };
        let (i, _) = a.claim_slot(1).unwrap();
        a.begin_tunnel(i, lease(0, 65536), lease(65536, 65536))
            .unwrap();
        a.take(lease(0, 65536)).unwrap();
        let e = a.take(lease(0, 65536)).unwrap_err().to_string();
        assert!(e.contains("already used"), "{e}");
        // A grant overlapping a lease in use is refused before any read.
        a.take(lease(131072, 65536)).unwrap();
        assert!(a.take(lease(131072 + 4096, 65536)).is_err());
        drop(a);
        // After a restart the floor holds: a new tunnel's leases lie above it.
        let a = FollowingPad::open(&u, None).unwrap();
        let (i, _) = a.claim_slot(1).unwrap();
        let e = a
            .begin_tunnel(i, lease(65536, 65536), lease(196608, 65536))
            .unwrap_err()
            .to_string();
        assert!(e.contains("below key material already spent"), "{e}");
        a.begin_tunnel(i, lease(262144, 65536), lease(327680, 65536))
            .unwrap();
        // What lay between the old floor and the new leases is erased,
        // though this side never took all of it (announced, then the tunnel died).
        assert!(PadFile::open(&u)
            .unwrap()
            .take(lease(196608, 4096))
            .is_err());
    }

    #[test]
    fn tickets_match_between_the_twins() {
        let dir = tempfile::tempdir().unwrap();
        let (g, u) = minted(dir.path());
        let gw = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
        let ag = FollowingPad::open(&u, None).unwrap();
        let (i, slot) = ag.claim_slot(1).unwrap();
        assert_eq!(gw.read_ticket(i).unwrap(), slot.ticket());
    }
}
