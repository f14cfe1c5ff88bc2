//! The user's local spending history: what each finished request cost, per
//! site per UTC hour for the last 24 hours, rolled up into per site per UTC
//! day for the last 30 days. Kept only on this computer, never sent anywhere.
//!
//! [`History`] is the pure core (tallies, roll-up, bounds, text codec);
//! [`HistoryFile`] keeps one beside the pad (`my.pad.history`), saved
//! crash-safely when the caller asks ([`HistoryFile::save_if_dirty`] on a timer).
//!
//! Nothing recorded is ever dropped: days older than 30 are merged into one
//! per-site "older" bucket (no dates), so the totals always add up. Every
//! bucket keeps at most [`MAX_SITES`] sites, the least spent merged into
//! [`OTHER`]; the number of buckets is bounded too, so the file cannot grow
//! without bound whatever the clock does.

//!
//! # Layout
//!
//! - this file: [`History`], its tallies, roll-up and bounds;
//! - `codec`: the line-based text format ([`History::encode`], [`History::decode`]);
//! - `file`: [`HistoryFile`], the history kept beside the pad.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

mod codec;
mod file;

pub use codec::{escape_site, unescape_site};
pub use file::HistoryFile;

/// Hours kept before they are rolled into days.
pub const HOURS: i64 = 24;
/// Days kept (today included) before they are merged into "older".
pub const DAYS: i64 = 30;
/// Sites kept in one bucket, [`OTHER`] included.
pub const MAX_SITES: usize = 16;
/// The name the least-spent sites of a full bucket are merged under.
pub const OTHER: &str = "other";

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// Hour (and day) buckets kept at most, whatever the clock did: twice the
/// window, the oldest rolled on first.
const MAX_HOUR_BUCKETS: usize = 2 * HOURS as usize;
const MAX_DAY_BUCKETS: usize = 2 * DAYS as usize;
/// Times are clamped to [0, the end of year 9999] so bucket arithmetic cannot overflow.
const MAX_TIME: i64 = 253_402_300_799;

/// What was spent in one bucket at one site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    pub bytes: u64,
    /// Micro-units; may be negative for a refund.
    pub spent: i64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.spent = self.spent.saturating_add(other.spent);
    }
}

/// Why a history could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A line of the text format is wrong (`line` counts from 1).
    #[error("line {line}: {field}: {reason}")]
    Parse {
        line: usize,
        field: &'static str,
        reason: String,
    },
    /// The history file is corrupt; it is left as it is for the caller to decide.
    #[error("{}:{line}: {field}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        field: &'static str,
        reason: String,
    },
    /// Reading, writing or removing the file failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Bucket = BTreeMap<String, Tally>;

/// The spending history: hour buckets, day buckets and the "older" bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Hour start (unix seconds, UTC) → site → tally.
    hours: BTreeMap<i64, Bucket>,
    /// Day start (unix seconds, UTC midnight) → site → tally.
    days: BTreeMap<i64, Bucket>,
    /// Everything rolled out of the 30 days, per site.
    older: Bucket,
}

