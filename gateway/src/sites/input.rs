//! What owners and the operator send to register or change a site, checked
//! before anything is stored: the host (perhaps with a port), prices as
//! decimal strings, premium prefixes, a category. Errors name the field.

use serde::Deserialize;

use crate::ledger::{Micros, Premium, Prices};
use crate::request::guard::UpstreamGuard;
use crate::tariff::MAX_PRICE;
use crate::units::{format_amount, parse_amount};

/// At most this many premium prefixes per site.
pub const MAX_PREMIUM: usize = 64;
/// A premium prefix is at most this long.
pub const MAX_PREFIX: usize = 512;

/// A premium price as sent.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PremiumInput {
    pub prefix: String,
    pub per_hit: String,
}

/// A registration or price change, as sent (JSON from the portal).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricesInput {
    pub per_hit: Option<String>,
    pub per_mib: Option<String>,
    pub premium: Option<Vec<PremiumInput>>,
}

/// A registration as sent to `POST /api/sites`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub host: String,
    // (Not a flattened `PricesInput`: serde cannot deny unknown fields through a flatten.)
    pub per_hit: Option<String>,
    pub per_mib: Option<String>,
    pub premium: Option<Vec<PremiumInput>>,
}

impl RegisterInput {
    pub fn prices(&self) -> PricesInput {
        PricesInput {
            per_hit: self.per_hit.clone(),
            per_mib: self.per_mib.clone(),
            premium: self.premium.clone(),
        }
    }
}

/// A bad field: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct FieldError {
    pub field: String,
    pub why: String,
}

fn bad(field: impl Into<String>, why: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        why: why.into(),
    }
}

/// A site's host as registered: its registry name (normalised, no port)
/// and the authority the token is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteHost {
    pub name: String,
    pub authority: String,
}

/// Check a host as an owner writes it ("news.example", "127.0.0.1:8123",
/// "[::1]:8080"). An IP literal the guard would not reach is refused here.
pub fn parse_host(raw: &str, guard: &UpstreamGuard) -> Result<SiteHost, FieldError> {
    let field = "host";
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad(
            field,
            "is empty; expected a host name such as news.example",
        ));
    }
    if raw.contains(['/', '@', '?', '#'])
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(
            field,
            format!(
                "{raw:?} is not a host; expected a name such as news.example, perhaps with :PORT"
            ),
        ));
    }
    let auth: http::uri::Authority = raw
        .parse()
        .map_err(|_| bad(field, format!("{raw:?} is not a host[:port]")))?;
    let host = auth.host();
    let name = policy::normalise_host(host).map_err(|e| bad(field, e))?;
    // The normalised name, not the raw one: "10.1", "0x7f.1" or "2130706433"
    // are addresses too once normalised.
    if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse() {
        if !guard.allows(ip) {
            return Err(bad(
                field,
                format!(
                    "{host} is a private or non-public address, which this gateway does not reach \
                     (the operator may serve with --allow-private-upstreams)"
                ),
            ));
        }
    }
    let has_port = auth.as_str() != auth.host();
    if has_port && auth.port_u16().is_none_or(|p| p == 0) {
        return Err(bad(field, format!("{raw:?} has no valid port")));
    }
    let authority = match auth.port_u16() {
        Some(p) => match name.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{name}]:{p}"),
            Err(_) => format!("{name}:{p}"),
        },
        None => match name.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{name}]"),
            Err(_) => name.to_string(),
        },
    };
    Ok(SiteHost {
        name: name.into_owned(),
        authority,
    })
}

/// A price: at most six decimals, within ±[`MAX_PRICE`]; negative only
/// where `negative_ok`.
pub fn parse_price(field: &str, raw: &str, negative_ok: bool) -> Result<Micros, FieldError> {
    let v = parse_amount(raw).map_err(|e| bad(field, e))?;
    if v < 0 && !negative_ok {
        return Err(bad(
            field,
            format!("{raw:?} is negative; a per-MiB price must not be"),
        ));
    }
    if v.unsigned_abs() > MAX_PRICE as u64 {
        return Err(bad(
            field,
            format!("{raw:?} is more than {} in size", format_amount(MAX_PRICE)),
        ));
    }
    Ok(v)
}

fn parse_premium(list: &[PremiumInput]) -> Result<Vec<Premium>, FieldError> {
    if list.len() > MAX_PREMIUM {
        return Err(bad(
            "premium",
            format!("{} prefixes; at most {MAX_PREMIUM}", list.len()),
        ));
    }
    let mut out: Vec<Premium> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let field = format!("premium[{i}].prefix");
        if !p.prefix.starts_with('/') {
            return Err(bad(
                field,
                format!(
                    "{:?} does not start with \"/\"; a prefix is a path, as in \"/reports/\"",
                    p.prefix
                ),
            ));
        }
        if p.prefix.len() > MAX_PREFIX
            || p.prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(bad(
                field,
                format!("{:?} is not a path prefix (no spaces, controls, ? or #; at most {MAX_PREFIX} bytes)", p.prefix),
            ));
        }
        if out.iter().any(|o| o.prefix == p.prefix) {
            return Err(bad(field, format!("{:?} is listed twice", p.prefix)));
        }
        let per_hit = parse_price(&format!("premium[{i}].per_hit"), &p.per_hit, true)?;
        out.push(Premium {
            prefix: p.prefix.clone(),
            per_hit,
        });
    }
    Ok(out)
}

