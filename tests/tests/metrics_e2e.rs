//! End to end: operator metrics. A real gateway with `--metrics-listen`,
//! agents and curl: browsing moves the tunnel, request, byte, flush and
//! refill counters; a 402 (a pad too small for one request), a 403 (a policy
//! denial) and a prober move theirs; the scraped page names no pad, no
//! origin and no client address. And `--log-format json` writes JSON lines.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use padnet_tests::*;

/// 0.10 per MiB, 0.0001 per request: a pad of 0.0001 cannot pay for one.
const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.10\"\nper_request = \"0.0001\"\n";

struct World {
    dir: tempfile::TempDir,
    origin: Origin,
    state: PathBuf,
    gateway: Gateway,
    metrics: String,
}

impl World {
    fn new() -> World {
        let Stage { dir, origin, state } = stage("<html>metrics page</html>\n");
        let tariff = dir.path().join("tariff.toml");
        std::fs::write(&tariff, TARIFF).unwrap();
        let t = tariff.to_string_lossy().to_string();
        let mut gateway = start_gateway(
            &state,
            "127.0.0.1:0",
            &[
                "--allow-private-upstreams",
                "--tariff",
                &t,
                "--probe-hold-ms",
                "300",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            dir.path(),
        );
        let metrics = gateway
            .proc
            .wait_line("padnet-gateway metrics on ", Duration::from_secs(30));
        assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");
        assert!(metrics.ends_with("/metrics"), "{metrics}");
        World {
            dir,
            origin,
            state,
            gateway,
            metrics,
        }
    }

    fn pad(&self, value: &str, extra: &[&str]) -> PathBuf {
        mint_with(
            &self.state,
            value,
            "4MiB",
            &self.dir.path().join("user"),
            extra,
        )
        .remove(0)
    }

    fn agent(&self, pad: &std::path::Path) -> Agent {
        start_agent(pad, self.gateway.addr, &[], self.dir.path())
    }

    /// Scrape the metrics page.
    fn scrape(&self) -> Scrape {
        let out = curl(&["-f", &self.metrics]);
        assert!(
            out.status.success(),
            "scraping {}: {}",
            self.metrics,
            String::from_utf8_lossy(&out.stderr)
        );
        Scrape(String::from_utf8(out.stdout).expect("the page is UTF-8"))
    }

    /// Scrape until `sample` reaches `at_least` (counters that move after
    /// a probe hold or a settle delay).
    fn wait_for(&self, sample: &str, at_least: f64) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.scrape();
            if s.get(sample) >= at_least || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One scraped page.
struct Scrape(String);

impl Scrape {
    /// The value of the sample line `name` (labels as printed).
    fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{}", self.0))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn requests(&self, outcome: &str) -> f64 {
        self.get(&format!("padnet_requests_total{{outcome=\"{outcome}\"}}"))
    }
}

/// curl through `proxy`: (status, bytes received).
fn fetch(proxy: SocketAddr, url: &str) -> (u16, u64) {
    let p = format!("http://{proxy}");
    let out = curl(&[
        "-x",
        &p,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, size)
}

const STAFF: &str = r#"
name = "Metrics staff"
[sites]
allow = ["localhost"]
ports = [{port}]
"#;

#[test]
fn browsing_moves_the_counters_and_the_page_names_no_pad_host_or_address() {
    let w = World::new();
    let open = w.pad("5.00", &[]);
    let tiny = w.pad("0.0001", &[]);
    let policy = w.dir.path().join("staff.toml");
    let port = w.origin.http.port().to_string();
    std::fs::write(&policy, STAFF.replace("{port}", &port)).unwrap();
    let p = policy.to_string_lossy().to_string();
    let staff = w.pad("5.00", &["--policy", &p]);
    let serials: Vec<String> = [&open, &tiny, &staff]
        .iter()
        .map(|p| serial_of(p))
        .collect();

    let a = w.agent(&open);
    let before = w.scrape();
    assert_eq!(before.get("padnet_requests_total{outcome=\"2xx\"}"), 0.0);

    // Browse: a page and a few downloads.
    let origin = w.origin.http;
    let sizes = [10_000u64, 250_000, 1_000_000];
    let mut urls = vec![format!("http://{origin}/index.html")];
    urls.extend(
        sizes
            .iter()
            .map(|n| format!("http://{origin}/__origin/bytes/{n}")),
    );
    let mut received = 0;
    for url in &urls {
        let (code, size) = fetch(a.addr, url);
        assert_eq!(code, 200, "{url}");
        received += size;
    }
    assert!(received >= sizes.iter().sum::<u64>());
    let after = w.scrape();
    assert_eq!(
        after.requests("2xx") - before.requests("2xx"),
        urls.len() as f64,
        "one 2xx per page fetched"
    );
    assert!(after.get("padnet_tunnels_opened_total") >= 1.0);
    assert!(after.get("padnet_tunnels_open") >= 1.0);
    let down = after.get("padnet_bytes_total{direction=\"down\"}");
    assert!(down >= received as f64, "{down} bytes down < {received}");
    assert!(after.get("padnet_float_refills_total") >= 1.0);
    assert!(after.get("padnet_ledger_flushes_total") >= 1.0);
    assert!(after.get("padnet_ledger_flush_seconds_count") >= 1.0);

    // A pad that cannot pay for one request: the gateway's 402.
    let t = w.agent(&tiny);
    let (code, _) = fetch(t.addr, &urls[0]);
    assert_eq!(code, 402);
    let s = w.scrape();
    assert_eq!(s.requests("402_value") - after.requests("402_value"), 1.0);

    // A restricted pad: one allowed request, one denied by its policy (403).
    let st = w.agent(&staff);
    let allowed = format!("http://localhost:{}/index.html", origin.port());
    assert_eq!(fetch(st.addr, &allowed).0, 200);
    assert_eq!(fetch(st.addr, &urls[0]).0, 403);
    let s2 = w.scrape();
    assert_eq!(s2.requests("403") - s.requests("403"), 1.0);
    assert_eq!(s2.requests("2xx") - s.requests("2xx"), 1.0);
    assert!(s2.get("padnet_policy_decisions_total{decision=\"allow\"}") >= 1.0);
    assert!(s2.get("padnet_policy_decisions_total{decision=\"deny\"}") >= 1.0);
    assert!(s2.get("padnet_tunnels_opened_total") >= 3.0);

    // A prober sends a hello-sized junk and a connection that says nothing.
    {
        let mut c = std::net::TcpStream::connect(w.gateway.addr).unwrap();
        c.write_all(&[0x5a; 64]).unwrap();
        let _silent = std::net::TcpStream::connect(w.gateway.addr).unwrap();
        let unknown = "padnet_hellos_refused_total{reason=\"unknown_ticket\"}";
        assert!(w.wait_for(unknown, 1.0).get(unknown) >= 1.0);
    }
    let no_hello = "padnet_hellos_refused_total{reason=\"no_hello\"}";
    let s4 = w.wait_for(no_hello, 1.0);
    assert!(s4.get(no_hello) >= 1.0);

    // Aggregates only: no pad, no origin, no client address.
    let page = &s4.0;
    for serial in &serials {
        assert!(!page.contains(serial.as_str()), "names pad {serial}");
    }
    for needle in [
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        format!(":{}", origin.port()),
        format!(":{}", a.addr.port()),
        format!(":{}", w.gateway.addr.port()),
    ] {
        assert!(
            !page.contains(&needle),
            "the page contains {needle}:\n{page}"
        );
    }

    // Only GET /metrics.
    let base = w.metrics.trim_end_matches("/metrics");
    let code = |args: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&curl(&a).stdout).to_string()
    };
    assert_eq!(code(&[&format!("{base}/")]), "404");
    assert_eq!(code(&[&format!("{base}/other")]), "404");
    assert_eq!(code(&["-X", "POST", &w.metrics]), "405");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    gateway_init(&state);
    let mut g = start_gateway(&state, "127.0.0.1:0", &["--log-format", "json"], dir.path());
    // A graceful stop logs its own lines too.
    g.proc.terminate();
    let log = std::fs::read_to_string(&g.proc.log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{log}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(log.contains("shutting down"), "{log}");

    // The default stays text.
    let mut t = start_gateway(&state, "127.0.0.1:0", &[], dir.path());
    t.proc.terminate();
    let text = std::fs::read_to_string(&t.proc.log).unwrap();
    let tail = &text[log.len()..];
    assert!(tail.contains("shutting down"), "{tail}");
    assert!(
        tail.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{tail}"
    );
}
