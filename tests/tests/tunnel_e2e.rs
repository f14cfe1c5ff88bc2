//! End-to-end: real gateway, agent and origin processes on loopback, real
//! curl, real files. Drives the tunnel the way a user does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use padnet_tests::*;

/// One complete set-up: origin (with a 64 MiB random file), gateway, pad, agent.
struct Net {
    dir: tempfile::TempDir,
    origin: Origin,
    state: PathBuf,
    pad: PathBuf,
    gateway: Gateway,
    agent: Agent,
    blob_sha: String,
    marker: String,
}

struct Setup {
    allow_private: bool,
    blob_mib: usize,
    pad_size: &'static str,
    journals: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            allow_private: true,
            blob_mib: 0,
            pad_size: "64MiB",
            journals: false,
        }
    }
}

impl Setup {
    fn run(self) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        let marker = format!("padnet-marker-{}", rand::random::<u64>());
        std::fs::write(
            root.join("index.html"),
            format!("<html><body>{marker}</body></html>\n"),
        )
        .unwrap();
        let blob = root.join("blob.bin");
        random_file(&blob, self.blob_mib << 20);
        let blob_sha = sha256_file(&blob);
        let origin = start_origin(&root, dir.path());
        let state = dir.path().join("state");
        gateway_init(&state);
        let pad = mint(&state, "5.00", self.pad_size, &dir.path().join("user"));
        let ports = format!("80,443,{},{}", origin.http.port(), origin.https.port());
        let ca = origin.ca.to_string_lossy().to_string();
        let gj = dir
            .path()
            .join("gateway.journal")
            .to_string_lossy()
            .to_string();
        let aj = dir
            .path()
            .join("agent.journal")
            .to_string_lossy()
            .to_string();
        let mut extra = vec![
            "--connect-ports",
            &ports,
            "--extra-root-ca",
            &ca,
            "--probe-hold-ms",
            "1000",
        ];
        if self.allow_private {
            extra.push("--allow-private-upstreams");
        }
        if self.journals {
            extra.extend(["--lease-journal", &gj]);
        }
        let gateway = start_gateway(&state, "127.0.0.1:0", &extra, dir.path());
        let agent_extra: Vec<&str> = if self.journals {
            vec!["--lease-journal", &aj]
        } else {
            vec![]
        };
        let agent = start_agent(&pad, gateway.addr, &agent_extra, dir.path());
        Net {
            dir,
            origin,
            state,
            pad,
            gateway,
            agent,
            blob_sha,
            marker,
        }
    }
}

impl Net {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.origin.http)
    }
    fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.origin.https.port())
    }
    fn hits(&self) -> u64 {
        let out = curl(&[&self.url("/__origin/hits")]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("hits json");
        v["requests"].as_u64().expect("requests")
    }
    fn journals(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("gateway.journal"),
            self.dir.path().join("agent.journal"),
        )
    }
    /// Start a rate-limited download of the blob through the agent and
    /// return once 4 MiB have arrived, so a crash lands mid-transfer.
    fn start_slow_download(&self) -> std::process::Child {
        let out = self.dir.path().join("partial.bin");
        let _ = std::fs::remove_file(&out);
        let child = std::process::Command::new("curl")
            .args([
                "-sS",
                "--limit-rate",
                "16M",
                "-x",
                &format!("http://{}", self.agent.addr),
                "-o",
            ])
            .arg(&out)
            .arg(self.url("/blob.bin"))
            .spawn()
            .unwrap();
        wait_for_growth(&out, 4 << 20);
        child
    }

    /// Download the blob through the agent into a file; return (http code, sha).
    fn download_blob(&self, https: bool) -> (u16, String) {
        let out = self.dir.path().join("download.bin");
        let _ = std::fs::remove_file(&out);
        let url = if https {
            self.https_url("/blob.bin")
        } else {
            self.url("/blob.bin")
        };
        let ca = self.origin.ca.to_string_lossy().to_string();
        let o = out.to_string_lossy().to_string();
        let (code, _) = get_via(self.agent.addr, &url, &["--cacert", &ca, "-o", &o]);
        (
            code,
            if out.exists() {
                sha256_file(&out)
            } else {
                String::new()
            },
        )
    }
}

