//! Entry points for the fuzz targets (fuzz/, run by `make fuzz`): each feeds
//! untrusted bytes to one parser and checks what must hold, not only that
//! nothing panics. Not part of the public API.
//!
//! The authenticated formats (records, hello, reply) cannot be reached by
//! random bytes past their tags, so each target has two modes, chosen by the
//! first input byte: raw bytes straight into the parser, or a script that
//! seals real messages, tampers with them and delivers them in pieces, then
//! checks that what opens is exactly what was sealed and nothing tampered
//! opens at all.

use bytes::BytesMut;

use crate::handshake::{
    open_hello, open_reply, seal_hello, seal_reply, Hello, Reply, ReplyStatus, Slot, HELLO_LEN,
    PROTOCOL_VERSION, REPLY_LEN, TICKET_LEN,
};
use crate::lease::Lease;
use crate::pad::{PadHeader, HEADER_LEN, SLOT_SIZE};
use crate::record::{seal, LeaseKeys, Opener, RecordType, KEY_OVERHEAD, MAX_PAYLOAD};
use crate::stream::Notice;

/// Takes bytes and small numbers off the front of the fuzzer's input;
/// zeros once it runs dry, so every input is a complete script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const RECORD_KEY_LEN: usize = 1 << 16;

fn record_keys() -> LeaseKeys {
    let key: Vec<u8> = (0..RECORD_KEY_LEN as u32)
        .map(|i| (i.wrapping_mul(131) + 7) as u8)
        .collect();
    LeaseKeys::new(
        Lease {
            offset: 0,
            len: key.len() as u64,
        },
        key.into(),
    )
}

const RECORD_TYPES: [RecordType; 5] = [
    RecordType::Data,
    RecordType::LeaseGrant,
    RecordType::LeaseNext,
    RecordType::Notice,
    RecordType::Close,
];

