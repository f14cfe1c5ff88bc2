//! The value ledger: the pure rules in [`book`], persisted through the
//! [`Persist`] trait (redb in [`redb_store`] for one gateway, PostgreSQL in
//! [`pg_store`] for several sharing one book), with group commit: many
//! operations become durable with one flush.
//!
//! Ordering: every operation changes the in-memory book and writes its changed
//! entries to the store as one atomic batch, under one lock, so the store sees
//! operations in the book's order. Durability is separate: a caller that must
//! not go on before an operation is on disk (a reservation, before anything is
//! served against it) awaits [`Ledger::durable`], which joins the next group
//! flush. Settlements are not awaited: a crash before their flush leaves the
//! reservation open, and it is released at the next start.

pub mod book;
pub mod entries;
#[cfg(test)]
pub mod memory_store;
pub mod pg_store;
pub mod redb_store;
pub mod sled_store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::metrics::Metrics;

pub use book::{
    Account, AdCredit, AuditReport, Book, Capture, Changes, DayUsage, Hold, LedgerError, Micros,
    Owner, PadState, Premium, Prices, Retailer, Site, SiteCharge, Statement, StatementKey,
};

/// Where the book is kept. Implementations write each batch atomically.
pub trait Persist: Send + Sync + 'static {
    /// Read the whole book.
    fn load(&self) -> Result<Book, LedgerError>;
    /// Write the entries `changes` names, as they are now in `book`, atomically.
    fn write(&self, book: &Book, changes: &Changes) -> Result<(), LedgerError>;
    /// Make everything written so far durable: on disk, through a power cut
    /// (an fsync, not a `sync_file_range`).
    fn flush(&self) -> Result<(), LedgerError>;
    /// A store other gateways write too: before an operation, take the
    /// store's write lock and bring `book` up to date with what others wrote;
    /// the next `write` or `abandon` ends the operation. Returns what the
    /// others changed. A store this gateway owns has nothing to do.
    fn begin(&self, _book: &mut Book) -> Result<Changes, LedgerError> {
        Ok(Changes::default())
    }
    /// End an operation that was refused, writing nothing.
    fn abandon(&self) {}
    /// Inside an operation: the gateways whose lease on their reservations
    /// ran out (they stopped flushing), forgotten by the store as it answers.
    fn gone_gateways(&self) -> Result<Vec<String>, LedgerError> {
        Ok(Vec::new())
    }
    /// Whether other gateways write to this store.
    fn shared(&self) -> bool {
        false
    }
}

/// How long a caller waits for a flush before giving up (the store is
/// failing): the request gets a 503 instead of hanging.
pub const DURABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A position in the stream of writes; durable once the flushed mark reaches it.
pub type Seq = u64;

struct Shared {
    store: Box<dyn Persist>,
    /// Highest sequence durability was asked for.
    wanted: Mutex<Seq>,
    wake: Condvar,
    stop: AtomicBool,
    flushed: tokio::sync::watch::Sender<Seq>,
    flushes: AtomicU64,
    /// Set by `serve`: each flush counted and timed.
    metrics: OnceLock<Arc<Metrics>>,
}

impl Shared {
    /// Flush the store, counting and timing a flush that succeeds.
    fn flush(&self) -> Result<(), LedgerError> {
        let started = std::time::Instant::now();
        self.store.flush()?;
        if let Some(m) = self.metrics.get() {
            m.ledger_flushed(started.elapsed());
        }
        Ok(())
    }
}

/// The ledger shared by every tunnel and the admin endpoint.
pub struct Ledger {
    book: Mutex<(Book, Seq)>,
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
    /// Pads whose status other gateways changed, not yet acted on.
    changed_elsewhere: Mutex<Vec<String>>,
}

impl Ledger {
    /// Load the book, release every reservation a crash left open (their
    /// streams are gone; the user is not charged for them), make that
    /// durable, and start the group-commit flusher.
    pub fn open(store: Box<dyn Persist>) -> Result<(Ledger, usize), LedgerError> {
        Ledger::open_as(store, "")
    }

