//! The owner's earnings per UTC day over the last 30 days, stacked by the
//! five sites that earned most (the rest as "other"), drawn from the owner
//! view's statement as one inline SVG for the portal's page. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::metering::clock::date_of;

/// Days drawn, today included.
pub const DAYS: i64 = 30;
/// Sites drawn by name; the rest are stacked as "other".
pub const TOP_SITES: usize = 5;

/// The chart as of `today` (a UTC day number), from the statement rows
/// (`day` as `YYYY-MM-DD`, `site`, `credits` as a decimal amount).
pub fn earnings_svg(statement: &[Value], today: i64, currency: &str) -> String {
    let days: Vec<i64> = (today - DAYS + 1..=today).collect();
    let index: BTreeMap<String, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (date_of(*d), i))
        .collect();
    // Credits per site per day, within the window.
    let mut per_site: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in statement {
        let (Some(day), Some(site)) = (row["day"].as_str(), row["site"].as_str()) else {
            continue;
        };
        let Some(&i) = index.get(day) else { continue };
        let credit = row["credits"]
            .as_str()
            .and_then(|c| policy::units::parse_amount(c).ok())
            .unwrap_or(0);
        let values = per_site
            .entry(site.to_string())
            .or_insert_with(|| vec![0; days.len()]);
        values[i] = values[i].saturating_add(credit);
    }
    let mut ranked: Vec<(String, Vec<i64>)> = per_site.into_iter().collect();
    ranked.sort_by_key(|(site, v)| (std::cmp::Reverse(v.iter().sum::<i64>()), site.clone()));
    let mut series: Vec<chart::Series> = Vec::new();
    let mut other: Vec<i64> = vec![0; days.len()];
    for (i, (name, values)) in ranked.into_iter().enumerate() {
        if i < TOP_SITES {
            series.push(chart::Series { name, values });
        } else {
            for (o, v) in other.iter_mut().zip(values) {
                *o = o.saturating_add(v);
            }
        }
    }
    if other.iter().any(|&v| v != 0) {
        series.push(chart::Series {
            name: "other".into(),
            values: other,
        });
    }
    chart::stacked_bars(&chart::Chart {
        title: "your credit per day, last 30 days (UTC)",
        // "MM-DD": the year is in the statement below.
        buckets: days.iter().map(|d| date_of(*d)[5..].to_string()).collect(),
        series,
        unit: currency,
        empty_text: "no earnings in the last 30 days",
        width: 720,
        height: 260,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stacks_credits_by_site_within_the_window_escaped() {
        let today = 20_790; // 2026-12-03
        let rows = vec![
            json!({"day": "2026-12-03", "site": "news.example", "credits": "0.50"}),
            json!({"day": "2026-12-01", "site": "<b>x</b>", "credits": "0.10"}),
            json!({"day": "2025-01-01", "site": "old.example", "credits": "9.00"}),
        ];
        let svg = earnings_svg(&rows, today, "EUR");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg.contains("news.example"), "{svg}");
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("old.example"), "outside the window: {svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        let empty = earnings_svg(&[], today, "EUR");
        assert!(empty.contains("no earnings in the last 30 days"), "{empty}");
    }
}
