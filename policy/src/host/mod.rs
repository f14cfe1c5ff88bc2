//! Host names and IP literals: normalisation (lower case, one trailing dot
//! dropped, IDNA → punycode, canonical IP form) and compiled pattern sets that
//! match in O(labels of the host), independent of the number of rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A normalised request host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host<'a> {
    /// Lower-case ASCII (punycode) domain name without a trailing dot.
    Name(Cow<'a, str>),
    /// An IPv4 or IPv6 literal; IPv4-mapped IPv6 addresses become IPv4.
    Ip(IpAddr),
}

impl Host<'_> {
    /// The host as text (allocates only for IP literals).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Host::Name(n) => Cow::Borrowed(n.as_ref()),
            Host::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// Normalise a host as the policy matcher does: lower case, one trailing dot
/// removed, internationalised names to punycode (IDNA/UTS 46), IP literals
/// (`[::1]`, `0:0::1`, `127.1`) to their canonical form (`::1`, `127.0.0.1`).
///
/// Borrows when the host is already normal (no allocation); `Err` says why a
/// host is invalid.
pub fn normalise_host(host: &str) -> Result<Cow<'_, str>, String> {
    Ok(
        match parse_host(host).map_err(|why| format!("{host:?} {why}"))? {
            Host::Name(n) => n,
            Host::Ip(ip) => Cow::Owned(ip.to_string()),
        },
    )
}

/// Parse and normalise. Borrows when `raw` is already a normal name (or one
/// with a trailing dot); plain ASCII names with upper case cost one
/// allocation; everything else (IDNA, IP literals, oddities) goes through
/// the full parser. `Err` is a fragment to put after the host ("is empty").
pub(crate) fn parse_host(raw: &str) -> Result<Host<'_>, String> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if is_normal_name(trimmed) {
        return Ok(Host::Name(Cow::Borrowed(trimmed)));
    }
    if trimmed.len() <= 253 && trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        let lower = trimmed.to_ascii_lowercase();
        if is_normal_name(&lower) {
            return Ok(Host::Name(Cow::Owned(lower)));
        }
    }
    parse_host_slow(raw)
}

/// The full path: IP literals, upper case, IDNA, percent-escapes, trailing dot.
pub(crate) fn parse_host_slow(raw: &str) -> Result<Host<'_>, String> {
    let s = raw.strip_suffix('.').unwrap_or(raw);
    if s.is_empty() {
        return Err("is empty".to_string());
    }
    if s.starts_with('[') || s.contains(':') {
        let inner = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(s);
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| "is not a valid IPv6 address or host name".to_string())?;
        return Ok(Host::Ip(canonical_v6(ip)));
    }
    match url::Host::parse(s) {
        Ok(url::Host::Domain(d)) => {
            check_labels(&d)?;
            Ok(Host::Name(if d == raw {
                Cow::Borrowed(raw)
            } else {
                Cow::Owned(d)
            }))
        }
        Ok(url::Host::Ipv4(a)) => Ok(Host::Ip(IpAddr::V4(a))),
        Ok(url::Host::Ipv6(a)) => Ok(Host::Ip(canonical_v6(a))),
        Err(e) => Err(format!("is not a valid host name ({e})")),
    }
}

fn canonical_v6(ip: Ipv6Addr) -> IpAddr {
    match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }
}

/// DNS-shaped labels after IDNA: 1–63 of `a-z 0-9 - _`, 253 bytes in all.
fn check_labels(d: &str) -> Result<(), String> {
    if d.len() > 253 {
        return Err("is longer than 253 characters".to_string());
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err("has an empty label (a leading dot or two dots in a row)".to_string());
        }
        if label.len() > 63 {
            return Err(format!("has a label longer than 63 characters ({label:?})"));
        }
        if let Some(c) = label.chars().find(|&c| !is_label_char(c)) {
            return Err(format!(
                "contains {c:?}, which is not allowed in host names"
            ));
        }
    }
    Ok(())
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// Fast check that `s` is already what [`parse_host_slow`] would return for it
/// unchanged: valid lower-case labels, no trailing dot, nothing IDNA would
/// look into (`xn--`) and not something WHATWG parses as IPv4 (numeric last
/// label, `0x…`).
fn is_normal_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return false;
    }
    let mut label_len = 0usize;
    let mut label_start = 0usize;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                if label_len == 0 && b[i..].starts_with(b"xn--") {
                    return false;
                }
                label_len += 1;
                if label_len > 63 {
                    return false;
                }
            }
            b'.' if label_len > 0 => {
                label_len = 0;
                label_start = i + 1;
            }
            _ => return false,
        }
    }
    let last = &b[label_start..];
    label_len > 0 && !last.iter().all(u8::is_ascii_digit) && !last.starts_with(b"0x")
}