    /// [`Ledger::open`] for gateway `gateway` of a shared store: the
    /// reservations it releases are its own, and those it opens carry its name.
    pub fn open_as(store: Box<dyn Persist>, gateway: &str) -> Result<(Ledger, usize), LedgerError> {
        let mut book = store.load()?;
        book.gateway = gateway.to_string();
        let (flushed, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            store,
            wanted: Mutex::new(0),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            flushed,
            flushes: AtomicU64::new(0),
            metrics: OnceLock::new(),
        });
        let s = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("ledger-flush".into())
            .spawn(move || flush_loop(&s))
            .map_err(|e| LedgerError::Store(format!("starting the flusher: {e}")))?;
        let ledger = Ledger {
            book: Mutex::new((book, 0)),
            shared,
            flusher: Some(flusher),
            changed_elsewhere: Mutex::new(Vec::new()),
        };
        let (released, _) = ledger.apply(|b| {
            let me = b.gateway.clone();
            release_holds(b, |g| g == me)
        })?;
        ledger.flush_now()?;
        Ok((ledger, released))
    }

    /// Whether other gateways share this ledger's store.
    pub fn is_shared(&self) -> bool {
        self.shared.store.shared()
    }

    /// On a shared store: catch up with what the other gateways wrote, so
    /// the reads that follow see it (a check before an operation).
    pub fn refresh(&self) -> Result<(), LedgerError> {
        if self.is_shared() {
            self.apply(|_| Ok(((), Changes::default())))?;
        }
        Ok(())
    }

    /// On a shared store: catch up with what the other gateways wrote,
    /// release the reservations of gateways that are gone (how many), and
    /// hand over the pads whose status they changed since the last call
    /// (a cancellation must reach this gateway's tunnels too).
    pub fn sync(&self) -> Result<(usize, Vec<String>), LedgerError> {
        if !self.is_shared() {
            return Ok((0, Vec::new()));
        }
        let (released, _) = self.apply(|b| {
            let gone = self.shared.store.gone_gateways()?;
            let (released, changes) = release_holds(b, |g| gone.iter().any(|d| d == g))?;
            if !gone.is_empty() {
                tracing::info!(
                    "released {} reservation(s) of gateway(s) gone: {}",
                    released,
                    gone.join(", ")
                );
            }
            Ok((released, changes))
        })?;
        let mut pads = std::mem::take(&mut *lock_vec(&self.changed_elsewhere));
        pads.sort();
        pads.dedup();
        Ok((released, pads))
    }

    fn lock(&self) -> MutexGuard<'_, (Book, Seq)> {
        // A panic while holding the lock cannot leave a half-applied
        // operation: every operation validates before it mutates.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply one operation to the book and the store, in order (on a shared
    /// store, as one transaction over the book brought up to date first).
    fn apply<R>(
        &self,
        op: impl FnOnce(&mut Book) -> Result<(R, Changes), LedgerError>,
    ) -> Result<(R, Seq), LedgerError> {
        let mut g = self.lock();
        let store = &self.shared.store;
        let theirs = store.begin(&mut g.0)?;
        if !theirs.pad_states.is_empty() {
            lock_vec(&self.changed_elsewhere).extend(theirs.pad_states);
        }
        let (r, changes) = match op(&mut g.0) {
            Ok(done) => done,
            Err(e) => {
                store.abandon();
                return Err(e);
            }
        };
        if let Err(e) = store.write(&g.0, &changes) {
            // The store refused the batch (atomically: none of it applied).
            // Reload so the book agrees with the store again.
            match store.load() {
                Ok(mut b) => {
                    b.gateway = std::mem::take(&mut g.0.gateway);
                    g.0 = b;
                }
                Err(le) => tracing::error!("ledger store unreadable after a failed write: {le}"),
            }
            return Err(e);
        }
        g.1 += 1;
        Ok((r, g.1))
    }

    /// Wait until everything up to `seq` is on disk (joins a group flush).
    pub async fn durable(&self, seq: Seq) -> Result<(), LedgerError> {
        let mut rx = self.shared.flushed.subscribe();
        if *rx.borrow() >= seq {
            return Ok(());
        }
        self.want(seq);
        let flushed = tokio::time::timeout(DURABLE_TIMEOUT, rx.wait_for(|f| *f >= seq))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        if flushed {
            Ok(())
        } else {
            Err(LedgerError::Store(format!(
                "the ledger could not flush within {} s",
                DURABLE_TIMEOUT.as_secs()
            )))
        }
    }

    fn want(&self, seq: Seq) {
        let mut w = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if *w < seq {
            *w = seq;
            self.shared.wake.notify_one();
        }
    }

    /// Flush now, blocking (for commands and shutdown).
    pub fn flush_now(&self) -> Result<(), LedgerError> {
        let seq = self.lock().1;
        self.shared.flush()?;
        self.shared.flushed.send_if_modified(|f| {
            let newer = *f < seq;
            *f = (*f).max(seq);
            newer
        });
        Ok(())
    }

    /// Count and time every flush from now on (`padnet_ledger_flush*`);
    /// only the first call takes effect.
    pub(crate) fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// How many group flushes have run (for benchmarks).
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// Issue value to a new pad account, durably (blocking).
    pub fn issue(&self, pad: &str, amount: Micros) -> Result<(), LedgerError> {
        self.apply(|b| Ok(((), b.issue(pad, amount)?)))?;
        self.flush_now()
    }

    /// Record an employer policy for every gateway of the ledger (see
    /// [`Book::put_policy`]); durable on return.
    pub fn put_policy(
        &self,
        id: &str,
        name: &str,
        source: &str,
        make_current: bool,
    ) -> Result<(), LedgerError> {
        self.apply(|b| Ok(((), b.put_policy(id, name, source, make_current)?)))?;
        self.flush_now()
    }

    /// Reserve between `min` and `max` for a pad; returns once durable.
    pub async fn reserve(
        &self,
        pad: &str,
        min: Micros,
        max: Micros,
    ) -> Result<(u64, Micros), LedgerError> {
        let (id, amount, seq) = self.reserve_written(pad, min, max)?;
        self.durable(seq).await?;
        Ok((id, amount))
    }

    /// Reserve, written but not yet durable: the caller records the hold
    /// before awaiting [`Ledger::durable`], so a cancelled wait cannot leak it.
    pub fn reserve_written(
        &self,
        pad: &str,
        min: Micros,
        max: Micros,
    ) -> Result<(u64, Micros, Seq), LedgerError> {
        let ((id, amount), seq) = self.apply(|b| {
            let (id, amount, c) = b.reserve(pad, min, max)?;
            Ok(((id, amount), c))
        })?;
        Ok((id, amount, seq))
    }

    /// Extend a hold by between `min` and `max`; returns once durable.
    pub async fn extend(&self, hold: u64, min: Micros, max: Micros) -> Result<Micros, LedgerError> {
        let (amount, seq) = self.extend_written(hold, min, max)?;
        self.durable(seq).await?;
        Ok(amount)
    }

    /// Extend, written but not yet durable (as [`Ledger::reserve_written`]).
    pub fn extend_written(
        &self,
        hold: u64,
        min: Micros,
        max: Micros,
    ) -> Result<(Micros, Seq), LedgerError> {
        self.apply(|b| b.extend(hold, min, max))
    }

    /// Settle a hold (not awaited: see the module comment). Returns the
    /// pad's balance afterwards.
    pub fn settle(
        &self,
        hold: u64,
        charge: Micros,
        bytes: u64,
        day: i64,
    ) -> Result<Micros, LedgerError> {
        let (balance, seq) = self.apply(|b| {
            let pad = b.holds.get(&hold).map(|h| h.pad.clone());
            let c = b.settle(hold, charge, bytes, day)?;
            let bal = pad.and_then(|p| b.balance(&Account::Pad(p))).unwrap_or(0);
            Ok((bal, c))
        })?;
        self.want(seq);
        Ok(balance)
    }

    /// Charge part of an open hold (durable with the next group flush).
    pub fn capture(
        &self,
        hold: u64,
        charge: Micros,
        bytes: u64,
        day: i64,
    ) -> Result<(), LedgerError> {
        self.capture_with(hold, &Capture::transport(charge, bytes), day)
    }

    /// Charge what `capture` names from an open hold: the pad's debit and
    /// the owners' credits in one write (durable with the next group flush).
    pub fn capture_with(&self, hold: u64, capture: &Capture, day: i64) -> Result<(), LedgerError> {
        let ((), seq) = self.apply(|b| Ok(((), b.capture_with(hold, capture, day)?)))?;
        self.want(seq);
        Ok(())
    }

    /// Close a hold, charging what `capture` names (not awaited, as
    /// [`Ledger::settle`]).
    pub fn settle_with(&self, hold: u64, capture: &Capture, day: i64) -> Result<(), LedgerError> {
        let ((), seq) = self.apply(|b| Ok(((), b.settle_with(hold, capture, day)?)))?;
        self.want(seq);
        Ok(())
    }

    /// Apply an owner, site or funding operation; written in order, durable
    /// once [`Ledger::durable`] returns for the sequence.
    pub fn change<R>(
        &self,
        op: impl FnOnce(&mut Book) -> Result<(R, Changes), LedgerError>,
    ) -> Result<(R, Seq), LedgerError> {
        self.apply(op)
    }

    /// [`Ledger::change`], then flush (blocking: for commands).
    pub fn change_now<R>(
        &self,
        op: impl FnOnce(&mut Book) -> Result<(R, Changes), LedgerError>,
    ) -> Result<R, LedgerError> {
        let (r, _) = self.apply(op)?;
        self.flush_now()?;
        Ok(r)
    }

    /// Return a hold's excess over `keep` to its pad; returns the pad's balance.
    pub fn trim(&self, hold: u64, keep: Micros) -> Result<Micros, LedgerError> {
        let (balance, _) = self.apply(|b| {
            let pad = b.holds.get(&hold).map(|h| h.pad.clone());
            let c = b.trim(hold, keep)?;
            let bal = pad.and_then(|p| b.balance(&Account::Pad(p))).unwrap_or(0);
            Ok((bal, c))
        })?;
        Ok(balance)
    }

    /// Read the book.
    pub fn read<R>(&self, f: impl FnOnce(&Book) -> R) -> R {
        f(&self.lock().0)
    }

    pub fn pad_balance(&self, pad: &str) -> Option<Micros> {
        self.read(|b| b.balance(&Account::Pad(pad.to_string())))
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        if let Err(e) = self.flush_now() {
            tracing::error!("final ledger flush: {e}");
        }
    }
}

