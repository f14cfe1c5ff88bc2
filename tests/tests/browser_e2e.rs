//! End to end in a real browser: headless Chromium (Debian's, installed by
//! scripts/ensure-tools.sh) browses through the agent over HTTP and HTTPS,
//! then reads the agent's page; a small pad runs out, and the browser shows
//! the 402 page for an HTTP site while the agent's page names the refused
//! HTTPS site (which the browser itself shows only as a failed tunnel).
//! A screenshot of the agent's page is kept in target/artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use padnet_tests::*;

/// 0.01 per request and per MiB: a 0.05 pad pays for a handful of pages.
const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.01\"\nper_request = \"0.01\"\n";

fn chromium() -> PathBuf {
    let p = PathBuf::from("/usr/bin/chromium");
    assert!(
        p.exists(),
        "Chromium is missing: scripts/ensure-tools.sh installs it (apt-get install chromium)"
    );
    p
}

/// A headless Chromium run: a fresh profile, through `proxy` when given,
/// and as little of its own traffic as its switches allow (time queries,
/// extension and component updates, safe browsing, reporting are off; what
/// is left, CONNECTs to port 443 of two Google hosts, the gateway refuses
/// by port before resolving any name).
fn browser(work: &Path, proxy: Option<std::net::SocketAddr>) -> Command {
    let profile = tempfile::tempdir_in(work).unwrap().keep();
    let mut c = Command::new(chromium());
    c.args(CHROMIUM_OFFLINE)
        .args(["--virtual-time-budget=5000", "--timeout=20000"])
        .arg(format!("--user-data-dir={}", profile.display()));
    if let Some(p) = proxy {
        // Loopback through the proxy too: the test's origin is on 127.0.0.1.
        c.arg(format!("--proxy-server=http://{p}"))
            .arg("--proxy-bypass-list=<-loopback>")
            // The origin's certificate is from the test's own CA; the
            // browser's TLS runs end to end to it through CONNECT.
            .arg("--ignore-certificate-errors");
    }
    c
}

/// The DOM after the page loaded.
fn dom(work: &Path, proxy: Option<std::net::SocketAddr>, url: &str) -> String {
    let out = browser(work, proxy)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("running chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    if dom.trim().is_empty() {
        eprintln!(
            "chromium {url}: no DOM; it said:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dom
}

/// The balance the agent's page shows, from its exact micro-units.
fn balance_on_page(page: &str) -> i64 {
    let at = page.find("id=\"balance\"").expect(page);
    let rest = &page[at..];
    let t = rest.find("title=\"").expect(page) + 7;
    let end = rest[t..].find(' ').unwrap();
    rest[t..t + end].parse().expect(page)
}

#[test]
fn a_real_browser_browses_sees_its_balance_fall_and_learns_why_a_site_is_refused() {
    let st = stage("<html><body><h1 id=demo>padnet demo page</h1></body></html>\n");
    let work = st.dir.path();
    let tariff = work.join("tariff.toml");
    std::fs::write(&tariff, TARIFF).unwrap();
    let t = tariff.to_string_lossy().to_string();
    let port = st.origin.https.port().to_string();
    let gw = start_gateway(
        &st.state,
        "127.0.0.1:0",
        &[
            "--allow-private-upstreams",
            "--tariff",
            &t,
            "--connect-ports",
            &port,
        ],
        work,
    );
    let pad = mint(&st.state, "0.05", "4MiB", &work.join("pads"));
    let agent = start_agent(&pad, gw.addr, &["--warn-below", "0.03"], work);
    let home = format!("http://{}/", agent.addr);
    let http_page = format!("http://{}/index.html", st.origin.http);
    let https_page = format!("https://localhost:{}/index.html", st.origin.https.port());

    let before = balance_on_page(&dom(work, None, &home));
    assert_eq!(before, 50_000);

    let page = dom(work, Some(agent.addr), &http_page);
    assert!(
        page.contains("padnet demo page"),
        "HTTP through the agent: {page}"
    );
    let page = dom(work, Some(agent.addr), &https_page);
    assert!(
        page.contains("padnet demo page"),
        "HTTPS through the agent: {page}"
    );

    // The agent's page, read by the browser: the balance fell, the wallet
    // and the key material bar are there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = dom(work, None, &home);
        if balance_on_page(&page) < before || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let after = balance_on_page(&page);
    assert!(
        after <= before - 20_000,
        "two pages at 0.01 each: {before} → {after}\n{page}"
    );
    assert!(page.contains("id=\"key-bar\""), "{page}");
    assert!(page.contains("id=\"wallet\""), "{page}");
    // What the money went on: both sites with their spend, and the charts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = dom(work, None, &home);
        if page.contains("<td>localhost</td>") || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(page.contains("id=\"per-site\""), "{page}");
    assert!(
        page.contains("<td>127.0.0.1</td>") && page.contains("<td>localhost</td>"),
        "both sites listed: {page}"
    );
    assert!(
        page.contains("id=\"chart-hours\"") && page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("id=\"spent-today\""), "{page}");

    // Browse until the value runs out: the browser shows padnet's 402 page
    // for an HTTP site, linking to the agent's page.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let page = dom(work, Some(agent.addr), &http_page);
        if !page.contains("padnet demo page") || Instant::now() > deadline {
            break page;
        }
    };
    assert!(refused.contains("Value used up"), "{refused}");
    assert!(
        refused.contains(&format!("href=\"http://{}/\"", agent.addr)),
        "{refused}"
    );

    // An HTTPS site now fails in the browser's own words; the agent's page
    // names it and why.
    let page = dom(work, Some(agent.addr), &https_page);
    assert!(!page.contains("padnet demo page"), "{page}");
    let page = dom(work, None, &home);
    assert!(page.contains("Refused lately"), "{page}");
    assert!(
        page.contains(&format!("localhost:{}", st.origin.https.port())),
        "{page}"
    );
    assert!(page.contains("value is used up"), "{page}");
    assert!(page.contains("id=\"low-balance\""), "{page}");

    // A screenshot of the agent's page, for people (and the README).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("agent-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(work, None)
        .arg("--window-size=1000,2200")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
