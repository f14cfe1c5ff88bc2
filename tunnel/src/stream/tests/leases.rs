//! Lease scheduling: grants never take the room LEASE_NEXT needs.

use super::*;

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
    let next = gw.source.allocate(u64::MAX).unwrap().unwrap();
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
