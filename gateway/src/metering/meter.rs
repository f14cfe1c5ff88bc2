//! One request's meter: reserve value before anything is served, take
//! bytes against it both ways (the bodies and splices in `metered` call
//! [`Meter::poll_take`]), extend the reservation ahead of the flow, stop the
//! flow when value runs out, and settle when the last byte handle is dropped.
//!
//! Every byte passes [`Meter::poll_take`] before it is sent on, so the bytes
//! carried never exceed what the durable reservation covers.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use proto::headers::StopReason;

use crate::error::GatewayError;
use crate::ledger::{LedgerError, Micros};
use crate::metering::clock::today;
use crate::metering::context::PadContext;
use crate::metrics::Direction;
use crate::pricing::{Parts, Price};

use crate::metering::rules::{CAPTURE_LAG, CHUNK, FIRST_CHUNK, POLICY_RECHECK};

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
    /// Charged so far by captures, by payee.
    captured: Parts,
    captured_bytes: u64,
    /// Whether a capture has counted this request's hit for its site.
    hit_counted: bool,
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
    price: Price,
    state: Mutex<State>,
    served: std::sync::atomic::AtomicBool,
    /// The agent's id for the request (`x-padnet-request`): its final
    /// charge is reported under it.
    report_as: std::sync::OnceLock<u32>,
}

impl Meter {
    /// Reserve the request charge plus a first chunk of bytes (as much as
    /// the balance allows); refused with 402 when not even the request charge
    /// and one byte are covered.
    #[cfg(test)]
    pub async fn start(
        ctx: Arc<PadContext>,
        dest: Option<(String, u16)>,
    ) -> Result<Arc<Meter>, GatewayError> {
        let price = Price::transport(&ctx.services.tariff);
        Meter::start_priced(ctx, dest, price).await
    }

