//! The record layer's pure core: seal and open one record against given pad
//! bytes. No I/O, no tokio; [`crate::stream`] drives it over a socket.
//!
//! A record on the wire, and the pad bytes it consumes (in this order):
//!
//! | on the wire                                          | bytes | pad bytes         |
//! |------------------------------------------------------|-------|-------------------|
//! | header = type u8, reserved u8 (0), length u16 BE, XOR pad | 4 | 4 (XOR)          |
//! | header tag = Poly1305(k1, encrypted header)          | 16    | 32 (k1)           |
//! | payload XOR pad (0..=16384 bytes)                    | n     | 32 (k2), then n   |
//! | payload tag = Poly1305(k2, enc header ‖ enc payload) | 16    |                   |
//!
//! Pad bytes per record: `68 + n`, taken as `xor4 ‖ k1 ‖ k2 ‖ xor_n`. Every
//! Poly1305 key is used once (standard unpadded Poly1305); tags are compared in
//! constant time; the header tag is checked before the length is acted on, and
//! the payload tag before a single payload byte is handed up.

use bytes::{BufMut, BytesMut};
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::{Key, Poly1305};
use subtle::ConstantTimeEq;

use crate::lease::Lease;
use crate::secret::KeyBytes;

/// Largest payload of one record.
pub const MAX_PAYLOAD: usize = 16384;
/// Encrypted header plus its tag.
pub const WIRE_HEADER: usize = 4 + 16;
/// Wire bytes added to every payload.
pub const WIRE_OVERHEAD: usize = WIRE_HEADER + 16;
/// Pad bytes consumed by a record beyond its payload.
pub const KEY_OVERHEAD: usize = 4 + 32 + 32;
/// A lease with fewer unused bytes than this is finished: both sides move to
/// the next lease (a record never straddles two leases).
pub const MIN_RECORD_KEY: usize = KEY_OVERHEAD + 1;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Bytes of the connection carried inside the tunnel (HTTP/2).
    Data = 1,
    /// Gateway → agent: the agent's next upstream lease.
    LeaseGrant = 2,
    /// Gateway → agent: where the next downstream records come from.
    LeaseNext = 3,
    /// Gateway → agent: balance and key material left.
    Notice = 4,
    /// Either way: the tunnel ends, with a reason code.
    Close = 5,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Data,
            2 => RecordType::LeaseGrant,
            3 => RecordType::LeaseNext,
            4 => RecordType::Notice,
            5 => RecordType::Close,
            _ => return None,
        })
    }
}

/// Why a record was refused. Each of these ends the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The header tag did not verify.
    #[error("record header failed authentication")]
    HeaderTag,
    /// The payload tag did not verify.
    #[error("record payload failed authentication")]
    PayloadTag,
    /// An authenticated header with the reserved byte set.
    #[error("record header has reserved bits set")]
    Reserved,
    /// An authenticated header with an unknown type.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// An authenticated header announcing more than [`MAX_PAYLOAD`] bytes.
    #[error("record length {0} exceeds the maximum")]
    TooLong(usize),
    /// The record would need pad bytes past the end of the current lease.
    #[error("record runs past the end of its lease")]
    OutOfLease,
}

/// The key material of one lease for one direction, consumed front to back.
/// Bytes are wiped as they are used, and all of them when dropped.
pub struct LeaseKeys {
    lease: Lease,
    bytes: KeyBytes,
    used: usize,
}

impl std::fmt::Debug for LeaseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseKeys({}, used {})", self.lease, self.used)
    }
}

impl LeaseKeys {
    pub fn new(lease: Lease, bytes: KeyBytes) -> LeaseKeys {
        debug_assert_eq!(lease.len as usize, bytes.len());
        LeaseKeys {
            lease,
            bytes,
            used: 0,
        }
    }

    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Unused key bytes.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.used
    }

    /// Bytes used so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// True when no further record fits.
    pub fn is_done(&self) -> bool {
        self.remaining() < MIN_RECORD_KEY
    }

    fn peek(&self, n: usize) -> Option<&[u8]> {
        self.bytes.get(self.used..self.used + n)
    }

    fn burn(&mut self, n: usize) {
        let end = (self.used + n).min(self.bytes.len());
        self.bytes.wipe_through(end);
        self.used = end;
    }
}

