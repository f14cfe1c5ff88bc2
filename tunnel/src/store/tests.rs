//! The two key sources against real pad files in a temporary directory.

use super::*;
use crate::handshake::{Slot, HELLO_LEN};
use crate::lease::Lease;
use crate::mint::mint;
use crate::pad::{Mode, PadFile, PadHeader, Serial, PAGE};
use crate::stream::KeySource;
use std::sync::Arc;

fn minted(dir: &Path) -> (PathBuf, PathBuf) {
    let h = PadHeader {
        mode: Mode::Otp,
        serial: Serial::random(),
        ticket_slots: 8,
        data_size: 64 * PAGE * 16,
        created_unix: 0,
        value_micros: 0,
        policy_id: [0; 32],
        gateways: vec!["127.0.0.1:1".into()],
        shares: Vec::new(),
        holds: None,
    };
    let g = dir.join("gw.pad");
    let u = dir.join("user.pad");
    mint(&h, &[g.clone(), u.clone()], |_| {}).unwrap();
    AllocatingPad::create_state(&g, PadStatus::Active).unwrap();
    (g, u)
}

fn hello_for(u: &Path, i: u32) -> [u8; HELLO_LEN] {
    let pad = PadFile::open(u).unwrap();
    crate::handshake::seal_hello(
        &pad.read_slot(i).unwrap(),
        crate::handshake::Hello {
            version: crate::handshake::PROTOCOL_VERSION,
        },
    )
}

fn claimed(c: SlotClaim) -> (Slot, Option<(Lease, Lease)>) {
    match c {
        SlotClaim::Claimed { slot, leases, .. } => (slot, leases),
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[test]
fn gateway_state_survives_reopen_and_never_reallocates() {
    let dir = tempfile::tempdir().unwrap();
    let (g, u) = minted(dir.path());
    let hello1 = hello_for(&u, 1);
    let hello2 = hello_for(&u, 2);
    let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
    let (_, leases) = claimed(pad.claim_slot(2, &hello2).unwrap());
    let (up, down) = leases.unwrap();
    let third = pad.allocate(u64::MAX).unwrap().unwrap();
    assert!(!up.overlaps(&down) && !down.overlaps(&third));
    drop(pad); // a crash: nothing but the durable state remains
    let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
    assert_eq!(pad.next_slot(), 3, "slots 0..=2 are burned");
    assert!(
        matches!(
            pad.claim_slot(1, &hello1).unwrap(),
            SlotClaim::AlreadyBurned
        ),
        "a burned slot opens nothing"
    );
    let fourth = pad.allocate(u64::MAX).unwrap().unwrap();
    assert!(fourth.offset >= third.end());
}

#[test]
fn a_slot_is_claimed_once_and_a_bad_hello_burns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (g, u) = minted(dir.path());
    let pad = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
    let hello = hello_for(&u, 0);
    claimed(pad.claim_slot(0, &hello).unwrap());
    for _ in 0..3 {
        assert!(matches!(
            pad.claim_slot(0, &hello).unwrap(),
            SlotClaim::AlreadyBurned
        ));
    }
    let mut forged = hello_for(&u, 1);
    forged[20] ^= 1;
    assert!(matches!(
        pad.claim_slot(1, &forged).unwrap(),
        SlotClaim::BadHello
    ));
    // The genuine hello for that slot comes too late: its keys are gone.
    assert!(matches!(
        pad.claim_slot(1, &hello_for(&u, 1)).unwrap(),
        SlotClaim::AlreadyBurned
    ));
    assert!(pad.read_ticket(1).is_err(), "burned slots are erased");
}

/// Eight threads present the same genuine hello at the same instant:
/// exactly one is handed the slot's keys.
#[test]
fn concurrent_identical_hellos_give_one_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (g, u) = minted(dir.path());
    let pad = Arc::new(AllocatingPad::open(&g, 64 * 1024, None).unwrap());
    for (slot, threads) in [(0u32, 2usize), (1, 8)] {
        let hello = hello_for(&u, slot);
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (pad, barrier) = (pad.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    matches!(
                        pad.claim_slot(slot, &hello).unwrap(),
                        SlotClaim::Claimed { .. }
                    )
                })
            })
            .collect();
        let claims = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&c| c)
            .count();
        assert_eq!(claims, 1, "{threads} threads on slot {slot}");
    }
}

