//! Waking both halves: background work (allocations, lease loads, socket
//! readiness seen from the other side) wakes whoever drives the read and the
//! write side, whether one task drives both (hyper's h2) or two do.

use std::sync::Arc;
use std::task::Waker;

/// The wakers of whoever drives the read and the write side. Background work
/// (allocations, lease loads, socket readiness seen from the other side) wakes
/// both, so the stream makes progress however its halves are driven — one
/// task (as hyper's h2 does) or two (`tokio::io::split`).
#[derive(Default)]
pub(crate) struct BothWakers {
    pub(super) read: std::sync::Mutex<Option<Waker>>,
    pub(super) write: std::sync::Mutex<Option<Waker>>,
}

impl BothWakers {
    pub(super) fn set(slot: &std::sync::Mutex<Option<Waker>>, w: &Waker) {
        if let Ok(mut g) = slot.lock() {
            if !g.as_ref().is_some_and(|old| old.will_wake(w)) {
                *g = Some(w.clone());
            }
        }
    }
    pub(super) fn wake(slot: &std::sync::Mutex<Option<Waker>>) {
        if let Some(w) = slot.lock().ok().and_then(|g| g.clone()) {
            w.wake();
        }
    }
}

impl std::task::Wake for BothWakers {
    fn wake(self: Arc<Self>) {
        let read = self.read.lock().ok().and_then(|g| g.clone());
        let write = self.write.lock().ok().and_then(|g| g.clone());
        match (read, write) {
            // One task drives both halves (hyper's h2): wake it once.
            (Some(r), Some(w)) if r.will_wake(&w) => r.wake(),
            (r, w) => {
                r.into_iter().chain(w).for_each(Waker::wake);
            }
        }
    }
}
