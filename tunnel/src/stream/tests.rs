//! The stream's tests: two `OtpStream`s over an in-memory duplex, with a
//! pad in memory that fails any byte taken twice.

use super::control::Control;
use super::leases::Loading;
use super::*;
use crate::lease::LeaseAllocator;
use crate::record;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    fn allocate(&self) -> io::Result<Option<Lease>> {
        Ok(self.alloc.lock().unwrap().allocate(self.lease_len))
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
    let up = gw.allocate().unwrap().unwrap();
    let down = gw.allocate().unwrap().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carries_megabytes_both_ways_across_many_leases() {
    let (mut gw, mut ag, used) = pair(32 << 20, 64 * 1024);
    let down = pattern(5 << 20, 3);
    let up = pattern(3 << 20, 5);
    let (d2, u2) = (down.clone(), up.clone());
    let g = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(gw);
        let writer = tokio::spawn(async move {
            for c in d2.chunks(10_000) {
                w.write_all(c).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        });
        let mut got = vec![0u8; u2.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == u2, "upstream bytes differ");
        let w = writer.await.unwrap();
        gw = r.unsplit(w);
        gw
    });
    let (mut r, mut w) = tokio::io::split(ag);
    let writer = tokio::spawn(async move {
        for c in up.chunks(7_000) {
            w.write_all(c).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut got = vec![0u8; down.len()];
    r.read_exact(&mut got).await.unwrap();
    assert!(got == down, "downstream bytes differ");
    let w = writer.await.unwrap();
    ag = r.unsplit(w);
    let gw = g.await.unwrap();
    let s = ag.stats();
    assert_eq!(s.payload_recv.load(Ordering::Relaxed), 5 << 20);
    assert_eq!(gw.stats().payload_recv.load(Ordering::Relaxed), 3 << 20);
    // Full records: 68 pad bytes per 16 KiB, plus the control records
    // that 64 KiB leases need (production leases are far larger).
    let ratio = s.pad_recv.load(Ordering::Relaxed) as f64 / (5u64 << 20) as f64;
    assert!(ratio < 1.01, "pad ratio {ratio}");
    // No two leases either side used overlap.
    let mut ls = used.lock().unwrap().clone();
    ls.sort_by_key(|l| l.offset);
    ls.dedup();
    for w in ls.windows(2) {
        assert!(!w[0].overlaps(&w[1]), "{} overlaps {}", w[0], w[1]);
    }
    assert!(ls.len() > 100, "expected many leases, got {}", ls.len());
}

/// NOTICE records posted non-stop while data crosses many leases never
/// starve a lease switch (they once ate the LEASE_NEXT reserve and the
/// stream stalled), and the follower ends up with the last balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_never_stall_lease_switches() {
    let (gw, mut ag, _) = pair(32 << 20, 64 * 1024);
    let notifier = gw.notifier();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st, n2) = (stop.clone(), notifier.clone());
    let poster = tokio::spawn(async move {
        let mut b = 0i64;
        while !st.load(Ordering::Relaxed) {
            b += 1;
            n2.post(b, 7);
            tokio::task::yield_now().await;
        }
    });
    let down = pattern(4 << 20, 11);
    let d2 = down.clone();
    let g = tokio::spawn(async move {
        let mut gw = gw;
        for c in d2.chunks(3_000) {
            gw.write_all(c).await.unwrap();
        }
        gw.flush().await.unwrap();
        gw
    });
    let mut got = vec![0u8; down.len()];
    tokio::time::timeout(Duration::from_secs(20), ag.read_exact(&mut got))
        .await
        .expect("the stream stalled")
        .unwrap();
    assert!(got == down);
    stop.store(true, Ordering::Relaxed);
    poster.await.unwrap();
    let mut gw = g.await.unwrap();
    notifier.set_currency("CHF");
    notifier.post(-42, 7);
    // Drive the gateway (the NOTICE may wait for its next lease, which
    // only a polled stream switches to) until the follower has read it.
    let mut one = [0u8; 1];
    for _ in 0..200 {
        gw.flush().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(20), ag.read(&mut one)).await;
        if ag.stats().balance.load(Ordering::Relaxed) == -42 {
            break;
        }
    }
    assert_eq!(ag.stats().balance.load(Ordering::Relaxed), -42);
    assert_eq!(
        unpack_currency(ag.stats().currency.load(Ordering::Relaxed)).as_deref(),
        Some("CHF")
    );
}

