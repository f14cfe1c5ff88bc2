//! Tampering: nothing unauthenticated is delivered.

use super::*;

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
