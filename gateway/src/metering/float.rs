//! A tunnel's float: one durable reservation per tunnel from which its
//! requests draw in memory, so a request waits for a disk flush only when
//! the float runs dry (card pre-authorisation, at the tunnel level). Value
//! in the float is still the pad's: it goes back when the tunnel ends, and a
//! crash releases it at start-up. Charges leave the float by capture.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::task::TaskTracker;

use crate::metering::rules::SETTLE_DELAY;

use crate::ledger::{Capture, Ledger, LedgerError, Micros, Seq};
use crate::metrics::Metrics;

#[derive(Default)]
struct State {
    /// The ledger hold backing the float, once made.
    hold: Option<u64>,
    /// Durably reserved, not handed to any request.
    available: Micros,
    /// Written into the hold, its durability not yet confirmed (a flush
    /// timed out): handed out once a flush confirms it, returned to the
    /// pad with the hold otherwise. Never served against before that.
    unconfirmed: Option<(Micros, Seq)>,
    /// Handed to requests and not yet charged or given back.
    assigned: Micros,
    refilling: bool,
    /// Finished requests' charges, each final [`SETTLE_DELAY`] after it was
    /// made, captured together (one ledger write for many requests).
    pending: std::collections::VecDeque<(Instant, Capture)>,
    capturing: bool,
    /// Captures that failed in a row (the store refused the write). The
    /// charges stay pending and are tried again; past
    /// [`CAPTURE_FAILURES_TO_STOP`] the tunnel takes no new requests.
    capture_failures: u32,
}

/// After this many failed captures in a row (about a second of retries)
/// the tunnel stops taking requests (503 `ledger-unavailable`): serving on
/// while charges cannot be recorded would serve for free.
pub const CAPTURE_FAILURES_TO_STOP: u32 = 8;

pub struct Float {
    ledger: Arc<Ledger>,
    serial: String,
    /// How much one refill asks for.
    refill: Micros,
    state: Mutex<State>,
    /// One refill at a time; others wait for it.
    refill_lock: tokio::sync::Mutex<()>,
    /// Where background work that moves value runs (refills, captures), so
    /// a shutdown waits for it rather than for a guessed delay.
    tasks: TaskTracker,
    /// Counts refills (`padnet_float_refills_total`).
    metrics: Arc<Metrics>,
}