/// Seal one record from `keys` into `out`. The caller checks that it fits
/// (`payload.len() + KEY_OVERHEAD <= keys.remaining()`).
pub fn seal(
    kind: RecordType,
    payload: &[u8],
    keys: &mut LeaseKeys,
    out: &mut BytesMut,
) -> Result<(), RecordError> {
    let n = payload.len();
    if n > MAX_PAYLOAD {
        return Err(RecordError::TooLong(n));
    }
    let key = keys.peek(KEY_OVERHEAD + n).ok_or(RecordError::OutOfLease)?;
    let mut hdr = [kind as u8, 0, (n >> 8) as u8, n as u8];
    xor_in_place(&mut hdr, &key[..4]);
    let hdr_tag = Poly1305::new(Key::from_slice(&key[4..36])).compute_unpadded(&hdr);
    out.reserve(WIRE_OVERHEAD + n);
    out.put_slice(&hdr);
    out.put_slice(&hdr_tag);
    let start = out.len();
    xor_into(out, payload, &key[KEY_OVERHEAD..]);
    let tag = payload_tag(&key[36..68], &hdr, &out[start..]);
    out.put_slice(&tag);
    keys.burn(KEY_OVERHEAD + n);
    Ok(())
}

/// Opens records from a byte stream, one at a time, keeping the state of a
/// record whose header has been verified but whose payload has not arrived.
#[derive(Debug, Default)]
pub struct Opener {
    header: Option<OpenHeader>,
}

#[derive(Debug, Clone, Copy)]
struct OpenHeader {
    kind: RecordType,
    len: usize,
    enc: [u8; 4],
}

impl Opener {
    /// Open the next record from the front of `inbuf` using `keys`.
    /// `Ok(None)`: more bytes are needed (nothing was consumed that matters).
    /// `Ok(Some)`: an authenticated record, its payload decrypted.
    /// `Err`: the tunnel must close; nothing of the bad record is returned.
    pub fn open(
        &mut self,
        inbuf: &mut BytesMut,
        keys: &mut LeaseKeys,
    ) -> Result<Option<(RecordType, BytesMut)>, RecordError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                if inbuf.len() < WIRE_HEADER {
                    return Ok(None);
                }
                let key = keys.peek(36).ok_or(RecordError::OutOfLease)?;
                let enc: [u8; 4] = inbuf[..4].try_into().expect("4 bytes");
                let tag = Poly1305::new(Key::from_slice(&key[4..36])).compute_unpadded(&enc);
                if !bool::from(tag.as_slice().ct_eq(&inbuf[4..WIRE_HEADER])) {
                    return Err(RecordError::HeaderTag);
                }
                let mut hdr = enc;
                xor_in_place(&mut hdr, &key[..4]);
                let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
                if hdr[1] != 0 {
                    return Err(RecordError::Reserved);
                }
                let kind = RecordType::from_u8(hdr[0]).ok_or(RecordError::UnknownType(hdr[0]))?;
                if len > MAX_PAYLOAD {
                    return Err(RecordError::TooLong(len));
                }
                if KEY_OVERHEAD + len > keys.remaining() {
                    return Err(RecordError::OutOfLease);
                }
                let _ = inbuf.split_to(WIRE_HEADER);
                let h = OpenHeader { kind, len, enc };
                self.header = Some(h);
                h
            }
        };
        if inbuf.len() < header.len + 16 {
            return Ok(None);
        }
        let key = keys
            .peek(KEY_OVERHEAD + header.len)
            .ok_or(RecordError::OutOfLease)?;
        let tag = payload_tag(&key[36..68], &header.enc, &inbuf[..header.len]);
        if !bool::from(tag.as_slice().ct_eq(&inbuf[header.len..header.len + 16])) {
            return Err(RecordError::PayloadTag);
        }
        let mut payload = inbuf.split_to(header.len);
        let _ = inbuf.split_to(16);
        xor_in_place(&mut payload, &key[KEY_OVERHEAD..]);
        keys.burn(KEY_OVERHEAD + header.len);
        self.header = None;
        Ok(Some((header.kind, payload)))
    }

    /// True while a verified header waits for its payload.
    pub fn mid_record(&self) -> bool {
        self.header.is_some()
    }
}

