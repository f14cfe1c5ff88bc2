//! End to end: employer policies. Restricted and unrestricted pads on one
//! gateway, real curl through real agents, plain HTTP and CONNECT; denied
//! requests never reach the origin and cost nothing; rate and daily limits;
//! a policy updated while the gateway runs; a bad policy refused at mint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use padnet_tests::*;

struct World {
    dir: tempfile::TempDir,
    origin: Origin,
    state: PathBuf,
    gateway: Gateway,
}

impl World {
    fn new() -> World {
        let Stage { dir, origin, state } = stage("<html>allowed page</html>\n");
        let ports = format!("{},{}", origin.http.port(), origin.https.port());
        let ca = origin.ca.to_string_lossy().to_string();
        let gateway = start_gateway(
            &state,
            "127.0.0.1:0",
            &[
                "--allow-private-upstreams",
                "--connect-ports",
                &ports,
                "--extra-root-ca",
                &ca,
                "--probe-hold-ms",
                "500",
            ],
            dir.path(),
        );
        World {
            dir,
            origin,
            state,
            gateway,
        }
    }

    /// Write a policy file; `{ports}` is replaced by the origin's ports.
    fn policy(&self, file: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(file);
        let ports = format!(
            "[{}, {}]",
            self.origin.http.port(),
            self.origin.https.port()
        );
        std::fs::write(&p, text.replace("{ports}", &ports)).unwrap();
        p
    }

    fn pad(&self, policy: Option<&Path>) -> PathBuf {
        let pol = policy.map(|p| p.to_string_lossy().to_string());
        let mut extra = vec![];
        if let Some(p) = &pol {
            extra = vec!["--policy", p.as_str()];
        }
        mint_with(
            &self.state,
            "5.00",
            "16MiB",
            &self.dir.path().join("user"),
            &extra,
        )
        .remove(0)
    }

    fn agent(&self, pad: &Path) -> Agent {
        start_agent(pad, self.gateway.addr, &[], self.dir.path())
    }

    fn hits(&self) -> u64 {
        let out = curl(&[&format!("http://{}/__origin/hits", self.origin.http)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("hits json");
        v["requests"].as_u64().expect("requests")
    }

    fn allowed_url(&self) -> String {
        format!("http://localhost:{}/", self.origin.http.port())
    }
    fn denied_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.origin.http.port())
    }
}

/// curl through `agent` with `-i`: (status, headers + body).
fn get(agent: &Agent, url: &str, extra: &[&str]) -> (u16, String) {
    let p = format!("http://{}", agent.addr);
    let mut args = vec!["-i", "-x", &p, url];
    args.extend_from_slice(extra);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // With CONNECT, curl prints the proxy's answer first.
    let last = text
        .rsplit("HTTP/")
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_string();
    let code = last
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The status the proxy gave a CONNECT.
fn connect_status(agent: &Agent, url: &str, ca: &Path) -> u16 {
    let p = format!("http://{}", agent.addr);
    let ca = ca.to_string_lossy().to_string();
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_connect} %{http_code}",
        "--cacert",
        &ca,
        "-x",
        &p,
        url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let connect: u16 = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let code: u16 = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    if connect == 200 {
        code
    } else {
        connect
    }
}

const STAFF: &str = r#"
name = "Test staff"
[sites]
allow = ["localhost"]
ports = {ports}
"#;

