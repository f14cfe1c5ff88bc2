//! Closing: CLOSE answered with CLOSE, cut tails, key exhaustion.

use super::*;

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

/// A CLOSE asked for through the notifier goes out while the tunnel is
/// idle, with its reason, and the peer's reader ends cleanly.
#[tokio::test]
async fn a_close_from_outside_reaches_an_idle_peer_with_its_reason() {
    let (gw, mut ag, _) = pair(1 << 20, 64 * 1024);
    let notifier = gw.notifier();
    // The gateway's side is being read (as h2 does), nothing is written.
    let reader = tokio::spawn(async move {
        let mut gw = gw;
        let mut sink = Vec::new();
        let r = gw.read_to_end(&mut sink).await;
        (gw, r)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    notifier.close(CloseReason::Cancelled);
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), ag.read_to_end(&mut got))
        .await
        .expect("the CLOSE arrives")
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(
        ag.stats().close_reason.load(Ordering::Relaxed),
        CloseReason::Cancelled as u8
    );
    ag.flush().await.expect("the answer goes out");
    let (mut gw, r) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the gateway's reader ends")
        .unwrap();
    r.expect("an answered CLOSE is a clean end");
    assert!(
        gw.write_all(b"late").await.is_err(),
        "nothing after the CLOSE"
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
