//! Connections that have not completed a hello, capped. Each holds a file
//! descriptor for up to the probe hold, so without a cap a stranger's idle
//! connections use up the descriptors tunnels and origins need. Beyond the
//! cap the oldest waiting connection is closed early, as any loaded server
//! closes idle connections: a prober learns nothing it would not learn of
//! any busy server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub struct Pending {
    cap: usize,
    /// By arrival: the first entry is the oldest (O(log n) either end, so a
    /// flood of connections costs little per connection even at a large cap).
    queue: Mutex<BTreeMap<u64, CancellationToken>>,
    next: AtomicU64,
}

/// One connection's place among those waiting for a hello; leaves when dropped.
pub struct Waiting {
    owner: Arc<Pending>,
    id: u64,
    /// Cancelled when this connection is evicted to make room.
    pub evicted: CancellationToken,
}

impl Pending {
    pub fn new(cap: usize) -> Arc<Pending> {
        Arc::new(Pending {
            cap: cap.max(1),
            queue: Mutex::default(),
            next: AtomicU64::new(0),
        })
    }

    /// How many connections the gateway may hold before their hello, for a
    /// process that may open `open_files` descriptors: a quarter of them,
    /// the rest kept for tunnels and their origins.
    pub fn cap_for(open_files: u64) -> usize {
        (open_files / 4).clamp(16, 1 << 16) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection waits for its hello; the oldest waiting one is
    /// evicted if the cap is reached.
    pub fn enter(self: &Arc<Self>) -> Waiting {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut q = self.lock();
        while q.len() >= self.cap {
            if let Some((_, oldest)) = q.pop_first() {
                oldest.cancel();
            }
        }
        q.insert(id, evicted.clone());
        Waiting {
            owner: self.clone(),
            id,
            evicted,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_cap_the_oldest_is_evicted_and_leaving_frees_a_place() {
        let p = Pending::new(2);
        let a = p.enter();
        let b = p.enter();
        assert_eq!(p.len(), 2);
        let c = p.enter();
        assert!(a.evicted.is_cancelled(), "the oldest makes room");
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert_eq!(p.len(), 2);
        drop(b);
        assert_eq!(p.len(), 1);
        let d = p.enter();
        assert!(!c.evicted.is_cancelled() && !d.evicted.is_cancelled());
        drop(a);
        assert_eq!(
            p.len(),
            2,
            "an evicted connection leaving frees nothing twice"
        );
    }

    #[test]
    fn a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(Pending::cap_for(1024), 256);
        assert_eq!(Pending::cap_for(20), 16);
        assert_eq!(Pending::cap_for(u64::MAX), 1 << 16);
    }
}
