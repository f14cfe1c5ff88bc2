//! The user's spending, end to end: each request's charge reported by the
//! gateway adds up, per site, to exactly what the pad paid; the honest meter
//! agrees; the history is kept beside the pad (0600, across restarts, never
//! with the serial), forgotten only by the agent's own page, and not kept at
//! all with --no-history.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use padnet_tests::*;

const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.01\"\nper_request = \"0.0001\"\n";

fn status(agent: std::net::SocketAddr) -> serde_json::Value {
    let out = curl(&[&format!("http://{agent}/status")]);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn page(agent: std::net::SocketAddr) -> String {
    String::from_utf8(curl(&[&format!("http://{agent}/")]).stdout).unwrap()
}

/// Wait until the agent has checked `n` charges; returns /status.
fn wait_checked(agent: std::net::SocketAddr, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(agent);
        if s["meter"]["checked"].as_u64().unwrap_or(0) >= n || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_file(p: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn token_of(page: &str) -> String {
    let at = page.find("name=token value=\"").expect(page) + 18;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

#[test]
fn charges_add_up_per_site_the_meter_agrees_and_the_history_is_the_users() {
    let st = stage("<html><body>hello</body></html>\n");
    let work = st.dir.path();
    random_file(&work.join("www/one.bin"), 1 << 20);
    random_file(&work.join("www/odd.bin"), 333_333);
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
    let pad = mint(&st.state, "5.00", "64MiB", &work.join("pads"));
    let serial = serial_of(&pad);
    let mut agent = start_agent(&pad, gw.addr, &[], work);
    let history = pad.with_file_name(format!(
        "{}.history",
        pad.file_name().unwrap().to_string_lossy()
    ));

    // Two sites: the origin over HTTP (127.0.0.1) and over HTTPS (localhost).
    let http = st.origin.http;
    for f in ["one.bin", "odd.bin", "index.html"] {
        let (code, _) = get_via(agent.addr, &format!("http://{http}/{f}"), &[]);
        assert_eq!(code, 200, "{f}");
    }
    let ca = st.origin.ca.to_string_lossy().to_string();
    let https = format!("https://localhost:{port}/one.bin");
    let (code, body) = get_via(agent.addr, &https, &["--cacert", &ca]);
    assert_eq!((code, body.len()), (200, 1 << 20));

    let s = wait_checked(agent.addr, 4);
    let shown = wait_settled(&st.state, &serial);
    let paid = 5_000_000 - micros(shown["balance"].as_str().unwrap());
    assert!(paid > 0, "{shown}");
    assert_eq!(
        micros(s["spent_today"].as_str().unwrap()),
        paid,
        "the reported charges add up to what the pad paid: {s}"
    );
    assert_eq!(s["meter"]["checked"], 4, "{s}");
    assert_eq!(
        s["meter"]["over"], 0,
        "no charge beyond the agent's own count: {s}"
    );
    assert_eq!(s["tariff"]["per_mib"], "0.01", "{s}");
    assert_eq!(s["tariff"]["per_request"], "0.0001", "{s}");

    // The page: what the balance buys, both sites with their spend, the charts.
    let p = page(agent.addr);
    assert!(p.contains("id=buys"), "{p}");
    assert!(p.contains("id=per-site"), "{p}");
    assert!(
        p.contains("<td>127.0.0.1</td>") && p.contains("<td>localhost</td>"),
        "{p}"
    );
    assert!(p.contains("id=chart-hours") && p.contains("<svg"), "{p}");
    assert!(p.contains("all 4 charges checked match"), "{p}");

    // Kept beside the pad, 0600, without the pad's serial; across a restart.
    assert!(wait_for_file(&history), "no {}", history.display());
    let mode = std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.contains("localhost"), "{text}");
    assert!(!text.contains(&serial), "the history names no pad: {text}");
    agent.proc.terminate();
    let agent = start_agent(&pad, gw.addr, &[], work);
    let again = status(agent.addr);
    assert_eq!(again["spent_today"], s["spent_today"], "{again}");

    // Forgetting takes the page's token and the agent's own origin.
    let url = format!("http://{}/history/forget", agent.addr);
    let p = page(agent.addr);
    let token = token_of(&p);
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-d",
        "token=wrong",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let good = format!("token={token}");
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Origin: http://evil.example",
        "-d",
        &good,
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    assert!(history.exists(), "a refused forget forgets nothing");
    let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-d", &good, &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "303");
    assert!(!history.exists());
    assert_eq!(status(agent.addr)["spent_today"], "0.00");
    drop(agent);

    // --no-history: this session's spending on the page, nothing on disk.
    let agent = start_agent(&pad, gw.addr, &["--no-history"], work);
    let (code, _) = get_via(agent.addr, &format!("http://{http}/odd.bin"), &[]);
    assert_eq!(code, 200);
    let s = wait_checked(agent.addr, 1);
    assert_ne!(s["spent_today"], "0.00", "{s}");
    assert!(page(agent.addr).contains("History is off"));
    std::thread::sleep(Duration::from_secs(11)); // past one save interval
    drop(agent);
    assert!(
        !history.exists(),
        "--no-history wrote {}",
        history.display()
    );
    let (ok, report) = audit(&st.state);
    assert!(ok, "{report}");
}
