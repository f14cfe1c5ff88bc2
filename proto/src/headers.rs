//! Headers both ends agree on: what never crosses a hop, the `x-padnet-*`
//! names only the gateway may send, the error codes it names refusals by,
//! the reasons it stops a transfer early, and a priced site's prices.
//! Pure functions over `HeaderMap` and `HeaderValue`.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The gateway's refusal, as a code (`x-padnet-error: policy-denied`).
pub const ERROR: HeaderName = HeaderName::from_static("x-padnet-error");
/// The origin's Content-Length, carried beside a metered response (the
/// agent restores it), so a metered body may end early in order.
pub const CONTENT_LENGTH: HeaderName = HeaderName::from_static("x-padnet-content-length");
/// Trailer on a body the gateway ended early, naming a [`StopReason`].
pub const STOPPED: HeaderName = HeaderName::from_static("x-padnet-stopped");
/// The price of the site a response came from (only the gateway sends it; the agent strips it).
pub const SITE_PRICE: HeaderName = HeaderName::from_static("x-padnet-site-price");
/// The agent's id for one request or CONNECT (a decimal u32): the gateway
/// reports the request's final charge under it in a NOTICE. Never sent on.
pub const REQUEST: HeaderName = HeaderName::from_static("x-padnet-request");
/// Beside `x-padnet-error`: the refusal in words, as the gateway's page
/// says it (the agent keeps it for its own page: a browser never shows a
/// refused CONNECT's page).
pub const REASON: HeaderName = HeaderName::from_static("x-padnet-reason");
/// The most of a reason that travels.
pub const MAX_REASON: usize = 512;
/// Every padnet header starts so.
pub const PREFIX: &str = "x-padnet-";

/// Headers that describe one hop (RFC 9110 §7.6.1), never forwarded, and
/// forbidden in HTTP/2 anyway.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Remove hop-by-hop headers, and any header `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// A reason as a header value: visible ASCII only (anything else becomes
/// `?`), at most [`MAX_REASON`] bytes.
pub fn reason_value(reason: &str) -> HeaderValue {
    let text: String = reason
        .chars()
        .take(MAX_REASON)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    // Only visible ASCII and spaces remain, which a header value may hold.
    HeaderValue::from_str(text.trim()).unwrap_or(HeaderValue::from_static("?"))
}

/// Remove every `x-padnet-*` header: only the gateway may send those to the
/// agent (an origin, or a browser, could otherwise forge a length or a stop).
pub fn strip_padnet(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Why the gateway ended a transfer early (the [`STOPPED`] trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The pad's value ran out.
    ValueExhausted,
    /// A daily limit of the pad's policy was reached.
    DailyLimit,
    /// The pad's policy no longer allows the site (its hours ended).
    PolicyDenied,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ValueExhausted => "value-exhausted",
            StopReason::DailyLimit => "daily-limit",
            StopReason::PolicyDenied => "policy-denied",
        }
    }

    pub fn parse(s: &str) -> Option<StopReason> {
        [
            StopReason::ValueExhausted,
            StopReason::DailyLimit,
            StopReason::PolicyDenied,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priced site's prices, as they travel in [`SITE_PRICE`]. Amounts are decimal strings as people
/// write them ("0.002", "-0.01"), in the tariff's currency.
///
/// On the wire: `host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePrice {
    /// The site's host name as registered, lower case, no port.
    pub host: String,
    /// The site's base hit price.
    pub per_hit: String,
    /// The price per MiB carried, both ways.
    pub per_mib: String,
    /// What this request's hit cost: a premium prefix's price, or `per_hit`;
    /// "0" when a negative price was not paid again within its window.
    pub hit: String,
    /// Three capital letters.
    pub currency: String,
}

/// The keys of [`SitePrice`]'s wire form, in the order `encode` writes them.
const SITE_PRICE_KEYS: [&str; 5] = ["host", "per_hit", "per_mib", "hit", "currency"];

impl SitePrice {
    /// The header value. A price whose fields are outside their forms (see
    /// [`SitePrice::decode`]) still encodes, without panicking, to a value
    /// that does not decode: a byte a header cannot carry becomes `?`, and a
    /// stray `;` or `=` breaks the five-keys rule.
    pub fn encode(&self) -> HeaderValue {
        let s = format!(
            "host={}; per_hit={}; per_mib={}; hit={}; currency={}",
            self.host, self.per_hit, self.per_mib, self.hit, self.currency
        );
        let s: String = s
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .collect();
        // Only visible ASCII and spaces are left, which a header value always takes.
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("?"))
    }

    /// Parse [`SITE_PRICE`]'s value, strictly: all five keys exactly once and
    /// nothing else, the host a plausible host name (see [`plausible_host`];
    /// lower-cased), amounts of the form `-?[0-9]{1,7}(.[0-9]{1,6})?`, the
    /// currency three capital letters. Anything else is `None`.
    pub fn decode(v: &HeaderValue) -> Option<SitePrice> {
        let s = v.to_str().ok()?;
        let mut fields: [Option<&str>; 5] = [None; 5];
        for part in s.split(';') {
            let (key, value) = part.trim_matches([' ', '\t']).split_once('=')?;
            let i = SITE_PRICE_KEYS.iter().position(|k| *k == key)?;
            if fields[i].replace(value).is_some() {
                return None; // a key twice
            }
        }
        let [Some(host), Some(per_hit), Some(per_mib), Some(hit), Some(currency)] = fields else {
            return None;
        };
        let ok = plausible_host(host)
            && [per_hit, per_mib, hit].into_iter().all(plausible_amount)
            && currency.len() == 3
            && currency.bytes().all(|b| b.is_ascii_uppercase());
        ok.then(|| SitePrice {
            host: host.to_ascii_lowercase(),
            per_hit: per_hit.to_string(),
            per_mib: per_mib.to_string(),
            hit: hit.to_string(),
            currency: currency.to_string(),
        })
    }
}

