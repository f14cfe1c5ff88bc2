//! The pad file's header: magic, version, serial, mode, sizes, value,
//! policy id, gateways and (for a pad split among them) each gateway's
//! share, as one checked codec (damage is named, never guessed around), and
//! the offsets of the regions behind it.

use std::fmt;
use std::str::FromStr;

use rand::rngs::OsRng;
use rand::RngCore;

use super::share::{check_shares, Share};

/// First bytes of every pad file. The CR LF catches text-mode mangling, as PNG's does.
pub const MAGIC: [u8; 8] = *b"PADNET\r\n";
/// The one pad file version this code reads and writes.
pub const VERSION: u16 = 1;
/// Bytes reserved for the header; the key regions start page-aligned after it.
pub const HEADER_LEN: u64 = 4096;
/// Bytes of key material per ticket slot (one slot per tunnel opened; the
/// slot's layout is the handshake's).
pub use crate::handshake::SLOT_SIZE;
/// Key material is allocated in whole pages so erasure can free whole blocks.
pub const PAGE: u64 = 4096;
const MAX_GATEWAYS: usize = 16;
/// Flag bit (header byte 11): the pad is split, one share per gateway.
const FLAG_SPLIT: u8 = 1;
/// Bytes of one share's entry: slots start and end (u32), data start and end (u64).
const SHARE_ENTRY: usize = 24;

/// How a pad's key material is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// XOR with pad bytes and one-time Poly1305 keys: information-theoretic.
    Otp,
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::Otp => 0,
        }
    }
}

/// A pad's serial number: printed on it, used by people and admin commands.
/// It never crosses the network in the clear: the tunnel names its pad by a
/// one-time ticket, and the serial is sent only inside it (account
/// operations naming a pad to cancel or receive).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(pub [u8; 8]);

impl Serial {
    /// A fresh random serial.
    pub fn random() -> Serial {
        let mut b = [0u8; 8];
        OsRng.fill_bytes(&mut b);
        Serial(b)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "{}-{}-{}-{}", &h[0..4], &h[4..8], &h[8..12], &h[12..16])
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = String;
    fn from_str(s: &str) -> Result<Serial, String> {
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        let bytes = hex::decode(&digits).map_err(|_| {
            format!("serial {s:?}: expected 16 hex digits, as in 3f9a-71c2-0b4e-d815")
        })?;
        let arr: [u8; 8] = bytes.try_into().map_err(|_| {
            format!("serial {s:?}: expected 16 hex digits, as in 3f9a-71c2-0b4e-d815")
        })?;
        Ok(Serial(arr))
    }
}

/// The decoded header of a pad file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadHeader {
    pub mode: Mode,
    pub serial: Serial,
    /// Number of one-time ticket slots.
    pub ticket_slots: u32,
    /// Bytes of key material in the data region (a multiple of [`PAGE`]).
    pub data_size: u64,
    /// Unix seconds at minting.
    pub created_unix: u64,
    /// Value at minting, in micro-units (informational; the ledger is authoritative).
    pub value_micros: i64,
    /// Content hash of the policy the pad is bound to; all zero for none.
    pub policy_id: [u8; 32],
    /// Gateway addresses (`host:port`) the agent tries in order.
    pub gateways: Vec<String>,
    /// A pad split among its gateways: gateway `i`'s share is `shares[i]`.
    /// Empty: the pad is one share, the whole of it, at one gateway.
    pub shares: Vec<Share>,
    /// In a gateway's twin of a split pad: the one share the file holds
    /// (every other share's bytes are absent). `None` in the user's copy.
    pub holds: Option<u8>,
}

/// What is wrong with a pad file's header or size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file is shorter than its header says it must be.
    #[error("file is {actual} bytes, but its header needs {expected}: truncated copy?")]
    Truncated { expected: u64, actual: u64 },
    /// The first 8 bytes are not the pad magic.
    #[error("not a padnet pad file (bad magic bytes)")]
    BadMagic,
    /// A version this build does not read.
    #[error("pad file version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u16),
    /// A key mode this build does not know.
    #[error("unknown key mode {0}")]
    UnknownMode(u8),
    /// The header checksum does not match: the header was altered or damaged.
    #[error("header checksum mismatch: the header is damaged")]
    Checksum,
    /// A field holds a value out of range.
    #[error("header field `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
}

