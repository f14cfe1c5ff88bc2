//! Pad files: header codec, taking and erasing key material.

use super::*;
use crate::mint::mint;

fn header() -> PadHeader {
    PadHeader {
        mode: Mode::Otp,
        serial: Serial([1, 2, 3, 4, 5, 6, 7, 8]),
        ticket_slots: 20,
        data_size: 8 * PAGE,
        created_unix: 1_700_000_000,
        value_micros: 5_000_000,
        policy_id: [0; 32],
        gateways: vec!["127.0.0.1:7443".into(), "gw.example:7443".into()],
        shares: Vec::new(),
        holds: None,
    }
}

#[test]
fn header_round_trips() {
    let h = header();
    assert_eq!(PadHeader::decode(&h.encode().unwrap()).unwrap(), h);
}

#[test]
fn header_damage_is_named() {
    let mut b = header().encode().unwrap();
    b[30] ^= 1;
    assert_eq!(PadHeader::decode(&b), Err(HeaderError::Checksum));
    let mut b = header().encode().unwrap();
    b[0] = b'X';
    assert_eq!(PadHeader::decode(&b), Err(HeaderError::BadMagic));
    let b = header().encode().unwrap();
    assert!(matches!(
        PadHeader::decode(&b[..100]),
        Err(HeaderError::Truncated { .. })
    ));
}

/// Found by fuzzing: a data size near 2^64 made the file's length
/// overflow (a panic, or in a release build a wrapped length that let a
/// short file pass the size check).
#[test]
fn a_data_size_no_file_can_have_is_refused() {
    for size in [u64::MAX - PAGE + 1, i64::MAX as u64 + 1 - PAGE] {
        let mut b = header().encode().unwrap();
        b[28..36].copy_from_slice(&size.to_be_bytes());
        let n = b.len();
        let crc = crc32fast::hash(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_be_bytes());
        match PadHeader::decode(&b) {
            Err(HeaderError::BadField { field, .. }) => assert_eq!(field, "data_size"),
            other => panic!("data size {size}: {other:?}"),
        }
    }
}

/// Found by fuzzing: a header claiming more gateway addresses than fit
/// read a length byte past the end of the header block (a panic in the
/// agent or gateway opening the file) instead of refusing the field.
#[test]
fn gateway_addresses_running_past_the_header_are_refused() {
    let mut b = header().encode().unwrap();
    b[84] = 255;
    // Addresses of 200 bytes, the last one ending exactly at the block's
    // end (over the checksum), and 255 claimed.
    let mut at = 85;
    while at < b.len() {
        b[at] = ((b.len() - at - 1).min(200)) as u8;
        at += 1 + b[at] as usize;
    }
    // The checksum is the last address's tail: vary a byte the decoder
    // ignores until it is ASCII, so the address reads as text.
    let n = b.len();
    for spare in 0..=255u8 {
        b[11] = spare;
        let crc = crc32fast::hash(&b[..n - 4]).to_be_bytes();
        if crc.is_ascii() {
            b[n - 4..].copy_from_slice(&crc);
            break;
        }
    }
    assert!(b[n - 4..].is_ascii());
    match PadHeader::decode(&b) {
        Err(HeaderError::BadField { field, .. }) => assert_eq!(field, "gateways"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn serial_parses_with_and_without_dashes() {
    let s = Serial([0x3f, 0x9a, 0x71, 0xc2, 0x0b, 0x4e, 0xd8, 0x15]);
    assert_eq!(s.to_string(), "3f9a-71c2-0b4e-d815");
    assert_eq!("3f9a-71c2-0b4e-d815".parse::<Serial>().unwrap(), s);
    assert_eq!("3f9a71c20b4ed815".parse::<Serial>().unwrap(), s);
    assert!("3f9a".parse::<Serial>().is_err());
}

#[test]
fn mint_writes_identical_copies_and_take_erases() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pad");
    let b = dir.path().join("b.pad");
    mint(&header(), &[a.clone(), b.clone()], |_| {}).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let pad = PadFile::open(&a).unwrap();
    let lease = Lease {
        offset: PAGE,
        len: PAGE,
    };
    let key = pad.take(lease).unwrap();
    assert!(key.iter().any(|&x| x != 0));
    let raw = std::fs::read(&a).unwrap();
    let off = (pad.header().data_offset() + PAGE) as usize;
    assert!(
        raw[off..off + PAGE as usize].iter().all(|&x| x == 0),
        "taken bytes are erased on disk"
    );
    assert_eq!(
        &std::fs::read(&b).unwrap()[off..off + PAGE as usize],
        &key[..]
    );
    assert!(pad
        .take(Lease {
            offset: 8 * PAGE,
            len: 1
        })
        .is_err());
}

#[test]
fn take_reads_the_same_bytes_cached_evicted_or_half_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pad");
    let b = dir.path().join("b.pad");
    mint(&header(), &[a.clone(), b.clone()], |_| {}).unwrap();
    let twin = std::fs::read(&b).unwrap();
    let pad = PadFile::open(&a).unwrap();
    let data = pad.header().data_offset();
    let evict = |from: u64, len: u64| {
        pad.file.sync_all().unwrap();
        rustix::fs::fadvise(
            &pad.file,
            from,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        )
        .unwrap();
    };
    // Pages 0-1 as written (cached), 2-3 evicted, 4-5 with the second page evicted.
    evict(data + 2 * PAGE, 2 * PAGE);
    evict(data + 5 * PAGE, PAGE);
    for (offset, len) in [
        (0, 2 * PAGE),
        (2 * PAGE, 2 * PAGE),
        (4 * PAGE, 2 * PAGE),
        (6 * PAGE, 100),
    ] {
        let key = pad.take(Lease { offset, len }).unwrap();
        let at = (data + offset) as usize;
        assert_eq!(&key[..], &twin[at..at + len as usize], "lease at {offset}");
    }
}

#[test]
fn taken_leases_and_read_slots_fail_instead_of_giving_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pad");
    mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o600,
        "a pad is key material: owner only"
    );
    let pad = PadFile::open(&a).unwrap();
    let lease = Lease {
        offset: 2 * PAGE,
        len: PAGE,
    };
    pad.take(lease).unwrap();
    let e = pad.take(lease).unwrap_err();
    assert!(e.to_string().contains("erased"), "{e}");
    // Any lease touching erased bytes is refused, not just the same one.
    let e = pad
        .take(Lease {
            offset: 2 * PAGE + 512,
            len: PAGE,
        })
        .unwrap_err();
    assert!(e.to_string().contains("erased"), "{e}");
    assert!(pad.read_slot(3).is_ok() && pad.read_ticket(3).is_ok());
    pad.erase_slots(3, 4).unwrap();
    assert!(pad.read_slot(3).unwrap_err().to_string().contains("erased"));
    assert!(pad.read_ticket(3).is_err());
    assert!(pad.read_slot(4).is_ok(), "the next slot is untouched");
    // Data erased without being taken (announced, never used) is refused too.
    pad.erase_data(5 * PAGE, 6 * PAGE).unwrap();
    assert!(pad
        .take(Lease {
            offset: 5 * PAGE,
            len: PAGE
        })
        .is_err());
}

