//! The handshake's pure messages: a hello opened with a one-time ticket and a
//! reply carrying the first leases, both sealed with keys from one ticket slot.
//! The async drivers (dial, accept) live with the agent and the gateway.
//!
//! Ticket slot (256 pad bytes, used once):
//!
//! | bytes   | use                                   |
//! |---------|---------------------------------------|
//! | 0..16   | ticket, sent in clear as the hello's first bytes |
//! | 16..48  | one-time Poly1305 key for the hello   |
//! | 48..64  | XOR bytes for the hello body          |
//! | 64..96  | one-time Poly1305 key for the reply   |
//! | 96..144 | XOR bytes for the reply body          |
//! | 144..146| length of the hello's padding (u16 LE, mod 1153) |
//! | 146..148| length of the reply's padding (u16 LE, mod 1137) |
//! | 148..256| reserved                              |
//!
//! Hello (48 bytes, then padding): `ticket ‖ E(body 16) ‖ tag(ticket ‖ E(body))`.
//! Reply (64 bytes, then padding): `E(body 48) ‖ tag(E(body))`.
//! The padding is random bytes whose length only the slot's holders know,
//! so the opening messages are 48–1200 and 64–1200 bytes long, not always
//! 48 and 64: their sizes no longer mark a tunnel's start.

use poly1305::universal_hash::KeyInit;
use poly1305::{Key, Poly1305};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::lease::Lease;
use crate::record::xor_in_place;

/// Bytes of key material per ticket slot (one slot per tunnel opened).
pub const SLOT_SIZE: usize = 256;
pub const TICKET_LEN: usize = 16;
pub const HELLO_LEN: usize = 48;
pub const REPLY_LEN: usize = 64;
/// Protocol version carried in the hello (2: padded opening messages).
pub const PROTOCOL_VERSION: u8 = 2;
/// The longest hello or reply, padding included.
pub const MAX_OPENING: usize = 1200;

/// A one-time ticket: the first 16 bytes of a slot.
pub type Ticket = [u8; TICKET_LEN];

/// The key material of one ticket slot, on the heap (so moving a `Slot`
/// moves a pointer and leaves no copy of the keys behind), zeroized on drop.
pub struct Slot(Box<[u8; SLOT_SIZE]>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot(..)")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Slot {
    /// An all-zero slot to read key material into.
    pub fn zeroed() -> Slot {
        Slot(Box::new([0u8; SLOT_SIZE]))
    }

    /// The slot's bytes, to fill from a pad file.
    pub fn bytes_mut(&mut self) -> &mut [u8; SLOT_SIZE] {
        &mut self.0
    }

    /// A slot holding `bytes` (tests and fuzzing).
    pub fn from_bytes(bytes: &[u8; SLOT_SIZE]) -> Slot {
        let mut s = Slot::zeroed();
        s.bytes_mut().copy_from_slice(bytes);
        s
    }

    pub fn ticket(&self) -> Ticket {
        self.0[..TICKET_LEN].try_into().expect("16 bytes")
    }

    /// Bytes of random padding after the hello (0 to `MAX_OPENING - HELLO_LEN`).
    pub fn hello_padding(&self) -> usize {
        u16::from_le_bytes([self.0[144], self.0[145]]) as usize % (MAX_OPENING - HELLO_LEN + 1)
    }

    /// Bytes of random padding after the reply (0 to `MAX_OPENING - REPLY_LEN`).
    pub fn reply_padding(&self) -> usize {
        u16::from_le_bytes([self.0[146], self.0[147]]) as usize % (MAX_OPENING - REPLY_LEN + 1)
    }
}

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("handshake message failed authentication")]
    Tag,
    #[error("hello carries protocol version {0}, expected {PROTOCOL_VERSION}")]
    Version(u8),
    #[error("reply carries unknown status {0}")]
    UnknownStatus(u8),
    #[error("reply carries a malformed lease")]
    BadLease,
}

/// The agent's hello body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
}

/// Whether the gateway will serve the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ReplyStatus {
    Ok = 0,
    /// The pad's key material is used up.
    KeyExhausted = 1,
    /// The operator cancelled the pad.
    Cancelled = 2,
    /// The pad has not been activated yet.
    NotActivated = 3,
    /// The pad's value is used up.
    ValueExhausted = 4,
}

impl ReplyStatus {
    fn from_u8(b: u8) -> Option<ReplyStatus> {
        Some(match b {
            0 => ReplyStatus::Ok,
            1 => ReplyStatus::KeyExhausted,
            2 => ReplyStatus::Cancelled,
            3 => ReplyStatus::NotActivated,
            4 => ReplyStatus::ValueExhausted,
            _ => return None,
        })
    }
}

/// The gateway's reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: ReplyStatus,
    /// The agent's first upstream lease (zero length unless `Ok`).
    pub upstream: Lease,
    /// The first downstream lease (zero length unless `Ok`).
    pub downstream: Lease,
    /// The pad's balance in micro-units, as the gateway knows it.
    pub balance: i64,
}

fn tag(key: &[u8], parts: &[&[u8]]) -> poly1305::Tag {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        buf.extend_from_slice(p);
    }
    Poly1305::new(Key::from_slice(key)).compute_unpadded(&buf)
}

