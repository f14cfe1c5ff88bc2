//! Waking: a writer waiting for a grant is woken whichever half reads it.

use super::*;

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