impl PadHeader {
    /// Offset of ticket slot `i` in the file.
    pub fn slot_offset(&self, i: u32) -> u64 {
        HEADER_LEN + u64::from(i) * SLOT_SIZE as u64
    }

    /// Offset of the data region in the file.
    pub fn data_offset(&self) -> u64 {
        let end = HEADER_LEN + u64::from(self.ticket_slots) * SLOT_SIZE as u64;
        end.div_ceil(PAGE) * PAGE
    }

    /// Total file length.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + self.data_size
    }

    /// How many shares the pad has (1 when it is not split).
    pub fn share_count(&self) -> usize {
        self.shares.len().max(1)
    }

    /// Share `k` (of [`Self::share_count`]); for a pad that is not split,
    /// share 0 is the whole pad.
    pub fn share(&self, k: usize) -> Option<Share> {
        match self.shares.is_empty() {
            true => (k == 0).then(|| Share::whole(self)),
            false => self.shares.get(k).cloned(),
        }
    }

    /// Bytes of key material a gateway's twin serves from (its share's, or
    /// the whole data region).
    pub fn twin_data_len(&self) -> u64 {
        self.twin_share()
            .map_or(self.data_size, |s| s.data.end - s.data.start)
    }

    /// The share used with the pad's `i`-th gateway: its own in a split
    /// pad, else the one share every gateway address names.
    pub fn share_of_gateway(&self, i: usize) -> usize {
        if self.shares.is_empty() {
            0
        } else {
            i
        }
    }

    /// The key material a gateway's twin may use: the share it holds, or
    /// the whole pad when it is not split.
    pub fn twin_share(&self) -> Option<Share> {
        match self.holds {
            Some(k) => self.share(usize::from(k)),
            None if self.shares.is_empty() => Some(Share::whole(self)),
            None => None,
        }
    }

    /// Encode into the fixed-size header block.
    pub fn encode(&self) -> Result<Vec<u8>, HeaderError> {
        self.validate()?;
        let mut h = vec![0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_be_bytes());
        h[10] = self.mode.code();
        h[12..20].copy_from_slice(&self.serial.0);
        h[20..24].copy_from_slice(&self.ticket_slots.to_be_bytes());
        h[24..26].copy_from_slice(&(SLOT_SIZE as u16).to_be_bytes());
        h[28..36].copy_from_slice(&self.data_size.to_be_bytes());
        h[36..44].copy_from_slice(&self.created_unix.to_be_bytes());
        h[44..52].copy_from_slice(&self.value_micros.to_be_bytes());
        h[52..84].copy_from_slice(&self.policy_id);
        h[84] = self.gateways.len() as u8;
        let mut at = 85;
        for g in &self.gateways {
            h[at] = g.len() as u8;
            h[at + 1..at + 1 + g.len()].copy_from_slice(g.as_bytes());
            at += 1 + g.len();
        }
        if !self.shares.is_empty() {
            h[11] = FLAG_SPLIT;
            h[26] = self.holds.map_or(0, |k| k + 1);
            for s in &self.shares {
                h[at..at + 4].copy_from_slice(&s.slots.start.to_be_bytes());
                h[at + 4..at + 8].copy_from_slice(&s.slots.end.to_be_bytes());
                h[at + 8..at + 16].copy_from_slice(&s.data.start.to_be_bytes());
                h[at + 16..at + 24].copy_from_slice(&s.data.end.to_be_bytes());
                at += SHARE_ENTRY;
            }
        }
        let crc = crc32fast::hash(&h[..HEADER_LEN as usize - 4]);
        h[HEADER_LEN as usize - 4..].copy_from_slice(&crc.to_be_bytes());
        Ok(h)
    }

    fn validate(&self) -> Result<(), HeaderError> {
        let bad = |field, reason: &str| HeaderError::BadField {
            field,
            reason: reason.to_string(),
        };
        if self.ticket_slots == 0 {
            return Err(bad("ticket_slots", "must be at least 1"));
        }
        if self.data_size == 0 || !self.data_size.is_multiple_of(PAGE) {
            return Err(bad("data_size", "must be a positive multiple of 4096"));
        }
        // The file's length must be one a file can have (offsets are i64).
        if self.data_size > i64::MAX as u64 - self.data_offset() {
            return Err(bad("data_size", "larger than any file can be"));
        }
        if self.gateways.len() > MAX_GATEWAYS {
            return Err(bad("gateways", "at most 16 addresses"));
        }
        let total: usize = self.gateways.iter().map(|g| 1 + g.len()).sum::<usize>()
            + self.shares.len() * SHARE_ENTRY;
        if self.gateways.iter().any(|g| g.is_empty() || g.len() > 255)
            || 85 + total > HEADER_LEN as usize - 4
        {
            return Err(bad(
                "gateways",
                "each address 1..255 bytes, all within the header",
            ));
        }
        if let Some(reason) = check_shares(self) {
            return Err(bad("shares", &reason));
        }
        Ok(())
    }

    /// Decode a header block (at least [`HEADER_LEN`] bytes).
    pub fn decode(h: &[u8]) -> Result<PadHeader, HeaderError> {
        if h.len() < HEADER_LEN as usize {
            return Err(HeaderError::Truncated {
                expected: HEADER_LEN,
                actual: h.len() as u64,
            });
        }
        let h = &h[..HEADER_LEN as usize];
        if h[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let crc = u32::from_be_bytes(h[HEADER_LEN as usize - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&h[..HEADER_LEN as usize - 4]) != crc {
            return Err(HeaderError::Checksum);
        }
        let mode = match h[10] {
            0 => Mode::Otp,
            m => return Err(HeaderError::UnknownMode(m)),
        };
        let slot_size = u16::from_be_bytes([h[24], h[25]]);
        if usize::from(slot_size) != SLOT_SIZE {
            return Err(HeaderError::BadField {
                field: "slot_size",
                reason: format!("{slot_size}, expected {SLOT_SIZE}"),
            });
        }
        let u64_at = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let n = h[84] as usize;
        let mut gateways = Vec::with_capacity(n);
        // The addresses end before the checksum; every length byte and
        // address is read checked (a crafted header may claim 255 of them).
        let fields = &h[..HEADER_LEN as usize - 4];
        let past = || HeaderError::BadField {
            field: "gateways",
            reason: "address runs past the header".into(),
        };
        let mut at = 85;
        for _ in 0..n {
            let len = *fields.get(at).ok_or_else(past)? as usize;
            let s = fields.get(at + 1..at + 1 + len).ok_or_else(past)?;
            let s = std::str::from_utf8(s).map_err(|_| HeaderError::BadField {
                field: "gateways",
                reason: "address is not UTF-8".into(),
            })?;
            gateways.push(s.to_string());
            at += 1 + len;
        }
        let mut shares = Vec::new();
        match h[11] {
            0 => {}
            FLAG_SPLIT => {
                for _ in 0..n {
                    let e = fields
                        .get(at..at + SHARE_ENTRY)
                        .ok_or(HeaderError::BadField {
                            field: "shares",
                            reason: "the share table runs past the header".into(),
                        })?;
                    let u32_at =
                        |i: usize| u32::from_be_bytes(e[i..i + 4].try_into().expect("4 bytes"));
                    let u64_at =
                        |i: usize| u64::from_be_bytes(e[i..i + 8].try_into().expect("8 bytes"));
                    shares.push(Share {
                        slots: u32_at(0)..u32_at(4),
                        data: u64_at(8)..u64_at(16),
                    });
                    at += SHARE_ENTRY;
                }
            }
            f => {
                return Err(HeaderError::BadField {
                    field: "flags",
                    reason: format!("unknown flags {f:#04x}"),
                })
            }
        }
        let holds = h[26].checked_sub(1);
        let header = PadHeader {
            mode,
            serial: Serial(h[12..20].try_into().expect("8 bytes")),
            ticket_slots: u32::from_be_bytes(h[20..24].try_into().expect("4 bytes")),
            data_size: u64_at(28),
            created_unix: u64_at(36),
            value_micros: i64::from_be_bytes(h[44..52].try_into().expect("8 bytes")),
            policy_id: h[52..84].try_into().expect("32 bytes"),
            gateways,
            shares,
            holds,
        };
        header.validate()?;
        Ok(header)
    }
}
