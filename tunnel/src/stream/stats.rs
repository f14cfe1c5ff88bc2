//! Counters a stream keeps (pad and payload bytes, leases, balance, the
//! peer's CLOSE reason), shared with whoever watches it, and the notifier
//! through which the gateway's meter has NOTICE records sent and the
//! gateway closes a tunnel from outside.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::control::{pack_currency, CloseReason};
use super::notice::{ChargeNote, Notice, TariffNote, MAX_CHARGES};
use super::wakers::BothWakers;
use crate::lease::Lease;

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
    /// The last balance the gateway reported (micro-units): what the pad
    /// can spend, beside what open requests hold (`reserved`).
    pub balance: AtomicI64,
    pub reserved: AtomicI64,
    /// A NOTICE waiting to be sent (allocating side): balance and key bytes left.
    pub(super) notice_pending: AtomicBool,
    pub(super) notice_balance: AtomicI64,
    pub(super) notice_reserved: AtomicI64,
    pub(super) notice_key_left: AtomicU64,
    /// The ledger's currency (three ASCII letters, packed; 0 = not told):
    /// the gateway sets it, NOTICE records carry it, the agent keeps it.
    pub currency: AtomicU32,
    /// A CLOSE asked for from outside the stream (its reason; 0: none).
    pub(super) close_pending: AtomicU8,
    /// Allocating side: the tariff and finished requests' charges the next
    /// NOTICE carries.
    pub(super) outbox: Mutex<Outbox>,
    /// Following side: the tariff the gateway last named, and the charges
    /// it reported that nobody has taken yet.
    pub(super) inbox: Mutex<Inbox>,
}

/// Charges kept waiting at most, each way: beyond it the oldest are dropped
/// (a stalled tunnel or a reader that never takes them cannot grow memory).
/// The agent takes them every 100 ms, so this is room for 160,000 requests
/// a second (one tunnel serves ~30,000); 24 bytes each.
pub const CHARGES_KEPT: usize = 16_384;

#[derive(Debug, Default)]
pub(super) struct Outbox {
    pub tariff: Option<TariffNote>,
    pub charges: VecDeque<ChargeNote>,
}

#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub tariff: Option<TariffNote>,
    pub charges: VecDeque<ChargeNote>,
}

fn keep_last(q: &mut VecDeque<ChargeNote>, c: ChargeNote) {
    if q.len() >= CHARGES_KEPT {
        q.pop_front();
    }
    q.push_back(c);
}

/// Lets code outside the stream (the gateway's meter, after a settlement)
/// have a NOTICE sent on it: the latest balance wins, and the stream is woken
/// so it goes out even while no data flows.
#[derive(Clone)]
pub struct Notifier {
    pub(super) stats: Arc<StreamStats>,
    pub(super) wakers: Arc<BothWakers>,
}

impl Notifier {
    /// Set the currency every NOTICE on this stream names.
    pub fn set_currency(&self, code: &str) {
        self.stats
            .currency
            .store(pack_currency(code), Ordering::Relaxed);
    }

    /// Set the transport tariff every NOTICE on this stream names.
    pub fn set_tariff(&self, tariff: TariffNote) {
        lock(&self.stats.outbox).tariff = Some(tariff);
    }

    /// A request ended with this charge: the next NOTICE reports it.
    pub fn report(&self, charge: ChargeNote) {
        keep_last(&mut lock(&self.stats.outbox).charges, charge);
    }

    /// Have a NOTICE sent with this balance (spendable, and held by open
    /// requests) and key bytes left, and any charges reported since the last.
    pub fn post(&self, balance: i64, reserved: i64, key_left: u64) {
        self.stats.notice_balance.store(balance, Ordering::Relaxed);
        self.stats
            .notice_reserved
            .store(reserved, Ordering::Relaxed);
        self.stats
            .notice_key_left
            .store(key_left, Ordering::Relaxed);
        self.stats.notice_pending.store(true, Ordering::Release);
        BothWakers::wake(&self.wakers.read);
        BothWakers::wake(&self.wakers.write);
    }
}

impl Notifier {
    /// Have the stream send CLOSE with `reason` (the gateway ending a
    /// cancelled pad's tunnels): nothing more is sealed after it, and the
    /// peer learns why.
    pub fn close(&self, reason: CloseReason) {
        self.stats
            .close_pending
            .store(reason as u8, Ordering::Release);
        BothWakers::wake(&self.wakers.read);
        BothWakers::wake(&self.wakers.write);
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StreamStats {
    pub(super) fn saw_lease(&self, l: Lease) {
        self.lease_hwm.fetch_max(l.end(), Ordering::Relaxed);
    }

    /// The NOTICE to send now (allocating side), with at most
    /// [`MAX_CHARGES`] of the charges waiting; `None` unless one was posted.
    /// Whether it fits is the caller's: it calls [`StreamStats::sent_notice`]
    /// once it is queued, or [`StreamStats::notice_later`].
    pub(super) fn notice_due(&self) -> Option<Notice> {
        if !self.notice_pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        let out = lock(&self.outbox);
        let currency = self.currency.load(Ordering::Relaxed);
        let tariff = out.tariff.filter(|_| currency != 0);
        let charges = match tariff {
            Some(_) => out.charges.iter().take(MAX_CHARGES).copied().collect(),
            None => Vec::new(),
        };
        Some(Notice {
            balance: self.notice_balance.load(Ordering::Relaxed),
            key_left: self.notice_key_left.load(Ordering::Relaxed),
            currency,
            tariff,
            reserved: self.notice_reserved.load(Ordering::Relaxed),
            charges,
        })
    }

    /// `n` (from [`StreamStats::notice_due`]) is queued: its charges are
    /// out; another NOTICE follows while charges are left (true: the caller
    /// must see that the stream is polled again for it).
    pub(super) fn sent_notice(&self, n: &Notice) -> bool {
        let mut out = lock(&self.outbox);
        let sent = n.charges.len().min(out.charges.len());
        out.charges.drain(..sent);
        let more = !out.charges.is_empty();
        if more {
            self.notice_pending.store(true, Ordering::Release);
        }
        more
    }

    /// The NOTICE from [`StreamStats::notice_due`] did not fit: send it later.
    pub(super) fn notice_later(&self) {
        self.notice_pending.store(true, Ordering::Release);
    }

    /// A NOTICE arrived (following side): keep what it says.
    pub(super) fn received_notice(&self, n: Notice) {
        self.balance.store(n.balance, Ordering::Relaxed);
        if n.tariff.is_some() {
            self.reserved.store(n.reserved, Ordering::Relaxed);
        }
        if n.currency != 0 {
            self.currency.store(n.currency, Ordering::Relaxed);
        }
        let mut inbox = lock(&self.inbox);
        if n.tariff.is_some() {
            inbox.tariff = n.tariff;
        }
        for c in n.charges {
            keep_last(&mut inbox.charges, c);
        }
    }

    /// The tariff the gateway last named (following side).
    pub fn tariff(&self) -> Option<TariffNote> {
        lock(&self.inbox).tariff
    }

    /// The charges the gateway reported since the last call, oldest first.
    pub fn take_charges(&self) -> Vec<ChargeNote> {
        lock(&self.inbox).charges.drain(..).collect()
    }
}