/// Seal the agent's hello with a slot's keys.
pub fn seal_hello(slot: &Slot, hello: Hello) -> [u8; HELLO_LEN] {
    let mut w = [0u8; HELLO_LEN];
    w[..16].copy_from_slice(&slot.0[..16]);
    w[16] = hello.version;
    xor_in_place(&mut w[16..32], &slot.0[48..64]);
    let t = tag(&slot.0[16..48], &[&w[..32]]);
    w[32..].copy_from_slice(&t);
    w
}

/// Open a hello whose ticket selected `slot`.
pub fn open_hello(slot: &Slot, wire: &[u8; HELLO_LEN]) -> Result<Hello, HandshakeError> {
    let t = tag(&slot.0[16..48], &[&wire[..32]]);
    if !bool::from(t.as_slice().ct_eq(&wire[32..])) || !bool::from(wire[..16].ct_eq(&slot.0[..16]))
    {
        return Err(HandshakeError::Tag);
    }
    let mut body = [0u8; 16];
    body.copy_from_slice(&wire[16..32]);
    xor_in_place(&mut body, &slot.0[48..64]);
    if body[0] != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(body[0]));
    }
    Ok(Hello { version: body[0] })
}

/// Seal the gateway's reply with a slot's keys.
pub fn seal_reply(slot: &Slot, reply: &Reply) -> [u8; REPLY_LEN] {
    let mut w = [0u8; REPLY_LEN];
    w[0] = reply.status as u8;
    w[8..24].copy_from_slice(&reply.upstream.encode());
    w[24..40].copy_from_slice(&reply.downstream.encode());
    w[40..48].copy_from_slice(&reply.balance.to_be_bytes());
    xor_in_place(&mut w[..48], &slot.0[96..144]);
    let t = tag(&slot.0[64..96], &[&w[..48]]);
    w[48..].copy_from_slice(&t);
    w
}

/// Open the gateway's reply.
pub fn open_reply(slot: &Slot, wire: &[u8; REPLY_LEN]) -> Result<Reply, HandshakeError> {
    let t = tag(&slot.0[64..96], &[&wire[..48]]);
    if !bool::from(t.as_slice().ct_eq(&wire[48..])) {
        return Err(HandshakeError::Tag);
    }
    let mut b = [0u8; 48];
    b.copy_from_slice(&wire[..48]);
    xor_in_place(&mut b, &slot.0[96..144]);
    let status = ReplyStatus::from_u8(b[0]).ok_or(HandshakeError::UnknownStatus(b[0]))?;
    Ok(Reply {
        status,
        upstream: Lease::decode(&b[8..24]).ok_or(HandshakeError::BadLease)?,
        downstream: Lease::decode(&b[24..40]).ok_or(HandshakeError::BadLease)?,
        balance: i64::from_be_bytes(b[40..48].try_into().expect("8 bytes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(seed: u8) -> Slot {
        let mut s = Slot::zeroed();
        for (i, b) in s.bytes_mut().iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(13) ^ seed;
        }
        s
    }

    #[test]
    fn hello_and_reply_round_trip() {
        let s = slot(1);
        let w = seal_hello(
            &s,
            Hello {
                version: PROTOCOL_VERSION,
            },
        );
        assert_eq!(&w[..16], &s.ticket());
        assert_eq!(
            open_hello(&s, &w),
            Ok(Hello {
                version: PROTOCOL_VERSION
            })
        );
        let r = Reply {
            status: ReplyStatus::Ok,
            upstream: Lease {
                offset: 0,
                len: 65536,
            },
            downstream: Lease {
                offset: 65536,
                len: 65536,
            },
            balance: 4_230_000,
        };
        assert_eq!(open_reply(&s, &seal_reply(&s, &r)), Ok(r));
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let s = slot(2);
        let w = seal_hello(
            &s,
            Hello {
                version: PROTOCOL_VERSION,
            },
        );
        for bit in 0..HELLO_LEN * 8 {
            let mut bad = w;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open_hello(&s, &bad).is_err(), "hello bit {bit}");
        }
        let r = Reply {
            status: ReplyStatus::Ok,
            upstream: Lease { offset: 0, len: 1 },
            downstream: Lease { offset: 1, len: 1 },
            balance: 0,
        };
        let w = seal_reply(&s, &r);
        for bit in 0..REPLY_LEN * 8 {
            let mut bad = w;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open_reply(&s, &bad).is_err(), "reply bit {bit}");
        }
        // Another slot's keys do not open it.
        assert_eq!(open_reply(&slot(3), &w), Err(HandshakeError::Tag));
    }

    #[test]
    fn opening_lengths_come_from_the_slot_and_spread_over_the_range() {
        let mut hellos = std::collections::BTreeSet::new();
        let mut replies = std::collections::BTreeSet::new();
        for i in 0..2000u32 {
            let mut bytes = [0u8; SLOT_SIZE];
            bytes[144..148].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            let slot = Slot::from_bytes(&bytes);
            let (h, r) = (
                HELLO_LEN + slot.hello_padding(),
                REPLY_LEN + slot.reply_padding(),
            );
            assert!(
                (HELLO_LEN..=MAX_OPENING).contains(&h) && (REPLY_LEN..=MAX_OPENING).contains(&r)
            );
            assert_eq!(
                h,
                HELLO_LEN + Slot::from_bytes(&bytes).hello_padding(),
                "a slot's length is fixed"
            );
            hellos.insert(h);
            replies.insert(r);
        }
        assert!(
            hellos.len() > 800 && replies.len() > 800,
            "{} {}",
            hellos.len(),
            replies.len()
        );
        assert!(*hellos.first().unwrap() < 100 && *hellos.last().unwrap() > 1100);
    }
}