// === impl History ===

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Adds one finished request (or several) to the hour of `at`.
    pub fn record(&mut self, at: i64, site: &str, requests: u64, bytes: u64, spent: i64) {
        let tally = Tally {
            requests,
            bytes,
            spent,
        };
        let bucket = self.hours.entry(hour_start(at)).or_default();
        add_to(bucket, site, tally);
        self.limit_buckets();
    }

    /// Rolls hours before the last 24 (the current one included) into their
    /// days, and days before the last 30 (today included) into "older".
    pub fn roll_up(&mut self, now: i64) {
        let first_hour = hour_start(now) - (HOURS - 1) * HOUR;
        let keep = self.hours.split_off(&first_hour);
        for (start, bucket) in std::mem::replace(&mut self.hours, keep) {
            merge_into(self.days.entry(day_start(start)).or_default(), bucket);
        }
        let first_day = day_start(now) - (DAYS - 1) * DAY;
        let keep = self.days.split_off(&first_day);
        for (_, bucket) in std::mem::replace(&mut self.days, keep) {
            merge_into(&mut self.older, bucket);
        }
    }

    /// The last 24 hours (the current one included), oldest first, empty
    /// hours included; sites most spent first.
    pub fn hours(&self, now: i64) -> Vec<(i64, Vec<(String, Tally)>)> {
        let last = hour_start(now);
        (0..HOURS)
            .map(|i| last - (HOURS - 1 - i) * HOUR)
            .map(|start| {
                (
                    start,
                    sorted(self.hours.get(&start).cloned().unwrap_or_default()),
                )
            })
            .collect()
    }

    /// The last 30 days (today included), oldest first, empty days included:
    /// each the rolled-up day plus its hours not rolled yet; sites most spent first.
    pub fn days(&self, now: i64) -> Vec<(i64, Vec<(String, Tally)>)> {
        let today = day_start(now);
        (0..DAYS)
            .map(|i| today - (DAYS - 1 - i) * DAY)
            .map(|start| (start, sorted(self.day(start))))
            .collect()
    }

    /// Totals per site over the 30 days that [`History::days`] shows (not
    /// "older"), most spent first.
    pub fn per_site(&self, now: i64) -> Vec<(String, Tally)> {
        let mut all = Bucket::new();
        for (_, sites) in self.days(now) {
            for (site, tally) in sites {
                all.entry(site).or_default().add(tally);
            }
        }
        sorted(all)
    }

    /// What was spent in the buckets that start at or after `since` (so
    /// `since` should be on an hour boundary, e.g. UTC midnight for today).
    pub fn spent_since(&self, since: i64) -> i64 {
        let buckets = self.hours.range(since..).chain(self.days.range(since..));
        buckets
            .flat_map(|(_, bucket)| bucket.values())
            .fold(0i64, |sum, t| sum.saturating_add(t.spent))
    }

    /// Everything merged out of the 30 days, per site, most spent first.
    pub fn older(&self) -> Vec<(String, Tally)> {
        sorted(self.older.clone())
    }

    /// The sum of everything kept: hours, days and older.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        let buckets = self.hours.values().chain(self.days.values());
        for tally in buckets.chain([&self.older]).flat_map(|b| b.values()) {
            total.add(*tally);
        }
        total
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.days.is_empty() && self.older.is_empty()
    }

    /// One day: its rolled bucket plus its hours still kept as hours.
    fn day(&self, start: i64) -> Bucket {
        let mut day = self.days.get(&start).cloned().unwrap_or_default();
        for (_, bucket) in self.hours.range(start..start + DAY) {
            merge_into(&mut day, bucket.clone());
        }
        day
    }

    /// Keeps the bucket counts bounded however the clock moved: the oldest
    /// hours roll into days, the oldest days into "older".
    fn limit_buckets(&mut self) {
        while self.hours.len() > MAX_HOUR_BUCKETS {
            if let Some((start, bucket)) = self.hours.pop_first() {
                merge_into(self.days.entry(day_start(start)).or_default(), bucket);
            }
        }
        while self.days.len() > MAX_DAY_BUCKETS {
            if let Some((_, bucket)) = self.days.pop_first() {
                merge_into(&mut self.older, bucket);
            }
        }
    }
}

fn hour_start(at: i64) -> i64 {
    let at = at.clamp(0, MAX_TIME);
    at - at % HOUR
}

fn day_start(at: i64) -> i64 {
    let at = at.clamp(0, MAX_TIME);
    at - at % DAY
}

fn add_to(bucket: &mut Bucket, site: &str, tally: Tally) {
    bucket.entry(site.to_string()).or_default().add(tally);
    limit_sites(bucket);
}

fn merge_into(into: &mut Bucket, from: Bucket) {
    for (site, tally) in from {
        into.entry(site).or_default().add(tally);
    }
    limit_sites(into);
}

/// Keeps the [`MAX_SITES`]` - 1` most spent sites of a full bucket and merges
/// the rest into [`OTHER`] (ties: the name first in order stays).
fn limit_sites(bucket: &mut Bucket) {
    if bucket.len() <= MAX_SITES {
        return;
    }
    let mut other = bucket.remove(OTHER).unwrap_or_default();
    let mut sites: Vec<(String, Tally)> = std::mem::take(bucket).into_iter().collect();
    sites.sort_by(|a, b| b.1.spent.cmp(&a.1.spent).then_with(|| a.0.cmp(&b.0)));
    for (_, tally) in sites.drain(MAX_SITES - 1..) {
        other.add(tally);
    }
    bucket.extend(sites);
    bucket.insert(OTHER.to_string(), other);
}

/// A bucket's sites, most spent first (ties by name).
fn sorted(bucket: Bucket) -> Vec<(String, Tally)> {
    let mut sites: Vec<(String, Tally)> = bucket.into_iter().collect();
    sites.sort_by(|a, b| b.1.spent.cmp(&a.1.spent).then_with(|| a.0.cmp(&b.0)));
    sites
}

#[cfg(test)]
mod tests;