#[test]
fn agent_never_claims_a_slot_twice_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, u) = minted(dir.path());
    let a = FollowingPad::open(&u, None).unwrap();
    let (i0, s0) = a.claim_slot(0, 1).unwrap();
    drop(a);
    let a = FollowingPad::open(&u, None).unwrap();
    // The unanswered hello survives the restart, to be sent again.
    let p = a.pending(0).unwrap();
    assert_eq!((p.slot, p.version, p.spoiled), (i0, 1, false));
    assert_eq!(a.pending_keys(p).unwrap().ticket(), s0.ticket());
    a.spoil_pending(0, i0).unwrap();
    drop(a);
    let a = FollowingPad::open(&u, None).unwrap();
    assert!(a.pending(0).unwrap().spoiled, "spoiled survives a restart");
    let (i1, s1) = a.claim_slot(0, 1).unwrap();
    assert_eq!((i0, i1), (0, 1));
    assert_ne!(s0.ticket(), s1.ticket());
    assert_eq!(a.slots_left(), 6);
    assert_eq!(a.streak(0), 1, "slot 0 was given up unanswered");
    assert!(
        PadFile::open(&u).unwrap().read_slot(0).is_err(),
        "a given-up slot is erased"
    );
    a.slot_answered(0, 1).unwrap();
    assert!(a.pending(0).is_none());
    assert_eq!(a.streak(0), 0, "a reply ends the streak");
}

/// A copy of the pad whose earlier slots were used elsewhere (another
/// device, a lost `.state`): its agent skips the erased slots instead of
/// failing on each.
#[test]
fn erased_slots_are_skipped_when_claiming() {
    let dir = tempfile::tempdir().unwrap();
    let (_, u) = minted(dir.path());
    PadFile::open(&u).unwrap().erase_slots(0, 3).unwrap();
    let a = FollowingPad::open(&u, None).unwrap();
    let (i, _) = a.claim_slot(0, 1).unwrap();
    assert_eq!(i, 3);
    assert_eq!(a.slots_left(), 4);
    PadFile::open(&u).unwrap().erase_slots(4, 8).unwrap();
    let e = a.claim_slot(0, 1).unwrap_err().to_string();
    assert!(e.contains("every ticket slot"), "{e}");
}

#[test]
fn a_second_agent_on_the_same_pad_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (g, u) = minted(dir.path());
    let _first = FollowingPad::open(&u, None).unwrap();
    let e = FollowingPad::open(&u, None).unwrap_err().to_string();
    assert!(e.contains("pad in use by another agent"), "{e}");
    let _gw = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
    let e = AllocatingPad::open(&g, 64 * 1024, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use by another gateway"), "{e}");
}

#[test]
fn the_agent_refuses_leases_over_spent_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let (_, u) = minted(dir.path());
    let a = FollowingPad::open(&u, None).unwrap();
    let lease = |offset, len| Lease { offset, len };
    let (i, _) = a.claim_slot(0, 1).unwrap();
    a.begin_tunnel(0, i, lease(0, 65536), lease(65536, 65536))
        .unwrap();
    a.take(lease(0, 65536)).unwrap();
    let e = a.take(lease(0, 65536)).unwrap_err().to_string();
    assert!(e.contains("already used"), "{e}");
    // A grant overlapping a lease in use is refused before any read.
    a.take(lease(131072, 65536)).unwrap();
    assert!(a.take(lease(131072 + 4096, 65536)).is_err());
    drop(a);
    // After a restart the floor holds: a new tunnel's leases lie above it.
    let a = FollowingPad::open(&u, None).unwrap();
    let (i, _) = a.claim_slot(0, 1).unwrap();
    let e = a
        .begin_tunnel(0, i, lease(65536, 65536), lease(196608, 65536))
        .unwrap_err()
        .to_string();
    assert!(e.contains("below key material already spent"), "{e}");
    a.begin_tunnel(0, i, lease(262144, 65536), lease(327680, 65536))
        .unwrap();
    // What lay between the old floor and the new leases is erased,
    // though this side never took all of it (announced, then the tunnel died).
    assert!(PadFile::open(&u)
        .unwrap()
        .take(lease(196608, 4096))
        .is_err());
}

#[test]
fn tickets_match_between_the_twins() {
    let dir = tempfile::tempdir().unwrap();
    let (g, u) = minted(dir.path());
    let gw = AllocatingPad::open(&g, 64 * 1024, None).unwrap();
    let ag = FollowingPad::open(&u, None).unwrap();
    let (i, slot) = ag.claim_slot(0, 1).unwrap();
    assert_eq!(gw.read_ticket(i).unwrap(), slot.ticket());
}

