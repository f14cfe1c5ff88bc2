//! Amounts and sizes as people write them: money as decimal strings ("5.00")
//! held as integer micro-units, byte sizes as "64MiB". Pure parsing/printing.

/// Micro-units per unit of currency.
pub const MICROS: i64 = 1_000_000;

/// Parse a decimal amount ("5", "5.00", "0.000001") into micro-units.
pub fn parse_amount(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad =
        || format!("{s:?} is not an amount: expected digits with up to 6 decimals, as in 5.00");
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(bad());
    }
    if t.ends_with('.') {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    let v = whole
        .checked_mul(MICROS)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(|| format!("{s:?} is too large"))?;
    Ok(if neg { -v } else { v })
}

/// What `bytes` cost at `per_mib` micro-units per MiB: ceil(bytes ×
/// per_mib / MiB), saturating (a negative price counts as 0). The gateway
/// charges by it and the agent checks charges by it.
pub fn mib_cost(bytes: u64, per_mib: i64) -> i64 {
    let c = (u128::from(bytes) * per_mib.max(0) as u128).div_ceil(1 << 20);
    c.min(i64::MAX as u128) as i64
}

/// Print micro-units as a decimal with at least two places ("4.23", "0.000150").
pub fn format_amount(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let whole = m / MICROS as u64;
    let frac = format!("{:06}", m % MICROS as u64);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_string()
    };
    format!("{sign}{whole}.{frac}")
}

/// Parse a byte size: "4096", "64KiB", "64MiB", "1GiB", "500MB", "2GB".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: expected a number and a unit, as in 64MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size for people: "512 B", "1.50 GiB".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536 << 20), "1.50 GiB");
        assert_eq!(format_size(u64::MAX), "16384.00 PiB");
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("5.00"), Ok(5_000_000));
        assert_eq!(parse_amount("0.000001"), Ok(1));
        assert_eq!(parse_amount("12"), Ok(12_000_000));
        assert_eq!(parse_amount("-0.5"), Ok(-500_000));
        for bad in ["", "5.", ".5", "5.0000001", "5,00", "abc", "1e3"] {
            assert!(parse_amount(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_amount(4_230_000), "4.23");
        assert_eq!(format_amount(150), "0.00015");
        assert_eq!(format_amount(5_000_000), "5.00");
        assert_eq!(format_amount(-10), "-0.00001");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("64 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
