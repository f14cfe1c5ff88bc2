//! The control records: a typed queue entry per record a side has to send
//! (LEASE_GRANT, LEASE_NEXT, NOTICE, CLOSE) with its payload, why a tunnel
//! ended (CLOSE) and the currency a NOTICE names, packed into a word the
//! stats can hold.

use super::notice::Notice;
use crate::lease::Lease;
use crate::record::{LeaseKeys, RecordType};

/// A control record waiting to be sealed.
pub(super) struct Control {
    pub kind: RecordType,
    pub payload: Vec<u8>,
    /// For a LEASE_NEXT: the announced lease's keys, switched to once the
    /// record is sealed.
    pub next: Option<LeaseKeys>,
}

impl Control {
    /// CLOSE with a reason (one byte).
    pub fn close(reason: CloseReason) -> Control {
        Control {
            kind: RecordType::Close,
            payload: vec![reason as u8],
            next: None,
        }
    }

    /// LEASE_GRANT: the follower's next upstream lease.
    pub fn grant(lease: Lease) -> Control {
        Control {
            kind: RecordType::LeaseGrant,
            payload: lease.encode().to_vec(),
            next: None,
        }
    }

    /// LEASE_NEXT: where the sender's next records come from.
    pub fn lease_next(keys: LeaseKeys) -> Control {
        Control {
            kind: RecordType::LeaseNext,
            payload: keys.lease().encode().to_vec(),
            next: Some(keys),
        }
    }

    /// NOTICE: what the gateway tells the agent (see [`Notice`]).
    pub fn notice(n: &Notice) -> Control {
        Control {
            kind: RecordType::Notice,
            payload: n.encode(),
            next: None,
        }
    }
}

/// Why a tunnel ended, as carried by a CLOSE record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum CloseReason {
    None = 0,
    Shutdown = 1,
    KeyExhausted = 2,
    ValueExhausted = 3,
    Cancelled = 4,
    Policy = 5,
}

impl CloseReason {
    pub fn from_u8(b: u8) -> CloseReason {
        match b {
            1 => CloseReason::Shutdown,
            2 => CloseReason::KeyExhausted,
            3 => CloseReason::ValueExhausted,
            4 => CloseReason::Cancelled,
            5 => CloseReason::Policy,
            _ => CloseReason::None,
        }
    }
}

/// Pack a three-letter currency code ("EUR") for [`StreamStats::currency`].
pub fn pack_currency(code: &str) -> u32 {
    match code.as_bytes() {
        [a, b, c] if code.bytes().all(|x| x.is_ascii_uppercase()) => {
            u32::from_be_bytes([0, *a, *b, *c])
        }
        _ => 0,
    }
}

/// The code packed by [`pack_currency`], if any.
pub fn unpack_currency(v: u32) -> Option<String> {
    let [_, a, b, c] = v.to_be_bytes();
    let code = [a, b, c];
    code.iter()
        .all(|x| x.is_ascii_uppercase())
        .then(|| String::from_utf8_lossy(&code).into_owned())
}