/// Poly1305 over `enc_header ‖ enc_payload`, without copying them together.
/// The first four blocks go in together so the SIMD backend stays aligned on
/// its 4-block path for the rest of the payload.
fn payload_tag(key: &[u8], hdr: &[u8; 4], payload: &[u8]) -> poly1305::Tag {
    const HEAD: usize = 64 - 4;
    let mac = Poly1305::new(Key::from_slice(key));
    let mut first = [0u8; 64];
    first[..4].copy_from_slice(hdr);
    if payload.len() < HEAD {
        first[4..4 + payload.len()].copy_from_slice(payload);
        return mac.compute_unpadded(&first[..4 + payload.len()]);
    }
    first[4..].copy_from_slice(&payload[..HEAD]);
    let mut mac = mac;
    // Whole blocks only, so no padding happens: plain block updates.
    mac.update_padded(&first);
    let rest = &payload[HEAD..];
    let full = rest.len() / 16 * 16;
    mac.update_padded(&rest[..full]);
    mac.compute_unpadded(&rest[full..])
}

/// Append `src ^ key` to `out`: the XOR writes straight into the record
/// (after a zero fill, cheap in cache) rather than copying `src` and
/// XOR-ing it in place, which read and wrote the payload twice.
fn xor_into(out: &mut BytesMut, src: &[u8], key: &[u8]) {
    debug_assert_eq!(src.len(), key.len());
    let start = out.len();
    out.resize(start + src.len(), 0);
    for ((d, s), k) in out[start..].iter_mut().zip(src).zip(key) {
        *d = s ^ k;
    }
}