/// Release every hold whose gateway `held_by` names, in one change; how many.
fn release_holds(
    b: &mut Book,
    held_by: impl Fn(&str) -> bool,
) -> Result<(usize, Changes), LedgerError> {
    let ids: Vec<u64> = b
        .holds
        .iter()
        .filter(|(_, h)| held_by(&h.gateway))
        .map(|(id, _)| *id)
        .collect();
    let mut changes = Changes::default();
    for id in &ids {
        changes.absorb(b.release(*id)?);
    }
    Ok((ids.len(), changes))
}

fn lock_vec(m: &Mutex<Vec<String>>) -> MutexGuard<'_, Vec<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The group-commit loop: wait until someone wants a sequence flushed, note
/// how far the writes have got, flush once, publish.
fn flush_loop(s: &Shared) {
    loop {
        let target = {
            let mut w = s.wanted.lock().unwrap_or_else(|p| p.into_inner());
            while *w <= *s.flushed.borrow() && !s.stop.load(Ordering::Relaxed) {
                w = s
                    .wake
                    .wait_timeout(w, Duration::from_millis(500))
                    .map(|r| r.0)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            *w
        };
        // Everything written before this flush starts is covered by it; a
        // writer racing with us gets a later flush.
        match s.flush() {
            Ok(()) => {
                s.flushes.fetch_add(1, Ordering::Relaxed);
                s.flushed.send_if_modified(|f| {
                    let newer = *f < target;
                    *f = (*f).max(target);
                    newer
                });
            }
            Err(e) => {
                tracing::error!("ledger flush failed (retrying): {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