/// At most 253 bytes, and either a bracketed IPv6 literal, or dot-separated
/// labels of 1 to 63 ASCII letters, digits and inner `-`; when the last label
/// is all digits, the whole must be an IPv4 address (as URL parsers read it).
fn plausible_host(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let labels_ok = h.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let numeric_tail = h
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && (!numeric_tail || h.parse::<Ipv4Addr>().is_ok())
}

/// `-?[0-9]{1,7}(\.[0-9]{1,6})?`
fn plausible_amount(a: &str) -> bool {
    let digits =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let a = a.strip_prefix('-').unwrap_or(a);
    match a.split_once('.') {
        Some((whole, frac)) => digits(whole, 7) && digits(frac, 6),
        None => digits(a, 7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_header_is_visible_ascii_and_bounded() {
        let v = reason_value("policy \"Acme — staff\", rule deny ads.example\r\nX: y");
        assert_eq!(
            v.to_str().unwrap(),
            "policy \"Acme ? staff\", rule deny ads.example??X: y"
        );
        assert_eq!(reason_value(&"é".repeat(2000)).len(), MAX_REASON);
        assert_eq!(reason_value("").to_str().unwrap(), "");
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn strips_connection_specific_headers_for_h2() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn only_the_gateway_speaks_x_padnet() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "5".parse().unwrap());
        h.insert(STOPPED, "value-exhausted".parse().unwrap());
        h.insert("x-padnetwork", "kept".parse().unwrap());
        strip_padnet(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-padnetwork"));
    }

    #[test]
    fn stop_reasons_round_trip() {
        for r in [
            StopReason::ValueExhausted,
            StopReason::DailyLimit,
            StopReason::PolicyDenied,
        ] {
            assert_eq!(StopReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(StopReason::parse("nope"), None);
    }

    fn news() -> SitePrice {
        SitePrice {
            host: "news.example".into(),
            per_hit: "0.002".into(),
            per_mib: "0.01".into(),
            hit: "0.05".into(),
            currency: "EUR".into(),
        }
    }

    fn decode(s: &str) -> Option<SitePrice> {
        SitePrice::decode(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn site_price_encodes_as_documented_and_round_trips() {
        let v = news().encode();
        assert_eq!(
            v,
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR"
        );
        assert_eq!(SitePrice::decode(&v), Some(news()));
    }

    #[test]
    fn site_price_takes_any_key_order_spacing_and_case_of_host() {
        let p = decode("currency=EUR;hit=0.05;  per_mib=0.01 ;per_hit=0.002;host=News.Example");
        assert_eq!(p, Some(news()));
    }

    #[test]
    fn site_price_takes_negative_prices_and_address_literals() {
        for host in [
            "192.0.2.7",
            "[2001:db8::1]",
            "[::ffff:192.0.2.7]",
            "xn--bcher-kva.example",
            "localhost",
        ] {
            let p = SitePrice {
                host: host.into(),
                per_hit: "-0.01".into(),
                hit: "0".into(),
                per_mib: "9999999.999999".into(),
                ..news()
            };
            assert_eq!(SitePrice::decode(&p.encode()), Some(p), "{host}");
        }
    }

    #[test]
    fn site_price_wants_all_five_keys_once_and_nothing_else() {
        let good = "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR";
        assert!(decode(good).is_some());
        for bad in [
            "",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR; x=1",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR; hit=0.05",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR;",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency",
            "host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR=X",
            "HOST=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR",
            "host = news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn site_price_rejects_implausible_hosts() {
        let long = format!("{}.example", vec!["a".repeat(63); 4].join("."));
        assert!(long.len() > 253);
        for host in [
            "",
            "news.example:443",
            "news.example.",
            ".example",
            "a..b",
            "-a.example",
            "a-.example",
            "news_site.example",
            "ex ample",
            "<script>",
            "1.2.3",
            "256.1.1.1",
            "[2001:db8::1",
            "[news.example]",
            "2001:db8::1",
            "caf\u{e9}.example",
            &long,
            &"a".repeat(64),
        ] {
            let p = SitePrice {
                host: host.into(),
                ..news()
            };
            assert_eq!(SitePrice::decode(&p.encode()), None, "{host:?}");
        }
        let p = SitePrice {
            host: "a".repeat(63),
            ..news()
        };
        assert!(SitePrice::decode(&p.encode()).is_some());
    }

    #[test]
    fn site_price_rejects_bad_amounts_and_currencies() {
        for amount in [
            "",
            "-",
            "+1",
            "1.",
            ".5",
            "1.2.3",
            "12345678",
            "0.1234567",
            "--1",
            "1e3",
            "0,5",
            " 1",
            "\u{661}",
        ] {
            for p in [
                SitePrice {
                    per_hit: amount.into(),
                    ..news()
                },
                SitePrice {
                    per_mib: amount.into(),
                    ..news()
                },
                SitePrice {
                    hit: amount.into(),
                    ..news()
                },
            ] {
                assert_eq!(SitePrice::decode(&p.encode()), None, "{amount:?}");
            }
        }
        for currency in ["", "EU", "EURO", "eur", "E1R", "\u{c9}UR"] {
            let p = SitePrice {
                currency: currency.into(),
                ..news()
            };
            assert_eq!(SitePrice::decode(&p.encode()), None, "{currency:?}");
        }
    }

    #[test]
    fn site_price_rejects_values_that_are_not_text() {
        let v =
            HeaderValue::from_bytes(b"host=caf\xc3\xa9; per_hit=1; per_mib=1; hit=1; currency=EUR")
                .unwrap();
        assert_eq!(SitePrice::decode(&v), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                "([a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\\.){0,3}[a-z]([a-z0-9-]{0,8}[a-z0-9])?",
                any::<Ipv4Addr>().prop_map(|a| a.to_string()),
                any::<Ipv6Addr>().prop_map(|a| format!("[{a}]")),
            ]
        }

        fn amount() -> impl Strategy<Value = String> {
            "-?[0-9]{1,7}(\\.[0-9]{1,6})?"
        }

        proptest! {
            #[test]
            fn decode_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                    let _ = SitePrice::decode(&v);
                }
            }

            #[test]
            fn decode_never_panics_on_near_misses(
                s in "((host|per_hit|per_mib|hit|currency|x)=[-a-zA-Z0-9.\\[\\]:=; ]{0,20}; ?){0,7}"
            ) {
                if let Ok(v) = HeaderValue::from_str(&s) {
                    let _ = SitePrice::decode(&v);
                }
            }

            #[test]
            fn valid_prices_round_trip(
                host in host(),
                per_hit in amount(),
                per_mib in amount(),
                hit in amount(),
                currency in "[A-Z]{3}",
            ) {
                let p = SitePrice { host, per_hit, per_mib, hit, currency };
                prop_assert_eq!(SitePrice::decode(&p.encode()), Some(p));
            }
        }
    }
}