#[test]
fn pages_and_64_mib_bodies_arrive_byte_identical_over_http_and_https_connect() {
    let net = Setup {
        blob_mib: 64,
        pad_size: "400MiB",
        journals: true,
        ..Setup::default()
    }
    .run();

    let (code, body) = get_via(net.agent.addr, &net.url("/"), &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains(&net.marker));

    assert_eq!(
        net.download_blob(false),
        (200, net.blob_sha.clone()),
        "64 MiB over plain HTTP"
    );
    assert_eq!(
        net.download_blob(true),
        (200, net.blob_sha.clone()),
        "64 MiB over HTTPS via CONNECT"
    );

    // An absolute-form https request: the gateway itself speaks TLS to the origin.
    let mut s = TcpStream::connect(net.agent.addr).unwrap();
    let host = format!("localhost:{}", net.origin.https.port());
    write!(
        s,
        "GET https://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&net.marker));

    // The origin learns nothing of the user or the path taken.
    let (_, echo) = get_via(
        net.agent.addr,
        &net.url("/__origin/echo"),
        &["-H", "X-Forwarded-For: 10.9.8.7"],
    );
    let echo = String::from_utf8_lossy(&echo).to_lowercase();
    assert!(
        !echo.contains("via") && !echo.contains("x-forwarded-for") && !echo.contains("10.9.8.7"),
        "{echo}"
    );

    // Neither side's files hold plaintext of what was carried.
    let blob = std::fs::read(net.dir.path().join("www/blob.bin")).unwrap();
    for needle in [
        net.marker.as_bytes(),
        &blob[1 << 20..(1 << 20) + 64],
        &blob[(40 << 20)..(40 << 20) + 64],
    ] {
        assert_eq!(
            dir_contains(&net.state, needle),
            None,
            "gateway state holds plaintext"
        );
        assert_eq!(
            dir_contains(net.pad.parent().unwrap(), needle),
            None,
            "agent pad dir holds plaintext"
        );
    }
    let (g, a) = net.journals();
    assert_no_reuse(&g, &a);

    // Pad accounting: full records cost ≈ 68 bytes per 16 KiB.
    let status: serde_json::Value =
        serde_json::from_slice(&curl(&[&format!("http://{}/status", net.agent.addr)]).stdout)
            .unwrap();
    let pad_in = status["pad_bytes_received"].as_u64().unwrap() as f64;
    let payload_in = status["payload_bytes_received"].as_u64().unwrap() as f64;
    assert!(
        pad_in / payload_in < 1.01,
        "pad bytes per payload byte {}",
        pad_in / payload_in
    );
}

#[test]
fn a_hundred_concurrent_requests_all_succeed() {
    let net = Setup::default().run();
    let proxy = format!("http://{}", net.agent.addr);
    let mut args: Vec<String> = vec![
        "-Z".into(),
        "--parallel-max".into(),
        "100".into(),
        "-x".into(),
        proxy,
        "-w".into(),
        "%{http_code}\\n".into(),
    ];
    for i in 0..100 {
        args.push("-o".into());
        args.push("/dev/null".into());
        args.push(net.url(&format!("/__origin/bytes/{}", 1000 + i * 997)));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&refs);
    let codes = String::from_utf8_lossy(&out.stdout);
    let ok = codes.lines().filter(|l| *l == "200").count();
    assert_eq!(
        ok,
        100,
        "codes: {codes}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.hits(), 100);
}

#[test]
fn private_upstreams_are_refused_without_the_flag_and_the_origin_sees_nothing() {
    let net = Setup {
        allow_private: false,
        ..Setup::default()
    }
    .run();
    for url in [
        net.url("/"),
        format!("http://localhost:{}/", net.origin.http.port()),
    ] {
        let out = curl(&["-x", &format!("http://{}", net.agent.addr), "-i", &url]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/1.1 403"), "{url}: {text}");
        assert!(text.contains("x-padnet-error: private-upstream"), "{text}");
    }
    // CONNECT to the loopback https port: refused too.
    let (code, _) = get_via(net.agent.addr, &net.https_url("/"), &["-k"]);
    assert_eq!(code, 0, "curl reports CONNECT refusal as a failed tunnel");
    let out = curl(&[
        "-x",
        &format!("http://{}", net.agent.addr),
        "-k",
        "-v",
        &net.https_url("/"),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.hits(), 0, "the origin saw a request it must not have");
}

#[test]
fn connect_to_a_port_outside_the_list_is_refused() {
    let net = Setup::default().run();
    let out = curl(&[
        "-x",
        &format!("http://{}", net.agent.addr),
        "-p",
        "-v",
        "http://127.0.0.1:9/",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whatever a prober sends, the gateway holds the connection for the same
/// time and ends it the same way; real agents keep being served.
#[test]
fn probes_are_held_and_closed_alike() {
    let net = Setup::default().run();
    let probes: Vec<Vec<u8>> = vec![
        vec![],
        vec![7u8; 10],
        (0..48).map(|_| rand::random()).collect(),
        (0..5000).map(|_| rand::random()).collect(),
    ];
    for p in probes {
        let started = Instant::now();
        let mut s = TcpStream::connect(net.gateway.addr).unwrap();
        s.write_all(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        let held = started.elapsed();
        assert!(
            matches!(r, Ok(0)),
            "probe of {} bytes: expected a clean close with nothing said, got {r:?}",
            p.len()
        );
        assert!(
            held >= Duration::from_millis(950),
            "probe of {} bytes closed after {held:?}, before the hold",
            p.len()
        );
    }
    let (code, _) = get_via(net.agent.addr, &net.url("/"), &[]);
    assert_eq!(code, 200);
}

#[test]
fn gateway_unreachable_gives_a_502_page_naming_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    gateway_init(&state);
    let pad = mint(&state, "1.00", "1MiB", dir.path());
    // A port with nothing listening.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let agent = start_agent(&pad, free, &["--timeout", "2"], dir.path());
    let out = curl(&[
        "-i",
        "-x",
        &format!("http://{}", agent.addr),
        "http://example.com/",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.contains(&free.to_string()),
        "the page names the address tried: {text}"
    );
}

/// kill -9 the gateway mid-download; restart it; the next download succeeds
/// and no pad byte was used twice.
#[test]
fn gateway_crash_mid_download_wastes_at_most_leases_and_reuses_nothing() {
    let mut net = Setup {
        blob_mib: 64,
        pad_size: "512MiB",
        journals: true,
        ..Setup::default()
    }
    .run();
    let port = net.gateway.addr.port();
    for round in 0..2 {
        let mut slow = net.start_slow_download();
        net.gateway.proc.kill9();
        let _ = slow.wait();
        let ports = format!("80,443,{}", net.origin.http.port());
        let gj = net.journals().0.to_string_lossy().to_string();
        net.gateway = start_gateway(
            &net.state,
            &format!("127.0.0.1:{port}"),
            &[
                "--allow-private-upstreams",
                "--connect-ports",
                &ports,
                "--lease-journal",
                &gj,
            ],
            net.dir.path(),
        );
        let (code, sha) = net.download_blob(false);
        assert_eq!(
            (code, sha),
            (200, net.blob_sha.clone()),
            "round {round}: download after the gateway restarted"
        );
    }
    let (g, a) = net.journals();
    let (gl, al) = assert_no_reuse(&g, &a);
    assert!(gl > 4 && al > 4);
}

/// kill -9 the agent mid-download; restart it; the next download succeeds
/// and no pad byte was used twice.
#[test]
fn agent_crash_mid_download_wastes_at_most_leases_and_reuses_nothing() {
    let mut net = Setup {
        blob_mib: 64,
        pad_size: "512MiB",
        journals: true,
        ..Setup::default()
    }
    .run();
    let aj = net.journals().1.to_string_lossy().to_string();
    for round in 0..2 {
        let mut slow = net.start_slow_download();
        net.agent.proc.kill9();
        let _ = slow.wait();
        net.agent = start_agent(
            &net.pad,
            net.gateway.addr,
            &["--lease-journal", &aj],
            net.dir.path(),
        );
        let (code, sha) = net.download_blob(false);
        assert_eq!(
            (code, sha),
            (200, net.blob_sha.clone()),
            "round {round}: download after the agent restarted"
        );
    }
    let (g, a) = net.journals();
    assert_no_reuse(&g, &a);
}

fn wait_for_growth(p: &std::path::Path, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(
            Instant::now() < deadline,
            "download never reached {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A relay between agent and gateway flips one bit: the agent closes that
/// tunnel, opens a new one with the next ticket and keeps serving; nothing
/// corrupted reaches the browser.
#[test]
fn a_tampered_tunnel_is_dropped_and_the_agent_reconnects() {
    let mut net = Setup {
        blob_mib: 4,
        ..Setup::default()
    }
    .run();
    // One agent per pad: the one behind the relay takes the pad over.
    net.agent.proc.kill9();
    let relay = Relay::start(net.gateway.addr);
    let agent = start_agent(&net.pad, relay.addr, &[], net.dir.path());
    let (code, _) = get_via(agent.addr, &net.url("/"), &[]);
    assert_eq!(code, 200);
    relay.corrupt_next_downstream_byte();
    let out = net.dir.path().join("tampered.bin");
    let o = out.to_string_lossy().to_string();
    let proxy = format!("http://{}", agent.addr);
    let res = curl(&[
        "-x",
        &proxy,
        "-o",
        &o,
        "-w",
        "%{http_code}",
        &net.url("/blob.bin"),
    ]);
    let code: u16 = String::from_utf8_lossy(&res.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    // The tunnel may fail before the response (the agent's error page) or in
    // the middle of its body: only authenticated bytes arrive, so a 200's
    // body is a prefix of the blob, and all of it when curl saw it complete.
    if code == 200 {
        let got = std::fs::read(&out).unwrap_or_default();
        let blob = std::fs::read(net.dir.path().join("www/blob.bin")).unwrap();
        assert!(
            blob.starts_with(&got),
            "{} bytes arrived and they are not the blob's first bytes",
            got.len()
        );
        if res.status.success() {
            assert_eq!(
                sha256_file(&out),
                net.blob_sha,
                "a complete 200 must carry the exact bytes"
            );
        }
    }
    // The agent opens a new tunnel and serves again.
    let mut served = false;
    for _ in 0..20 {
        let (code, body) = get_via(agent.addr, &net.url("/"), &[]);
        if code == 200 && String::from_utf8_lossy(&body).contains(&net.marker) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        served,
        "agent did not recover; log:\n{}",
        agent.proc.log_tail()
    );
    assert!(relay.connections() >= 2, "a new tunnel was opened");
}

/// A TCP relay that can flip one bit of the gateway → agent stream.
struct Relay {
    addr: SocketAddr,
    corrupt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let corrupt = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicUsize::new(0));
        let (c2, n2) = (corrupt.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                n2.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_r, &mut s_w);
                    let _ = s_w.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_r, mut c_w) = (server, client);
                let flag = c2.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s_r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.swap(false, Ordering::SeqCst) {
                            buf[n / 2] ^= 0x10;
                        }
                        if c_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Relay {
            addr,
            corrupt,
            conns,
        }
    }
    fn corrupt_next_downstream_byte(&self) {
        self.corrupt
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn connections(&self) -> usize {
        self.conns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn bad_pad_files_and_addresses_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    gateway_init(&state);
    let pad = mint(&state, "1.00", "1MiB", dir.path());
    // A truncated copy.
    let cut = dir.path().join("cut.pad");
    std::fs::write(&cut, &std::fs::read(&pad).unwrap()[..10_000]).unwrap();
    let out = std::process::Command::new(bin("padnet-agent"))
        .arg("--pad")
        .arg(&cut)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cut.pad") && err.contains("truncated"),
        "{err}"
    );
    // Not a pad at all.
    let junk = dir.path().join("junk.pad");
    std::fs::write(&junk, b"hello").unwrap();
    let out = std::process::Command::new(bin("padnet-agent"))
        .arg("--pad")
        .arg(&junk)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("junk.pad"), "{err}");
    // A non-loopback listen address is refused.
    let out = std::process::Command::new(bin("padnet-agent"))
        .arg("--pad")
        .arg(&pad)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("loopback"));
    // A state directory that was never initialised.
    let out = std::process::Command::new(bin("padnet-gateway"))
        .args(["serve", "--state"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("gateway.toml") && err.contains("init"),
        "{err}"
    );
    // Bad value and size.
    let out = std::process::Command::new(bin("padnet-gateway"))
        .args(["mint", "--state"])
        .arg(&state)
        .args(["--value", "5,00", "--size", "1MiB"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--value"));
}