    /// [`Meter::start`] at `price` (transport plus a site's prices): the hit
    /// is reserved with the request charge, before the origin is asked.
    pub async fn start_priced(
        ctx: Arc<PadContext>,
        dest: Option<(String, u16)>,
        price: Price,
    ) -> Result<Arc<Meter>, GatewayError> {
        if ctx.float.failing() {
            return Err(GatewayError::Ledger(
                "the ledger keeps refusing this tunnel's charges".into(),
            ));
        }
        let min = price
            .up_front()
            .saturating_add(Micros::from(!price.bytes_free()));
        let max = price
            .up_front()
            .saturating_add(price.bytes_cost(FIRST_CHUNK));
        let held = match ctx.float.take(min, max).await {
            Ok(r) => r,
            Err(LedgerError::Insufficient { balance, .. }) => {
                return Err(ctx.value_exhausted(balance, &price));
            }
            Err(e) => return Err(GatewayError::Ledger(e.to_string())),
        };
        let mut covered = price.bytes_for(held.saturating_sub(price.up_front()));
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
            price,
            state: Mutex::new(State {
                held_total: held,
                captured: Parts::default(),
                captured_bytes: 0,
                hit_counted: false,
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
            report_as: std::sync::OnceLock::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Report this request's final charge to the agent under `id`.
    pub fn report_as(&self, id: u32) {
        let _ = self.report_as.set(id);
    }

    /// The origin answered: the request is chargeable.
    pub fn mark_served(&self) {
        self.served
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The gateway refused the request after all (a CONNECT whose TLS names
    /// another host): it costs only bytes it carried, if any.
    pub fn mark_refused(&self) {
        self.served
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// For a restricted pad, the host its policy allowed this request to.
    pub fn restricted_host(&self) -> Option<String> {
        self.lock().recheck.as_ref().map(|(h, _, _)| h.clone())
    }

    /// Take `n` bytes one way, waiting for extensions as need be.
    pub async fn take_exactly(self: &Arc<Self>, dir: Dir, n: usize) -> Result<(), Stopped> {
        let mut left = n;
        while left > 0 {
            left -= std::future::poll_fn(|cx| self.poll_take(dir, cx, left)).await?;
        }
        Ok(())
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
                let allowed = self
                    .ctx
                    .services
                    .policies
                    .effective(&self.ctx.policy_id)
                    .is_some_and(|p| {
                        crate::metering::limits::still_allowed(&self.ctx.services, &p, host, *port)
                    });
                if !allowed {
                    s.stopped = Some(StopReason::PolicyDenied);
                    return Poll::Ready(Err(Stopped(StopReason::PolicyDenied)));
                }
            }
        }
        // A policy stop ends both directions at once; bytes already paid
        // for do not outlive it (a value or daily stop lets them go).
        if s.stopped == Some(StopReason::PolicyDenied) {
            return Poll::Ready(Err(Stopped(StopReason::PolicyDenied)));
        }
        let avail = s.covered.saturating_sub(s.used);
        let free = self.price.bytes_free();
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

    /// `n` bytes went on `dir` (for `padnet_bytes_total`).
    pub fn carried(&self, dir: Dir, n: usize) {
        let dir = match dir {
            Dir::Up => Direction::Up,
            Dir::Down => Direction::Down,
        };
        self.ctx.services.metrics.carried(dir, n);
    }

    /// Return bytes taken but not carried.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            let mut s = self.lock();
            s.used = s.used.saturating_sub(n as u64);
        }
    }

    async fn extend(self: Arc<Self>) {
        let price = &self.price;
        let ledger = &self.ctx.services.ledger;
        // Charge what has surely been delivered, so a crash forgives only the tail.
        {
            let mut s = self.lock();
            let target = s.used.saturating_sub(CAPTURE_LAG);
            if self.served.load(std::sync::atomic::Ordering::Relaxed) && target > s.captured_bytes {
                let now = price.parts(target, true);
                let hits = u64::from(!s.hit_counted);
                let capture = price.capture(s.captured, now, target - s.captured_bytes, hits);
                match self.ctx.float.charge(&capture, today()) {
                    Ok(()) => {
                        s.captured = now;
                        s.captured_bytes = target;
                        s.hit_counted = true;
                    }
                    Err(e) => tracing::error!("charging a transfer in progress: {e}"),
                }
            }
        }
        let chunk = self.lock().next_chunk;
        let mut max = price.bytes_cost(chunk).max(1);
        // A daily spend limit caps extensions: today's charges plus
        // everything held for the pad (this hold included) stay within it.
        let mut limited = false;
        if let Some(limit) = self.ctx.limits().and_then(|l| l.spend_per_day) {
            let serial = &self.ctx.serial;
            let spent = ledger.read(|b| b.usage(serial, today()).spent);
            let committed = spent.saturating_add(self.ctx.float.assigned());
            let room = limit.saturating_sub(committed);
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
                s.held_total = s.held_total.saturating_add(amount);
                s.covered = price.bytes_for(s.held_total.saturating_sub(price.up_front()));
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
    /// after [`SETTLE_DELAY`](crate::metering::rules::SETTLE_DELAY).
    fn drop(&mut self) {
        let s = self.lock();
        let served = self.served.load(std::sync::atomic::Ordering::Relaxed);
        // Bytes carried are paid for; the request and site charges only
        // when the origin answered (an upload to an origin that then failed
        // still crossed the gateway).
        let owed = self.price.parts(s.used, served);
        let hits = u64::from(served && !s.hit_counted);
        let mut capture = self.price.capture(
            s.captured,
            owed,
            s.used.saturating_sub(s.captured_bytes),
            hits,
        );
        let used = s.used;
        let remaining = owed.total().saturating_sub(s.captured.total()).max(0);
        let unused = s
            .held_total
            .saturating_sub(s.captured.total())
            .saturating_sub(remaining)
            .max(0);
        drop(s);
        // A negative hit price pays the user, once per tunnel and site per
        // window (a loop of requests farms nothing).
        if let Some(ad) = self.price.ad().filter(|_| served) {
            if self.ctx.ad_due(&ad.site) {
                capture.ads.push(ad);
            }
        }
        if let Some(&request) = self.report_as.get() {
            let paid = capture.ads.iter().map(|a| a.paid).sum::<Micros>();
            (self.ctx.report_charge)(tunnel::stream::ChargeNote {
                request,
                amount: owed.total().saturating_sub(paid),
                bytes: used,
            });
        }
        let float = self.ctx.float.clone();
        float.give_back(unused);
        self.ctx.balance_changed();
        float.charge_later(capture);
    }
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
