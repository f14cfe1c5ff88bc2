//! Lease scheduling: the allocating side starts allocations at half of each
//! lease and queues LEASE_GRANT / LEASE_NEXT; both sides load announced
//! leases into memory in the background and switch to them when the current
//! one is finished.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use super::control::Control;
use super::{CloseReason, KeySource, OtpStream, Role, CONTROL_RESERVE, OUT_BATCH};
use crate::lease::Lease;
use crate::record::{self, LeaseKeys, RecordType, KEY_OVERHEAD};
use crate::secret::KeyBytes;

/// A lease on its way into memory.
pub(super) enum Loading {
    Ready(LeaseKeys),
    Pending(Lease, JoinHandle<io::Result<KeyBytes>>),
    /// Loading failed; every later poll reports it again (a finished
    /// JoinHandle must not be polled twice).
    Failed(io::ErrorKind, String),
}

impl Loading {
    pub(super) fn start(source: &Arc<dyn KeySource>, lease: Lease) -> Loading {
        let s = source.clone();
        Loading::Pending(lease, tokio::task::spawn_blocking(move || s.take(lease)))
    }

    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

pub(super) type Allocation = JoinHandle<io::Result<Option<LeaseKeys>>>;

/// Start allocating the lease to follow `current`: twice its length, so a
/// tunnel starts on small leases (a reconnect abandons little) and reaches
/// the pad's largest lease after a few switches.
pub(super) fn start_allocation(source: &Arc<dyn KeySource>, current: Lease) -> Allocation {
    let s = source.clone();
    let want = current.len.saturating_mul(2);
    tokio::task::spawn_blocking(move || match s.allocate(want)? {
        None => Ok(None),
        Some(lease) => Ok(Some(LeaseKeys::new(lease, s.take(lease)?))),
    })
}

impl<T: AsyncRead + AsyncWrite + Unpin> OtpStream<T> {
    /// Start and finish allocations (allocating side), seal queued control
    /// records, and push sealed bytes towards the socket.
    pub(super) fn maintain(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        let both = self.both.clone();
        let cx = &mut Context::from_waker(&both);
        let asked = self.stats.close_pending.swap(0, Ordering::AcqRel);
        if asked != 0 {
            self.queue_close(CloseReason::from_u8(asked));
        }
        // A NOTICE may never eat the reserve the next LEASE_NEXT needs:
        // without that record the lease cannot be switched, and the stream
        // would wait forever. It waits for room (or the next lease) instead.
        if self.role == Role::Allocator && !self.closing() && self.control.is_empty() {
            if let Some(notice) = self.stats.notice_due() {
                let fits = !self.send_next.is_empty()
                    || self.send.remaining()
                        >= 2 * KEY_OVERHEAD + notice.encoded_len() + CONTROL_RESERVE;
                if fits {
                    let more = self.stats.sent_notice(&notice);
                    self.control.push_back(Control::notice(&notice));
                    if more {
                        // Charges are left for the next NOTICE: on an idle
                        // tunnel nothing else would poll the stream for it.
                        cx.waker().wake_by_ref();
                    }
                } else {
                    self.stats.notice_later();
                }
            }
        }
        if self.role == Role::Allocator && !self.closing() {
            // Our own next downstream lease, once half of the current one is used.
            if self.send_next.is_empty()
                && self.next_send_alloc.is_none()
                && !self.control.iter().any(|c| c.kind == RecordType::LeaseNext)
                && self.send.used() * 2 >= self.send.lease().len as usize
            {
                self.next_send_alloc = Some(start_allocation(&self.source, self.send.lease()));
            }
            // The peer's next upstream lease, once half of its current one is used.
            if self.recv_next.is_empty()
                && self.grant_alloc.is_none()
                && self.recv.used() * 2 >= self.recv.lease().len as usize
            {
                self.grant_alloc = Some(start_allocation(&self.source, self.recv.lease()));
            }
        }
        if let Some(h) = &mut self.next_send_alloc {
            if let Poll::Ready(r) = Pin::new(h).poll(cx) {
                self.next_send_alloc = None;
                match r.map_err(io::Error::other)?? {
                    // Closing: the lease is not announced, only wasted.
                    Some(keys) if self.closing() => self.wasted_at_close(keys.lease()),
                    Some(keys) => {
                        self.source.note_use(keys.lease());
                        self.stats.saw_lease(keys.lease());
                        self.control.push_back(Control::lease_next(keys));
                    }
                    None => self.key_exhausted(),
                }
            }
        }
        if let Some(h) = &mut self.grant_alloc {
            if let Poll::Ready(r) = Pin::new(h).poll(cx) {
                self.grant_alloc = None;
                match r.map_err(io::Error::other)?? {
                    Some(keys) if self.closing() => self.wasted_at_close(keys.lease()),
                    Some(keys) => {
                        self.source.note_use(keys.lease());
                        self.stats.saw_lease(keys.lease());
                        self.control.push_back(Control::grant(keys.lease()));
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
    pub(super) fn wasted_at_close(&mut self, lease: Lease) {
        self.source.note_use(lease);
        self.stats.saw_lease(lease);
        self.stats
            .pad_wasted
            .fetch_add(lease.len, Ordering::Relaxed);
    }

    pub(super) fn key_exhausted(&mut self) {
        self.queue_close(CloseReason::KeyExhausted);
    }

    /// Make `self.send` a lease with room for a record, switching to the
    /// next announced lease when the current one is finished.
    pub(super) fn poll_send_keys(&mut self) -> Poll<io::Result<()>> {
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

    pub(super) fn control_lease(&mut self, payload: &[u8]) -> io::Result<Lease> {
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