impl PricesInput {
    /// The prices this input sets over `base` (fields not sent keep theirs).
    pub fn apply(&self, base: &Prices) -> Result<Prices, FieldError> {
        Ok(Prices {
            per_hit: match &self.per_hit {
                Some(s) => parse_price("per_hit", s, true)?,
                None => base.per_hit,
            },
            per_mib: match &self.per_mib {
                Some(s) => parse_price("per_mib", s, false)?,
                None => base.per_mib,
            },
            premium: match &self.premium {
                Some(l) => parse_premium(l)?,
                None => base.premium.clone(),
            },
        })
    }
}

/// A category as the operator writes it: lower-case letters, digits and
/// dashes, as policies name them ("news", "reference").
pub fn parse_category(raw: &str) -> Result<String, FieldError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(bad(
            "category",
            format!("{raw:?} is not a category name; expected lower-case letters, digits and dashes, as in \"news\""),
        ))
    }
}

/// Parse a JSON body into `T`, naming the line, column and field of what is wrong.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in its message ("unknown field `x`", "missing field `host`").
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("body")
            .to_string();
        bad(field, format!("invalid JSON: {msg}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: UpstreamGuard = UpstreamGuard {
        allow_private: false,
    };
    const OPEN: UpstreamGuard = UpstreamGuard {
        allow_private: true,
    };

    #[test]
    fn private_addresses_are_refused_however_they_are_spelled() {
        for raw in [
            "001",
            "10.1",
            "2130706433",
            "0x7f.1",
            "0.0.0.0:80",
            "10.0.0.011",
        ] {
            assert!(parse_host(raw, &GUARD).is_err(), "{raw} was accepted");
        }
        assert_eq!(parse_host("2130706433", &OPEN).unwrap().name, "127.0.0.1");
    }

    #[test]
    fn hosts_keep_their_port_for_the_fetch_and_drop_it_from_the_name() {
        let h = parse_host("News.Example", &GUARD).unwrap();
        assert_eq!(
            (h.name.as_str(), h.authority.as_str()),
            ("news.example", "news.example")
        );
        let h = parse_host("127.0.0.1:8123", &OPEN).unwrap();
        assert_eq!(
            (h.name.as_str(), h.authority.as_str()),
            ("127.0.0.1", "127.0.0.1:8123")
        );
        let h = parse_host("[::1]:8080", &OPEN).unwrap();
        assert_eq!(
            (h.name.as_str(), h.authority.as_str()),
            ("::1", "[::1]:8080")
        );
    }

    #[test]
    fn bad_hosts_say_why() {
        let e = parse_host("10.1.2.3", &GUARD).unwrap_err();
        assert_eq!(e.field, "host");
        assert!(e.why.contains("--allow-private-upstreams"), "{e}");
        for h in ["", "a b", "http://x", "x/y", "user@x", "x:0", "x:99999"] {
            assert_eq!(parse_host(h, &OPEN).unwrap_err().field, "host", "{h:?}");
        }
    }

    #[test]
    fn prices_are_checked_field_by_field() {
        let p = PricesInput {
            per_hit: Some("0.002".into()),
            per_mib: Some("0.01".into()),
            premium: Some(vec![PremiumInput {
                prefix: "/reports/".into(),
                per_hit: "0.05".into(),
            }]),
        };
        let prices = p.apply(&Prices::default()).unwrap();
        assert_eq!((prices.per_hit, prices.per_mib), (2_000, 10_000));
        assert_eq!(prices.premium[0].per_hit, 50_000);
        let neg = PricesInput {
            per_mib: Some("-0.01".into()),
            ..PricesInput::default()
        };
        assert_eq!(neg.apply(&prices).unwrap_err().field, "per_mib");
        let seven = PricesInput {
            per_hit: Some("0.0000001".into()),
            ..PricesInput::default()
        };
        assert_eq!(seven.apply(&prices).unwrap_err().field, "per_hit");
        let slashless = PricesInput {
            premium: Some(vec![PremiumInput {
                prefix: "reports".into(),
                per_hit: "1".into(),
            }]),
            ..PricesInput::default()
        };
        assert_eq!(
            slashless.apply(&prices).unwrap_err().field,
            "premium[0].prefix"
        );
        let ad = PricesInput {
            per_hit: Some("-0.01".into()),
            ..PricesInput::default()
        };
        assert_eq!(ad.apply(&prices).unwrap().per_hit, -10_000);
        assert_eq!(
            ad.apply(&prices).unwrap().premium,
            prices.premium,
            "unsent fields keep theirs"
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = from_json::<RegisterInput>(br#"{"host":"a.example","per_hit":"1","colour":"red"}"#)
            .unwrap_err();
        assert_eq!(e.field, "colour", "{e}");
        let e = from_json::<RegisterInput>(br#"{"per_hit":"1"}"#).unwrap_err();
        assert_eq!(e.field, "host", "{e}");
        let e = from_json::<RegisterInput>(b"{not json").unwrap_err();
        assert_eq!(e.field, "body", "{e}");
        assert!(parse_category("News").is_err());
        assert_eq!(parse_category("news").unwrap(), "news");
    }
}
