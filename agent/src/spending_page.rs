//! The spending half of the agent's page: what the balance buys at the
//! gateway's tariff, spending per site over time (charts and a table from the
//! local history), the honest meter's verdict, and the "forget history" form
//! (which `pages` answers). Rendering only.

use policy::units::format_amount;
use proto::page::Html;
use tunnel::stream::TariffNote;

use crate::history::{History, Tally};
use crate::history_store::{now_unix, today_start};
use crate::link::Link;
use crate::spend::MeterCheck;

const MIB: f64 = (1u64 << 20) as f64;

fn money(micros: i64, currency: &str) -> String {
    let text = format!("{} {currency}", format_amount(micros));
    format!(
        "<span title=\"{micros} micro-units\">{}</span>",
        Html::text(text.trim()).as_str()
    )
}

/// "What the balance buys": MiB and requests at the tariff's prices.
pub fn buys(balance: i64, tariff: Option<TariffNote>, currency: &str) -> String {
    let Some(t) = tariff else {
        return "<p id=buys>The gateway's prices are not known yet (no tunnel so far).</p>"
            .to_string();
    };
    let balance = balance.max(0);
    let mib = if t.per_mib > 0 {
        format!(
            "about {:.0} MiB of pages and downloads (at {} per MiB)",
            balance as f64 / t.per_mib as f64,
            money(t.per_mib, currency)
        )
    } else {
        "any amount of data (transport is not priced per MiB)".to_string()
    };
    let requests = if t.per_request > 0 {
        format!(
            "or about {} requests (at {} each), before site prices",
            balance / t.per_request,
            money(t.per_request, currency)
        )
    } else {
        "with no charge per request".to_string()
    };
    format!("<p id=buys>Your balance buys {mib}, {requests}.</p>")
}

/// How long the balance and the key material last at the last 24 hours'
/// rate (`day`: what those hours spent and carried).
pub fn lasts(day: Tally, balance: i64, key_carries_mib: f64, currency: &str) -> String {
    if day.spent <= 0 && day.bytes == 0 {
        return String::new();
    }
    let mut parts = Vec::new();
    if day.spent > 0 {
        parts.push(format!(
            "the balance lasts about {:.1} days",
            balance.max(0) as f64 / day.spent as f64
        ));
    }
    if day.bytes > 0 {
        parts.push(format!(
            "the key material about {:.1} days",
            key_carries_mib * MIB / day.bytes as f64
        ));
    }
    format!(
        "<p id=lasts>At the last 24 hours' rate ({} and {:.2} MiB), {}.</p>",
        money(day.spent, currency),
        day.bytes as f64 / MIB,
        parts.join(", and ")
    )
}

/// What the last 24 hours spent and carried, all sites together.
fn last_day(h: &History, now: i64) -> Tally {
    let mut total = Tally::default();
    for (_, sites) in h.hours(now) {
        for (_, t) in sites {
            total.add(t);
        }
    }
    total
}

/// The honest meter: every reported charge against the agent's own count.
pub fn meter(check: MeterCheck, currency: &str) -> String {
    if check.checked == 0 {
        return "<p id=meter>Honest meter: no charge checked yet. The agent counts every byte itself and compares each request's charge with the tariff.</p>".to_string();
    }
    if check.over == 0 {
        return format!(
            "<p id=meter>Honest meter: all {} charges checked match the agent's own byte count at the tariff.</p>",
            check.checked
        );
    }
    format!(
        "<p class=warn id=meter>Honest meter: {over} of {checked} charges were above what the agent counted, by {amount} in all ({mib:.2} MiB the agent never received or sent). \
         A download cancelled mid-way pays for the bytes already on their way; anything else is worth reporting to the gateway's operator.</p>",
        over = check.over,
        checked = check.checked,
        amount = money(check.over_amount, currency),
        mib = check.over_bytes as f64 / MIB,
    )
}

/// Per-site totals over the kept history, most spent first.
pub fn per_site_table(history: &History, now: i64, currency: &str) -> String {
    let sites = history.per_site(now);
    if sites.is_empty() {
        return "<p id=per-site>No spending recorded yet.</p>".to_string();
    }
    let rows: String = sites
        .iter()
        .map(|(site, t): &(String, Tally)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
                Html::text(site).as_str(),
                t.requests,
                t.bytes as f64 / MIB,
                money(t.spent, currency)
            )
        })
        .collect();
    format!(
        "<table id=per-site><tr><th>site</th><th>requests</th><th>MiB</th><th>spent</th></tr>{rows}</table>"
    )
}