#[test]
fn a_restricted_pad_reaches_allowed_sites_only_and_denials_cost_nothing() {
    let w = World::new();
    let policy = w.policy("staff.toml", STAFF);
    let restricted = w.pad(Some(&policy));
    let open = w.pad(None);
    let ra = w.agent(&restricted);
    let oa = w.agent(&open);

    // Allowed, plain and CONNECT.
    let (code, page) = get(&ra, &w.allowed_url(), &[]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("allowed page"));
    let https_allowed = format!("https://localhost:{}/", w.origin.https.port());
    assert_eq!(connect_status(&ra, &https_allowed, &w.origin.ca), 200);

    // Denied, plain: a 403 naming the rule and the policy; the origin sees nothing; no charge.
    let serial = serial_of(&restricted);
    let before_hits = w.hits();
    let before = wait_settled(&w.state, &serial)["balance"].clone();
    let (code, page) = get(&ra, &w.denied_url(), &[]);
    assert_eq!(code, 403, "{page}");
    assert!(page.contains("x-padnet-error: policy-denied"), "{page}");
    assert!(page.contains("Test staff"), "names the policy: {page}");
    assert!(page.contains("sites.allow"), "names the rule: {page}");
    // Denied, CONNECT.
    let https_denied = format!("https://127.0.0.1:{}/", w.origin.https.port());
    assert_eq!(connect_status(&ra, &https_denied, &w.origin.ca), 403);
    assert_eq!(
        w.hits(),
        before_hits,
        "a denied request must not reach the origin"
    );
    assert_eq!(
        wait_settled(&w.state, &serial)["balance"],
        before,
        "denials cost nothing"
    );

    // A forged Host header cannot steer an allowed request to another site:
    // the origin is told the host the policy checked.
    let echo = format!("http://localhost:{}/__origin/echo", w.origin.http.port());
    let (code, page) = get(&ra, &echo, &["-H", "Host: blocked.example"]);
    assert_eq!(code, 200, "{page}");
    let body = &page[page.find('{').expect("json body")..];
    let v: serde_json::Value = serde_json::from_str(body).expect("echo json");
    assert_eq!(
        v["headers"]["host"],
        format!("localhost:{}", w.origin.http.port()),
        "{v}"
    );

    // An unrestricted pad on the same gateway reaches both.
    assert_eq!(get(&oa, &w.allowed_url(), &[]).0, 200);
    assert_eq!(get(&oa, &w.denied_url(), &[]).0, 200);
    assert_eq!(connect_status(&oa, &https_denied, &w.origin.ca), 200);

    // The operator can see which policy a pad carries.
    let st = w.state.to_string_lossy().to_string();
    let out = gateway_cmd(&["policy", "show", "--state", &st, &serial]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Test staff"),
        "{text}"
    );
    let out = gateway_cmd(&["policy", "show", "--state", &st, &serial_of(&open)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("unrestricted"));
}

/// Domain fronting: a restricted pad may CONNECT to its allowed host, but
/// the TLS inside must name that host. A hello naming another name the
/// same server answers for (`origin.test`, on the origin's certificate), a
/// hello with no name, and cleartext HTTP inside the CONNECT are all cut
/// before a byte reaches the origin, and cost nothing; the tunnel carries
/// on.
#[test]
fn a_restricted_pads_connect_cannot_front_another_host() {
    let w = World::new();
    let policy = w.policy("staff.toml", STAFF);
    let pad = w.pad(Some(&policy));
    let a = w.agent(&pad);
    let serial = serial_of(&pad);
    let proxy = format!("http://{}", a.addr);
    let ca = w.origin.ca.to_string_lossy().to_string();
    let (https, http) = (w.origin.https.port(), w.origin.http.port());
    let https_allowed = format!("https://localhost:{https}/");
    assert_eq!(connect_status(&a, &https_allowed, &w.origin.ca), 200);
    let before_hits = w.hits();
    let before = wait_settled(&w.state, &serial)["balance"].clone();

    let attempts: [(&str, Vec<String>); 3] = [
        (
            "a hello for another name",
            vec![
                "--cacert".into(),
                ca.clone(),
                "--connect-to".into(),
                format!("origin.test:{https}:localhost:{https}"),
                format!("https://origin.test:{https}/"),
            ],
        ),
        (
            "a hello with no name",
            vec![
                "-k".into(),
                "--connect-to".into(),
                format!("127.0.0.1:{https}:localhost:{https}"),
                format!("https://127.0.0.1:{https}/"),
            ],
        ),
        (
            "cleartext inside the CONNECT",
            vec![
                "-p".into(),
                "--connect-to".into(),
                format!("origin.test:{http}:localhost:{http}"),
                format!("http://origin.test:{http}/"),
            ],
        ),
    ];
    for (what, args) in &attempts {
        let mut all = vec![
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect} %{http_code}",
            "-x",
            &proxy,
        ];
        all.extend(args.iter().map(String::as_str));
        let out = curl(&all);
        let codes = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            codes,
            "200 000",
            "{what}: the CONNECT is answered, then cut ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what}: curl should fail");
    }
    assert_eq!(
        w.hits(),
        before_hits,
        "a fronted request reached the origin"
    );
    assert_eq!(
        wait_settled(&w.state, &serial)["balance"],
        before,
        "refused CONNECTs cost nothing"
    );
    assert_eq!(
        connect_status(&a, &https_allowed, &w.origin.ca),
        200,
        "the tunnel carries on"
    );
}

