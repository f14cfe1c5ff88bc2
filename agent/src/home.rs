//! The agent's own page `/` and its `/status` JSON: the wallet (what the
//! pad holds, in the currency, and how long its key material lasts), the
//! refusals a browser cannot show, the priced sites' prices, and how to
//! point a browser at the agent. Rendered from the link's state; no script.

use std::sync::atomic::Ordering;

use policy::units::format_amount;
use proto::headers::SitePrice;
use proto::page::{self, Html};

use crate::link::Link;
use crate::refusals::Refusal;

const MIB: f64 = (1u64 << 20) as f64;

/// The figures the page shows, read once from the link.
struct Wallet {
    balance: i64,
    currency: String,
    key_left: u64,
    key_total: u64,
    /// Payload bytes one key byte has carried so far (1.0 before any traffic).
    carry_ratio: f64,
    slots_left: u32,
    tunnel: &'static str,
    gateways: Vec<String>,
}

/// Key bytes left: above the highest byte used (`used`), as leases are
/// handed out in order; a split pad's shares are used apart, so there it
/// is what no lease taken, nor any share's spent part, covers.
fn key_left(link: &Link, used: u64) -> u64 {
    match link.pad.share_count() {
        1 => link.pad.header().data_size.saturating_sub(used),
        _ => link.pad.key_left(),
    }
}

impl Wallet {
    fn read(link: &Link) -> Wallet {
        let h = link.pad.header();
        let t = &link.totals;
        let used = t.max(|s| s.lease_hwm.load(Ordering::Relaxed));
        let pad_used =
            t.sum(|s| s.pad_sent.load(Ordering::Relaxed) + s.pad_recv.load(Ordering::Relaxed));
        let payload = t.sum(|s| {
            s.payload_sent.load(Ordering::Relaxed) + s.payload_recv.load(Ordering::Relaxed)
        });
        Wallet {
            balance: t.balance().unwrap_or(h.value_micros),
            currency: t.currency().unwrap_or_default(),
            key_left: key_left(link, used),
            key_total: h.data_size,
            carry_ratio: if pad_used > 0 {
                (payload as f64 / pad_used as f64).min(1.0)
            } else {
                1.0
            },
            slots_left: link.pad.slots_left(),
            tunnel: link.state.borrow().word(),
            gateways: link.addrs.clone(),
        }
    }

    fn money(&self, micros: i64) -> Html {
        let text = format!("{} {}", format_amount(micros), self.currency);
        Html::trusted(format!(
            "<span title=\"{} micro-units\">{}</span>",
            micros,
            Html::text(text.trim()).as_str()
        ))
    }

    /// MiB the key material left still carries, at the rate seen so far.
    fn carries_mib(&self) -> f64 {
        self.key_left as f64 * self.carry_ratio / MIB
    }

    fn key_low(&self) -> bool {
        self.key_total > 0 && self.key_left.saturating_mul(10) < self.key_total
    }
}

