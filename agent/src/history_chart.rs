//! The spending history as two charts for the agent's page: per UTC hour over
//! the last 24 hours and per UTC day over the last 30, stacked by the five
//! sites most spent at overall (the rest as "other").

use chart::{stacked_bars, Chart, Series};

use crate::history::{History, Tally, OTHER};

/// Sites drawn by name; the rest are stacked as [`OTHER`].
pub const TOP_SITES: usize = 5;

/// The two charts, each a complete `<svg>` element to inline into the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charts {
    pub hours: String,
    pub days: String,
}

/// Draws both charts as of `now`; amounts are shown in `unit` (e.g. "EUR").
pub fn charts(history: &History, now: i64, unit: &str) -> Charts {
    let top = top_sites(history, now);
    let hours = history.hours(now);
    let days = history.days(now);
    let hours = Chart {
        title: "spent per hour, last 24 hours (UTC)",
        buckets: hours.iter().map(|(start, _)| hour_label(*start)).collect(),
        series: stack(&top, &hours),
        unit,
        empty_text: "no spending in the last 24 hours",
        width: 720,
        height: 260,
    };
    let days = Chart {
        title: "spent per day, last 30 days (UTC)",
        buckets: days.iter().map(|(start, _)| day_label(*start)).collect(),
        series: stack(&top, &days),
        unit,
        empty_text: "no spending in the last 30 days",
        width: 720,
        height: 260,
    };
    Charts {
        hours: stacked_bars(&hours),
        days: stacked_bars(&days),
    }
}

/// The [`TOP_SITES`] sites most spent at over the 30 days, most first
/// ("other" itself is never one of them).
fn top_sites(history: &History, now: i64) -> Vec<String> {
    let sites = history.per_site(now).into_iter();
    let sites = sites.filter(|(site, t)| site != OTHER && t.spent > 0);
    sites.take(TOP_SITES).map(|(site, _)| site).collect()
}

/// One series per top site, then "other" for the rest if it spent anything.
fn stack(top: &[String], buckets: &[(i64, Vec<(String, Tally)>)]) -> Vec<Series> {
    let mut series: Vec<Series> = top
        .iter()
        .map(|name| Series {
            name: name.clone(),
            values: Vec::with_capacity(buckets.len()),
        })
        .collect();
    let mut other = Vec::with_capacity(buckets.len());
    for (_, sites) in buckets {
        for s in &mut series {
            let spent = sites.iter().find(|(site, _)| *site == s.name);
            s.values.push(spent.map_or(0, |(_, t)| t.spent));
        }
        let rest = sites.iter().filter(|(site, _)| !top.contains(site));
        other.push(rest.fold(0i64, |sum, (_, t)| sum.saturating_add(t.spent)));
    }
    if other.iter().any(|v| *v > 0) {
        series.push(Series {
            name: OTHER.to_string(),
            values: other,
        });
    }
    series
}

/// "13:00" for the hour starting at `start` (UTC).
fn hour_label(start: i64) -> String {
    format!("{:02}:00", start.rem_euclid(86_400) / 3_600)
}

/// "12-03" for the day starting at `start` (UTC).
fn day_label(start: i64) -> String {
    let (_, month, day) = civil_from_days(start.div_euclid(86_400));
    format!("{month:02}-{day:02}")
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03 12:00:00 UTC.
    const NOON: i64 = 1_796_256_000 + 12 * 3_600;

    #[test]
    fn labels_are_utc_hours_and_dates() {
        assert_eq!(hour_label(NOON), "12:00");
        assert_eq!(day_label(NOON - 12 * 3_600), "12-03");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
    }

    #[test]
    fn stacks_the_top_five_and_the_rest_as_other() {
        let mut h = History::new();
        for (i, site) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            h.record(
                NOON,
                &format!("{site}.example"),
                1,
                1,
                1_000 * (i as i64 + 1),
            );
        }
        h.record(NOON - 3 * 86_400, "<script>&\"x", 1, 1, 100_000);
        let top = top_sites(&h, NOON);
        assert_eq!(top[0], "<script>&\"x");
        assert_eq!(
            top[1..],
            ["g.example", "f.example", "e.example", "d.example"]
        );
        let days = h.days(NOON);
        let series = stack(&top, &days);
        assert_eq!(series.len(), 6);
        assert_eq!(series[5].name, OTHER);
        assert_eq!(series[5].values[29], 1_000 + 2_000 + 3_000);
        assert_eq!(series[0].values[26], 100_000);

        let charts = charts(&h, NOON, "EUR");
        for svg in [&charts.hours, &charts.days] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert!(!svg.contains("<script"));
            assert!(svg.contains("g.example"));
        }
        assert!(charts.days.contains("&lt;script&gt;&amp;&quot;x"));
    }

    #[test]
    fn an_empty_history_says_so() {
        let charts = charts(&History::new(), NOON, "EUR");
        assert!(charts.hours.contains("no spending in the last 24 hours"));
        assert!(charts.days.contains("no spending in the last 30 days"));
    }
}
