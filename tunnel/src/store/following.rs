//! The agent's pad: follows the leases the gateway gives it (and only those
//! disjoint from everything it used), resends an unanswered hello from its
//! pending slot, and keeps its marks durable before each use. A split pad
//! keeps marks per share: gateway `k` is spoken to with share `k` only.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{state_path, LeaseJournal, OpenError};
use crate::handshake::Slot;
use crate::lease::{Lease, UsedRanges};
use crate::pad::{PadFile, PadHeader, Share};
use crate::secret::KeyBytes;
use crate::state::{field_u64, DurableCell, Fields};
use crate::stream::KeySource;

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

/// The agent's durable marks in one share: the next unused ticket slot, the
/// floor below which every data byte of the share is spent, the slot whose hello is out unanswered
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
    /// One per share (one for a pad that is not split).
    shares: Vec<ShareMarks>,
    used: Mutex<UsedRanges>,
    journal: Option<LeaseJournal>,
}

/// A share and the agent's marks in it.
struct ShareMarks {
    share: Share,
    state: Mutex<AgentState>,
}

/// The state file of share `k`: `FILE.state` for the first (the only one
/// of a pad that is not split), `FILE.state.K` for the others.
pub fn share_state_path(pad_path: &Path, k: usize) -> PathBuf {
    let p = state_path(pad_path);
    match k {
        0 => p,
        k => {
            let mut s = p.into_os_string();
            s.push(format!(".{k}"));
            PathBuf::from(s)
        }
    }
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
        if pad.header().holds.is_some() {
            return Err(OpenError::Pad(crate::pad::PadFileError::Header {
                path: pad_path.to_path_buf(),
                source: crate::pad::HeaderError::BadField {
                    field: "holds",
                    reason:
                        "this is a gateway's twin (one share of a split pad), not the user's pad"
                            .into(),
                },
            }));
        }
        let mut shares = Vec::new();
        let mut used = UsedRanges::default();
        for k in 0..pad.header().share_count() {
            let share = pad.header().share(k).expect("k < share_count");
            let sp = share_state_path(pad_path, k);
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
            // A fresh share's marks are zero: they start at the share.
            let next_slot = u32::try_from(field_u64(&payload, 0))
                .unwrap_or(u32::MAX)
                .max(share.slots.start);
            let floor = field_u64(&payload, 1).clamp(share.data.start, share.data.end);
            used.admit(Lease {
                offset: share.data.start,
                len: floor - share.data.start,
            });
            shares.push(ShareMarks {
                state: Mutex::new(AgentState {
                    cell,
                    next_slot,
                    floor,
                    pending: Pending::decode(field_u64(&payload, 2), next_slot),
                    streak: u32::try_from(field_u64(&payload, 3)).unwrap_or(u32::MAX),
                }),
                share,
            });
        }
        Ok(FollowingPad {
            pad,
            shares,
            used: Mutex::new(used),
            journal,
        })
    }

    pub fn header(&self) -> &PadHeader {
        self.pad.header()
    }

    /// The marks of share `k`; a share the pad does not have is an error
    /// (the caller's mapping of gateways to shares is wrong).
    fn marks(&self, k: usize) -> io::Result<&ShareMarks> {
        self.shares.get(k).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the pad has no share {k}"),
            )
        })
    }

    fn lock(&self, k: usize) -> io::Result<(std::sync::MutexGuard<'_, AgentState>, &Share)> {
        let m = self.marks(k)?;
        Ok((m.state.lock().unwrap_or_else(|p| p.into_inner()), &m.share))
    }

    /// How many shares the pad has (1 when it is not split).
    pub fn share_count(&self) -> usize {
        self.shares.len()
    }

    /// Ticket slots not yet used, in every share (the pending ones count as used).
    pub fn slots_left(&self) -> u32 {
        (0..self.shares.len()).map(|k| self.slots_left_in(k)).sum()
    }

    /// Ticket slots of share `k` not yet used.
    pub fn slots_left_in(&self, k: usize) -> u32 {
        self.lock(k)
            .map(|(st, share)| share.slots.end.saturating_sub(st.next_slot))
            .unwrap_or(0)
    }

    /// Key bytes this copy has not used (in every share): below each
    /// share's floor or in a lease taken counts as used.
    pub fn key_left(&self) -> u64 {
        let used = self.used.lock().map(|u| u.total()).unwrap_or(0);
        self.pad.header().data_size.saturating_sub(used)
    }

    /// Slots of share `k` given up unanswered in a row since the last reply.
    pub fn streak(&self, k: usize) -> u32 {
        self.lock(k).map(|(st, _)| st.streak).unwrap_or(0)
    }

    /// The hello sent in share `k` and not answered, if any.
    pub fn pending(&self, k: usize) -> Option<Pending> {
        self.lock(k).ok().and_then(|(st, _)| st.pending)
    }

    /// The keys of the pending slot, to send the same hello again: a hello
    /// the network swallowed costs no new slot.
    pub fn pending_keys(&self, p: Pending) -> io::Result<Slot> {
        self.pad.read_slot(p.slot)
    }

    /// Give up on the pending hello (if any; it is erased, and counts in
    /// the streak) and take the next ticket slot: durably mark it used and
    /// pending with `version`, then read it. A slot is never claimed twice.
    ///
    /// Slots already erased in the file (used by another copy of the pad,
    /// on another device, or before a `.state` was lost) are skipped: their
    /// tickets are gone, and a hello on them could never be answered.
    pub fn claim_slot(&self, k: usize, version: u8) -> io::Result<(u32, Slot)> {
        let (mut st, share) = self.lock(k)?;
        let mut i = st.next_slot;
        while i < share.slots.end {
            match self.pad.read_ticket(i) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => i += 1,
                Err(e) => return Err(e),
            }
        }
        if i >= share.slots.end {
            return Err(io::Error::other(match self.shares.len() {
                1 => "every ticket slot of this pad is used: the pad cannot open more tunnels"
                    .to_string(),
                _ => format!(
                    "every ticket slot of this pad's share {k} is used: its gateway cannot open more tunnels"
                ),
            }));
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
    pub fn spoil_pending(&self, k: usize, i: u32) -> io::Result<()> {
        let (mut st, _) = self.lock(k)?;
        match &mut st.pending {
            Some(p) if p.slot == i && !p.spoiled => p.spoiled = true,
            _ => return Ok(()),
        }
        st.store()
    }

    /// The gateway answered the hello on slot `i` (authentically) without
    /// opening a tunnel: the slot is done with, and the streak ends.
    pub fn slot_answered(&self, k: usize, i: u32) -> io::Result<()> {
        self.answered(self.lock(k)?.0, i)
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

    /// The gateway of share `k` opened a tunnel on slot `i` with these first
    /// leases. Both must lie in the share, above its durable floor
    /// (everything below it is spent);
    /// whatever lies between the floor and them (leases of earlier tunnels,
    /// some announced but never taken) is erased, and the floor moves above
    /// them, durably, before either is used.
    pub fn begin_tunnel(&self, k: usize, i: u32, up: Lease, down: Lease) -> io::Result<()> {
        let (mut st, share) = self.lock(k)?;
        let floor = st.floor;
        for l in [up, down] {
            if l.offset < floor || l.end() > share.data.end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the gateway offered lease {l}, below key material already spent \
                         (up to {floor}) or past its share (ending at {}): refusing it",
                        share.data.end
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

    /// The key source of a tunnel to share `k`'s gateway: it takes only
    /// leases inside that share (a gateway can announce no other share's
    /// bytes, which another gateway allocates).
    pub fn share_source(self: &Arc<Self>, k: usize) -> io::Result<Arc<dyn KeySource>> {
        let data = self.marks(k)?.share.data.clone();
        Ok(Arc::new(ShareSource {
            pad: self.clone(),
            data,
        }))
    }
}

/// A tunnel's view of the agent's pad: leases inside one share only.
struct ShareSource {
    pad: Arc<FollowingPad>,
    data: std::ops::Range<u64>,
}

impl KeySource for ShareSource {
    fn take(&self, lease: Lease) -> io::Result<KeyBytes> {
        if lease.offset < self.data.start || lease.end() > self.data.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "lease {lease} lies outside this gateway's share ({:?}): refusing it",
                    self.data
                ),
            ));
        }
        self.pad.take(lease)
    }

    fn allocate(&self, want: u64) -> io::Result<Option<Lease>> {
        self.pad.allocate(want)
    }

    fn note_use(&self, lease: Lease) {
        self.pad.note_use(lease)
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

    fn allocate(&self, _want: u64) -> io::Result<Option<Lease>> {
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