/// A pad split three ways: the user's copy and one twin per share.
fn minted_split(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let slots = 9;
    let data_size = 64 * PAGE * 12;
    let h = PadHeader {
        mode: Mode::Otp,
        serial: Serial::random(),
        ticket_slots: slots,
        data_size,
        created_unix: 0,
        value_micros: 0,
        policy_id: [0; 32],
        gateways: vec![
            "127.0.0.1:1".into(),
            "127.0.0.1:2".into(),
            "127.0.0.1:3".into(),
        ],
        shares: crate::pad::split(slots, data_size, 3).unwrap(),
        holds: None,
    };
    let u = dir.join("user.pad");
    let twins: Vec<PathBuf> = (0..3).map(|k| dir.join(format!("gw{k}.pad"))).collect();
    crate::mint::mint_split(&h, &u, &twins, |_| {}).unwrap();
    for t in &twins {
        AllocatingPad::create_state(t, PadStatus::Active).unwrap();
    }
    (u, twins)
}

#[test]
fn a_split_pads_twin_holds_its_share_and_not_one_byte_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let (u, twins) = minted_split(dir.path());
    let user = std::fs::read(&u).unwrap();
    let h = PadFile::open(&u).unwrap().header().clone();
    for (k, t) in twins.iter().enumerate() {
        let twin = std::fs::read(t).unwrap();
        assert_eq!(twin.len(), user.len());
        let mine = h.share(k).unwrap().file_ranges(&h);
        let inside = |at: u64| mine.iter().any(|r| r.contains(&at));
        for at in tunnel_key_bytes(&h) {
            let (a, b) = (twin[at as usize], user[at as usize]);
            if inside(at) {
                assert_eq!(a, b, "twin {k} differs from the user's copy at {at}");
            } else {
                assert_eq!(a, 0, "twin {k} holds byte {at} of another share");
            }
        }
        let th = PadFile::open(t).unwrap().header().clone();
        assert_eq!(th.holds, Some(k as u8));
    }
    // The user's copy is no twin, and a twin is no user's pad.
    assert!(AllocatingPad::open(&u, 64 * 1024, None).is_err());
    let e = FollowingPad::open(&twins[0], None).unwrap_err().to_string();
    assert!(e.contains("gateway's twin"), "{e}");
}

/// The key-material offsets of a pad file (after the header).
fn tunnel_key_bytes(h: &PadHeader) -> std::ops::Range<u64> {
    crate::pad::HEADER_LEN..h.file_len()
}

#[test]
fn each_twin_allocates_only_inside_its_share_and_the_agent_follows_per_share() {
    let dir = tempfile::tempdir().unwrap();
    let (u, twins) = minted_split(dir.path());
    let ag = Arc::new(FollowingPad::open(&u, None).unwrap());
    assert_eq!(ag.share_count(), 3);
    assert_eq!(ag.slots_left(), 9);
    for (k, t) in twins.iter().enumerate() {
        let gw = AllocatingPad::open(t, 64 * 1024, None).unwrap();
        let share = ag.header().share(k).unwrap();
        assert_eq!(gw.tickets_left(), share.slot_count());
        let (i, _) = ag.claim_slot(k, 1).unwrap();
        assert!(share.slots.contains(&i), "share {k} slot {i}");
        let (_, leases) = claimed(gw.claim_slot(i, &hello_for(&u, i)).unwrap());
        let (up, down) = leases.unwrap();
        for l in [up, down] {
            assert!(l.offset >= share.data.start && l.end() <= share.data.end);
        }
        // Allocation stops at the share's end, never running into the next.
        let mut last = down;
        while let Some(l) = gw.allocate(64 * 1024).unwrap() {
            last = l;
        }
        assert_eq!(last.end(), share.data.end);
        assert_eq!(gw.key_left(), 0);
        ag.begin_tunnel(k, i, up, down).unwrap();
        let source = ag.share_source(k).unwrap();
        source.take(up).unwrap();
        // A lease of another share is refused on this share's tunnel.
        let other = ag.header().share((k + 1) % 3).unwrap();
        let foreign = Lease {
            offset: other.data.end - 65536,
            len: 65536,
        };
        let e = source.take(foreign).unwrap_err().to_string();
        assert!(e.contains("outside this gateway's share"), "{e}");
        // A hello on another share's slot is unknown here.
        let j = other.slots.end - 1;
        assert!(matches!(
            gw.claim_slot(j, &hello_for(&u, j)).unwrap(),
            SlotClaim::AlreadyBurned
        ));
    }
    assert_eq!(ag.slots_left(), 6);
    drop(ag);
    // Each share's marks are durable on their own.
    let ag = FollowingPad::open(&u, None).unwrap();
    for k in 0..3 {
        assert_eq!(ag.slots_left_in(k), 2);
        let share = ag.header().share(k).unwrap();
        let below = Lease {
            offset: share.data.start,
            len: 65536,
        };
        let (i, _) = ag.claim_slot(k, 1).unwrap();
        assert!(
            ag.begin_tunnel(k, i, below, below).is_err(),
            "share {k}'s floor held"
        );
    }
}