#[test]
fn a_policy_update_applies_to_new_requests_without_a_restart() {
    let w = World::new();
    let policy = w.policy("staff.toml", STAFF);
    let pad = w.pad(Some(&policy));
    let a = w.agent(&pad);
    assert_eq!(get(&a, &w.denied_url(), &[]).0, 403);

    let updated = w.policy(
        "staff-v2.toml",
        "name = \"Test staff\"\n[sites]\nallow = [\"localhost\", \"127.0.0.1\"]\nports = {ports}\n",
    );
    let st = w.state.to_string_lossy().to_string();
    let up = updated.to_string_lossy().to_string();
    let out = gateway_cmd(&["policy", "update", "--state", &st, &up]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get(&a, &w.denied_url(), &[]).0,
        200,
        "the update applies at once"
    );

    // Updating a policy no pad uses is refused, naming the file.
    let other = w.policy("other.toml", "name = \"Nobody\"\n");
    let o = other.to_string_lossy().to_string();
    let out = gateway_cmd(&["policy", "update", "--state", &st, &o]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other.toml"));
}

#[test]
fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let w = World::new();
    let policy = w.policy(
        "burst.toml",
        "name = \"Burst\"\n[sites]\nports = {ports}\n[limits]\nrequests_per_minute = 5\n",
    );
    let a = w.agent(&w.pad(Some(&policy)));
    let mut codes = vec![];
    let mut limited_page = String::new();
    for _ in 0..8 {
        let (code, page) = get(&a, &w.allowed_url(), &[]);
        if code == 429 {
            limited_page = page;
        }
        codes.push(code);
    }
    assert_eq!(&codes[..5], &[200; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|&c| c == 429), "{codes:?}");
    assert!(
        limited_page.to_ascii_lowercase().contains("retry-after: "),
        "{limited_page}"
    );
    assert!(limited_page.contains("5 per minute"), "{limited_page}");
}

