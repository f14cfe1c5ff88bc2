//! The tunnels open now, by pad: how a cancellation reaches a pad's running
//! tunnels at once (each is sent CLOSE(cancelled)). In memory only; a
//! tunnel leaves when its guard drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tunnel::stream::{CloseReason, Notifier};

/// Open tunnels by serial.
#[derive(Default)]
pub struct LiveTunnels {
    next: AtomicU64,
    open: Mutex<HashMap<String, Vec<(u64, Notifier)>>>,
}

/// A tunnel's place in [`LiveTunnels`], given up on drop.
pub struct LiveGuard {
    live: Arc<LiveTunnels>,
    serial: String,
    id: u64,
}

impl LiveTunnels {
    /// Record that a tunnel of `serial` is open.
    pub fn enter(self: &Arc<Self>, serial: &str, notifier: Notifier) -> LiveGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(serial.to_string())
            .or_default()
            .push((id, notifier));
        LiveGuard {
            live: self.clone(),
            serial: serial.to_string(),
            id,
        }
    }

    /// Send CLOSE(`reason`) on every open tunnel of `serial`; how many.
    pub fn close(&self, serial: &str, reason: CloseReason) -> usize {
        let open = self.lock();
        let tunnels = open.get(serial).map(Vec::as_slice).unwrap_or(&[]);
        for (_, n) in tunnels {
            n.close(reason);
        }
        tunnels.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(u64, Notifier)>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut open = self.live.lock();
        if let Some(v) = open.get_mut(&self.serial) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                open.remove(&self.serial);
            }
        }
    }
}