#[tokio::test]
async fn a_tampered_byte_closes_the_stream_and_delivers_nothing() {
    let (gw, ag, _) = pair(1 << 20, 64 * 1024);
    // Put a byte-flipping relay between them.
    let (mut gw, mut ag) = (gw, ag);
    let mut wire = BytesMut::new();
    gw.plain_out.extend_from_slice(b"secret payload");
    let waker = futures_noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        gw.poll_seal_plain(&mut cx, true),
        Poll::Ready(Ok(()))
    ));
    wire.extend_from_slice(&gw.out);
    wire[25] ^= 0x01;
    ag.inbuf.extend_from_slice(&wire);
    match ag.poll_open_one() {
        Poll::Ready(Err(e)) => assert!(e.to_string().contains("authentication"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(ag.plain_in_len, 0);
    let mut buf = [0u8; 10];
    assert!(
        ag.read(&mut buf).await.is_err(),
        "a failed stream stays failed"
    );
}

#[tokio::test]
async fn close_ends_the_peers_read_cleanly() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    gw.write_all(b"bye").await.unwrap();
    gw.shutdown().await.unwrap();
    let mut got = Vec::new();
    ag.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
    assert_eq!(
        ag.stats().close_reason.load(Ordering::Relaxed),
        CloseReason::Shutdown as u8
    );
}

/// The CLOSE is answered with a CLOSE: both readers end cleanly, and
/// the initiator hears the answer.
#[tokio::test]
async fn a_close_is_answered_and_both_ends_read_a_clean_end() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    gw.shutdown().await.unwrap();
    let mut got = Vec::new();
    ag.read_to_end(&mut got).await.unwrap();
    // The answering side's flush and shutdown are clean, as h2 calls them.
    ag.flush().await.expect("answering a CLOSE flushes cleanly");
    ag.shutdown().await.expect("and shuts down cleanly");
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), gw.read_to_end(&mut back))
        .await
        .expect("the answer arrives")
        .expect("an answered CLOSE is a clean end");
    assert!(back.is_empty());
    assert_eq!(
        gw.stats().close_reason.load(Ordering::Relaxed),
        CloseReason::Shutdown as u8
    );
}

/// A CLOSE never answered, the socket ending instead, is an error at the
/// reader of the side that sent it: the tail of the peer's direction
/// (here, bytes the peer wrote after our CLOSE left) may be cut.
#[tokio::test]
async fn an_unanswered_close_or_a_cut_tail_is_an_error() {
    // Nothing in flight: the peer just vanishes.
    let (mut gw, ag, _) = pair(1 << 20, 64 * 1024);
    gw.shutdown().await.unwrap();
    drop(ag);
    let mut back = Vec::new();
    let e = gw.read_to_end(&mut back).await.unwrap_err();
    assert!(e.to_string().contains("answered our CLOSE"), "{e}");
    // The peer was sending when our CLOSE left; the connection is cut
    // before the rest and its CLOSE arrive: what did arrive is
    // delivered, then the error.
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    ag.shutdown().await.unwrap();
    gw.write_all(b"tail").await.unwrap();
    gw.flush().await.unwrap();
    drop(gw);
    let mut got = Vec::new();
    let e = ag.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(got, b"tail");
    assert!(e.to_string().contains("answered our CLOSE"), "{e}");
}

