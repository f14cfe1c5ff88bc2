//! Sending: plaintext is gathered into records of up to 16 KiB and sealed
//! from the current lease, control records first by their rules (LEASE_NEXT
//! first, room kept for it and for CLOSE), and sealed bytes are drained to
//! the socket in batches.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite};

use super::control::Control;
use super::leases::{start_allocation, Loading};
use super::{
    closing_error, OtpStream, Role, CLOSE_RECORD, CONTROL_RESERVE, LEASE_NEXT_RECORD, OUT_BATCH,
};
use crate::record::{self, RecordType, KEY_OVERHEAD, MAX_PAYLOAD};

impl<T: AsyncRead + AsyncWrite + Unpin> OtpStream<T> {
    pub(super) fn seal_one(
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
    pub(super) fn seal_controls(&mut self) -> io::Result<()> {
        while !self.control.is_empty() {
            let at = self
                .control
                .iter()
                .position(|c| c.kind == RecordType::LeaseNext)
                .unwrap_or(0);
            let c = &self.control[at];
            let (kind, need) = (c.kind, KEY_OVERHEAD + c.payload.len());
            let keep = if !self.send_next.is_empty()
                || kind == RecordType::LeaseNext
                || kind == RecordType::Close
            {
                0
            } else if self.closing() {
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
                if self.closing() && kind != RecordType::Close {
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
            let Control {
                kind,
                payload,
                next,
            } = self.control.remove(at).expect("index is in range");
            self.seal_one(kind, payload.len(), false, &payload)?;
            if let Some(keys) = next {
                self.send_next.push_back(Loading::Ready(keys));
            }
        }
        Ok(())
    }

    /// Seal buffered plaintext. With `all`, seal a partial record too (flush).
    pub(super) fn poll_seal_plain(
        &mut self,
        cx: &mut Context<'_>,
        all: bool,
    ) -> Poll<io::Result<()>> {
        while self.plain_out.len() == MAX_PAYLOAD || (all && !self.plain_out.is_empty()) {
            if self.closing() {
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
    pub(super) fn poll_wait_for_lease(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closing() {
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
            if self.peer_closed() {
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
            if !self.closing() {
                self.next_send_alloc = Some(start_allocation(&self.source, self.send.lease()));
                self.maintain(cx)?;
                if !self.send_next.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            if self.closing() {
                return Poll::Ready(Err(closing_error()));
            }
        }
        Poll::Pending
    }

    /// Write sealed bytes to the socket until none are left.
    pub(super) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
}
