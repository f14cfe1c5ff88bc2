//! The tariff: what carrying traffic costs (`serve --tariff FILE`), and the
//! pure pricing arithmetic the meter uses. Amounts are decimal strings in the
//! file and integer micro-units here; charges round up to the micro-unit.

use std::path::Path;

use serde::Deserialize;

use crate::ledger::Micros;
use crate::units::{format_amount, parse_amount};

/// The sample tariff, used when `serve` is given none.
pub const DEFAULT_TARIFF: &str = include_str!("../../data/tariff.toml");

const MIB: u128 = 1 << 20;

/// The highest price a tariff may set per MiB or per request: 1,000,000.00
/// units. Far above any real price, and low enough that every sum the meter
/// forms from prices stays far inside an i64.
pub const MAX_PRICE: Micros = 1_000_000 * crate::units::MICROS;

/// The commission when a tariff names none: 10 % of every site charge.
pub const DEFAULT_COMMISSION: Micros = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub currency: String,
    /// Micro-units per MiB carried for the pad, both directions.
    pub per_mib: Micros,
    /// Micro-units per proxied request or CONNECT.
    pub per_request: Micros,
    /// The gateway's share of every site charge, in millionths (0.10 → 100000).
    pub commission: Micros,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTariff {
    currency: toml::Spanned<String>,
    per_mib: toml::Spanned<String>,
    per_request: toml::Spanned<String>,
    commission: Option<toml::Spanned<String>>,
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Tariff {
    /// Parse a tariff; errors read `FILE:LINE:COL: what was wrong`.
    pub fn parse(src: &str, origin: &str) -> Result<Tariff, String> {
        let raw: RawTariff = toml::from_str(src).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(s) => {
                    let (l, c) = line_col(src, s.start);
                    format!("{origin}:{l}:{c}: {msg}")
                }
                None => format!("{origin}: {msg}"),
            }
        })?;
        let at = |s: &toml::Spanned<String>, field: &str, why: String| {
            let (l, c) = line_col(src, s.span().start);
            format!("{origin}:{l}:{c}: {field}: {why}")
        };
        let currency = raw.currency.get_ref().trim().to_string();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(at(
                &raw.currency,
                "currency",
                format!("{currency:?} is not a currency code; expected three capital letters, as in \"EUR\""),
            ));
        }
        let amount = |s: &toml::Spanned<String>, field: &str| -> Result<Micros, String> {
            let v = parse_amount(s.get_ref()).map_err(|e| at(s, field, e))?;
            if v < 0 {
                return Err(at(s, field, "a price must not be negative".into()));
            }
            if v > MAX_PRICE {
                return Err(at(
                    s,
                    field,
                    format!("a price must be at most {}", format_amount(MAX_PRICE)),
                ));
            }
            Ok(v)
        };
        let commission = match &raw.commission {
            None => DEFAULT_COMMISSION,
            Some(c) => {
                let v = parse_amount(c.get_ref()).map_err(|e| at(c, "commission", e))?;
                if !(0..=crate::units::MICROS).contains(&v) {
                    return Err(at(
                        c,
                        "commission",
                        "a commission is a fraction from \"0\" to \"1\", as in \"0.10\"".into(),
                    ));
                }
                v
            }
        };
        Ok(Tariff {
            currency,
            per_mib: amount(&raw.per_mib, "per_mib")?,
            per_request: amount(&raw.per_request, "per_request")?,
            commission,
        })
    }

    pub fn load(path: &Path) -> Result<Tariff, String> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the tariff: {e}", path.display()))?;
        Tariff::parse(&src, &path.display().to_string())
    }

    pub fn default_tariff() -> Tariff {
        // The sample is checked by a unit test, so this cannot fail in a build that passed them.
        Tariff::parse(DEFAULT_TARIFF, "data/tariff.toml").unwrap_or(Tariff {
            currency: "EUR".into(),
            per_mib: 10_000,
            per_request: 100,
            commission: DEFAULT_COMMISSION,
        })
    }

    /// Is carrying bytes free (no per-MiB price)?
    pub fn bytes_free(&self) -> bool {
        self.per_mib == 0
    }

    /// The charge for `bytes` carried: ceil(bytes × per_mib / MiB).
    pub fn bytes_cost(&self, bytes: u64) -> Micros {
        let c = (u128::from(bytes) * self.per_mib as u128).div_ceil(MIB);
        c.min(i64::MAX as u128) as Micros
    }

    /// How many bytes `value` pays for: the most n with bytes_cost(n) ≤ value.
    pub fn bytes_for(&self, value: Micros) -> u64 {
        if self.per_mib == 0 {
            return u64::MAX;
        }
        let v = value.max(0) as u128;
        ((v * MIB) / self.per_mib as u128).min(u128::from(u64::MAX)) as u64
    }

    /// The whole charge for one request that carried `bytes`.
    pub fn charge(&self, bytes: u64) -> Micros {
        self.per_request.saturating_add(self.bytes_cost(bytes))
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {} per MiB, {} {} per request, {} commission on site charges",
            format_amount(self.per_mib),
            self.currency,
            format_amount(self.per_request),
            self.currency,
            format_amount(self.commission)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sample_parses() {
        let t = Tariff::parse(DEFAULT_TARIFF, "data/tariff.toml").unwrap();
        assert_eq!(t.currency, "EUR");
        assert_eq!(t.per_mib, 10_000);
        assert_eq!(t.per_request, 100);
        assert_eq!(t.commission, 100_000);
        assert_eq!(Tariff::default_tariff(), t);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = Tariff::parse(
            "currency = \"EUR\"\nper_mib = \"0.0x\"\nper_request = \"0\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.starts_with("t.toml:2:11: per_mib:"), "{e}");
        let e = Tariff::parse(
            "currency = \"EUR\"\nper_mib = \"1\"\nper_request = \"0\"\nper_byte = 1\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.starts_with("t.toml:4:1:") && e.contains("per_byte"),
            "{e}"
        );
        let e = Tariff::parse(
            "currency = \"euro\"\nper_mib = \"1\"\nper_request = \"0\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.starts_with("t.toml:1:12: currency:"), "{e}");
        let e = Tariff::parse(
            "currency = \"EUR\"\nper_mib = \"-1\"\nper_request = \"0\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = Tariff::parse(
            "currency = \"EUR\"\nper_mib = \"1\"\nper_request = \"9223372036854.775807\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.starts_with("t.toml:3:15: per_request:") && e.contains("at most 1000000.00"),
            "{e}"
        );
        let max =
            "currency = \"EUR\"\nper_mib = \"1000000\"\nper_request = \"1000000.00\"\n".to_string();
        assert_eq!(
            Tariff::parse(&max, "t.toml").unwrap().per_request,
            MAX_PRICE
        );
        let e = Tariff::parse(
            "currency = \"EUR\"\nper_mib = \"1\"\nper_request = \"0\"\ncommission = \"1.5\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.starts_with("t.toml:4:14: commission:"), "{e}");
        let e = Tariff::parse("currency = \"EUR\"\n", "t.toml").unwrap_err();
        assert!(e.contains("per_mib"), "{e}");
    }

    proptest! {
        #[test]
        fn bytes_for_is_the_largest_affordable(per_mib in 1i64..10_000_000, value in 0i64..1_000_000_000) {
            let t = Tariff { currency: "EUR".into(), per_mib, per_request: 0, commission: 0 };
            let n = t.bytes_for(value);
            prop_assert!(t.bytes_cost(n) <= value);
            prop_assert!(t.bytes_cost(n + 1) > value);
        }
    }
}
