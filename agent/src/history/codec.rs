//! The history's text format: a version line, then one line per tally, so a
//! person can read it and a corrupt line is named by number and field.

use super::{limit_sites, Bucket, History, HistoryError, Tally, DAY, HOUR, MAX_TIME};

/// The first line of the file format.
const VERSION_LINE: &str = "padnet-history 1";

impl History {
    /// The text format: a version line, then one line per tally:
    /// `h <hour start> <site> <requests> <bytes> <spent>`, `d <day start> ...`,
    /// `o - <site> ...` for "older". Sites are escaped (see [`escape_site`]).
    pub fn encode(&self) -> String {
        let mut out = String::from(VERSION_LINE);
        out.push('\n');
        let mut put = |kind: &str, start: Option<i64>, bucket: &Bucket| {
            for (site, t) in bucket {
                let start = start.map_or("-".to_string(), |s| s.to_string());
                let site = escape_site(site);
                let (r, b, s) = (t.requests, t.bytes, t.spent);
                out.push_str(&format!("{kind} {start} {site} {r} {b} {s}\n"));
            }
        };
        for (start, bucket) in &self.hours {
            put("h", Some(*start), bucket);
        }
        for (start, bucket) in &self.days {
            put("d", Some(*start), bucket);
        }
        put("o", None, &self.older);
        out
    }

    /// Reads [`History::encode`]'s format; an error names the line and field.
    /// Buckets over the bounds are merged down as [`History::record`] would.
    pub fn decode(text: &str) -> Result<History, HistoryError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, VERSION_LINE)) => {}
            Some((line, other)) => {
                return Err(parse_error(
                    line,
                    "version",
                    format!("expected {VERSION_LINE:?}, found {other:?}"),
                ))
            }
            None => return Err(parse_error(1, "version", "the file is empty".into())),
        }
        let mut history = History::new();
        for (line, text) in lines {
            if text.is_empty() {
                continue;
            }
            let fields: Vec<&str> = text.split(' ').collect();
            let [kind, start, site, requests, bytes, spent] = fields[..] else {
                let reason = format!(
                    "expected 6 fields separated by spaces, found {}",
                    fields.len()
                );
                return Err(parse_error(line, "line", reason));
            };
            let number = |field: &'static str, text: &str| -> Result<i64, HistoryError> {
                text.parse()
                    .map_err(|e| parse_error(line, field, format!("{text:?} is not a number: {e}")))
            };
            let count = |field: &'static str, text: &str| -> Result<u64, HistoryError> {
                text.parse()
                    .map_err(|e| parse_error(line, field, format!("{text:?} is not a count: {e}")))
            };
            let tally = Tally {
                requests: count("requests", requests)?,
                bytes: count("bytes", bytes)?,
                spent: number("spent", spent)?,
            };
            let site = unescape_site(site).map_err(|reason| parse_error(line, "site", reason))?;
            let (bucket, step) = match kind {
                "h" => (Some(&mut history.hours), HOUR),
                "d" => (Some(&mut history.days), DAY),
                "o" => (None, 0),
                other => {
                    let reason = format!("{other:?} is not h, d or o");
                    return Err(parse_error(line, "kind", reason));
                }
            };
            let bucket = match bucket {
                Some(buckets) => {
                    let start = number("start", start)?;
                    if !(0..=MAX_TIME).contains(&start) || start % step != 0 {
                        let reason = format!(
                            "{start} is not the start of a UTC {}",
                            if step == HOUR { "hour" } else { "day" }
                        );
                        return Err(parse_error(line, "start", reason));
                    }
                    buckets.entry(start).or_default()
                }
                None if start == "-" => &mut history.older,
                None => {
                    return Err(parse_error(
                        line,
                        "start",
                        format!("expected \"-\" for older, found {start:?}"),
                    ))
                }
            };
            if bucket.insert(site.clone(), tally).is_some() {
                return Err(parse_error(
                    line,
                    "site",
                    format!("{site:?} appears twice in one bucket"),
                ));
            }
        }
        let buckets = history.hours.values_mut().chain(history.days.values_mut());
        for bucket in buckets.chain([&mut history.older]) {
            limit_sites(bucket);
        }
        history.limit_buckets();
        Ok(history)
    }
}

fn parse_error(line: usize, field: &'static str, reason: String) -> HistoryError {
    HistoryError::Parse {
        line,
        field,
        reason,
    }
}

/// A site name as one space-free field: `%`, `-` alone, spaces and control
/// characters become `%XX` (UTF-8 bytes); the empty name is `-`.
pub fn escape_site(site: &str) -> String {
    if site.is_empty() {
        return "-".into();
    }
    if site == "-" {
        return "%2D".into();
    }
    let mut out = String::with_capacity(site.len());
    for c in site.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape_site`].
pub fn unescape_site(field: &str) -> Result<String, String> {
    if field == "-" {
        return Ok(String::new());
    }
    let mut bytes = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'%' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("{field:?} has a % not followed by two hex digits"))?;
        bytes.push(hex);
        rest = &tail[2..];
    }
    String::from_utf8(bytes).map_err(|_| format!("{field:?} is not UTF-8 once unescaped"))
}
