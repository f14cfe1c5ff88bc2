//! Metering and charging one request: reserve value before anything is
//! served, count body bytes both ways (CONNECT: bytes spliced both ways),
//! extend the reservation ahead of the flow, stop the flow when value runs
//! out, and settle when the request's last byte handle is dropped.
//!
//! Every byte passes [`Meter::poll_take`] before it is sent on, so the bytes
//! carried never exceed what the durable reservation covers.

use proto::headers::StopReason;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::GatewayError;
use crate::ledger::{LedgerError, Micros};
use crate::metering::clock::today;
use crate::metering::context::PadContext;
use crate::{Body, BoxError};

pub use crate::metering::rules::{CAPTURE_LAG, CHUNK, FIRST_CHUNK, SETTLE_DELAY};

/// Which way bytes flow, for wakers.
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    /// Agent → origin (request bodies, CONNECT upload).
    Up = 0,
    /// Origin → agent.
    Down = 1,
}

/// Why the meter stopped a transfer: `value-exhausted` (the pad's value),
/// `policy-denied` (its policy no longer allows the destination) or
/// `daily-limit` (its policy's daily spend or MiB limit).
#[derive(Debug, thiserror::Error)]
#[error("the gateway stopped this transfer: {0}")]
pub struct Stopped(pub StopReason);

struct State {
    /// Value ever put into the hold (reserve + extensions).
    held_total: Micros,
    /// Charged so far by captures.
    captured_value: Micros,
    captured_bytes: u64,
    covered: u64,
    used: u64,
    next_chunk: u64,
    extending: bool,
    /// Set when no more bytes will be covered: why.
    stopped: Option<StopReason>,
    /// Bytes the pad's policy still allows today (mib_per_day), if limited.
    byte_cap: Option<u64>,
    /// For a restricted pad: where the stream goes, and when its policy was
    /// last asked again (hours end and policies change while streams run).
    recheck: Option<(String, u16, std::time::Instant)>,
    wakers: [Option<Waker>; 2],
}

/// One request's reservation and byte count. Settles on drop.
pub struct Meter {
    ctx: Arc<PadContext>,
    state: Mutex<State>,
    served: std::sync::atomic::AtomicBool,
}

