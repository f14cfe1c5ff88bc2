//! `OtpStream`: a byte stream of authenticated, OTP-encrypted records over any
//! `AsyncRead + AsyncWrite`, exactly as a TLS stream wraps TCP. It also runs
//! the lease protocol: the allocating side (gateway) grants upstream leases and
//! announces downstream ones; the following side (agent) takes what it is given.
//! The record format is in `record`; this module is the async machinery:
//!
//! - this file: the `OtpStream` type, its life (open, closing, closed,
//!   failed) and its `AsyncRead` / `AsyncWrite`;
//! - [`send`]: sealing plaintext and control records, draining to the socket;
//! - [`recv`]: reading the socket and opening records;
//! - [`leases`]: lease scheduling (allocations, grants, loads, switches);
//! - [`control`]: the control records' vocabulary (CLOSE reasons, currency);
//! - [`stats`]: counters and the notifier; [`wakers`]: waking both halves.

mod control;
mod leases;
mod notice;
mod recv;
mod send;
mod stats;
mod wakers;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::lease::Lease;
use crate::record::{LeaseKeys, Opener, RecordType, KEY_OVERHEAD, MAX_PAYLOAD};
use crate::secret::KeyBytes;
use control::Control;
use leases::{Allocation, Loading};
use wakers::BothWakers;

pub use control::{pack_currency, unpack_currency, CloseReason};
pub use notice::{ChargeNote, Notice, TariffNote, MAX_CHARGES};
pub use stats::{Notifier, StreamStats, CHARGES_KEPT};

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
    /// Allocate a fresh lease of up to `want` bytes (the source caps it at
    /// its own largest lease), durably, before returning it (allocating
    /// side only). `Ok(None)`: the key material is used up.
    fn allocate(&self, want: u64) -> io::Result<Option<Lease>>;
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

/// What writing to a closing tunnel gets.
fn closing_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "tunnel is closing: nothing more can be sent",
    )
}

/// Where a tunnel is in its life. A failure (a tag, a reserved bit, a lease
/// overrun) is kept apart, in `failed`: it can come in any phase, and the
/// authenticated plaintext opened before it is still delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Records flow both ways.
    Open,
    /// Our CLOSE is queued or sent: nothing more is sealed, the peer's
    /// CLOSE is awaited (a socket ending first is an error).
    Closing,
    /// The peer's CLOSE arrived (ours is queued or sent as its answer):
    /// nothing more is accepted, and the reader sees a clean end.
    Closed,
}

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
    control: VecDeque<Control>,
    out: BytesMut,
    /// Where the tunnel is in its life (see [`Phase`]).
    phase: Phase,
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
    grant_alloc: Option<Allocation>,

    failed: Option<String>,
    wakers: Arc<BothWakers>,
    both: Waker,
}

impl<T> Drop for OtpStream<T> {
    /// The tunnel is gone: what is left of its current leases, and every
    /// lease announced for later, will never carry a byte (a new tunnel gets
    /// new leases). Count it as wasted, so `pad_bytes_wasted` is the truth.
    fn drop(&mut self) {
        let pending = |q: &VecDeque<Loading>| -> u64 {
            q.iter()
                .map(|l| match l {
                    Loading::Ready(keys) => keys.remaining() as u64,
                    Loading::Pending(lease, _) => lease.len,
                    Loading::Failed(..) => 0,
                })
                .sum()
        };
        let abandoned = self.send.remaining() as u64
            + self.recv.remaining() as u64
            + pending(&self.send_next)
            + pending(&self.recv_next);
        self.stats
            .pad_wasted
            .fetch_add(abandoned, std::sync::atomic::Ordering::Relaxed);
    }
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
            phase: Phase::Open,
            control_unsent: false,
            next_send_alloc: None,
            recv,
            recv_next: VecDeque::new(),
            opener: Opener::default(),
            inbuf: BytesMut::with_capacity(READ_CHUNK * 2),
            plain_in: VecDeque::new(),
            plain_in_len: 0,
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
        if self.phase == Phase::Open {
            self.phase = Phase::Closing;
            self.control.push_back(Control::close(reason));
        }
    }

    /// Our CLOSE is queued or sent: nothing more may be sealed.
    fn closing(&self) -> bool {
        self.phase != Phase::Open
    }

    /// The peer's CLOSE arrived.
    fn peer_closed(&self) -> bool {
        self.phase == Phase::Closed
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
                    if this.plain_in_len == 0 && !this.peer_closed() {
                        return Poll::Ready(Err(e));
                    }
                }
            }
            match got {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(Ok(())),
                // Our CLOSE went out and the socket ended without the peer's:
                // the tail of its direction may have been cut.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && this.closing() => {
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
        if this.peer_closed() || this.closing() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel is closing",
            )));
        }
        BothWakers::set(&this.wakers.write, cx.waker());
        this.maintain(cx)?;
        if this.closing() {
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
        if this.closing() {
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
            return Poll::Ready(if this.peer_closed() && !dropped {
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
        if this.closing() {
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
mod tests;
