//! The stream's tests: two `OtpStream`s over an in-memory duplex, with a
//! pad in memory that fails any byte taken twice.

use super::control::Control;
use super::leases::Loading;
use super::*;
use crate::lease::LeaseAllocator;
use crate::record;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod close;
mod flow;
mod integrity;
mod leases;
mod wakers;

/// A pad in memory shared by both ends, each with its own copy, and a
/// journal of every lease either side used.
struct MemPad {
    bytes: Vec<u8>,
    erased: Mutex<Vec<bool>>,
    alloc: Mutex<LeaseAllocator>,
    lease_len: u64,
    used: Arc<Mutex<Vec<Lease>>>,
}

impl KeySource for MemPad {
    fn take(&self, l: Lease) -> io::Result<KeyBytes> {
        let mut e = self.erased.lock().unwrap();
        for i in l.offset..l.end() {
            assert!(!e[i as usize], "byte {i} taken twice on one side");
            e[i as usize] = true;
        }
        Ok(self.bytes[l.offset as usize..l.end() as usize]
            .to_vec()
            .into())
    }
    fn allocate(&self, want: u64) -> io::Result<Option<Lease>> {
        Ok(self
            .alloc
            .lock()
            .unwrap()
            .allocate(want.min(self.lease_len)))
    }
    fn note_use(&self, l: Lease) {
        self.used.lock().unwrap().push(l);
    }
}

fn pair(
    data_size: u64,
    lease_len: u64,
) -> (
    OtpStream<tokio::io::DuplexStream>,
    OtpStream<tokio::io::DuplexStream>,
    Arc<Mutex<Vec<Lease>>>,
) {
    let bytes: Vec<u8> = (0..data_size).map(|i| (i * 7 + i / 251) as u8).collect();
    let used = Arc::new(Mutex::new(Vec::new()));
    let mk = |alloc_hwm: u64| MemPad {
        bytes: bytes.clone(),
        erased: Mutex::new(vec![false; data_size as usize]),
        alloc: Mutex::new(LeaseAllocator {
            hwm: alloc_hwm,
            data_size,
        }),
        lease_len,
        used: used.clone(),
    };
    let gw: Arc<dyn KeySource> = Arc::new(mk(0));
    // The handshake's first two leases.
    let up = gw.allocate(u64::MAX).unwrap().unwrap();
    let down = gw.allocate(u64::MAX).unwrap().unwrap();
    let ag: Arc<dyn KeySource> = Arc::new(mk(0));
    let (a, b) = tokio::io::duplex(256 * 1024);
    let gws = OtpStream::new(
        a,
        Role::Allocator,
        gw.clone(),
        LeaseKeys::new(down, gw.take(down).unwrap()),
        LeaseKeys::new(up, gw.take(up).unwrap()),
    );
    let ags = OtpStream::new(
        b,
        Role::Follower,
        ag.clone(),
        LeaseKeys::new(up, ag.take(up).unwrap()),
        LeaseKeys::new(down, ag.take(down).unwrap()),
    );
    (gws, ags, used)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 10) as u8)
        .collect()
}

/// A waker that records that it was woken.
struct Flag(std::sync::atomic::AtomicBool);
impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}
fn flag_waker() -> (Arc<Flag>, Waker) {
    let f = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    (f.clone(), Waker::from(f))
}

/// Fill the gateway's downstream lease up to the control reserve; returns
/// the payload bytes sealed.
fn fill_to_reserve(gw: &mut OtpStream<tokio::io::DuplexStream>) -> usize {
    let mut fill = 0;
    while gw.send.remaining() > CONTROL_RESERVE {
        let n = (gw.send.remaining() - CONTROL_RESERVE - KEY_OVERHEAD).min(MAX_PAYLOAD);
        gw.seal_one(RecordType::Data, n, false, &vec![1u8; n])
            .unwrap();
        fill += n;
    }
    assert_eq!(gw.send.remaining(), CONTROL_RESERVE);
    fill
}

/// Queue `n` LEASE_GRANTs, with real leases, on the gateway.
fn queue_grants(gw: &mut OtpStream<tokio::io::DuplexStream>, n: usize) {
    for _ in 0..n {
        let lease = gw.source.allocate(u64::MAX).unwrap().unwrap();
        let keys = LeaseKeys::new(lease, gw.source.take(lease).unwrap());
        gw.control.push_back(Control::grant(lease));
        gw.recv_next.push_back(Loading::Ready(keys));
    }
}

/// What the agent opened of a wire: records, and records after a CLOSE.
struct Opened {
    records: usize,
    after_close: usize,
}

/// The agent opens every whole record it was sent.
async fn agent_opens_all(ag: &mut OtpStream<tokio::io::DuplexStream>, wire: &[u8]) -> Opened {
    ag.inbuf.extend_from_slice(wire);
    let mut opened = Opened {
        records: 0,
        after_close: 0,
    };
    loop {
        let closed = ag.stats().close_reason.load(Ordering::Relaxed) != 0;
        match ag.poll_open_one() {
            Poll::Ready(Ok(true)) => {
                opened.records += 1;
                opened.after_close += usize::from(closed);
            }
            Poll::Ready(Ok(false)) => return opened,
            Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
            Poll::Ready(Err(e)) => panic!("agent refused the records: {e}"),
        }
    }
}

fn futures_noop_waker() -> Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Noop))
}