/// The record opener. Mode 0: raw bytes against a fixed key. Otherwise: a
/// script of records (type, length, payload) sealed with that key, perhaps
/// one byte tampered, delivered in script-chosen pieces. Records before the
/// tampered one open unchanged; the tampered one and anything after never
/// open; an untampered stream opens whole. Every opened control payload
/// goes through its decoder too.
pub fn open_records(data: &[u8]) {
    let mut s = Script(data);
    if s.byte() % 2 == 0 {
        let mut keys = record_keys();
        let mut inbuf = BytesMut::from(s.0);
        let mut op = Opener::default();
        while let Ok(Some((kind, payload))) = op.open(&mut inbuf, &mut keys) {
            decode_control(kind, &payload);
        }
        return;
    }
    // Seal.
    let mut keys = record_keys();
    let mut wire = BytesMut::new();
    let mut sealed: Vec<(RecordType, Vec<u8>, usize)> = Vec::new();
    for _ in 0..s.byte() % 16 {
        let kind = RECORD_TYPES[usize::from(s.byte()) % RECORD_TYPES.len()];
        let len = usize::from(s.u16()) % (MAX_PAYLOAD + 1);
        let mut payload = s.bytes(len).to_vec();
        payload.resize(len, 0x61);
        if KEY_OVERHEAD + len > keys.remaining() {
            assert!(seal(kind, &payload, &mut keys, &mut BytesMut::new()).is_err());
            break;
        }
        seal(kind, &payload, &mut keys, &mut wire).expect("a record that fits seals");
        sealed.push((kind, payload, wire.len()));
    }
    // Tamper with at most one byte.
    let tamper_at = usize::from(s.u16());
    let tamper_with = s.byte();
    let tampered = (tamper_with != 0 && tamper_at < wire.len()).then_some(tamper_at);
    if let Some(at) = tampered {
        wire[at] ^= tamper_with;
    }
    // Deliver in pieces and open.
    let mut keys = record_keys();
    let mut op = Opener::default();
    let mut inbuf = BytesMut::new();
    let mut opened: Vec<(RecordType, Vec<u8>)> = Vec::new();
    let mut failed = false;
    let mut rest = &wire[..];
    while !rest.is_empty() && !failed {
        let piece = (usize::from(s.u16()) % 20_000).max(1).min(rest.len());
        let piece = if s.is_empty() { rest.len() } else { piece };
        inbuf.extend_from_slice(&rest[..piece]);
        rest = &rest[piece..];
        loop {
            match op.open(&mut inbuf, &mut keys) {
                Ok(Some((kind, payload))) => {
                    decode_control(kind, &payload);
                    opened.push((kind, payload.to_vec()));
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    // What opened is a prefix of what was sealed, ending before the tamper.
    for (i, (kind, payload)) in opened.iter().enumerate() {
        let (k, p, end) = &sealed[i];
        assert_eq!((kind, payload), (k, p), "record {i} opened changed");
        if let Some(at) = tampered {
            assert!(
                *end <= at,
                "record {i} opened although byte {at} was tampered"
            );
        }
    }
    match tampered {
        None => {
            assert!(!failed, "an untampered stream was refused");
            assert_eq!(
                opened.len(),
                sealed.len(),
                "an untampered stream opened short"
            );
            assert!(inbuf.is_empty() && !op.mid_record());
        }
        Some(at) => {
            let hit = sealed.iter().position(|(_, _, end)| at < *end);
            assert_eq!(opened.len(), hit.unwrap_or(sealed.len()));
        }
    }
}

/// The decoders of authenticated control payloads.
fn decode_control(kind: RecordType, payload: &[u8]) {
    match kind {
        RecordType::LeaseGrant | RecordType::LeaseNext => {
            if let Some(l) = Lease::decode(payload) {
                assert!(l.offset.checked_add(l.len).is_some());
            }
        }
        RecordType::Notice => {
            let _ = Notice::decode(payload);
        }
        RecordType::Data | RecordType::Close => {}
    }
}

/// The hello and the reply, with a slot whose ticket and padding lengths
/// come from the input (20 bytes after the mode) and keys fixed. Mode 0: the next bytes opened raw as a hello and as a reply.
/// Otherwise: a hello and a reply built from the script are sealed, one
/// byte perhaps tampered, and opened: untampered they open to what was
/// sealed, tampered they never open.
pub fn open_handshake(data: &[u8]) {
    let mut s = Script(data);
    let mode = s.byte();
    // The keys are fixed and random-looking, as a minted slot's are (an
    // all-zero Poly1305 key tags every message alike, which no CSPRNG
    // gives); the script picks the ticket and the padding lengths.
    let mut slot_bytes: [u8; SLOT_SIZE] =
        std::array::from_fn(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]);
    let ticket = s.bytes(TICKET_LEN);
    slot_bytes[..ticket.len()].copy_from_slice(ticket);
    let padding = s.bytes(4);
    slot_bytes[144..144 + padding.len()].copy_from_slice(padding);
    let slot = Slot::from_bytes(&slot_bytes);
    assert!(slot.hello_padding() + HELLO_LEN <= crate::handshake::MAX_OPENING);
    assert!(slot.reply_padding() + REPLY_LEN <= crate::handshake::MAX_OPENING);
    if mode % 2 == 0 {
        let mut hello = [0u8; HELLO_LEN];
        let b = s.bytes(HELLO_LEN);
        hello[..b.len()].copy_from_slice(b);
        let _ = open_hello(&slot, &hello);
        let mut reply = [0u8; REPLY_LEN];
        let b = s.bytes(REPLY_LEN);
        reply[..b.len()].copy_from_slice(b);
        if let Ok(r) = open_reply(&slot, &reply) {
            assert_eq!(open_reply(&slot, &seal_reply(&slot, &r)), Ok(r));
        }
        return;
    }
    let tamper_at = usize::from(s.byte());
    let tamper_with = s.byte();
    let version = if s.byte() % 4 == 0 {
        s.byte()
    } else {
        PROTOCOL_VERSION
    };
    let mut hello = seal_hello(&slot, Hello { version });
    let hello_tampered = tamper_with != 0 && tamper_at < HELLO_LEN;
    if hello_tampered {
        hello[tamper_at] ^= tamper_with;
    }
    match open_hello(&slot, &hello) {
        Ok(h) => {
            assert!(!hello_tampered, "a tampered hello opened");
            assert_eq!(h.version, version);
        }
        Err(_) => assert!(hello_tampered || version != PROTOCOL_VERSION),
    }
    let status = [
        ReplyStatus::Ok,
        ReplyStatus::KeyExhausted,
        ReplyStatus::Cancelled,
        ReplyStatus::NotActivated,
        ReplyStatus::ValueExhausted,
    ][usize::from(s.byte()) % 5];
    let mut lease = || {
        let offset = u64::from_be_bytes(std::array::from_fn(|_| s.byte()));
        let len = u64::from_be_bytes(std::array::from_fn(|_| s.byte()));
        Lease {
            offset,
            len: len.min(u64::MAX - offset),
        }
    };
    let (upstream, downstream) = (lease(), lease());
    let balance = i64::from_be_bytes(std::array::from_fn(|_| s.byte()));
    let reply = Reply {
        status,
        upstream,
        downstream,
        balance,
    };
    let mut wire = seal_reply(&slot, &reply);
    let at = tamper_at.wrapping_sub(HELLO_LEN);
    let reply_tampered = tamper_with != 0 && at < REPLY_LEN;
    if reply_tampered {
        wire[at] ^= tamper_with;
    }
    match open_reply(&slot, &wire) {
        Ok(r) => {
            assert!(!reply_tampered, "a tampered reply opened");
            assert_eq!(r, reply);
        }
        Err(e) => assert!(reply_tampered, "a sealed reply was refused: {e}"),
    }
}

/// The pad header. Mode 0: the bytes decoded raw. Otherwise: magic,
/// version and checksum put right first, so the fields themselves are
/// what gets explored. A header that decodes encodes to one that decodes
/// to the same thing, and its offsets do not overflow.
pub fn decode_pad_header(data: &[u8]) {
    let mut s = Script(data);
    if s.byte() % 2 == 0 {
        if let Ok(h) = PadHeader::decode(s.0) {
            check_header(&h);
        }
        return;
    }
    let mut block = vec![0u8; HEADER_LEN as usize];
    let given = s.bytes(HEADER_LEN as usize);
    block[..given.len()].copy_from_slice(given);
    block[..8].copy_from_slice(&crate::pad::MAGIC);
    block[8..10].copy_from_slice(&crate::pad::VERSION.to_be_bytes());
    let n = block.len();
    let crc = crc32fast::hash(&block[..n - 4]);
    block[n - 4..].copy_from_slice(&crc.to_be_bytes());
    if let Ok(h) = PadHeader::decode(&block) {
        check_header(&h);
    }
}

fn check_header(h: &PadHeader) {
    let again = h.encode().expect("a decoded header encodes");
    assert_eq!(PadHeader::decode(&again).as_ref(), Ok(h));
    let _ = h.slot_offset(h.ticket_slots - 1);
    assert!(h.data_offset() >= HEADER_LEN);
    let _ = h.file_len();
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The fuzz entry points hold on arbitrary input (a quick stand-in
        /// for `make fuzz` in every test run).
        #[test]
        fn entry_points_hold(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            super::open_records(&data);
            super::open_handshake(&data);
            super::decode_pad_header(&data);
        }
    }

    /// The scripted modes really seal, tamper and open (not only refuse).
    #[test]
    fn scripted_modes_reach_the_checks() {
        // One DATA record of 3 bytes, no tamper, delivered whole.
        super::open_records(&[1, 1, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0]);
        // The same with byte 2 flipped.
        super::open_records(&[1, 1, 0, 0, 3, b'a', b'b', b'c', 0, 2, 0x40]);
        super::open_handshake(&[1; 400]);
        super::decode_pad_header(&[1; 10]);
    }
}
