//! Receiving: bytes are read from the socket into a buffer and opened one
//! record at a time, each authenticated before a byte of it is delivered;
//! control records are acted on here (grants, next leases, notices, CLOSE).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use super::leases::Loading;
use super::notice::Notice;
use super::{CloseReason, OtpStream, Phase, Role, PLAIN_IN_CAP, READ_CHUNK};
use crate::record::{RecordType, KEY_OVERHEAD};

impl<T: AsyncRead + AsyncWrite + Unpin> OtpStream<T> {
    /// Read and open records into `plain_in` until some plaintext is there,
    /// the peer closed, or the cap is reached. Ready(Ok(false)) at end of stream.
    /// With `for_grant`, keep reading until a lease grant has arrived (or the
    /// plaintext cap is reached) rather than until some plaintext is there.
    pub(super) fn poll_fill(&mut self, for_grant: bool) -> Poll<io::Result<bool>> {
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
            if self.peer_closed() {
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
    pub(super) fn poll_open_one(&mut self) -> Poll<io::Result<bool>> {
        if self.inbuf.is_empty() {
            return Poll::Ready(Ok(false));
        }
        if self.peer_closed() {
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
            (RecordType::Notice, Role::Follower) if Notice::decode(&payload).is_some() => {
                if let Some(n) = Notice::decode(&payload) {
                    self.stats.received_notice(n);
                }
            }
            (RecordType::Close, _) if payload.len() == 1 => {
                self.stats.close_reason.store(payload[0], Ordering::Relaxed);
                // A CLOSE is answered with a CLOSE (unless ours is out
                // already): a clean end needs both, so neither side can have
                // the tail of its direction cut without hearing of it.
                self.queue_close(CloseReason::Shutdown);
                self.phase = Phase::Closed;
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
}