impl Float {
    pub fn new(
        ledger: Arc<Ledger>,
        serial: String,
        refill: Micros,
        tasks: TaskTracker,
        metrics: Arc<Metrics>,
    ) -> Arc<Float> {
        Arc::new(Float {
            ledger,
            serial,
            refill: refill.max(1),
            state: Mutex::default(),
            refill_lock: tokio::sync::Mutex::new(()),
            tasks,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand out between `min` and `max` from what is available, if there is
    /// `min`. A `max` below `min` asks for `min`; nothing negative is ever
    /// handed out (that would add value to the float).
    fn try_take(&self, min: Micros, max: Micros) -> Option<Micros> {
        let min = min.max(0);
        let max = max.max(min);
        let mut s = self.lock();
        if s.available >= min && s.available > 0 || max == 0 {
            let amount = s.available.min(max);
            s.available -= amount;
            s.assigned = s.assigned.saturating_add(amount);
            Some(amount)
        } else {
            None
        }
    }

    /// Take between `min` and `max` (as much of `max` as there is), refilling
    /// durably when the float has less than `min`. `Insufficient` names the
    /// pad's whole spendable value (ledger balance plus what the float holds).
    pub async fn take(self: &Arc<Self>, min: Micros, max: Micros) -> Result<Micros, LedgerError> {
        if let Some(a) = self.try_take(min, max) {
            self.refill_ahead();
            return Ok(a);
        }
        loop {
            let _one = self.refill_lock.lock().await;
            if let Some(a) = self.try_take(min, max) {
                return Ok(a);
            }
            let have = self.lock().available;
            // In its own task: a request cancelled while waiting for the
            // flush must not leave a written reservation unrecorded.
            let me = self.clone();
            let want = max.saturating_sub(have).max(self.refill);
            self.tasks
                .spawn(async move { me.refill_now(want).await })
                .await
                .map_err(|e| LedgerError::Store(e.to_string()))??;
            if self.lock().available < min {
                let balance = self.ledger.pad_balance(&self.serial).unwrap_or(0);
                return Err(LedgerError::Insufficient {
                    balance: balance.saturating_add(self.lock().available),
                    needed: min,
                });
            }
        }
    }

    /// Reserve `want` more (as much as the pad has), durably. Value an
    /// earlier refill wrote but could not confirm is confirmed first.
    async fn refill_now(&self, want: Micros) -> Result<(), LedgerError> {
        let unconfirmed = self.lock().unconfirmed;
        if let Some((amount, seq)) = unconfirmed {
            self.ledger.durable(seq).await?;
            let mut s = self.lock();
            s.unconfirmed = None;
            s.available = s.available.saturating_add(amount);
            if s.available >= want {
                return Ok(());
            }
        }
        let hold = self.lock().hold;
        let (got, seq) = match hold {
            None => {
                let (id, amount, seq) = self.ledger.reserve_written(&self.serial, 0, want)?;
                self.lock().hold = Some(id);
                (amount, seq)
            }
            Some(id) => match self.ledger.extend_written(id, 1, want) {
                Ok(a) => a,
                Err(LedgerError::Insufficient { .. }) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        // Recorded before the wait: a flush that times out leaves the value
        // in the hold, and the next refill confirms it rather than losing it.
        self.lock().unconfirmed = Some((got, seq));
        self.ledger.durable(seq).await?;
        if got > 0 {
            self.metrics.float_refilled();
        }
        let mut s = self.lock();
        s.unconfirmed = None;
        s.available = s.available.saturating_add(got);
        Ok(())
    }

    /// Start a background refill when the float runs low, so requests
    /// rarely wait for a flush.
    fn refill_ahead(self: &Arc<Self>) {
        {
            let mut s = self.lock();
            if s.refilling || s.available >= self.refill / 4 {
                return;
            }
            s.refilling = true;
        }
        let me = self.clone();
        self.tasks.spawn(async move {
            {
                let _one = me.refill_lock.lock().await;
                if me.lock().available < me.refill / 4 {
                    if let Err(e) = me.refill_now(me.refill).await {
                        tracing::debug!("refilling a float: {e}");
                    }
                }
            }
            me.lock().refilling = false;
        });
    }

    /// A request gives back value it will not use.
    pub fn give_back(&self, amount: Micros) {
        let mut s = self.lock();
        let a = amount.clamp(0, s.assigned);
        s.assigned -= a;
        s.available = s.available.saturating_add(a);
    }

    /// Charge what `capture` names (moves it from the float's hold to
    /// revenue and owners, in one ledger write).
    pub fn charge(&self, capture: &Capture, day: i64) -> Result<(), LedgerError> {
        if capture.is_empty() {
            return Ok(());
        }
        let amount = capture.total()?;
        let hold = {
            let mut s = self.lock();
            match s.hold {
                Some(h) => h,
                // At a free tariff no request ever needed value, so the
                // float has no hold yet; the bytes still count towards the
                // pad's daily limits: an empty hold carries them.
                None if amount == 0 => {
                    let (id, _, _) = self.ledger.reserve_written(&self.serial, 0, 0)?;
                    s.hold = Some(id);
                    id
                }
                None => return Err(LedgerError::NoHold(u64::MAX)),
            }
        };
        self.ledger.capture_with(hold, capture, day)?;
        let mut s = self.lock();
        s.assigned -= amount.min(s.assigned);
        Ok(())
    }

    /// A finished request's charge: final after [`SETTLE_DELAY`] (when its
    /// last bytes have surely left the gateway's buffers), captured in
    /// batches. Until then it stays assigned, and a crash forgives it.
    pub fn charge_later(self: &Arc<Self>, capture: Capture) {
        if capture.is_empty() {
            return;
        }
        let start = {
            let mut s = self.lock();
            s.pending.push_back((Instant::now(), capture));
            !std::mem::replace(&mut s.capturing, true)
        };
        if !start {
            return;
        }
        // The loop holds the float weakly: when the tunnel's last request
        // is gone, the float's drop settles whatever is still pending.
        let weak = Arc::downgrade(self);
        let tasks = self.tasks.clone();
        let spawned = tokio::runtime::Handle::try_current().map(|rt| {
            tasks.spawn_on(
                async move {
                    loop {
                        tokio::time::sleep(SETTLE_DELAY / 2).await;
                        let Some(me) = weak.upgrade() else { return };
                        if !me.capture_due(false) {
                            return;
                        }
                    }
                },
                &rt,
            )
        });
        if spawned.is_err() {
            self.capture_due(true);
        }
    }

    /// Capture pending charges older than [`SETTLE_DELAY`] (all with
    /// `all`) in one ledger write. They leave the queue only once written:
    /// a failed write keeps them for the next try. Returns whether any
    /// remain.
    fn capture_due(&self, all: bool) -> bool {
        let (count, capture) = self.due(all);
        if count > 0 {
            let r = self.charge(&capture, crate::metering::clock::today());
            let mut s = self.lock();
            match r {
                Ok(()) => {
                    s.pending.drain(..count);
                    s.capture_failures = 0;
                }
                Err(e) => {
                    s.capture_failures = s.capture_failures.saturating_add(1);
                    if s.capture_failures == CAPTURE_FAILURES_TO_STOP {
                        tracing::error!(
                            "charging finished requests failed {} times in a row ({e}); \
                             the tunnel takes no new requests until the ledger accepts them",
                            s.capture_failures
                        );
                    } else {
                        tracing::warn!("charging finished requests (will retry): {e}");
                    }
                }
            }
        }
        let mut s = self.lock();
        let left = !s.pending.is_empty();
        if !left {
            s.capturing = false;
        }
        left
    }

    /// How many of the oldest pending charges are due, and their sum (site
    /// charges merged per site: one capture pays many requests, and names
    /// none of them).
    fn due(&self, all: bool) -> (usize, Capture) {
        let s = self.lock();
        let mut due = (0, Capture::default());
        for (at, c) in &s.pending {
            if !all && at.elapsed() < SETTLE_DELAY {
                break;
            }
            due.0 += 1;
            due.1.absorb(c.clone());
        }
        due
    }

    /// Whether captures keep failing: the tunnel must take no new requests.
    pub fn failing(&self) -> bool {
        self.lock().capture_failures >= CAPTURE_FAILURES_TO_STOP
    }

    /// Value handed to requests and not yet charged or given back (for
    /// daily spend limits).
    pub fn assigned(&self) -> Micros {
        self.lock().assigned
    }

    /// Value the pad can still spend: its balance plus the float's unassigned part.
    pub fn spendable(&self) -> Micros {
        let balance = self.ledger.pad_balance(&self.serial).unwrap_or(0);
        balance.saturating_add(self.lock().available)
    }
}

impl Drop for Float {
    /// The tunnel is gone: whatever the float still holds goes back to the pad.
    /// Pending charges are made in the same write that closes the hold.
    fn drop(&mut self) {
        let (_, capture) = self.due(true);
        let amount = capture.total().unwrap_or(0);
        let bytes = capture.bytes;
        let hold = self.lock().hold.take();
        if let Some(h) = hold {
            if let Err(e) = self
                .ledger
                .settle_with(h, &capture, crate::metering::clock::today())
            {
                tracing::error!(
                    "settling a tunnel's float (charging {amount} micro-units for {bytes} \
                     bytes): {e}; the hold stays open and is released at the next start"
                );
            }
        } else if amount > 0 {
            tracing::error!("charges of {amount} micro-units with no hold to take them from");
        }
    }
}

/// The floats of live tunnels, by pad, for `pad show` (what is spendable and
/// what is in use right now).
#[derive(Default)]
pub struct Floats(Mutex<std::collections::HashMap<String, Vec<std::sync::Weak<Float>>>>);

impl Floats {
    pub fn register(&self, f: &Arc<Float>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(f.serial.clone()).or_default();
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(f));
    }

    /// (unassigned, assigned) value in a pad's live floats.
    pub fn totals(&self, serial: &str) -> (Micros, Micros) {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = (0, 0);
        for f in m
            .get(serial)
            .into_iter()
            .flatten()
            .filter_map(|w| w.upgrade())
        {
            let s = f.lock();
            t.0 += s.available;
            t.1 += s.assigned;
        }
        t
    }
}