/// Nothing is accepted after the peer's CLOSE.
#[tokio::test]
async fn bytes_after_a_close_are_refused() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    gw.queue_close(CloseReason::Shutdown);
    gw.seal_controls().unwrap();
    let mut wire = gw.out.split().to_vec();
    wire.extend_from_slice(&[0u8; 40]);
    ag.inbuf.extend_from_slice(&wire);
    match ag.poll_open_one() {
        Poll::Ready(Err(e)) => assert!(e.to_string().contains("after the peer's CLOSE"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_exhaustion_is_reported_with_its_reason() {
    // Room for the two handshake leases and little more.
    let (mut gw, mut ag, _) = pair(3 * 64 * 1024, 64 * 1024);
    let g = tokio::spawn(async move {
        let data = vec![7u8; 1 << 20];
        let r = gw.write_all(&data).await;
        let _ = gw.flush().await;
        r
    });
    let mut got = Vec::new();
    let _ = ag.read_to_end(&mut got).await;
    assert!(got.len() < 1 << 20);
    assert_eq!(
        ag.stats().close_reason.load(Ordering::Relaxed),
        CloseReason::KeyExhausted as u8
    );
    assert!(g.await.unwrap().is_err());
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

/// The agent's writer uses up its first upstream lease and waits for a
/// grant, polled with `cx`. Returns the bytes it accepted.
fn agent_waits_for_a_grant(
    ag: &mut OtpStream<tokio::io::DuplexStream>,
    cx: &mut Context<'_>,
    data: &[u8],
) -> usize {
    let mut sent = 0;
    while let Poll::Ready(n) = Pin::new(&mut *ag).poll_write(cx, &data[sent..]) {
        sent += n.unwrap();
        assert!(
            sent < data.len(),
            "wrote past the first lease without a grant"
        );
    }
    sent
}

/// The gateway reads what the agent sealed (the rest may wait unsealed
/// in the agent) — half a lease, so a grant is due — and sends the grant.
async fn gateway_grants(gw: &mut OtpStream<tokio::io::DuplexStream>, data: &[u8]) {
    let mut up = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while up.len() < 32 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(5), gw.read(&mut chunk))
            .await
            .expect("the agent's sealed records never arrived")
            .unwrap();
        assert!(n > 0, "the agent's stream ended");
        up.extend_from_slice(&chunk[..n]);
    }
    assert!(up == data[..up.len()]);
    for _ in 0..2500 {
        if !gw.recv_next.is_empty() && gw.control.is_empty() && gw.out.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        gw.flush().await.unwrap();
    }
    assert!(
        !gw.recv_next.is_empty(),
        "the gateway never granted a lease"
    );
}

/// After a grant, the waiting writer goes on when polled.
async fn writer_goes_on(
    ag: &mut OtpStream<tokio::io::DuplexStream>,
    cx: &mut Context<'_>,
    rest: &[u8],
) {
    for _ in 0..200 {
        match Pin::new(&mut *ag).poll_write(cx, rest) {
            Poll::Ready(n) => {
                n.unwrap();
                return;
            }
            Poll::Pending => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    panic!("the writer did not go on after the grant");
}

/// An agent whose writer has used up its first upstream lease and waits
/// for a grant, and whose reader then polled (last) and waits for data.
struct BothWaiting {
    gw: OtpStream<tokio::io::DuplexStream>,
    ag: OtpStream<tokio::io::DuplexStream>,
    writer_woken: Arc<Flag>,
    writer: Waker,
    reader: Waker,
    data: Vec<u8>,
    sent: usize,
}

fn writer_and_reader_waiting(seed: u8) -> BothWaiting {
    let (gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let (writer_woken, writer) = flag_waker();
    let (_, reader) = flag_waker();
    let data = pattern(200 * 1024, seed);
    let sent = agent_waits_for_a_grant(&mut ag, &mut Context::from_waker(&writer), &data);
    let mut buf = [0u8; 64];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(Pin::new(&mut ag)
        .poll_read(&mut Context::from_waker(&reader), &mut rb)
        .is_pending());
    writer_woken.0.store(false, Ordering::SeqCst);
    BothWaiting {
        gw,
        ag,
        writer_woken,
        writer,
        reader,
        data,
        sent,
    }
}

/// Two tasks drive the agent's halves. The writer waits for a lease grant;
/// the reader takes the grant off the socket along with data it wants, and
/// stops reading. The writer must still be woken: it once was not, and
/// `carries_megabytes_both_ways_across_many_leases` hung now and then.
#[tokio::test]
async fn a_grant_read_by_the_reader_wakes_the_waiting_writer() {
    let mut w = writer_and_reader_waiting(9);
    // The gateway sends data, then (after reading the upstream) a grant.
    w.gw.write_all(b"downstream").await.unwrap();
    w.gw.flush().await.unwrap();
    gateway_grants(&mut w.gw, &w.data).await;
    w.writer_woken.0.store(false, Ordering::SeqCst);
    // The reader takes everything off the socket and gets its data.
    let mut buf = [0u8; 64];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(Pin::new(&mut w.ag)
        .poll_read(&mut Context::from_waker(&w.reader), &mut rb)
        .is_ready());
    assert_eq!(rb.filled(), b"downstream");
    assert!(
        w.writer_woken.0.load(Ordering::SeqCst),
        "the writer waiting for a grant was not woken"
    );
    let mut wcx = Context::from_waker(&w.writer);
    writer_goes_on(&mut w.ag, &mut wcx, &w.data[w.sent..]).await;
}

/// A socket keeps one read waker. The writer waits for a grant, then the
/// reader polls (last) and waits too; when the grant arrives, the writer
/// is woken without the reader being polled again.
#[tokio::test]
async fn new_bytes_wake_the_waiting_writer_though_the_reader_polled_last() {
    let mut w = writer_and_reader_waiting(5);
    gateway_grants(&mut w.gw, &w.data).await;
    assert!(
        w.writer_woken.0.load(Ordering::SeqCst),
        "the grant reached the socket but the waiting writer was not woken"
    );
    let mut wcx = Context::from_waker(&w.writer);
    writer_goes_on(&mut w.ag, &mut wcx, &w.data[w.sent..]).await;
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
        let lease = gw.source.allocate().unwrap().unwrap();
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

/// A tunnel closing while a grant waits for the next lease sends its
/// CLOSE at once (the grant is moot), whether it closes for shutdown or
/// because the key material ran out; it never waits nor fails.
#[tokio::test]
async fn close_never_waits_behind_a_grant() {
    for reason in [CloseReason::Shutdown, CloseReason::KeyExhausted] {
        let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
        fill_to_reserve(&mut gw);
        queue_grants(&mut gw, 3);
        gw.seal_controls().unwrap();
        assert_eq!(
            gw.control.len(),
            1,
            "the third grant waits for the next lease"
        );
        match reason {
            CloseReason::KeyExhausted => gw.key_exhausted(),
            _ => gw.queue_close(reason),
        }
        gw.seal_controls().unwrap();
        assert!(
            gw.control.is_empty(),
            "{reason:?}: the CLOSE was not sealed"
        );
        let wire = gw.out.split().freeze();
        assert_eq!(agent_opens_all(&mut ag, &wire).await.after_close, 0);
        assert_eq!(ag.send_next.len(), 2);
        assert_eq!(
            ag.stats().close_reason.load(Ordering::Relaxed),
            reason as u8
        );
    }
}

/// Authenticated plaintext opened before a tampered record is delivered;
/// the failure comes after it, and nothing of the tampered record.
#[tokio::test]
async fn plaintext_before_a_tampered_record_is_delivered_then_the_error() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let waker = futures_noop_waker();
    let mut cx = Context::from_waker(&waker);
    gw.plain_out.extend_from_slice(b"first");
    assert!(matches!(
        gw.poll_seal_plain(&mut cx, true),
        Poll::Ready(Ok(()))
    ));
    let first_len = gw.out.len();
    gw.plain_out.extend_from_slice(b"second");
    assert!(matches!(
        gw.poll_seal_plain(&mut cx, true),
        Poll::Ready(Ok(()))
    ));
    let mut wire = gw.out.split().to_vec();
    wire[first_len + record::WIRE_HEADER + 2] ^= 0x10;
    ag.inbuf.extend_from_slice(&wire);
    let mut buf = [0u8; 64];
    let n = ag.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"first");
    assert!(
        ag.read(&mut buf).await.is_err(),
        "the tampered record must end the stream"
    );
}

/// LEASE_GRANTs queued while the next downstream lease is still being
/// allocated never take the room its LEASE_NEXT needs (they once did,
/// and the stream hung now and then under load).
#[tokio::test]
async fn grants_leave_room_for_the_lease_next() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let fill = fill_to_reserve(&mut gw);
    queue_grants(&mut gw, 3);
    gw.seal_controls().unwrap();
    assert!(
        gw.send.remaining() >= LEASE_NEXT_RECORD,
        "grants ate the LEASE_NEXT room"
    );
    assert_eq!(
        gw.control.len(),
        1,
        "the third grant waits for the next lease"
    );
    // The allocation ends: LEASE_NEXT jumps the queue, the grant follows.
    let next = gw.source.allocate().unwrap().unwrap();
    let keys = LeaseKeys::new(next, gw.source.take(next).unwrap());
    gw.control.push_back(Control::lease_next(keys));
    gw.seal_controls().unwrap();
    assert!(gw.control.is_empty());
    assert_eq!(gw.send.lease(), next);
    let wire = gw.out.split().freeze();
    assert!(agent_opens_all(&mut ag, &wire).await.records > 4);
    assert_eq!(ag.send_next.len(), 3);
    assert_eq!(ag.plain_in_len, fill);
}

/// When the key material runs out in the middle of a write, the CLOSE
/// is the last record on the wire: no DATA is sealed after it, and the
/// writer is told.
#[tokio::test]
async fn nothing_is_sealed_after_the_close() {
    let (mut gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    gw.write_all(&pattern(20_000, 3)).await.unwrap();
    // The next allocation has ended and found the pad used up; the
    // writer is the first to hear of it.
    gw.next_send_alloc = Some(tokio::task::spawn_blocking(|| Ok(None)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(gw.write(&vec![7u8; 64 * 1024]).await.is_err());
    assert!(gw.flush().await.is_err());
    let mut wire = BytesMut::new();
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), ag.io.read_buf(&mut wire)).await
    {
        if n == 0 {
            break;
        }
    }
    let Opened {
        records,
        after_close,
    } = agent_opens_all(&mut ag, &wire).await;
    assert!(records >= 2, "{records} records");
    assert_eq!(
        ag.stats().close_reason.load(Ordering::Relaxed),
        CloseReason::KeyExhausted as u8
    );
    assert_eq!(after_close, 0, "records were sealed after the CLOSE");
}

fn futures_noop_waker() -> Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Noop))
}
