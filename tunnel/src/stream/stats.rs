//! Counters a stream keeps (pad and payload bytes, leases, balance, the
//! peer's CLOSE reason), shared with whoever watches it, and the notifier
//! through which the gateway's meter has NOTICE records sent and the
//! gateway closes a tunnel from outside.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use super::control::{pack_currency, CloseReason};
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
    /// The last balance the gateway reported (micro-units).
    pub balance: AtomicI64,
    /// A NOTICE waiting to be sent (allocating side): balance and key bytes left.
    pub(super) notice_pending: AtomicBool,
    pub(super) notice_balance: AtomicI64,
    pub(super) notice_key_left: AtomicU64,
    /// The ledger's currency (three ASCII letters, packed; 0 = not told):
    /// the gateway sets it, NOTICE records carry it, the agent keeps it.
    pub currency: AtomicU32,
    /// A CLOSE asked for from outside the stream (its reason; 0: none).
    pub(super) close_pending: AtomicU8,
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

    pub fn post(&self, balance: i64, key_left: u64) {
        self.stats.notice_balance.store(balance, Ordering::Relaxed);
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

impl StreamStats {
    pub(super) fn saw_lease(&self, l: Lease) {
        self.lease_hwm.fetch_max(l.end(), Ordering::Relaxed);
    }
}
