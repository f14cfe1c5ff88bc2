//! Counting bytes against a request's meter: a body whose data frames pass
//! [`Meter::poll_take`] before they go on (ending in order, with a trailer,
//! when value runs out), and the same for the two halves of a CONNECT splice.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use proto::headers::STOPPED as STOPPED_TRAILER;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metering::meter::{Dir, Meter, Stopped};
use crate::{Body, BoxError};

/// The most one frame carries on: h2 buffers a whole frame once its window
/// has a byte of room, so an origin's megabyte chunk would otherwise sit in
/// the gateway, charged, beyond the stream window.
pub const MAX_FRAME_PASSED: usize = 64 << 10;

/// A body whose data frames pass the meter.
pub struct MeteredBody<B> {
    inner: B,
    meter: Arc<Meter>,
    dir: Dir,
    /// A frame's remainder not yet allowed through.
    pending: Option<Bytes>,
    /// Value ran out: the body has ended early.
    stopped: bool,
}

impl<B> MeteredBody<B> {
    pub fn new(inner: B, meter: Arc<Meter>, dir: Dir) -> MeteredBody<B> {
        MeteredBody {
            inner,
            meter,
            dir,
            pending: None,
            stopped: false,
        }
    }
}

impl<B> HttpBody for MeteredBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let me = &mut *self;
        loop {
            if me.stopped {
                return Poll::Ready(None);
            }
            if let Some(data) = me.pending.as_mut() {
                let want = data.len().min(MAX_FRAME_PASSED);
                let n = match ready!(me.meter.poll_take(me.dir, cx, want)) {
                    Ok(n) => n,
                    Err(e) => {
                        if let Dir::Up = me.dir {
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        // Downloads end in order, after every byte already
                        // passed on (a reset would discard what h2 still
                        // buffers, bytes the pad has paid for), with a
                        // trailer saying why; the agent turns it into an
                        // aborted response, never a silently short one.
                        me.stopped = true;
                        me.pending = None;
                        let mut t = http::HeaderMap::new();
                        t.insert(
                            STOPPED_TRAILER,
                            http::HeaderValue::from_static(e.0.as_str()),
                        );
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                };
                let out = data.split_to(n);
                me.meter.carried(me.dir, n);
                if data.is_empty() {
                    me.pending = None;
                }
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            match ready!(Pin::new(&mut me.inner).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => me.pending = Some(data),
                    Err(mut frame) => {
                        // Only the gateway speaks x-padnet-*: an origin's trailers of that name are dropped.
                        if let Some(t) = frame.trailers_mut() {
                            proto::headers::strip_padnet(t);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stopped || (self.pending.is_none() && self.inner.is_end_stream())
    }

    /// Never exact: hyper's h2 server would turn an exact hint back into a
    /// Content-Length, and a metered body may end early (see `Charge`).
    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let mut h = http_body::SizeHint::new();
        if let Some(u) = inner.upper() {
            let extra = self.pending.as_ref().map_or(0, |p| p.len() as u64);
            h.set_upper(u + extra);
        }
        h
    }
}

/// The agent's side of a CONNECT splice, metered: reads are uploads, writes
/// are downloads.
pub struct MeteredIo<T> {
    inner: T,
    meter: Arc<Meter>,
}

impl<T> MeteredIo<T> {
    pub fn new(inner: T, meter: Arc<Meter>) -> MeteredIo<T> {
        MeteredIo { inner, meter }
    }
}

fn exhausted_io(e: Stopped) -> io::Error {
    io::Error::other(e)
}

impl<T: AsyncRead + Unpin> AsyncRead for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let allowed =
            ready!(me.meter.poll_take(Dir::Up, cx, buf.remaining())).map_err(exhausted_io)?;
        // Read into at most `allowed` bytes of the caller's buffer.
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(allowed));
        let r = Pin::new(&mut me.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        match r {
            Poll::Ready(Ok(())) => {
                buf.advance(n);
                me.meter.give_back(allowed - n);
                me.meter.carried(Dir::Up, n);
                Poll::Ready(Ok(()))
            }
            other => {
                me.meter.give_back(allowed);
                other
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        let allowed =
            ready!(me.meter.poll_take(Dir::Down, cx, data.len())).map_err(exhausted_io)?;
        match Pin::new(&mut me.inner).poll_write(cx, &data[..allowed]) {
            Poll::Ready(Ok(n)) => {
                me.meter.give_back(allowed - n);
                me.meter.carried(Dir::Down, n);
                Poll::Ready(Ok(n))
            }
            other => {
                me.meter.give_back(allowed);
                other
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `b` with its data frames metered in direction `dir`.
pub fn metered<B>(b: B, meter: Arc<Meter>, dir: Dir) -> Body
where
    B: HttpBody<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Body::new(MeteredBody::new(b, meter, dir))
}