#[test]
fn a_daily_mib_limit_gets_402_naming_the_limit() {
    let w = World::new();
    let policy = w.policy(
        "tight.toml",
        "name = \"Tight\"\n[sites]\nports = {ports}\n[limits]\nmib_per_day = 1\n",
    );
    let a = w.agent(&w.pad(Some(&policy)));
    let big = format!(
        "http://localhost:{}/__origin/bytes/2000000",
        w.origin.http.port()
    );
    let p = format!("http://{}", a.addr);
    let out = curl(&[
        "-x",
        &p,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &big,
    ]);
    // The limit stops the download in flight at exactly 1 MiB, as an aborted transfer.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 1048576");
    assert_ne!(
        out.status.code(),
        Some(0),
        "a stopped download must not look complete"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !a.proc.log_tail().contains("daily-limit") {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent says why: {}",
            a.proc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The day's bytes count once the request has settled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, page) = get(&a, &w.allowed_url(), &[]);
        if code == 402 {
            assert!(page.contains("x-padnet-error: daily-limit"), "{page}");
            assert!(page.contains("mib_per_day"), "{page}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never limited: {code}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_bad_policy_is_refused_at_mint_with_its_location_and_nothing_is_minted() {
    let w = World::new();
    let bad = w.policy(
        "bad.toml",
        "name = \"Bad\"\n[hours]\ndays = \"mon-fri\"\nfrom = \"25:00\"\nto = \"18:00\"\n",
    );
    let st = w.state.to_string_lossy().to_string();
    let out_dir = w.dir.path().join("bad-out");
    let od = out_dir.to_string_lossy().to_string();
    let b = bad.to_string_lossy().to_string();
    let pads_before = std::fs::read_dir(w.state.join("pads")).unwrap().count();
    let out = gateway_cmd(&[
        "mint", "--state", &st, "--value", "1", "--size", "1MiB", "--out", &od, "--policy", &b,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:8: hours.from"), "{err}");
    assert!(err.contains("25:00"), "{err}");
    assert_eq!(
        std::fs::read_dir(w.state.join("pads")).unwrap().count(),
        pads_before
    );
    assert!(!out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().count() == 0);

    // `policy check` agrees, and passes the samples.
    let out = gateway_cmd(&["policy", "check", &b]);
    assert!(!out.status.success());
    for sample in ["open", "staff", "kiosk"] {
        let path = format!(
            "{}/../data/policies/{sample}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = gateway_cmd(&["policy", "check", &path]);
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_gateway_keeps_no_record_joining_a_pad_to_a_host() {
    let mut w = World::new();
    let a = w.agent(&w.pad(None));
    let marker = format!("private-path-{}", rand::random::<u64>());
    let url = format!("http://localhost:{}/{marker}", w.origin.http.port());
    let _ = get(&a, &url, &[]);
    let _ = get(&a, &w.allowed_url(), &[]);
    let https = format!("https://localhost:{}/{marker}", w.origin.https.port());
    let _ = connect_status(&a, &https, &w.origin.ca);
    w.gateway.proc.terminate(); // a graceful stop flushes everything to disk
    for needle in ["localhost", marker.as_str()] {
        assert_eq!(
            dir_contains(&w.state, needle.as_bytes()),
            None,
            "{needle:?} found in the gateway's state"
        );
        assert!(
            !std::fs::read_to_string(&w.gateway.proc.log)
                .unwrap()
                .contains(needle),
            "{needle:?} found in the gateway's log"
        );
    }
}

#[test]
fn a_running_download_stops_when_an_update_denies_its_site() {
    let w = World::new();
    let policy = w.policy("staff.toml", STAFF);
    // Large enough that the gateway cannot have sent it all ahead into
    // the agent's buffers before the update.
    let pol = policy.to_string_lossy().to_string();
    let pad = mint_with(
        &w.state,
        "5.00",
        "128MiB",
        &w.dir.path().join("user"),
        &["--policy", &pol],
    )
    .remove(0);
    let a = w.agent(&pad);
    let p = format!("http://{}", a.addr);
    let url = format!(
        "http://localhost:{}/__origin/bytes/80000000",
        w.origin.http.port()
    );
    // About ten seconds at this rate: long enough to change the policy under it.
    let child = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "--limit-rate",
            "2M",
            "-x",
            &p,
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{size_download}", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(1500));
    let updated = w.policy(
        "staff-v2.toml",
        "name = \"Test staff\"\n[sites]\nallow = [\"127.0.0.1\"]\nports = {ports}\n",
    );
    let st = w.state.to_string_lossy().to_string();
    let up = updated.to_string_lossy().to_string();
    let started = std::time::Instant::now();
    let out = gateway_cmd(&["policy", "update", "--state", &st, &up]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let got: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the download must end aborted: {text}"
    );
    assert!(got < 40_000_000, "{text}");
    // 80 MB at 2 MB/s would take 40 s: well short of it means it was stopped
    // (what the gateway had already sent still drains to curl first).
    let _ = started;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !a.proc.log_tail().contains("policy-denied") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            a.proc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