/// The spending section of the page.
pub fn section(link: &Link, balance: i64, key_carries_mib: f64, currency: &str) -> String {
    let now = now_unix();
    let tariff = link.totals.tariff();
    let (charts, table, today, kept, lasting) = link.history.with(|h| {
        let drawn = crate::history_chart::charts(h, now, currency);
        (
            format!(
                "<div id=chart-hours>{}</div><div id=chart-days>{}</div>",
                drawn.hours, drawn.days
            ),
            per_site_table(h, now, currency),
            h.spent_since(today_start(now)),
            !h.is_empty(),
            lasts(last_day(h, now), balance, key_carries_mib, currency),
        )
    });
    let where_kept = match link.history.path() {
        Some(p) => format!(
            "The history is kept only on this computer, in <code>{}</code>; it is never sent anywhere.",
            Html::text(&p.display().to_string()).as_str()
        ),
        None => "History is off (<code>--no-history</code>): this is this session's spending only, kept in memory.".to_string(),
    };
    let forget = if kept {
        format!(
            "<form method=post action=\"/history/forget\"><input type=hidden name=token value=\"{}\">\
             <button type=submit>Forget history</button></form>",
            Html::text(&link.page_token).as_str()
        )
    } else {
        String::new()
    };
    format!(
        "<h2>What it buys</h2>{buys}{lasting}\
         <h2 id=spending>Spending</h2><p>Spent today: <b id=spent-today>{today}</b>.</p>\
         {charts}{table}{meter}<p>{where_kept}</p>{forget}",
        buys = buys(balance, tariff, currency),
        today = money(today, currency),
        meter = meter(link.spending.check(), currency),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balance_buys_mib_and_requests_at_the_tariff() {
        let t = TariffNote {
            per_mib: 10_000,
            per_request: 100,
        };
        let p = buys(5_000_000, Some(t), "EUR");
        assert!(p.contains("about 500 MiB"), "{p}");
        assert!(p.contains("about 50000 requests"), "{p}");
        assert!(buys(1, None, "EUR").contains("not known yet"));
        let free = buys(
            5,
            Some(TariffNote {
                per_mib: 0,
                per_request: 0,
            }),
            "EUR",
        );
        assert!(free.contains("any amount of data"), "{free}");
    }

    #[test]
    fn how_long_it_lasts_at_the_last_days_rate() {
        let day = Tally {
            requests: 10,
            bytes: 100 << 20,
            spent: 1_000_000,
        };
        let p = lasts(day, 5_000_000, 1000.0, "EUR");
        assert!(p.contains("balance lasts about 5.0 days"), "{p}");
        assert!(p.contains("key material about 10.0 days"), "{p}");
        assert_eq!(lasts(Tally::default(), 5, 1.0, "EUR"), "");
    }

    #[test]
    fn the_meter_flags_overcharges_only() {
        assert!(meter(MeterCheck::default(), "EUR").contains("no charge checked yet"));
        let fine = MeterCheck {
            checked: 3,
            under: 1,
            under_amount: 5,
            ..MeterCheck::default()
        };
        assert!(meter(fine, "EUR").contains("all 3 charges checked match"));
        let over = MeterCheck {
            checked: 3,
            over: 1,
            over_amount: 40_000,
            over_bytes: 4 << 20,
            ..MeterCheck::default()
        };
        let p = meter(over, "EUR");
        assert!(
            p.contains("class=warn") && p.contains("0.04 EUR") && p.contains("4.00 MiB"),
            "{p}"
        );
    }

    #[test]
    fn the_site_table_escapes_names_and_sorts_by_spend() {
        let mut h = History::new();
        let now = 1_800_000_000;
        h.record(now, "<b>cheap</b>", 1, 10, 5);
        h.record(now, "dear.example", 2, 1 << 20, 900);
        let t = per_site_table(&h, now, "EUR");
        assert!(t.contains("&lt;b&gt;cheap&lt;/b&gt;"), "{t}");
        assert!(t.find("dear.example") < t.find("cheap"), "{t}");
    }
}