/// FxHash (as in rustc): a fast non-cryptographic hash. Keys come from the
/// policy file (trusted), so flooding by chosen keys is not a concern; lookups
/// of hostile hosts only probe existing buckets.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk); // chunks_exact(8): always 8 bytes
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A compiled list of host patterns (`sites.allow` or `sites.deny`). Each map
/// points back at the pattern as written, already quoted (`"*.acme.example"`)
/// so denial messages need no formatting.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostSet {
    /// `*` was listed.
    any: Option<Box<str>>,
    /// `docs.rs` → exact normalised names.
    exact: FxMap<Box<str>, Box<str>>,
    /// `*.acme.example` → `acme.example`: matches names strictly under it.
    under: FxMap<Box<str>, Box<str>>,
    /// Bit k set: some key of `exact` / `under` has k labels (63 = 63 or
    /// more). Lets `find` skip probes that cannot hit.
    exact_labels: u64,
    under_labels: u64,
    /// IP literals and CIDR ranges as (network address, prefix length).
    nets: FxMap<(IpAddr, u8), Box<str>>,
    /// Distinct prefix lengths in `nets`, longest first, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    patterns: usize,
    wildcards: usize,
}

impl HostSet {
    /// Number of patterns listed (duplicates included).
    pub(crate) fn len(&self) -> usize {
        self.patterns
    }

    /// How many of them are `*` or `*.suffix`.
    pub(crate) fn wildcards(&self) -> usize {
        self.wildcards
    }

    /// Compile one pattern; `Err` explains what is wrong with it.
    pub(crate) fn insert(&mut self, pattern: &str) -> Result<(), String> {
        let text: Box<str> = format!("{pattern:?}").into();
        if pattern.is_empty() {
            return Err("is empty".to_string());
        }
        if pattern.contains(char::is_whitespace) {
            return Err("contains white space".to_string());
        }
        if pattern.contains('*') {
            if pattern == "*" {
                self.any.get_or_insert(text);
            } else {
                let suffix = pattern
                    .strip_prefix("*.")
                    .filter(|s| !s.contains('*'))
                    .ok_or_else(|| {
                        "has a misplaced '*' (it must stand alone or be the whole first label)"
                            .to_string()
                    })?;
                match parse_host(suffix)? {
                    Host::Name(n) => {
                        self.under_labels |= label_bit(label_count(&n));
                        self.under.entry(n.into()).or_insert(text);
                    }
                    Host::Ip(_) => {
                        return Err(
                            "has an IP address after \"*.\"; wildcards need a domain name, \
                                    and IP ranges are written as CIDR, as in 10.0.0.0/8"
                                .to_string(),
                        )
                    }
                }
            }
            self.wildcards += 1;
        } else if let Some((addr, len)) = pattern.split_once('/') {
            let (net, len) = parse_cidr(addr, len)?;
            self.insert_net(net, len, text);
        } else {
            match parse_host(pattern)? {
                Host::Name(n) => {
                    self.exact_labels |= label_bit(label_count(&n));
                    self.exact.entry(n.into()).or_insert(text);
                }
                Host::Ip(ip) => {
                    let len = if ip.is_ipv4() { 32 } else { 128 };
                    self.insert_net(ip, len, text);
                }
            }
        }
        self.patterns += 1;
        Ok(())
    }

    fn insert_net(&mut self, net: IpAddr, len: u8, text: Box<str>) {
        self.nets.entry((net, len)).or_insert(text);
        let lens = if net.is_ipv4() {
            &mut self.v4_lens
        } else {
            &mut self.v6_lens
        };
        if !lens.contains(&len) {
            lens.push(len);
            lens.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    /// The pattern (as written, quoted) that matches `host`, if any. No allocation.
    pub(crate) fn find(&self, host: &Host<'_>) -> Option<&str> {
        if let Some(any) = &self.any {
            return Some(any);
        }
        match host {
            Host::Name(name) => {
                let name: &str = name;
                let labels = label_count(name);
                if self.exact_labels & label_bit(labels) != 0 {
                    if let Some(p) = self.exact.get(name) {
                        return Some(p);
                    }
                }
                if self.under_labels == 0 {
                    return None;
                }
                // Probe each proper suffix after a '.', longest first, but
                // only those with a label count some wildcard has.
                let mut remaining = labels;
                for (i, b) in name.bytes().enumerate() {
                    if b == b'.' {
                        remaining -= 1;
                        if self.under_labels & label_bit(remaining) != 0 {
                            if let Some(p) = self.under.get(&name[i + 1..]) {
                                return Some(p);
                            }
                        }
                    }
                }
                None
            }
            Host::Ip(ip) => {
                let lens = if ip.is_ipv4() {
                    &self.v4_lens
                } else {
                    &self.v6_lens
                };
                lens.iter()
                    .find_map(|&len| self.nets.get(&(mask(*ip, len), len)))
                    .map(|p| &**p)
            }
        }
    }
}

fn label_count(name: &str) -> usize {
    1 + name.bytes().filter(|&b| b == b'.').count()
}

fn label_bit(labels: usize) -> u64 {
    1 << labels.min(63)
}

/// `10.0.0.0` + `8` → (10.0.0.0, 8); rejects host bits set and bad lengths.
fn parse_cidr(addr: &str, len: &str) -> Result<(IpAddr, u8), String> {
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| "is not a CIDR range: the part before '/' is not an IP address".to_string())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| format!("is not a CIDR range: the prefix length must be 0 to {max}"))?;
    let net = mask(ip, len);
    if net != ip {
        return Err(format!("has host bits set; did you mean {net}/{len}?"));
    }
    Ok((net, len))
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests;
