//! The control records: a typed queue entry per record a side has to send
//! (LEASE_GRANT, LEASE_NEXT, NOTICE, CLOSE) with its payload codec, the
//! NOTICE decoder, why a tunnel ended (CLOSE) and the currency a NOTICE
//! names, packed into a word the stats can hold.

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

    /// NOTICE: balance (micro-units), key bytes left, and the currency
    /// (packed, 0 for none: then it is left out).
    pub fn notice(balance: i64, key_left: u64, currency: u32) -> Control {
        let mut p = balance.to_be_bytes().to_vec();
        p.extend_from_slice(&key_left.to_be_bytes());
        if currency != 0 {
            p.extend_from_slice(&currency.to_be_bytes()[1..]);
        }
        Control {
            kind: RecordType::Notice,
            payload: p,
            next: None,
        }
    }
}

/// A NOTICE as opened: the balance, and the currency (packed) if it named
/// a valid one. `None` for a payload of the wrong length.
pub(crate) fn decode_notice(payload: &[u8]) -> Option<(i64, Option<u32>)> {
    if payload.len() != 16 && payload.len() != 19 {
        return None;
    }
    let balance = i64::from_be_bytes(payload[..8].try_into().ok()?);
    let currency = match payload[16..] {
        [a, b, c] => {
            Some(u32::from_be_bytes([0, a, b, c])).filter(|&v| unpack_currency(v).is_some())
        }
        _ => None,
    };
    Some((balance, currency))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_with_and_without_a_currency() {
        let n = Control::notice(-42, 7, pack_currency("CHF"));
        assert_eq!(n.kind, RecordType::Notice);
        assert_eq!(
            decode_notice(&n.payload),
            Some((-42, Some(pack_currency("CHF"))))
        );
        let n = Control::notice(5, 0, 0);
        assert_eq!(n.payload.len(), 16);
        assert_eq!(decode_notice(&n.payload), Some((5, None)));
        assert_eq!(decode_notice(&[0u8; 17]), None);
        let mut bad = Control::notice(1, 1, pack_currency("EUR")).payload;
        bad[16] = b'e';
        assert_eq!(
            decode_notice(&bad),
            Some((1, None)),
            "a lower-case code is ignored"
        );
    }
}