/// The agent's own page.
pub fn home(link: &Link, listen: std::net::SocketAddr) -> String {
    link.settle_charges();
    let w = Wallet::read(link);
    let mut banners = String::new();
    let warn_below = link.warn_below.load(Ordering::Relaxed);
    if w.balance < warn_below {
        banners += &format!(
            "<p class=warn id=low-balance>Low balance: {} left. Top up from <a href=\"/account\">your account</a>, or buy a new pad.</p>",
            w.money(w.balance).as_str()
        );
    }
    if w.key_low() {
        banners += &format!(
            "<p class=warn id=low-key>Key material is running low: about {:.1} MiB left to carry. Move the value to a new pad before it runs out (receive a new pad into this one's account).</p>",
            w.carries_mib()
        );
    }
    let refusals = link.refusals.list();
    let refused = refusals_table(&refusals);
    let key_pct = if w.key_total == 0 {
        0
    } else {
        (w.key_left as u128 * 100 / w.key_total as u128) as u64
    };
    let wallet = format!(
        "<h2>Your pad</h2><table id=wallet>\
         <tr><th>Balance</th><td id=balance>{balance}</td></tr>\
         <tr><th>Reserved</th><td id=reserved>{reserved} held by transfers in progress (what they do not use comes back)</td></tr>\
         <tr><th>Key material</th><td><progress id=key-bar max=100 value={key_pct}></progress> \
         {left:.1} of {total:.1} MiB left ({key_pct} %), carries about {carries:.0} MiB more</td></tr>\
         <tr><th>Tunnels left</th><td>{slots} (one ticket slot each)</td></tr>\
         <tr><th>Tunnel</th><td id=tunnel>{tunnel} via {gw}</td></tr></table>",
        balance = w.money(w.balance).as_str(),
        reserved = w.money(link.totals.reserved()).as_str(),
        left = w.key_left as f64 / MIB,
        total = w.key_total as f64 / MIB,
        carries = w.carries_mib(),
        slots = w.slots_left,
        tunnel = w.tunnel,
        gw = Html::text(&w.gateways.join(", ")).as_str(),
    );
    page::render(
        "padnet agent",
        &Html::trusted(format!(
            "{banners}{refused}{wallet}{spending}{sites}\
             <p><a href=\"/account\">Your account</a>: open one, cancel a lost pad, top up, receive a pad handed to you.</p>\
             <p>Point your browser's HTTP proxy at <code>{listen}</code>, \
             or use <a href=\"/proxy.pac\">/proxy.pac</a> for automatic configuration. \
             When a site will not load (browsers show their own error for a refused HTTPS site), \
             this page says why.</p>",
            sites = site_prices(&link.sites.list()).as_str(),
            spending = crate::spending_page::section(link, w.balance, w.carries_mib(), &w.currency),
        )),
        "padnet agent",
    )
}

/// The refusals, newest first; nothing when there are none. Host and
/// reason came from the network: escaped.
fn refusals_table(list: &[Refusal]) -> String {
    if list.is_empty() {
        return String::new();
    }
    // The same refusal again (a page's many requests) is one row, counted.
    let mut groups: Vec<(&Refusal, usize)> = Vec::new();
    for r in list {
        match groups
            .iter_mut()
            .find(|(g, _)| g.host == r.host && g.status == r.status && g.reason == r.reason)
        {
            Some((_, n)) => *n += 1,
            None => groups.push((r, 1)),
        }
    }
    let rows: String = groups
        .iter()
        .map(|(r, n)| {
            let times = if *n > 1 {
                format!(" (×{n})")
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}{times}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                utc_time(r.at),
                Html::text(&r.host).as_str(),
                r.status,
                Html::text(&r.reason).as_str(),
            )
        })
        .collect();
    format!(
        "<h2 id=refusals>Refused lately</h2><table><tr><th>time (UTC)</th><th>site</th>\
         <th>status</th><th>why</th></tr>{rows}</table>"
    )
}

/// `HH:MM:SS` of a Unix time, UTC.
fn utc_time(at: u64) -> String {
    let s = at % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The "Site prices" table, empty markup when there are none. Every field
/// came from the network: each goes through [`Html::text`].
fn site_prices(sites: &[SitePrice]) -> Html {
    if sites.is_empty() {
        return Html::trusted(String::new());
    }
    let amount = |a: &str, currency: &str| Html::text(&format!("{a} {currency}"));
    let rows: String = sites
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Html::text(&p.host).as_str(),
                amount(&p.per_hit, &p.currency).as_str(),
                amount(&p.per_mib, &p.currency).as_str(),
                amount(&p.hit, &p.currency).as_str(),
            )
        })
        .collect();
    Html::trusted(format!(
        "<h2>Site prices</h2><table><tr><th>host</th><th>per hit</th><th>per MiB</th>\
         <th>last hit charged</th></tr>{rows}</table>"
    ))
}

