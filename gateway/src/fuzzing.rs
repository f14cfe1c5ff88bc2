//! Entry points for the fuzz targets (fuzz/, run by `make fuzz`) over the
//! gateway's own parsers: operator files (the tariff) and the first bytes of
//! a restricted pad's CONNECT. Not part of the public API.

use crate::ledger::Prices;
use crate::request::front::{judge, FirstBytes};
use crate::request::guard::UpstreamGuard;
use crate::sites::categories::CategoryList;
use crate::sites::input::{from_json, parse_host, PricesInput, RegisterInput, MAX_PREMIUM};
use crate::tariff::{Tariff, MAX_PRICE};
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

/// What a site owner sends the portal: the first byte picks a registration
/// (`POST /api/sites`), a price change (`PUT /api/sites/HOST`) or the
/// operator's categories file; the rest is the body. Nothing panics, and
/// what is accepted keeps the registry's rules: a host that parses again to
/// itself, a private address only where the guard allows it, per-MiB never
/// negative, every price within bounds and printing back to itself, premium
/// prefixes that are paths, listed once.
pub fn site_input(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let (strict, open) = (
        UpstreamGuard {
            allow_private: false,
        },
        UpstreamGuard {
            allow_private: true,
        },
    );
    let prices = match kind % 3 {
        0 => {
            let Ok(input) = from_json::<RegisterInput>(body) else {
                return;
            };
            if let Ok(host) = parse_host(&input.host, &strict) {
                let again =
                    parse_host(&host.authority, &strict).expect("a parsed host parses again");
                assert_eq!(again, host, "a host does not parse back to itself");
            }
            if let Ok(host) = parse_host(&input.host, &open) {
                let ipv6 = host.name.parse::<std::net::Ipv6Addr>().is_ok();
                assert!(!host.name.is_empty(), "an empty host name");
                assert!(
                    ipv6 || !host.name.contains(':'),
                    "a port left in {:?}",
                    host.name
                );
            }
            input.prices()
        }
        1 => {
            let Ok(input) = from_json::<PricesInput>(body) else {
                return;
            };
            input
        }
        _ => {
            if let Ok(src) = std::str::from_utf8(body) {
                let _ = CategoryList::parse(src, "fuzz.toml");
            }
            return;
        }
    };
    let Ok(p) = prices.apply(&Prices::default()) else {
        return;
    };
    assert!(p.per_mib >= 0, "a negative per-MiB price was accepted");
    assert!(p.premium.len() <= MAX_PREMIUM);
    for price in std::iter::once(p.per_hit)
        .chain(std::iter::once(p.per_mib))
        .chain(p.premium.iter().map(|m| m.per_hit))
    {
        assert!(
            price.unsigned_abs() <= MAX_PRICE as u64,
            "{price} is out of bounds"
        );
        assert_eq!(parse_amount(&format_amount(price)), Ok(price));
    }
    for (i, m) in p.premium.iter().enumerate() {
        assert!(m.prefix.starts_with('/'), "prefix {:?}", m.prefix);
        assert!(
            p.premium[..i].iter().all(|o| o.prefix != m.prefix),
            "a prefix twice"
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

    proptest! {
        #[test]
        fn the_site_input_entry_point_holds(kind in 0u8..3, body in "[{}\\[\\]\":,a-z0-9./_ -]{0,200}") {
            let mut data = vec![kind];
            data.extend_from_slice(body.as_bytes());
            super::site_input(&data);
        }
    }

    #[test]
    fn a_sample_registration_reaches_the_checks() {
        let body = br#"{"host": "news.example:8080", "per_hit": "-0.002", "per_mib": "0.01", "premium": [{"prefix": "/reports/", "per_hit": "0.05"}]}"#;
        let mut data = vec![0];
        data.extend_from_slice(body);
        super::site_input(&data);
    }

    #[test]
    fn the_sample_tariff_reaches_the_checks() {
        let mut data = crate::tariff::DEFAULT_TARIFF.as_bytes().to_vec();
        data.push(0);
        data.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        super::parse_tariff(&data);
    }
}