impl Meter {
    /// Reserve the request charge plus a first chunk of bytes (as much as
    /// the balance allows); refused with 402 when not even the request charge
    /// and one byte are covered.
    pub async fn start(
        ctx: Arc<PadContext>,
        dest: Option<(String, u16)>,
    ) -> Result<Arc<Meter>, GatewayError> {
        let t = &ctx.services.tariff;
        let min = t.per_request + Micros::from(!t.bytes_free());
        let max = t.per_request + t.bytes_cost(FIRST_CHUNK);
        let held = match ctx.float.take(min, max).await {
            Ok(r) => r,
            Err(LedgerError::Insufficient { balance, .. }) => {
                return Err(ctx.value_exhausted(balance));
            }
            Err(e) => return Err(GatewayError::Ledger(e.to_string())),
        };
        let mut covered = ctx.services.tariff.bytes_for(held - t.per_request);
        // A daily MiB limit caps what this request may carry.
        let byte_cap = ctx.limits().and_then(|l| l.mib_per_day).map(|mib| {
            let today = ctx
                .services
                .ledger
                .read(|b| b.usage(&ctx.serial, today()).bytes);
            mib.saturating_mul(1 << 20).saturating_sub(today)
        });
        if let Some(cap) = byte_cap {
            covered = covered.min(cap);
        }
        Ok(Arc::new(Meter {
            ctx,
            state: Mutex::new(State {
                held_total: held,
                captured_value: 0,
                captured_bytes: 0,
                covered,
                used: 0,
                next_chunk: FIRST_CHUNK * 2,
                extending: false,
                stopped: None,
                byte_cap,
                recheck: dest.map(|(h, p)| (h, p, std::time::Instant::now())),
                wakers: [None, None],
            }),
            served: false.into(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The origin answered: the request is chargeable.
    pub fn mark_served(&self) {
        self.served
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes counted so far.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Ask to carry `want` bytes; returns how many may go now (≥ 1 when
    /// `want` ≥ 1), waits while an extension is on its way, fails when value
    /// is used up.
    pub fn poll_take(
        self: &Arc<Self>,
        dir: Dir,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<Result<usize, Stopped>> {
        let mut s = self.lock();
        if let Some((host, port, at)) = &mut s.recheck {
            if at.elapsed() >= POLICY_RECHECK {
                *at = std::time::Instant::now();
                let id = self.ctx.pad.header().policy_id;
                let allowed = self
                    .ctx
                    .services
                    .policies
                    .effective(&id)
                    .is_some_and(|p| crate::metering::limits::still_allowed(&p, host, *port));
                if !allowed {
                    s.stopped = Some(StopReason::PolicyDenied);
                    return Poll::Ready(Err(Stopped(StopReason::PolicyDenied)));
                }
            }
        }
        let avail = s.covered.saturating_sub(s.used);
        let free = self.ctx.services.tariff.bytes_free();
        let capped = s.byte_cap.is_some_and(|c| s.covered >= c);
        if capped && s.stopped.is_none() && avail == 0 {
            s.stopped = Some(StopReason::DailyLimit);
        }
        if !free && !capped && avail < s.next_chunk / 4 && !s.extending && s.stopped.is_none() {
            s.extending = true;
            let me = self.clone();
            tokio::spawn(async move { me.extend().await });
        }
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        if avail > 0 {
            let n = (want as u64).min(avail) as usize;
            s.used += n as u64;
            return Poll::Ready(Ok(n));
        }
        if let Some(why) = s.stopped {
            return Poll::Ready(Err(Stopped(why)));
        }
        s.wakers[dir as usize] = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Return bytes taken but not carried.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            let mut s = self.lock();
            s.used = s.used.saturating_sub(n as u64);
        }
    }

    async fn extend(self: Arc<Self>) {
        let t = &self.ctx.services.tariff;
        let ledger = &self.ctx.services.ledger;
        // Charge what has surely been delivered, so a crash forgives only the tail.
        let capture = {
            let s = self.lock();
            let target = s.used.saturating_sub(CAPTURE_LAG);
            if self.served.load(std::sync::atomic::Ordering::Relaxed) && target > s.captured_bytes {
                Some((target, t.charge(target) - s.captured_value))
            } else {
                None
            }
        };
        if let Some((target, value)) = capture {
            let mut s = self.lock();
            let bytes = target - s.captured_bytes;
            match self.ctx.float.charge(value, bytes, today()) {
                Ok(()) => {
                    s.captured_value += value;
                    s.captured_bytes = target;
                }
                Err(e) => tracing::error!("charging a transfer in progress: {e}"),
            }
        }
        let chunk = self.lock().next_chunk;
        let mut max = t.bytes_cost(chunk).max(1);
        // A daily spend limit caps extensions: today's charges plus
        // everything held for the pad (this hold included) stay within it.
        let mut limited = false;
        if let Some(limit) = self.ctx.limits().and_then(|l| l.spend_per_day) {
            let serial = &self.ctx.serial;
            let committed =
                ledger.read(|b| b.usage(serial, today()).spent) + self.ctx.float.assigned();
            let room = limit - committed;
            if room < max {
                max = room;
                limited = true;
            }
        }
        let r = if max >= 1 {
            self.ctx.float.take(1, max).await
        } else {
            Err(LedgerError::Insufficient {
                balance: 0,
                needed: 1,
            })
        };
        let mut s = self.lock();
        s.extending = false;
        match r {
            Ok(amount) => {
                s.held_total += amount;
                s.covered = t.bytes_for(s.held_total - t.per_request);
                if let Some(cap) = s.byte_cap {
                    s.covered = s.covered.min(cap);
                }
                s.next_chunk = (chunk * 2).min(CHUNK);
            }
            Err(LedgerError::Insufficient { .. }) if limited => {
                s.stopped = Some(StopReason::DailyLimit)
            }
            Err(LedgerError::Insufficient { .. }) => s.stopped = Some(StopReason::ValueExhausted),
            Err(e) => {
                tracing::error!("extending a reservation: {e}");
                s.stopped = Some(StopReason::ValueExhausted);
            }
        }
        for w in s.wakers.iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }
}

impl Drop for Meter {
    /// The request is over: give back what it did not use at once (the
    /// balance is right for the next request), and make the charge final
    /// after [`SETTLE_DELAY`].
    fn drop(&mut self) {
        let s = self.lock();
        let served = self.served.load(std::sync::atomic::Ordering::Relaxed);
        // Bytes carried are paid for; the request charge only when the
        // origin answered (an upload to an origin that then failed still
        // crossed the gateway).
        let tariff = &self.ctx.services.tariff;
        let (total, bytes) = if served {
            (tariff.charge(s.used), s.used)
        } else {
            (tariff.bytes_cost(s.used), s.used)
        };
        let remaining = (total - s.captured_value).max(0);
        let remaining_bytes = bytes.saturating_sub(s.captured_bytes);
        let (s_held_total, s_captured) = (s.held_total, s.captured_value);
        drop(s);
        let unused = (s_held_total - s_captured - remaining).max(0);
        let float = self.ctx.float.clone();
        float.give_back(unused);
        self.ctx.balance_changed();
        float.charge_later(remaining, remaining_bytes);
    }
}

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

/// How often a running stream of a restricted pad asks its policy again.
pub const POLICY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

use proto::headers::{CONTENT_LENGTH as LENGTH_HEADER, STOPPED as STOPPED_TRAILER};

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
                let n = match ready!(me.meter.poll_take(me.dir, cx, data.len())) {
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

/// The future type of the stack's services.
pub use crate::error::BoxFuture;

fn metered<B>(b: B, meter: Arc<Meter>, dir: Dir) -> Body
where
    B: HttpBody<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Body::new(MeteredBody::new(b, meter, dir))
}

/// The charging layer: reserve, meter both bodies, hand the meter to a
/// CONNECT splice, settle on drop. Nothing is reserved for a request that
/// fails before the origin answers (the reservation is released in full).
#[derive(Clone)]
pub struct Charge<S> {
    pub inner: S,
    pub ctx: Arc<PadContext>,
}

impl<S> tower::Service<Request<Incoming>> for Charge<S>
where
    S: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = GatewayError,
            Future = BoxFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let ctx = self.ctx.clone();
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let dest = if ctx.pad.header().policy_id != [0; 32] {
                crate::destination::destination(&req).ok()
            } else {
                None
            };
            let meter = Meter::start(ctx, dest).await?;
            let is_connect = req.method() == http::Method::CONNECT;
            let mut req: Request<Body> = req.map(|b| metered(b, meter.clone(), Dir::Up));
            if is_connect {
                req.extensions_mut().insert(meter.clone());
            }
            let mut resp = inner.call(req).await?;
            meter.mark_served();
            // A download the meter stops early must end in order (see
            // `MeteredBody`); h2 would turn a short body under Content-Length
            // into a stream error that discards bytes already paid for. The
            // length travels beside it and the agent restores it.
            if let Some(len) = resp.headers_mut().remove(http::header::CONTENT_LENGTH) {
                resp.headers_mut().insert(LENGTH_HEADER, len);
            }
            Ok(resp.map(|b| metered(b, meter, Dir::Down)))
        })
    }
}
