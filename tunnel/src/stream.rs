//! `OtpStream`: a byte stream of authenticated, OTP-encrypted records over any
//! `AsyncRead + AsyncWrite`, exactly as a TLS stream wraps TCP. It also runs
//! the lease protocol: the allocating side (gateway) grants upstream leases and
//! announces downstream ones; the following side (agent) takes what it is given.
//! This is the only async file of the crate; the record format is in `record`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::lease::Lease;
use crate::record::{self, LeaseKeys, Opener, RecordType, KEY_OVERHEAD, MAX_PAYLOAD};
use crate::secret::KeyBytes;

/// Room kept free at the end of a lease until the next lease is announced,
/// so control records (LEASE_NEXT, CLOSE, NOTICE) always fit.
const CONTROL_RESERVE: usize = 256;
/// Key bytes a LEASE_NEXT record takes (a 16-byte lease).
const LEASE_NEXT_RECORD: usize = KEY_OVERHEAD + 16;
/// Key bytes a CLOSE record takes (a one-byte reason).
const CLOSE_RECORD: usize = KEY_OVERHEAD + 1;
/// Sealed bytes held before poll_write pushes back.
const OUT_HIGH: usize = 256 * 1024;
/// Sealed bytes gathered before writing to the socket without a flush.
const OUT_BATCH: usize = 64 * 1024;
/// Read size from the socket.
const READ_CHUNK: usize = 64 * 1024;
/// Decrypted bytes the write side may buffer for the reader while it waits
/// for a lease grant.
const PLAIN_IN_CAP: usize = 1024 * 1024;

/// Where a tunnel's key material comes from (one pad).
pub trait KeySource: Send + Sync + 'static {
    /// Read a lease's key bytes into memory and erase them on disk.
    fn take(&self, lease: Lease) -> io::Result<KeyBytes>;
    /// Allocate a fresh lease, durably, before returning it (allocating side
    /// only). `Ok(None)`: the key material is used up.
    fn allocate(&self) -> io::Result<Option<Lease>>;
    /// Called for every lease this side starts using (for audits and tests).
    fn note_use(&self, _lease: Lease) {}
}

/// Which end of the lease protocol this stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gateway: allocates leases for both directions.
    Allocator,
    /// The agent: uses the leases the gateway gives it.
    Follower,
}

/// Why a tunnel ended, as carried by a CLOSE record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum CloseReason {
    None = 0,
    Shutdown = 1,
    KeyExhausted = 2,
    ValueExhausted = 3,
    Cancelled = 4,
    Policy = 5,
}

impl CloseReason {
    pub fn from_u8(b: u8) -> CloseReason {
        match b {
            1 => CloseReason::Shutdown,
            2 => CloseReason::KeyExhausted,
            3 => CloseReason::ValueExhausted,
            4 => CloseReason::Cancelled,
            5 => CloseReason::Policy,
            _ => CloseReason::None,
        }
    }
}

/// Counters a stream keeps, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Pad bytes consumed by records sent / received.
    pub pad_sent: AtomicU64,
    pub pad_recv: AtomicU64,
    /// Plaintext bytes carried in DATA records sent / received.
    pub payload_sent: AtomicU64,
    pub payload_recv: AtomicU64,
    /// Pad bytes left unused at the ends of finished leases.
    pub pad_wasted: AtomicU64,
    /// Highest lease end seen: key bytes below it are spent.
    pub lease_hwm: AtomicU64,
    /// The peer's CLOSE reason, if any.
    pub close_reason: AtomicU8,
    /// The last balance the gateway reported (micro-units).
    pub balance: AtomicI64,
    /// A NOTICE waiting to be sent (allocating side): balance and key bytes left.
    notice_pending: AtomicBool,
    notice_balance: AtomicI64,
    notice_key_left: AtomicU64,
    /// The ledger's currency (three ASCII letters, packed; 0 = not told):
    /// the gateway sets it, NOTICE records carry it, the agent keeps it.
    pub currency: AtomicU32,
}

/// Pack a three-letter currency code ("EUR") for [`StreamStats::currency`].
pub fn pack_currency(code: &str) -> u32 {
    match code.as_bytes() {
        [a, b, c] if code.bytes().all(|x| x.is_ascii_uppercase()) => {
            u32::from_be_bytes([0, *a, *b, *c])
        }
        _ => 0,
    }
}

/// The code packed by [`pack_currency`], if any.
pub fn unpack_currency(v: u32) -> Option<String> {
    let [_, a, b, c] = v.to_be_bytes();
    let code = [a, b, c];
    code.iter()
        .all(|x| x.is_ascii_uppercase())
        .then(|| String::from_utf8_lossy(&code).into_owned())
}

/// Lets code outside the stream (the gateway's meter, after a settlement)
/// have a NOTICE sent on it: the latest balance wins, and the stream is woken
/// so it goes out even while no data flows.
#[derive(Clone)]
pub struct Notifier {
    stats: Arc<StreamStats>,
    wakers: Arc<BothWakers>,
}

impl Notifier {
    /// Set the currency every NOTICE on this stream names.
    pub fn set_currency(&self, code: &str) {
        self.stats
            .currency
            .store(pack_currency(code), Ordering::Relaxed);
    }

    pub fn post(&self, balance: i64, key_left: u64) {
        self.stats.notice_balance.store(balance, Ordering::Relaxed);
        self.stats
            .notice_key_left
            .store(key_left, Ordering::Relaxed);
        self.stats.notice_pending.store(true, Ordering::Release);
        BothWakers::wake(&self.wakers.read);
        BothWakers::wake(&self.wakers.write);
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl StreamStats {
    fn saw_lease(&self, l: Lease) {
        self.lease_hwm.fetch_max(l.end(), Ordering::Relaxed);
    }
}

/// A lease on its way into memory.
enum Loading {
    Ready(LeaseKeys),
    Pending(Lease, JoinHandle<io::Result<KeyBytes>>),
    /// Loading failed; every later poll reports it again (a finished
    /// JoinHandle must not be polled twice).
    Failed(io::ErrorKind, String),
}

impl Loading {
    fn start(source: &Arc<dyn KeySource>, lease: Lease) -> Loading {
        let s = source.clone();
        Loading::Pending(lease, tokio::task::spawn_blocking(move || s.take(lease)))
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Loading::Ready(_) => {}
            Loading::Pending(lease, handle) => {
                let lease = *lease;
                match ready!(Pin::new(handle).poll(cx)).map_err(io::Error::other) {
                    Ok(Ok(bytes)) => *self = Loading::Ready(LeaseKeys::new(lease, bytes)),
                    Ok(Err(e)) | Err(e) => {
                        *self = Loading::Failed(e.kind(), e.to_string());
                        return Poll::Ready(Err(e));
                    }
                }
            }
            Loading::Failed(kind, msg) => {
                return Poll::Ready(Err(io::Error::new(*kind, msg.clone())))
            }
        }
        Poll::Ready(Ok(()))
    }
}

type Allocation = JoinHandle<io::Result<Option<LeaseKeys>>>;

/// The wakers of whoever drives the read and the write side. Background work
/// (allocations, lease loads, socket readiness seen from the other side) wakes
/// both, so the stream makes progress however its halves are driven — one
/// task (as hyper's h2 does) or two (`tokio::io::split`).
#[derive(Default)]
struct BothWakers {
    read: std::sync::Mutex<Option<Waker>>,
    write: std::sync::Mutex<Option<Waker>>,
}

impl BothWakers {
    fn set(slot: &std::sync::Mutex<Option<Waker>>, w: &Waker) {
        if let Ok(mut g) = slot.lock() {
            if !g.as_ref().is_some_and(|old| old.will_wake(w)) {
                *g = Some(w.clone());
            }
        }
    }
    fn wake(slot: &std::sync::Mutex<Option<Waker>>) {
        if let Some(w) = slot.lock().ok().and_then(|g| g.clone()) {
            w.wake();
        }
    }
}

impl std::task::Wake for BothWakers {
    fn wake(self: Arc<Self>) {
        let read = self.read.lock().ok().and_then(|g| g.clone());
        let write = self.write.lock().ok().and_then(|g| g.clone());
        match (read, write) {
            // One task drives both halves (hyper's h2): wake it once.
            (Some(r), Some(w)) if r.will_wake(&w) => r.wake(),
            (r, w) => {
                r.into_iter().chain(w).for_each(Waker::wake);
            }
        }
    }
}

/// What writing to a closing tunnel gets.
fn closing_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "tunnel is closing: nothing more can be sent",
    )
}

