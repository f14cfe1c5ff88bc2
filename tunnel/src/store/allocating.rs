//! The gateway's twin of a pad: the one allocator of its leases, and the
//! judge of hellos (a slot is claimed at most once, durably, before any
//! reply is sealed with it). A twin of a split pad holds one share and
//! allocates slots and leases only inside it.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::{state_path, LeaseJournal, OpenError, PadStatus};
use crate::handshake::{open_hello, Slot, Ticket, HELLO_LEN};
use crate::lease::{Lease, LeaseAllocator, FIRST_LEASE};
use crate::pad::{PadFile, PadHeader, Share};
use crate::secret::KeyBytes;
use crate::state::{field_u64, DurableCell, Fields};
use crate::stream::KeySource;

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
    /// The key material this twin holds and allocates from.
    share: Share,
    lease_len: u64,
    journal: Option<LeaseJournal>,
}

impl std::fmt::Debug for AllocatingPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllocatingPad({})", self.pad.header().serial)
    }
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
        let share = pad.header().twin_share().ok_or_else(|| {
            OpenError::Pad(crate::pad::PadFileError::Header {
                path: pad_path.to_path_buf(),
                source: crate::pad::HeaderError::BadField {
                    field: "holds",
                    reason: "this is the user's copy of a split pad (every share): a gateway's twin holds one".into(),
                },
            })
        })?;
        // A fresh twin's marks are zero: they start at its share.
        let next_slot = u32::try_from(field_u64(&payload, 0))
            .unwrap_or(u32::MAX)
            .max(share.slots.start);
        let hwm = field_u64(&payload, 1).max(share.data.start);
        if hwm > share.data.end {
            return Err(OpenError::State {
                path: sp,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "high-water mark {hwm} is past the twin's key material ({})",
                        share.data.end
                    ),
                ),
            });
        }
        let state = GatewayState {
            cell,
            next_slot,
            alloc: LeaseAllocator {
                hwm,
                data_size: share.data.end,
            },
            status: PadStatus::from_u64(field_u64(&payload, 2)),
        };
        Ok(AllocatingPad {
            pad,
            next_slot_seen: AtomicU32::new(state.next_slot),
            state: Mutex::new(state),
            share,
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

    /// The ticket slots and key material this twin serves.
    pub fn share(&self) -> &Share {
        &self.share
    }

    /// Ticket slots not used yet.
    pub fn tickets_left(&self) -> u32 {
        self.share.slots.end.saturating_sub(self.next_slot())
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
        if i < st.next_slot || i >= self.share.slots.end {
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
                alloc.allocate(FIRST_LEASE.min(self.lease_len)),
                alloc.allocate(FIRST_LEASE.min(self.lease_len)),
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

    fn allocate(&self, want: u64) -> io::Result<Option<Lease>> {
        let mut st = self.lock();
        let mut alloc = st.alloc;
        let Some(lease) = alloc.allocate(want.min(self.lease_len)) else {
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