/// The agent's status as JSON.
pub fn status_json(link: &Link) -> serde_json::Value {
    link.settle_charges();
    let h = link.pad.header();
    let t = &link.totals;
    let key_bytes_left = key_left(link, t.max(|s| s.lease_hwm.load(Ordering::Relaxed)));
    let balance = t.balance().unwrap_or(h.value_micros);
    serde_json::json!({
        "serial": h.serial.to_string(),
        "balance": format_amount(balance),
        "currency": t.currency(),
        "key_bytes_left": key_bytes_left,
        "ticket_slots_left": link.pad.slots_left(),
        "tunnel": link.state.borrow().word(),
        "gateways": link.addrs,
        "payload_bytes_sent": t.sum(|s| s.payload_sent.load(Ordering::Relaxed)),
        "payload_bytes_received": t.sum(|s| s.payload_recv.load(Ordering::Relaxed)),
        "pad_bytes_sent": t.sum(|s| s.pad_sent.load(Ordering::Relaxed)),
        "pad_bytes_received": t.sum(|s| s.pad_recv.load(Ordering::Relaxed)),
        "pad_bytes_wasted": t.sum(|s| s.pad_wasted.load(Ordering::Relaxed)),
        "sites": link.sites.json(),
        "recent_refusals": link.refusals.json(),
        "reserved": format_amount(t.reserved()),
        "tariff": t.tariff().map(|t| serde_json::json!({
            "per_mib": format_amount(t.per_mib),
            "per_request": format_amount(t.per_request),
        })),
        "spent_today": format_amount(link.history.with(|h| {
            h.spent_since(crate::history_store::today_start(crate::history_store::now_unix()))
        })),
        "meter": link.spending.check(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tunnel::mint::mint;
    use tunnel::pad::{Mode, PadHeader, Serial, PAGE};
    use tunnel::store::FollowingPad;

    /// A link over a freshly minted pad (never dialled); keep the directory alive.
    fn link() -> (tempfile::TempDir, Arc<Link>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.pad");
        let h = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: 8,
            data_size: 16 * PAGE,
            created_unix: 0,
            value_micros: 5_000_000,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:1".into()],
            shares: Vec::new(),
            holds: None,
        };
        mint(&h, std::slice::from_ref(&path), |_| {}).unwrap();
        let pad = Arc::new(FollowingPad::open(&path, None).unwrap());
        let link = Link::new(
            pad,
            vec!["127.0.0.1:1".into()],
            vec![0],
            Duration::from_secs(1),
            Default::default(),
        );
        (dir, link)
    }

    fn price(host: &str, per_hit: &str, hit: &str) -> SitePrice {
        SitePrice {
            host: host.into(),
            per_hit: per_hit.into(),
            per_mib: "0.01".into(),
            hit: hit.into(),
            currency: "EUR".into(),
        }
    }

    fn listen() -> std::net::SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    mod status_json {
        use super::*;

        #[test]
        fn keeps_every_key_and_adds_sites_sorted_by_host() {
            let (_dir, link) = link();
            let s = status_json(&link);
            let keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            for k in [
                "serial",
                "balance",
                "currency",
                "key_bytes_left",
                "ticket_slots_left",
                "tunnel",
                "gateways",
                "payload_bytes_sent",
                "payload_bytes_received",
                "pad_bytes_sent",
                "pad_bytes_received",
                "pad_bytes_wasted",
                "sites",
            ] {
                assert!(keys.contains(&k), "{k} missing from {s}");
            }
            assert_eq!(s["sites"], serde_json::json!([]));

            let t = Instant::now();
            link.sites.record(price("news.example", "0.002", "0.05"), t);
            link.sites.record(price("ads.example", "-0.01", "0"), t);
            let s = status_json(&link);
            assert_eq!(s["sites"][0]["host"], "ads.example");
            assert_eq!(s["sites"][0]["per_hit"], "-0.01");
            assert_eq!(s["sites"][0]["last_hit"], "0");
            assert_eq!(s["sites"][1]["host"], "news.example");
            assert_eq!(s["sites"][1]["per_mib"], "0.01");
            assert_eq!(s["sites"][1]["last_hit"], "0.05");
            assert_eq!(s["sites"][1]["currency"], "EUR");
        }
    }

    mod home {
        use super::*;

        #[test]
        fn shows_no_price_table_before_any_priced_site() {
            let (_dir, link) = link();
            let page = home(&link, listen());
            assert!(!page.contains("Site prices"), "{page}");
            assert!(!page.contains("<th>sites</th>"), "{page}");
        }

        #[test]
        fn shows_the_balance_for_people_and_the_exact_micros_on_hover() {
            let (_dir, link) = link();
            let page = home(&link, listen());
            assert!(
                page.contains(
                    "<td id=balance><span title=\"5000000 micro-units\">5.00</span></td>"
                ),
                "{page}"
            );
            assert!(
                page.contains("<progress id=key-bar max=100 value=100>"),
                "{page}"
            );
            assert!(page.contains("0.1 of 0.1 MiB left (100 %)"), "{page}");
            assert!(!page.contains("low-balance"), "{page}");
            assert!(!page.contains("Refused lately"), "{page}");
        }

        #[test]
        fn warns_below_the_threshold() {
            let (_dir, link) = link();
            link.warn_below.store(5_000_001, Ordering::Relaxed);
            let page = home(&link, listen());
            assert!(page.contains("id=low-balance"), "{page}");
        }

        #[test]
        fn lists_refusals_newest_first_escaped() {
            let (_dir, link) = link();
            link.refusals.record(
                "a.example:443",
                http::StatusCode::PAYMENT_REQUIRED,
                "value-exhausted",
                "value used up",
            );
            link.refusals.record(
                "<b>x</b>:443",
                http::StatusCode::FORBIDDEN,
                "policy-denied",
                "policy \"Acme\", rule deny <ads>",
            );
            let page = home(&link, listen());
            let a = page.find("&lt;b&gt;x&lt;/b&gt;:443").expect(&page);
            let b = page.find("a.example:443").expect(&page);
            assert!(a < b, "newest first");
            assert!(page.contains("rule deny &lt;ads&gt;"), "{page}");
            assert!(!page.contains("<ads>") && !page.contains("<b>x"), "{page}");
            assert_eq!(
                status_json(&link)["recent_refusals"][1]["code"],
                "value-exhausted"
            );
            for _ in 0..3 {
                link.refusals.record(
                    "a.example:443",
                    http::StatusCode::PAYMENT_REQUIRED,
                    "value-exhausted",
                    "value used up",
                );
            }
            let page = home(&link, listen());
            assert_eq!(page.matches("a.example:443").count(), 1, "{page}");
            assert!(page.contains("(×4)"), "{page}");
        }

        #[test]
        fn shows_the_prices_seen() {
            let (_dir, link) = link();
            link.sites
                .record(price("news.example", "0.002", "0.05"), Instant::now());
            let page = home(&link, listen());
            assert!(page.contains("<h2>Site prices</h2>"), "{page}");
            assert!(
                page.contains(
                    "<tr><td>news.example</td><td>0.002 EUR</td><td>0.01 EUR</td><td>0.05 EUR</td></tr>"
                ),
                "{page}"
            );
        }
    }

    mod site_prices {
        use super::*;

        #[test]
        fn escapes_every_field() {
            let evil = SitePrice {
                host: "<script>alert(1)</script>".into(),
                per_hit: "\"1".into(),
                per_mib: "'2".into(),
                hit: "&3".into(),
                currency: "<b>".into(),
            };
            let html = site_prices(&[evil]);
            let html = html.as_str();
            assert!(!html.contains("<script>"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
            assert!(html.contains("&lt;script&gt;"), "{html}");
            assert!(html.contains("&quot;1 &lt;b&gt;"), "{html}");
            assert!(html.contains("&#39;2"), "{html}");
            assert!(html.contains("&amp;3"), "{html}");
        }
    }
}