fn start_allocation(source: &Arc<dyn KeySource>) -> Allocation {
    let s = source.clone();
    tokio::task::spawn_blocking(move || match s.allocate()? {
        None => Ok(None),
        Some(lease) => Ok(Some(LeaseKeys::new(lease, s.take(lease)?))),
    })
}

use std::future::Future;

/// The tunnel's record stream. Plaintext written is sealed into records of up
/// to 16 KiB (a flush seals a partial one); records read are authenticated
/// before a byte of them is returned.
pub struct OtpStream<T> {
    io: T,
    role: Role,
    source: Arc<dyn KeySource>,
    stats: Arc<StreamStats>,

    // Sending.
    send: LeaseKeys,
    send_next: VecDeque<Loading>,
    plain_out: BytesMut,
    control: VecDeque<(RecordType, Vec<u8>, Option<LeaseKeys>)>,
    out: BytesMut,
    close_queued: bool,
    /// A control record is sealed but not yet written to the socket.
    control_unsent: bool,
    next_send_alloc: Option<Allocation>,

    // Receiving.
    recv: LeaseKeys,
    recv_next: VecDeque<Loading>,
    opener: Opener,
    inbuf: BytesMut,
    plain_in: VecDeque<BytesMut>,
    plain_in_len: usize,
    peer_closed: bool,
    grant_alloc: Option<Allocation>,

    failed: Option<String>,
    wakers: Arc<BothWakers>,
    both: Waker,
}

