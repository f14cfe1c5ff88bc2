//! Entry points for the fuzz targets (fuzz/, run by `make fuzz`) over the
//! gateway's own parsers: operator files (the tariff) and the first bytes of
//! a restricted pad's CONNECT. Not part of the public API.

use crate::request::front::{judge, FirstBytes};
use crate::tariff::Tariff;
use crate::units::{format_amount, parse_amount};

/// A tariff file, then amounts and byte counts from the rest of the input.
/// A tariff that parses prices within bounds, prints amounts that parse
/// back, and its arithmetic keeps its promises: what `bytes_for(v)` bytes
/// cost fits in `v` (and one byte more does not), costs grow with bytes,
/// and a charge is never below the per-request price.
pub fn parse_tariff(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (file, rest) = data.split_at(split);
    let Ok(src) = std::str::from_utf8(file) else {
        return;
    };
    let Ok(t) = Tariff::parse(src, "fuzz.toml") else {
        return;
    };
    for price in [t.per_mib, t.per_request] {
        assert!(price >= 0);
        assert_eq!(parse_amount(&format_amount(price)), Ok(price));
    }
    let mut words = rest.get(1..).unwrap_or_default().chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_be_bytes(w)
    });
    while let (Some(a), Some(b)) = (words.next(), words.next()) {
        // Up to 2^62: far above any balance, and clear of i64 saturation.
        let value = (a >> 2) as i64;
        let n = t.bytes_for(value);
        assert!(
            t.bytes_cost(n) <= value,
            "bytes_for({value}) = {n} costs more"
        );
        if n < u64::MAX && !t.bytes_free() {
            assert!(
                t.bytes_cost(n + 1) > value,
                "bytes_for({value}) = {n} is not the most"
            );
        }
        let (lo, hi) = (a.min(b), a.max(b));
        assert!(t.bytes_cost(lo) <= t.bytes_cost(hi));
        assert!(t.charge(lo) >= t.per_request);
    }
}

/// A CONNECT host, then the first bytes of its stream: the fronting
/// check never panics, allows only a TLS handshake record, and, having
/// allowed bytes, allows them with anything appended (later bytes never
/// undo a decision), while a refusal stays a refusal.
pub fn judge_connect_stream(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (host, bytes) = data.split_at(split);
    let host = String::from_utf8_lossy(host);
    let bytes = bytes.get(1..).unwrap_or_default();
    let verdict = judge(bytes, &host);
    if verdict == FirstBytes::Allowed {
        assert!(
            bytes.starts_with(&[0x16, 0x03]),
            "allowed bytes that are not TLS"
        );
    }
    if verdict != FirstBytes::NeedMore {
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01X");
        assert_eq!(
            std::mem::discriminant(&judge(&more, &host)),
            std::mem::discriminant(&verdict),
            "bytes after the decision changed it"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_tariff_entry_point_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::parse_tariff(&data);
        }

        #[test]
        fn the_fronting_entry_point_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::judge_connect_stream(&data);
        }
    }

    #[test]
    fn the_sample_tariff_reaches_the_checks() {
        let mut data = crate::tariff::DEFAULT_TARIFF.as_bytes().to_vec();
        data.push(0);
        data.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        super::parse_tariff(&data);
    }
}