/// `data ^= key`, the two the same length.
pub fn xor_in_place(data: &mut [u8], key: &[u8]) {
    debug_assert_eq!(data.len(), key.len());
    let mut d = data.chunks_exact_mut(8);
    let mut k = key.chunks_exact(8);
    for (d, k) in (&mut d).zip(&mut k) {
        let x = u64::from_ne_bytes(d[..].try_into().expect("8"))
            ^ u64::from_ne_bytes(k.try_into().expect("8"));
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, k) in d.into_remainder().iter_mut().zip(k.remainder()) {
        *d ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(seed: u8, len: usize) -> (LeaseKeys, LeaseKeys) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect();
        let lease = Lease {
            offset: 0,
            len: len as u64,
        };
        (
            LeaseKeys::new(lease, bytes.clone().into()),
            LeaseKeys::new(lease, bytes.into()),
        )
    }

    fn seal_all(msgs: &[Vec<u8>], tx: &mut LeaseKeys) -> BytesMut {
        let mut wire = BytesMut::new();
        for m in msgs {
            seal(RecordType::Data, m, tx, &mut wire).unwrap();
        }
        wire
    }

    fn open_all(wire: &mut BytesMut, rx: &mut LeaseKeys) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut op = Opener::default();
        let mut got = Vec::new();
        while let Some((kind, p)) = op.open(wire, rx)? {
            assert_eq!(kind, RecordType::Data);
            got.push(p.to_vec());
        }
        Ok(got)
    }

    /// The tag is standard unpadded Poly1305 over `enc_header ‖ enc_payload`,
    /// whatever the payload length (the aligned fast path included).
    #[test]
    fn payload_tag_matches_one_shot_poly1305() {
        let key = [7u8; 32];
        for n in [0, 1, 11, 12, 59, 60, 61, 64, 75, 76, 77, 1000, 16384] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 13) as u8).collect();
            let hdr = [1, 2, 3, 4];
            let mut whole = hdr.to_vec();
            whole.extend_from_slice(&payload);
            let want = Poly1305::new(Key::from_slice(&key)).compute_unpadded(&whole);
            assert_eq!(payload_tag(&key, &hdr, &payload), want, "n = {n}");
        }
    }

    #[test]
    fn seal_encrypts_and_uses_exactly_68_plus_n_pad_bytes() {
        let (mut tx, _) = keys(1, 100_000);
        let mut wire = BytesMut::new();
        seal(
            RecordType::Data,
            b"hello world, hello world",
            &mut tx,
            &mut wire,
        )
        .unwrap();
        assert_eq!(tx.used(), 68 + 24);
        assert_eq!(wire.len(), 36 + 24);
        assert!(!wire.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn sealing_past_the_lease_is_refused() {
        let (mut tx, _) = keys(1, 100);
        let mut wire = BytesMut::new();
        assert_eq!(
            seal(RecordType::Data, &[0; 40], &mut tx, &mut wire),
            Err(RecordError::OutOfLease)
        );
        assert!(wire.is_empty());
    }

    #[test]
    fn replayed_and_reordered_records_fail() {
        let (mut tx, mut rx) = keys(7, 100_000);
        let a = seal_all(&[b"first".to_vec()], &mut tx);
        let b = seal_all(&[b"second".to_vec()], &mut tx);
        // Reordered: b arrives where a was expected.
        let mut w = b.clone();
        assert!(open_all(&mut w, &mut keys(7, 100_000).1).is_err());
        // Replayed: a twice.
        let mut w = a.clone();
        w.extend_from_slice(&a);
        assert_eq!(
            open_all(&mut w, &mut rx).unwrap_err(),
            RecordError::HeaderTag
        );
    }

    #[test]
    fn a_record_is_not_delivered_before_its_tag_is_checked() {
        let (mut tx, mut rx) = keys(3, 100_000);
        let wire = seal_all(&[vec![9u8; 1000]], &mut tx);
        let mut op = Opener::default();
        // Every prefix short of the full record yields nothing.
        for cut in 0..wire.len() {
            let mut partial = BytesMut::from(&wire[..cut]);
            let mut rx2 = keys(3, 100_000).1;
            assert_eq!(
                Opener::default().open(&mut partial, &mut rx2),
                Ok(None),
                "prefix {cut}"
            );
        }
        let mut full = wire.clone();
        assert_eq!(
            op.open(&mut full, &mut rx).unwrap().unwrap().1.to_vec(),
            vec![9u8; 1000]
        );
    }

    #[test]
    fn an_overlong_or_out_of_lease_header_is_refused_after_authentication() {
        // A header announcing more than the lease holds: OutOfLease, not a hang.
        let (mut tx, _) = keys(5, 2000);
        let mut wire = BytesMut::new();
        seal(RecordType::Data, &[1; 1000], &mut tx, &mut wire).unwrap();
        let mut rx = LeaseKeys::new(
            Lease {
                offset: 0,
                len: 500,
            },
            keys(5, 2000).1.bytes[..500].to_vec().into(),
        );
        assert_eq!(
            Opener::default().open(&mut wire, &mut rx),
            Err(RecordError::OutOfLease)
        );
    }

    proptest! {
        #[test]
        fn round_trips_random_sizes(sizes in proptest::collection::vec(0usize..=MAX_PAYLOAD, 1..12), seed: u8) {
            let msgs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
            let (mut tx, mut rx) = keys(seed, 300_000);
            let mut wire = seal_all(&msgs, &mut tx);
            prop_assert_eq!(open_all(&mut wire, &mut rx).unwrap(), msgs);
            prop_assert_eq!(tx.used(), rx.used());
        }

        /// Flipping any single bit of any record — header, either tag, or
        /// payload — is rejected, and nothing of that record is delivered.
        #[test]
        fn any_single_bit_flip_is_rejected(n in 0usize..300, bit in 0usize..10_000, seed: u8) {
            let (mut tx, mut rx) = keys(seed, 10_000);
            let wire = seal_all(&[b"x".repeat(n)], &mut tx);
            let bit = bit % (wire.len() * 8);
            let mut bad = wire.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open_all(&mut bad, &mut rx).is_err());
        }

        /// Truncated input is never delivered: it waits for more bytes.
        #[test]
        fn truncation_delivers_nothing(n in 1usize..3000, cut_frac in 0.0f64..1.0, seed: u8) {
            let (mut tx, mut rx) = keys(seed, 10_000);
            let wire = seal_all(&[vec![5u8; n]], &mut tx);
            let cut = ((wire.len() as f64) * cut_frac) as usize;
            let mut partial = BytesMut::from(&wire[..cut.min(wire.len() - 1)]);
            prop_assert_eq!(open_all(&mut partial, &mut rx).unwrap(), Vec::<Vec<u8>>::new());
        }

        #[test]
        fn xor_is_its_own_inverse(data in proptest::collection::vec(any::<u8>(), 0..100), seed: u8) {
            let key: Vec<u8> = data.iter().enumerate().map(|(i, _)| (i as u8) ^ seed).collect();
            let mut d = data.clone();
            xor_in_place(&mut d, &key);
            xor_in_place(&mut d, &key);
            prop_assert_eq!(d, data);
        }
    }
}