impl<T> std::fmt::Debug for OtpStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpStream")
            .field("role", &self.role)
            .field("send", &self.send)
            .field("recv", &self.recv)
            .finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> OtpStream<T> {
    /// Wrap `io`, given the first lease of each direction (already taken
    /// into memory) from the handshake.
    pub fn new(
        io: T,
        role: Role,
        source: Arc<dyn KeySource>,
        send: LeaseKeys,
        recv: LeaseKeys,
    ) -> OtpStream<T> {
        let stats = Arc::new(StreamStats::default());
        let wakers = Arc::new(BothWakers::default());
        stats.saw_lease(send.lease());
        stats.saw_lease(recv.lease());
        source.note_use(send.lease());
        source.note_use(recv.lease());
        OtpStream {
            io,
            role,
            source,
            stats,
            send,
            send_next: VecDeque::new(),
            plain_out: BytesMut::with_capacity(MAX_PAYLOAD),
            control: VecDeque::new(),
            out: BytesMut::with_capacity(OUT_HIGH),
            close_queued: false,
            control_unsent: false,
            next_send_alloc: None,
            recv,
            recv_next: VecDeque::new(),
            opener: Opener::default(),
            inbuf: BytesMut::with_capacity(READ_CHUNK * 2),
            plain_in: VecDeque::new(),
            plain_in_len: 0,
            peer_closed: false,
            grant_alloc: None,
            failed: None,
            wakers: wakers.clone(),
            both: Waker::from(wakers),
        }
    }

    pub fn stats(&self) -> Arc<StreamStats> {
        self.stats.clone()
    }

    /// A handle for sending NOTICE records from outside the stream.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            stats: self.stats.clone(),
            wakers: self.wakers.clone(),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Queue a CLOSE record with `reason`; it is sent on the next flush.
    pub fn queue_close(&mut self, reason: CloseReason) {
        if !self.close_queued {
            self.close_queued = true;
            self.control
                .push_back((RecordType::Close, vec![reason as u8], None));
        }
    }

    /// Queue a NOTICE (balance in micro-units, key bytes left).
    pub fn queue_notice(&mut self, balance: i64, key_left: u64) {
        let mut p = balance.to_be_bytes().to_vec();
        p.extend_from_slice(&key_left.to_be_bytes());
        let currency = self.stats.currency.load(Ordering::Relaxed);
        if currency != 0 {
            p.extend_from_slice(&currency.to_be_bytes()[1..]);
        }
        self.control.push_back((RecordType::Notice, p, None));
    }

    fn fail(&mut self, msg: String) -> io::Error {
        tracing::warn!(role = ?self.role, "tunnel closed: {msg}");
        self.failed = Some(msg.clone());
        // Whichever half did not see it may be waiting: let it see it.
        self.both.wake_by_ref();
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some(m) => Err(io::Error::new(io::ErrorKind::InvalidData, m.clone())),
            None => Ok(()),
        }
    }

    fn wake_reader(&mut self) {
        BothWakers::wake(&self.wakers.read);
    }

    fn wake_writer(&mut self) {
        BothWakers::wake(&self.wakers.write);
    }

    // === lease upkeep ===

    /// Start and finish allocations (allocating side), seal queued control
    /// records, and push sealed bytes towards the socket.
    fn maintain(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        let both = self.both.clone();
        let cx = &mut Context::from_waker(&both);
        // A NOTICE may never eat the reserve the next LEASE_NEXT needs:
        // without that record the lease cannot be switched, and the stream
        // would wait forever. It waits for room (or the next lease) instead.
        let notice_fits = !self.send_next.is_empty()
            || self.send.remaining() >= 2 * KEY_OVERHEAD + 16 + CONTROL_RESERVE;
        if self.role == Role::Allocator
            && notice_fits
            && !self.close_queued
            && self.control.is_empty()
            && self.stats.notice_pending.swap(false, Ordering::Acquire)
        {
            let balance = self.stats.notice_balance.load(Ordering::Relaxed);
            let key_left = self.stats.notice_key_left.load(Ordering::Relaxed);
            self.queue_notice(balance, key_left);
        }
        if self.role == Role::Allocator && !self.close_queued {
            // Our own next downstream lease, once half of the current one is used.
            if self.send_next.is_empty()
                && self.next_send_alloc.is_none()
                && !self.control.iter().any(|c| c.0 == RecordType::LeaseNext)
                && self.send.used() * 2 >= self.send.lease().len as usize
            {
                self.next_send_alloc = Some(start_allocation(&self.source));
            }
            // The peer's next upstream lease, once half of its current one is used.
            if self.recv_next.is_empty()
                && self.grant_alloc.is_none()
                && self.recv.used() * 2 >= self.recv.lease().len as usize
            {
                self.grant_alloc = Some(start_allocation(&self.source));
            }
        }
        if let Some(h) = &mut self.next_send_alloc {
            if let Poll::Ready(r) = Pin::new(h).poll(cx) {
                self.next_send_alloc = None;
                match r.map_err(io::Error::other)?? {
                    // Closing: the lease is not announced, only wasted.
                    Some(keys) if self.close_queued => self.wasted_at_close(keys.lease()),
                    Some(keys) => {
                        self.source.note_use(keys.lease());
                        self.stats.saw_lease(keys.lease());
                        self.control.push_back((
                            RecordType::LeaseNext,
                            keys.lease().encode().to_vec(),
                            Some(keys),
                        ));
                    }
                    None => self.key_exhausted(),
                }
            }
        }
        if let Some(h) = &mut self.grant_alloc {
            if let Poll::Ready(r) = Pin::new(h).poll(cx) {
                self.grant_alloc = None;
                match r.map_err(io::Error::other)?? {
                    Some(keys) if self.close_queued => self.wasted_at_close(keys.lease()),
                    Some(keys) => {
                        self.source.note_use(keys.lease());
                        self.stats.saw_lease(keys.lease());
                        self.control.push_back((
                            RecordType::LeaseGrant,
                            keys.lease().encode().to_vec(),
                            None,
                        ));
                        self.recv_next.push_back(Loading::Ready(keys));
                    }
                    None => self.key_exhausted(),
                }
            }
        }
        let (next_before, out_before, control_before) =
            (self.send_next.len(), self.out.len(), self.control.len());
        self.seal_controls()?;
        // Control records go out at once (nobody may flush for a while); data
        // waits for a batch or a flush, so the socket sees large writes.
        self.control_unsent |= self.control.len() < control_before;
        if self.control_unsent || self.out.len() >= OUT_BATCH {
            match self.poll_drain(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => {}
            }
        }
        // When two tasks drive the halves (tokio::io::split), the other half may
        // be waiting on what this call just did: a new lease, room in `out`.
        if self.send_next.len() > next_before || self.out.len() < out_before {
            self.wake_writer();
        }
        Ok(())
    }

    /// A lease allocated but never announced because the tunnel is closing:
    /// its bytes are spent (erased, journalled) like any other lease's.
    fn wasted_at_close(&mut self, lease: Lease) {
        self.source.note_use(lease);
        self.stats.saw_lease(lease);
        self.stats
            .pad_wasted
            .fetch_add(lease.len, Ordering::Relaxed);
    }

    fn key_exhausted(&mut self) {
        self.queue_close(CloseReason::KeyExhausted);
    }

    /// Make `self.send` a lease with room for a record, switching to the
    /// next announced lease when the current one is finished.
    fn poll_send_keys(&mut self) -> Poll<io::Result<()>> {
        while self.send.is_done() {
            let Some(next) = self.send_next.front_mut() else {
                return Poll::Pending;
            };
            ready!(next.poll_ready(&mut Context::from_waker(&self.both)))?;
            let Some(Loading::Ready(keys)) = self.send_next.pop_front() else {
                unreachable!("front was made ready above")
            };
            self.stats
                .pad_wasted
                .fetch_add(self.send.remaining() as u64, Ordering::Relaxed);
            self.send = keys;
        }
        Poll::Ready(Ok(()))
    }

    fn seal_one(
        &mut self,
        kind: RecordType,
        payload_len: usize,
        from_plain: bool,
        payload: &[u8],
    ) -> io::Result<()> {
        let res = if from_plain {
            let r = record::seal(
                kind,
                &self.plain_out[..payload_len],
                &mut self.send,
                &mut self.out,
            );
            self.plain_out.advance(payload_len);
            r
        } else {
            record::seal(kind, payload, &mut self.send, &mut self.out)
        };
        res.map_err(|e| self.fail(format!("sealing failed: {e}")))?;
        self.stats
            .pad_sent
            .fetch_add((KEY_OVERHEAD + payload_len) as u64, Ordering::Relaxed);
        if kind == RecordType::Data {
            self.stats
                .payload_sent
                .fetch_add(payload_len as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Seal queued control records. LEASE_NEXT goes first, and while no next
    /// lease is announced every other record leaves room for it: without it
    /// the lease cannot be switched and the stream would wait for ever (a
    /// run of LEASE_GRANTs once ate that room while an allocation was slow).
    /// Once a CLOSE is queued only it matters: the others leave room for it,
    /// and those that no longer fit are dropped rather than waited for.
    fn seal_controls(&mut self) -> io::Result<()> {
        while !self.control.is_empty() {
            let at = self
                .control
                .iter()
                .position(|c| c.0 == RecordType::LeaseNext)
                .unwrap_or(0);
            let (kind, payload, _) = &self.control[at];
            let (kind, need) = (*kind, KEY_OVERHEAD + payload.len());
            let keep = if !self.send_next.is_empty()
                || kind == RecordType::LeaseNext
                || kind == RecordType::Close
            {
                0
            } else if self.close_queued {
                CLOSE_RECORD
            } else {
                LEASE_NEXT_RECORD
            };
            if self.send.remaining() < need + keep {
                if !self.send_next.is_empty() {
                    if !self.send.is_done() {
                        // Fill the sliver with an empty DATA record so the lease is finished.
                        self.seal_one(RecordType::Data, 0, false, &[])?;
                    }
                    match self.poll_send_keys() {
                        Poll::Ready(r) => r?,
                        Poll::Pending => return Ok(()),
                    }
                    continue;
                }
                if self.close_queued && kind != RecordType::Close {
                    // The tunnel is closing: nothing but its CLOSE is waited for.
                    self.control.remove(at);
                    continue;
                }
                if kind == RecordType::Close || kind == RecordType::LeaseNext {
                    // Data keeps CONTROL_RESERVE and other records keep room
                    // for these two, so this cannot happen.
                    return Err(
                        self.fail(format!("no room left in the lease for a {kind:?} record"))
                    );
                }
                // Wait for LEASE_NEXT (its allocation is under way).
                return Ok(());
            }
            let (kind, payload, next) = self.control.remove(at).expect("index is in range");
            self.seal_one(kind, payload.len(), false, &payload)?;
            if let Some(keys) = next {
                self.send_next.push_back(Loading::Ready(keys));
            }
        }
        Ok(())
    }

    /// Seal buffered plaintext. With `all`, seal a partial record too (flush).
    fn poll_seal_plain(&mut self, cx: &mut Context<'_>, all: bool) -> Poll<io::Result<()>> {
        while self.plain_out.len() == MAX_PAYLOAD || (all && !self.plain_out.is_empty()) {
            if self.close_queued {
                // Nothing is sealed after the CLOSE.
                return Poll::Ready(Err(closing_error()));
            }
            self.seal_controls()?;
            match self.poll_send_keys() {
                Poll::Ready(r) => r?,
                // The next lease is loading; its end wakes both halves.
                Poll::Pending if !self.send_next.is_empty() => return Poll::Pending,
                Poll::Pending => {
                    ready!(self.poll_wait_for_lease(cx))?;
                    continue;
                }
            }
            let reserve = if self.send_next.is_empty() {
                CONTROL_RESERVE
            } else {
                0
            };
            let room = self.send.remaining().saturating_sub(KEY_OVERHEAD + reserve);
            if room == 0 {
                ready!(self.poll_wait_for_lease(cx))?;
                continue;
            }
            let n = room.min(self.plain_out.len());
            self.seal_one(RecordType::Data, n, true, &[])?;
            if self.out.len() >= OUT_BATCH {
                if let Poll::Ready(r) = self.poll_drain(cx) {
                    r?;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The send side needs its next lease. The allocator waits on its own
    /// allocation (polled in `maintain`); the follower reads from the socket,
    /// since the grant arrives there.
    fn poll_wait_for_lease(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.close_queued {
            return Poll::Ready(Err(closing_error()));
        }
        self.maintain(cx)?;
        if !self.send_next.is_empty() {
            return Poll::Ready(Ok(()));
        }
        // The peer grants our next lease only after it has read half of this
        // one: everything sealed must reach it before we wait.
        if !self.out.is_empty() {
            let both = self.both.clone();
            if let Poll::Ready(r) = self.poll_drain(&mut Context::from_waker(&both)) {
                r?;
            }
        }
        if self.role == Role::Follower {
            let before = self.plain_in_len;
            let r = self.poll_fill(true);
            if self.plain_in_len > before {
                self.wake_reader();
            }
            if self.peer_closed {
                // The peer's CLOSE came in here: send the answer now, since
                // the writer about to fail may be the last to poll us.
                let _ = self.maintain(cx);
            }
            match r {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "tunnel ended while waiting for a lease grant",
                    )))
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if !self.send_next.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        // The allocator's allocation task will wake us through `maintain`.
        if self.role == Role::Allocator
            && self.next_send_alloc.is_none()
            && self.send_next.is_empty()
            && self.control.is_empty()
        {
            // Nothing in flight: start one now.
            if !self.close_queued {
                self.next_send_alloc = Some(start_allocation(&self.source));
                self.maintain(cx)?;
                if !self.send_next.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            if self.close_queued {
                return Poll::Ready(Err(closing_error()));
            }
        }
        Poll::Pending
    }

    /// Write sealed bytes to the socket until none are left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        self.control_unsent = false;
        Poll::Ready(Ok(()))
    }

    // === receiving ===

    /// Read and open records into `plain_in` until some plaintext is there,
    /// the peer closed, or the cap is reached. Ready(Ok(false)) at end of stream.
    /// With `for_grant`, keep reading until a lease grant has arrived (or the
    /// plaintext cap is reached) rather than until some plaintext is there.
    fn poll_fill(&mut self, for_grant: bool) -> Poll<io::Result<bool>> {
        loop {
            let enough = if for_grant {
                !self.send_next.is_empty() || self.plain_in_len >= PLAIN_IN_CAP
            } else {
                self.plain_in_len > 0
            };
            if enough {
                // Open the whole records already read, too: a LEASE_GRANT
                // behind this plaintext must not wait for a reader that may
                // never come back (two tasks driving the halves), while the
                // writer it unblocks waits on a socket that has gone quiet.
                // A failure there is reported once the authenticated
                // plaintext before it has been read.
                while self.plain_in_len < PLAIN_IN_CAP {
                    match self.poll_open_one() {
                        Poll::Ready(Ok(true)) => {}
                        Poll::Ready(Ok(false)) | Poll::Pending => break,
                        Poll::Ready(Err(e)) => {
                            if self.failed.is_none() {
                                self.fail(e.to_string());
                            }
                            break;
                        }
                    }
                }
                return Poll::Ready(Ok(true));
            }
            if self.peer_closed {
                return Poll::Ready(Ok(false));
            }
            if ready!(self.poll_open_one())? {
                continue;
            }
            // Need bytes from the socket. Readiness is registered with the
            // waker of both halves: a socket keeps one read waker, and the
            // writer waiting for a grant must hear of new bytes even when
            // the reader was the last to poll.
            self.inbuf.reserve(READ_CHUNK);
            let both = self.both.clone();
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                &mut Context::from_waker(&both),
                &mut self.inbuf
            ))?;
            if n == 0 {
                if self.inbuf.is_empty() && !self.opener.mid_record() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tunnel ended without a CLOSE record",
                    )));
                }
                return Poll::Ready(Err(
                    self.fail("tunnel ended in the middle of a record".into())
                ));
            }
        }
    }

    /// Open one record from `inbuf` if a whole one is there. Ready(true) if a
    /// record was processed.
    fn poll_open_one(&mut self) -> Poll<io::Result<bool>> {
        if self.inbuf.is_empty() {
            return Poll::Ready(Ok(false));
        }
        if self.peer_closed {
            // A CLOSE is the peer's last record: anything after it is not the peer's.
            return Poll::Ready(Err(self.fail("bytes after the peer's CLOSE record".into())));
        }
        while self.recv.is_done() && !self.opener.mid_record() {
            let Some(next) = self.recv_next.front_mut() else {
                return Poll::Ready(Err(
                    self.fail("peer moved past its lease without an announced next lease".into())
                ));
            };
            ready!(next.poll_ready(&mut Context::from_waker(&self.both)))?;
            let Some(Loading::Ready(keys)) = self.recv_next.pop_front() else {
                unreachable!("front was made ready above")
            };
            self.stats
                .pad_wasted
                .fetch_add(self.recv.remaining() as u64, Ordering::Relaxed);
            self.recv = keys;
        }
        let (kind, payload) = match self.opener.open(&mut self.inbuf, &mut self.recv) {
            Ok(Some(r)) => r,
            Ok(None) => return Poll::Ready(Ok(false)),
            Err(e) => return Poll::Ready(Err(self.fail(e.to_string()))),
        };
        self.stats
            .pad_recv
            .fetch_add((KEY_OVERHEAD + payload.len()) as u64, Ordering::Relaxed);
        match (kind, self.role) {
            (RecordType::Data, _) => {
                self.stats
                    .payload_recv
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                if !payload.is_empty() {
                    self.plain_in_len += payload.len();
                    self.plain_in.push_back(payload);
                }
            }
            (RecordType::LeaseGrant, Role::Follower) => {
                let lease = self.control_lease(&payload)?;
                self.send_next
                    .push_back(Loading::start(&self.source, lease));
                self.wake_writer();
            }
            (RecordType::LeaseNext, Role::Follower) => {
                let lease = self.control_lease(&payload)?;
                self.recv_next
                    .push_back(Loading::start(&self.source, lease));
            }
            (RecordType::Notice, Role::Follower) if payload.len() == 16 || payload.len() == 19 => {
                self.stats.balance.store(
                    i64::from_be_bytes(payload[..8].try_into().expect("8")),
                    Ordering::Relaxed,
                );
                if let [a, b, c] = payload[16..] {
                    let v = u32::from_be_bytes([0, a, b, c]);
                    if unpack_currency(v).is_some() {
                        self.stats.currency.store(v, Ordering::Relaxed);
                    }
                }
            }
            (RecordType::Close, _) if payload.len() == 1 => {
                self.stats.close_reason.store(payload[0], Ordering::Relaxed);
                self.peer_closed = true;
                // A CLOSE is answered with a CLOSE (unless ours is out
                // already): a clean end needs both, so neither side can have
                // the tail of its direction cut without hearing of it.
                self.queue_close(CloseReason::Shutdown);
                if !self.inbuf.is_empty() {
                    return Poll::Ready(Err(
                        self.fail("bytes after the peer's CLOSE record".into())
                    ));
                }
                self.wake_writer();
            }
            (kind, role) => {
                return Poll::Ready(Err(
                    self.fail(format!("unexpected {kind:?} record for the {role:?} side"))
                ))
            }
        }
        Poll::Ready(Ok(true))
    }

    fn control_lease(&mut self, payload: &[u8]) -> io::Result<Lease> {
        let lease = Lease::decode(payload)
            .ok_or_else(|| self.fail("malformed lease in a control record".into()))?;
        if lease.len < record::MIN_RECORD_KEY as u64 {
            return Err(self.fail("announced lease is too small".into()));
        }
        self.source.note_use(lease);
        self.stats.saw_lease(lease);
        Ok(lease)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for OtpStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Authenticated plaintext already opened is delivered before a failure.
        if this.plain_in_len == 0 {
            this.check_failed()?;
        }
        BothWakers::set(&this.wakers.read, cx.waker());
        if this.failed.is_none() {
            this.maintain(cx)?;
        }
        if this.plain_in_len == 0 {
            let got = ready!(this.poll_fill(false));
            if this.failed.is_none() {
                // Sends the answer to a CLOSE just read. Its failure (the
                // peer already gone) must not hide authenticated plaintext
                // or the peer's clean end.
                if let Err(e) = this.maintain(cx) {
                    if this.plain_in_len == 0 && !this.peer_closed {
                        return Poll::Ready(Err(e));
                    }
                }
            }
            match got {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(Ok(())),
                // Our CLOSE went out and the socket ended without the peer's:
                // the tail of its direction may have been cut.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && this.close_queued => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tunnel ended before the peer answered our CLOSE",
                    )))
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        while buf.remaining() > 0 {
            let Some(front) = this.plain_in.front_mut() else {
                break;
            };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            this.plain_in_len -= n;
            if front.is_empty() {
                this.plain_in.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for OtpStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_failed()?;
        if this.peer_closed || this.close_queued {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel is closing",
            )));
        }
        BothWakers::set(&this.wakers.write, cx.waker());
        this.maintain(cx)?;
        if this.close_queued {
            return Poll::Ready(Err(closing_error()));
        }
        if this.out.len() >= OUT_HIGH {
            ready!(this.poll_drain(cx))?;
        }
        ready!(this.poll_seal_plain(cx, false))?;
        // Fast path: a whole record's worth sealed straight from the caller's
        // buffer, skipping the plaintext copy.
        if this.plain_out.is_empty() && buf.len() >= MAX_PAYLOAD && this.control.is_empty() {
            if let Poll::Ready(r) = this.poll_send_keys() {
                r?;
                let reserve = if this.send_next.is_empty() {
                    CONTROL_RESERVE
                } else {
                    0
                };
                let room = this.send.remaining().saturating_sub(KEY_OVERHEAD + reserve);
                if room > 0 {
                    let n = room.min(MAX_PAYLOAD);
                    this.seal_one(RecordType::Data, n, false, &buf[..n])?;
                    if this.out.len() >= OUT_BATCH {
                        if let Poll::Ready(r) = this.poll_drain(cx) {
                            r?;
                        }
                    }
                    return Poll::Ready(Ok(n));
                }
            }
        }
        let n = buf.len().min(MAX_PAYLOAD - this.plain_out.len());
        this.plain_out.extend_from_slice(&buf[..n]);
        if let Poll::Ready(r) = this.poll_seal_plain(cx, false) {
            r?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check_failed()?;
        BothWakers::set(&this.wakers.write, cx.waker());
        this.maintain(cx)?;
        if this.close_queued {
            // Closing: bytes not yet sealed can no longer go; the CLOSE must
            // (it may wait for a lease that is loading, whose end wakes us),
            // and the writer hears whether the rest did not.
            let dropped = !this.plain_out.is_empty();
            this.plain_out.clear();
            this.seal_controls()?;
            if !this.control.is_empty() {
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
            ready!(Pin::new(&mut this.io).poll_flush(cx))?;
            // Answering the peer's CLOSE with nothing lost is a clean flush.
            return Poll::Ready(if this.peer_closed && !dropped {
                Ok(())
            } else {
                Err(closing_error())
            });
        }
        ready!(this.poll_seal_plain(cx, true))?;
        this.seal_controls()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.check_failed()?;
        BothWakers::set(&this.wakers.write, cx.waker());
        if this.close_queued {
            // Closing already (key exhausted, or answering the peer's
            // CLOSE): what is unsealed cannot go.
            this.plain_out.clear();
        } else {
            ready!(this.poll_seal_plain(cx, true))?;
            this.queue_close(CloseReason::Shutdown);
        }
        // Take up finished allocations (none are started once closing); the
        // CLOSE may wait for a lease that is loading, whose end wakes us.
        this.maintain(cx)?;
        this.seal_controls()?;
        if !this.control.is_empty() {
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseAllocator;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A pad in memory shared by both ends, each with its own copy, and a
    /// journal of every lease either side used.
    struct MemPad {
        bytes: Vec<u8>,
        erased: Mutex<Vec<bool>>,
        alloc: Mutex<LeaseAllocator>,
        lease_len: u64,
        used: Arc<Mutex<Vec<Lease>>>,
    }

    impl KeySource for MemPad {
        fn take(&self, l: Lease) -> io::Result<KeyBytes> {
            let mut e = self.erased.lock().unwrap();
            for i in l.offset..l.end() {
                assert!(!e[i as usize], "byte {i} taken twice on one side");
                e[i as usize] = true;
            }
            Ok(self.bytes[l.offset as usize..l.end() as usize]
                .to_vec()
                .into())
        }
        fn allocate(&self) -> io::Result<Option<Lease>> {
            Ok(self.alloc.lock().unwrap().allocate(self.lease_len))
        }
        fn note_use(&self, l: Lease) {
            self.used.lock().unwrap().push(l);
        }
    }

    fn pair(
        data_size: u64,
        lease_len: u64,
    ) -> (
        OtpStream<tokio::io::DuplexStream>,
        OtpStream<tokio::io::DuplexStream>,
        Arc<Mutex<Vec<Lease>>>,
    ) {
        let bytes: Vec<u8> = (0..data_size).map(|i| (i * 7 + i / 251) as u8).collect();
        let used = Arc::new(Mutex::new(Vec::new()));
        let mk = |alloc_hwm: u64| MemPad {
            bytes: bytes.clone(),
            erased: Mutex::new(vec![false; data_size as usize]),
            alloc: Mutex::new(LeaseAllocator {
                hwm: alloc_hwm,
                data_size,
            }),
            lease_len,
            used: used.clone(),
        };
        let gw: Arc<dyn KeySource> = Arc::new(mk(0));
        // The handshake's first two leases.
        let up = gw.allocate().unwrap().unwrap();
        let down = gw.allocate().unwrap().unwrap();
        let ag: Arc<dyn KeySource> = Arc::new(mk(0));
        let (a, b) = tokio::io::duplex(256 * 1024);
        let gws = OtpStream::new(
            a,
            Role::Allocator,
            gw.clone(),
            LeaseKeys::new(down, gw.take(down).unwrap()),
            LeaseKeys::new(up, gw.take(up).unwrap()),
        );
        let ags = OtpStream::new(
            b,
            Role::Follower,
            ag.clone(),
            LeaseKeys::new(up, ag.take(up).unwrap()),
            LeaseKeys::new(down, ag.take(down).unwrap()),
        );
        (gws, ags, used)
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 10) as u8)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn carries_megabytes_both_ways_across_many_leases() {
        let (mut gw, mut ag, used) = pair(32 << 20, 64 * 1024);
        let down = pattern(5 << 20, 3);
        let up = pattern(3 << 20, 5);
        let (d2, u2) = (down.clone(), up.clone());
        let g = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(gw);
            let writer = tokio::spawn(async move {
                for c in d2.chunks(10_000) {
                    w.write_all(c).await.unwrap();
                }
                w.flush().await.unwrap();
                w
            });
            let mut got = vec![0u8; u2.len()];
            r.read_exact(&mut got).await.unwrap();
            assert!(got == u2, "upstream bytes differ");
            let w = writer.await.unwrap();
            gw = r.unsplit(w);
            gw
        });
        let (mut r, mut w) = tokio::io::split(ag);
        let writer = tokio::spawn(async move {
            for c in up.chunks(7_000) {
                w.write_all(c).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        });
        let mut got = vec![0u8; down.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == down, "downstream bytes differ");
        let w = writer.await.unwrap();
        ag = r.unsplit(w);
        let gw = g.await.unwrap();
        let s = ag.stats();
        assert_eq!(s.payload_recv.load(Ordering::Relaxed), 5 << 20);
        assert_eq!(gw.stats().payload_recv.load(Ordering::Relaxed), 3 << 20);
        // Full records: 68 pad bytes per 16 KiB, plus the control records
        // that 64 KiB leases need (production leases are far larger).
        let ratio = s.pad_recv.load(Ordering::Relaxed) as f64 / (5u64 << 20) as f64;
        assert!(ratio < 1.01, "pad ratio {ratio}");
        // No two leases either side used overlap.
        let mut ls = used.lock().unwrap().clone();
        ls.sort_by_key(|l| l.offset);
        ls.dedup();
        for w in ls.windows(2) {
            assert!(!w[0].overlaps(&w[1]), "{} overlaps {}", w[0], w[1]);
        }
        assert!(ls.len() > 100, "expected many leases, got {}", ls.len());
    }

    /// NOTICE records posted non-stop while data crosses many leases never
    /// starve a lease switch (they once ate the LEASE_NEXT reserve and the
    /// stream stalled), and the follower ends up with the last balance.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notices_never_stall_lease_switches() {
        let (gw, mut ag, _) = pair(32 << 20, 64 * 1024);
        let notifier = gw.notifier();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, n2) = (stop.clone(), notifier.clone());
        let poster = tokio::spawn(async move {
            let mut b = 0i64;
            while !st.load(Ordering::Relaxed) {
                b += 1;
                n2.post(b, 7);
                tokio::task::yield_now().await;
            }
        });
        let down = pattern(4 << 20, 11);
        let d2 = down.clone();
        let g = tokio::spawn(async move {
            let mut gw = gw;
            for c in d2.chunks(3_000) {
                gw.write_all(c).await.unwrap();
            }
            gw.flush().await.unwrap();
            gw
        });
        let mut got = vec![0u8; down.len()];
        tokio::time::timeout(Duration::from_secs(20), ag.read_exact(&mut got))
            .await
            .expect("the stream stalled")
            .unwrap();
        assert!(got == down);
        stop.store(true, Ordering::Relaxed);
        poster.await.unwrap();
        let mut gw = g.await.unwrap();
        notifier.set_currency("CHF");
        notifier.post(-42, 7);
        // Drive the gateway (the NOTICE may wait for its next lease, which
        // only a polled stream switches to) until the follower has read it.
        let mut one = [0u8; 1];
        for _ in 0..200 {
            gw.flush().await.unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(20), ag.read(&mut one)).await;
            if ag.stats().balance.load(Ordering::Relaxed) == -42 {
                break;
            }
        }
        assert_eq!(ag.stats().balance.load(Ordering::Relaxed), -42);
        assert_eq!(
            unpack_currency(ag.stats().currency.load(Ordering::Relaxed)).as_deref(),
            Some("CHF")
        );
    }

    #[tokio::test]
    async fn a_tampered_byte_closes_the_stream_and_delivers_nothing() {
        let (gw, ag, _) = pair(1 << 20, 64 * 1024);
        // Put a byte-flipping relay between them.
        let (mut gw, mut ag) = (gw, ag);
        let mut wire = BytesMut::new();
        gw.plain_out.extend_from_slice(b"secret payload");
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            gw.poll_seal_plain(&mut cx, true),
            Poll::Ready(Ok(()))
        ));
        wire.extend_from_slice(&gw.out);
        wire[25] ^= 0x01;
        ag.inbuf.extend_from_slice(&wire);
        match ag.poll_open_one() {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("authentication"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(ag.plain_in_len, 0);
        let mut buf = [0u8; 10];
        assert!(
            ag.read(&mut buf).await.is_err(),
            "a failed stream stays failed"
        );
    }

    #[tokio::test]
    async fn close_ends_the_peers_read_cleanly() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        gw.write_all(b"bye").await.unwrap();
        gw.shutdown().await.unwrap();
        let mut got = Vec::new();
        ag.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        assert_eq!(
            ag.stats().close_reason.load(Ordering::Relaxed),
            CloseReason::Shutdown as u8
        );
    }

    /// The CLOSE is answered with a CLOSE: both readers end cleanly, and
    /// the initiator hears the answer.
    #[tokio::test]
    async fn a_close_is_answered_and_both_ends_read_a_clean_end() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        gw.shutdown().await.unwrap();
        let mut got = Vec::new();
        ag.read_to_end(&mut got).await.unwrap();
        // The answering side's flush and shutdown are clean, as h2 calls them.
        ag.flush().await.expect("answering a CLOSE flushes cleanly");
        ag.shutdown().await.expect("and shuts down cleanly");
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), gw.read_to_end(&mut back))
            .await
            .expect("the answer arrives")
            .expect("an answered CLOSE is a clean end");
        assert!(back.is_empty());
        assert_eq!(
            gw.stats().close_reason.load(Ordering::Relaxed),
            CloseReason::Shutdown as u8
        );
    }

    /// A CLOSE never answered, the socket ending instead, is an error at the
    /// reader of the side that sent it: the tail of the peer's direction
    /// (here, bytes the peer wrote after our CLOSE left) may be cut.
    #[tokio::test]
    async fn an_unanswered_close_or_a_cut_tail_is_an_error() {
        // Nothing in flight: the peer just vanishes.
        let (mut gw, ag, _) = pair(1 << 20, 64 * 1024);
        gw.shutdown().await.unwrap();
        drop(ag);
        let mut back = Vec::new();
        let e = gw.read_to_end(&mut back).await.unwrap_err();
        assert!(e.to_string().contains("answered our CLOSE"), "{e}");
        // The peer was sending when our CLOSE left; the connection is cut
        // before the rest and its CLOSE arrive: what did arrive is
        // delivered, then the error.
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        ag.shutdown().await.unwrap();
        gw.write_all(b"tail").await.unwrap();
        gw.flush().await.unwrap();
        drop(gw);
        let mut got = Vec::new();
        let e = ag.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(got, b"tail");
        assert!(e.to_string().contains("answered our CLOSE"), "{e}");
    }

    /// Nothing is accepted after the peer's CLOSE.
    #[tokio::test]
    async fn bytes_after_a_close_are_refused() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        gw.queue_close(CloseReason::Shutdown);
        gw.seal_controls().unwrap();
        let mut wire = gw.out.split().to_vec();
        wire.extend_from_slice(&[0u8; 40]);
        ag.inbuf.extend_from_slice(&wire);
        match ag.poll_open_one() {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("after the peer's CLOSE"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_exhaustion_is_reported_with_its_reason() {
        // Room for the two handshake leases and little more.
        let (mut gw, mut ag, _) = pair(3 * 64 * 1024, 64 * 1024);
        let g = tokio::spawn(async move {
            let data = vec![7u8; 1 << 20];
            let r = gw.write_all(&data).await;
            let _ = gw.flush().await;
            r
        });
        let mut got = Vec::new();
        let _ = ag.read_to_end(&mut got).await;
        assert!(got.len() < 1 << 20);
        assert_eq!(
            ag.stats().close_reason.load(Ordering::Relaxed),
            CloseReason::KeyExhausted as u8
        );
        assert!(g.await.unwrap().is_err());
    }

    /// A waker that records that it was woken.
    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    fn flag_waker() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    /// The agent's writer uses up its first upstream lease and waits for a
    /// grant, polled with `cx`. Returns the bytes it accepted.
    fn agent_waits_for_a_grant(
        ag: &mut OtpStream<tokio::io::DuplexStream>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> usize {
        let mut sent = 0;
        while let Poll::Ready(n) = Pin::new(&mut *ag).poll_write(cx, &data[sent..]) {
            sent += n.unwrap();
            assert!(
                sent < data.len(),
                "wrote past the first lease without a grant"
            );
        }
        sent
    }

    /// The gateway reads what the agent sealed (the rest may wait unsealed
    /// in the agent) — half a lease, so a grant is due — and sends the grant.
    async fn gateway_grants(gw: &mut OtpStream<tokio::io::DuplexStream>, data: &[u8]) {
        let mut up = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while up.len() < 32 * 1024 {
            let n = tokio::time::timeout(Duration::from_secs(5), gw.read(&mut chunk))
                .await
                .expect("the agent's sealed records never arrived")
                .unwrap();
            assert!(n > 0, "the agent's stream ended");
            up.extend_from_slice(&chunk[..n]);
        }
        assert!(up == data[..up.len()]);
        for _ in 0..2500 {
            if !gw.recv_next.is_empty() && gw.control.is_empty() && gw.out.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            gw.flush().await.unwrap();
        }
        assert!(
            !gw.recv_next.is_empty(),
            "the gateway never granted a lease"
        );
    }

    /// After a grant, the waiting writer goes on when polled.
    async fn writer_goes_on(
        ag: &mut OtpStream<tokio::io::DuplexStream>,
        cx: &mut Context<'_>,
        rest: &[u8],
    ) {
        for _ in 0..200 {
            match Pin::new(&mut *ag).poll_write(cx, rest) {
                Poll::Ready(n) => {
                    n.unwrap();
                    return;
                }
                Poll::Pending => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        panic!("the writer did not go on after the grant");
    }

    /// An agent whose writer has used up its first upstream lease and waits
    /// for a grant, and whose reader then polled (last) and waits for data.
    struct BothWaiting {
        gw: OtpStream<tokio::io::DuplexStream>,
        ag: OtpStream<tokio::io::DuplexStream>,
        writer_woken: Arc<Flag>,
        writer: Waker,
        reader: Waker,
        data: Vec<u8>,
        sent: usize,
    }

    fn writer_and_reader_waiting(seed: u8) -> BothWaiting {
        let (gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        let (writer_woken, writer) = flag_waker();
        let (_, reader) = flag_waker();
        let data = pattern(200 * 1024, seed);
        let sent = agent_waits_for_a_grant(&mut ag, &mut Context::from_waker(&writer), &data);
        let mut buf = [0u8; 64];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut ag)
            .poll_read(&mut Context::from_waker(&reader), &mut rb)
            .is_pending());
        writer_woken.0.store(false, Ordering::SeqCst);
        BothWaiting {
            gw,
            ag,
            writer_woken,
            writer,
            reader,
            data,
            sent,
        }
    }

    /// Two tasks drive the agent's halves. The writer waits for a lease grant;
    /// the reader takes the grant off the socket along with data it wants, and
    /// stops reading. The writer must still be woken: it once was not, and
    /// `carries_megabytes_both_ways_across_many_leases` hung now and then.
    #[tokio::test]
    async fn a_grant_read_by_the_reader_wakes_the_waiting_writer() {
        let mut w = writer_and_reader_waiting(9);
        // The gateway sends data, then (after reading the upstream) a grant.
        w.gw.write_all(b"downstream").await.unwrap();
        w.gw.flush().await.unwrap();
        gateway_grants(&mut w.gw, &w.data).await;
        w.writer_woken.0.store(false, Ordering::SeqCst);
        // The reader takes everything off the socket and gets its data.
        let mut buf = [0u8; 64];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut w.ag)
            .poll_read(&mut Context::from_waker(&w.reader), &mut rb)
            .is_ready());
        assert_eq!(rb.filled(), b"downstream");
        assert!(
            w.writer_woken.0.load(Ordering::SeqCst),
            "the writer waiting for a grant was not woken"
        );
        let mut wcx = Context::from_waker(&w.writer);
        writer_goes_on(&mut w.ag, &mut wcx, &w.data[w.sent..]).await;
    }

    /// A socket keeps one read waker. The writer waits for a grant, then the
    /// reader polls (last) and waits too; when the grant arrives, the writer
    /// is woken without the reader being polled again.
    #[tokio::test]
    async fn new_bytes_wake_the_waiting_writer_though_the_reader_polled_last() {
        let mut w = writer_and_reader_waiting(5);
        gateway_grants(&mut w.gw, &w.data).await;
        assert!(
            w.writer_woken.0.load(Ordering::SeqCst),
            "the grant reached the socket but the waiting writer was not woken"
        );
        let mut wcx = Context::from_waker(&w.writer);
        writer_goes_on(&mut w.ag, &mut wcx, &w.data[w.sent..]).await;
    }

    /// Fill the gateway's downstream lease up to the control reserve; returns
    /// the payload bytes sealed.
    fn fill_to_reserve(gw: &mut OtpStream<tokio::io::DuplexStream>) -> usize {
        let mut fill = 0;
        while gw.send.remaining() > CONTROL_RESERVE {
            let n = (gw.send.remaining() - CONTROL_RESERVE - KEY_OVERHEAD).min(MAX_PAYLOAD);
            gw.seal_one(RecordType::Data, n, false, &vec![1u8; n])
                .unwrap();
            fill += n;
        }
        assert_eq!(gw.send.remaining(), CONTROL_RESERVE);
        fill
    }

    /// Queue `n` LEASE_GRANTs, with real leases, on the gateway.
    fn queue_grants(gw: &mut OtpStream<tokio::io::DuplexStream>, n: usize) {
        for _ in 0..n {
            let lease = gw.source.allocate().unwrap().unwrap();
            let keys = LeaseKeys::new(lease, gw.source.take(lease).unwrap());
            gw.control
                .push_back((RecordType::LeaseGrant, lease.encode().to_vec(), None));
            gw.recv_next.push_back(Loading::Ready(keys));
        }
    }

    /// What the agent opened of a wire: records, and records after a CLOSE.
    struct Opened {
        records: usize,
        after_close: usize,
    }

    /// The agent opens every whole record it was sent.
    async fn agent_opens_all(ag: &mut OtpStream<tokio::io::DuplexStream>, wire: &[u8]) -> Opened {
        ag.inbuf.extend_from_slice(wire);
        let mut opened = Opened {
            records: 0,
            after_close: 0,
        };
        loop {
            let closed = ag.stats().close_reason.load(Ordering::Relaxed) != 0;
            match ag.poll_open_one() {
                Poll::Ready(Ok(true)) => {
                    opened.records += 1;
                    opened.after_close += usize::from(closed);
                }
                Poll::Ready(Ok(false)) => return opened,
                Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
                Poll::Ready(Err(e)) => panic!("agent refused the records: {e}"),
            }
        }
    }

    /// A tunnel closing while a grant waits for the next lease sends its
    /// CLOSE at once (the grant is moot), whether it closes for shutdown or
    /// because the key material ran out; it never waits nor fails.
    #[tokio::test]
    async fn close_never_waits_behind_a_grant() {
        for reason in [CloseReason::Shutdown, CloseReason::KeyExhausted] {
            let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
            fill_to_reserve(&mut gw);
            queue_grants(&mut gw, 3);
            gw.seal_controls().unwrap();
            assert_eq!(
                gw.control.len(),
                1,
                "the third grant waits for the next lease"
            );
            match reason {
                CloseReason::KeyExhausted => gw.key_exhausted(),
                _ => gw.queue_close(reason),
            }
            gw.seal_controls().unwrap();
            assert!(
                gw.control.is_empty(),
                "{reason:?}: the CLOSE was not sealed"
            );
            let wire = gw.out.split().freeze();
            assert_eq!(agent_opens_all(&mut ag, &wire).await.after_close, 0);
            assert_eq!(ag.send_next.len(), 2);
            assert_eq!(
                ag.stats().close_reason.load(Ordering::Relaxed),
                reason as u8
            );
        }
    }

    /// Authenticated plaintext opened before a tampered record is delivered;
    /// the failure comes after it, and nothing of the tampered record.
    #[tokio::test]
    async fn plaintext_before_a_tampered_record_is_delivered_then_the_error() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        gw.plain_out.extend_from_slice(b"first");
        assert!(matches!(
            gw.poll_seal_plain(&mut cx, true),
            Poll::Ready(Ok(()))
        ));
        let first_len = gw.out.len();
        gw.plain_out.extend_from_slice(b"second");
        assert!(matches!(
            gw.poll_seal_plain(&mut cx, true),
            Poll::Ready(Ok(()))
        ));
        let mut wire = gw.out.split().to_vec();
        wire[first_len + record::WIRE_HEADER + 2] ^= 0x10;
        ag.inbuf.extend_from_slice(&wire);
        let mut buf = [0u8; 64];
        let n = ag.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first");
        assert!(
            ag.read(&mut buf).await.is_err(),
            "the tampered record must end the stream"
        );
    }

    /// LEASE_GRANTs queued while the next downstream lease is still being
    /// allocated never take the room its LEASE_NEXT needs (they once did,
    /// and the stream hung now and then under load).
    #[tokio::test]
    async fn grants_leave_room_for_the_lease_next() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        let fill = fill_to_reserve(&mut gw);
        queue_grants(&mut gw, 3);
        gw.seal_controls().unwrap();
        assert!(
            gw.send.remaining() >= LEASE_NEXT_RECORD,
            "grants ate the LEASE_NEXT room"
        );
        assert_eq!(
            gw.control.len(),
            1,
            "the third grant waits for the next lease"
        );
        // The allocation ends: LEASE_NEXT jumps the queue, the grant follows.
        let next = gw.source.allocate().unwrap().unwrap();
        let keys = LeaseKeys::new(next, gw.source.take(next).unwrap());
        gw.control
            .push_back((RecordType::LeaseNext, next.encode().to_vec(), Some(keys)));
        gw.seal_controls().unwrap();
        assert!(gw.control.is_empty());
        assert_eq!(gw.send.lease(), next);
        let wire = gw.out.split().freeze();
        assert!(agent_opens_all(&mut ag, &wire).await.records > 4);
        assert_eq!(ag.send_next.len(), 3);
        assert_eq!(ag.plain_in_len, fill);
    }

    /// When the key material runs out in the middle of a write, the CLOSE
    /// is the last record on the wire: no DATA is sealed after it, and the
    /// writer is told.
    #[tokio::test]
    async fn nothing_is_sealed_after_the_close() {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        gw.write_all(&pattern(20_000, 3)).await.unwrap();
        // The next allocation has ended and found the pad used up; the
        // writer is the first to hear of it.
        gw.next_send_alloc = Some(tokio::task::spawn_blocking(|| Ok(None)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gw.write(&vec![7u8; 64 * 1024]).await.is_err());
        assert!(gw.flush().await.is_err());
        let mut wire = BytesMut::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), ag.io.read_buf(&mut wire)).await
        {
            if n == 0 {
                break;
            }
        }
        let Opened {
            records,
            after_close,
        } = agent_opens_all(&mut ag, &wire).await;
        assert!(records >= 2, "{records} records");
        assert_eq!(
            ag.stats().close_reason.load(Ordering::Relaxed),
            CloseReason::KeyExhausted as u8
        );
        assert_eq!(after_close, 0, "records were sealed after the CLOSE");
    }

    fn futures_noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }
}
