//! The agent's pad: follows the leases the gateway gives it (and only those
//! disjoint from everything it used), resends an unanswered hello from its
//! pending slot, and keeps its marks durable before each use.

use std::io;
use std::path::Path;
use std::sync::Mutex;

use super::{state_path, LeaseJournal, OpenError};
use crate::handshake::Slot;
use crate::lease::{Lease, UsedRanges};
use crate::pad::{PadFile, PadHeader};
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
    ///
    /// Slots already erased in the file (used by another copy of the pad,
    /// on another device, or before a `.state` was lost) are skipped: their
    /// tickets are gone, and a hello on them could never be answered.
    pub fn claim_slot(&self, version: u8) -> io::Result<(u32, Slot)> {
        let mut st = self.lock();
        let mut i = st.next_slot;
        while i < self.pad.header().ticket_slots {
            match self.pad.read_ticket(i) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => i += 1,
                Err(e) => return Err(e),
            }
        }
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