#[test]
fn erased_blocks_are_found_anywhere() {
    let mut b = vec![0xa5u8; 4096];
    assert!(!holds_erased_block(&b));
    b[1024..1056].fill(0);
    assert!(holds_erased_block(&b), "one aligned zero block");
    let mut b = vec![0xa5u8; 4096 + 20];
    b[4096..].fill(0);
    assert!(holds_erased_block(&b), "a zero tail of 20 bytes");
    let mut b = vec![0xa5u8; 4096];
    b[1030..1060].fill(0);
    assert!(
        !holds_erased_block(&b),
        "30 unaligned zeros are not a block"
    );
}

#[test]
fn a_locked_pad_cannot_be_locked_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pad");
    mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
    let first = PadFile::open(&a).unwrap();
    first.lock_exclusive().unwrap();
    let second = PadFile::open(&a).unwrap();
    assert_eq!(
        second.lock_exclusive().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    drop(first);
    second.lock_exclusive().unwrap();
}

#[test]
fn truncated_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pad");
    mint(&header(), std::slice::from_ref(&a), |_| {}).unwrap();
    let f = OpenOptions::new().write(true).open(&a).unwrap();
    f.set_len(5000).unwrap();
    let e = PadFile::open(&a).unwrap_err().to_string();
    assert!(e.contains("a.pad") && e.contains("truncated"), "{e}");
}

#[test]
fn a_split_header_round_trips_and_a_bad_share_table_is_named() {
    let mut h = header();
    h.data_size = 128 * PAGE;
    h.shares = split(h.ticket_slots, h.data_size, 2).unwrap();
    assert_eq!(PadHeader::decode(&h.encode().unwrap()).unwrap(), h);
    h.holds = Some(1);
    let decoded = PadHeader::decode(&h.encode().unwrap()).unwrap();
    assert_eq!(decoded, h);
    assert_eq!(decoded.twin_share(), h.share(1));
    assert_eq!(decoded.twin_data_len(), 64 * PAGE);
    let field = |h: &PadHeader| match h.encode() {
        Err(HeaderError::BadField { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let mut bad = h.clone();
    bad.holds = Some(2);
    assert_eq!(field(&bad), "shares");
    let mut bad = h.clone();
    bad.shares[1].slots.start -= 1;
    assert_eq!(field(&bad), "shares", "overlapping slots");
    let mut bad = h.clone();
    bad.shares.pop();
    assert_eq!(field(&bad), "shares", "one share per gateway");
    let mut bad = header();
    bad.holds = Some(0);
    assert_eq!(field(&bad), "shares", "a share of a pad that is not split");
}
