//! End-to-end, at the edges: what a web page or a site can send never
//! tears a tunnel down, and a tunnel that is torn down (the network cut it)
//! costs little key material. Real gateway, agent and origin processes,
//! real curl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use padnet_tests::*;

/// A gateway, a 64 MiB pad and an agent, the agent dialling `via` when
/// given (a relay in front of the gateway), else the gateway itself.
struct Net {
    stage: Stage,
    _gateway: Gateway,
    agent: Agent,
    _pad: PathBuf,
}

fn net(via: Option<&dyn Fn(SocketAddr) -> SocketAddr>) -> Net {
    let stage = stage("<html><body>edges</body></html>\n");
    let pad = mint(
        &stage.state,
        "5.00",
        "64MiB",
        &stage.dir.path().join("user"),
    );
    let ports = format!("80,443,{}", stage.origin.http.port());
    let gateway = start_gateway(
        &stage.state,
        "127.0.0.1:0",
        &[
            "--allow-private-upstreams",
            "--connect-ports",
            &ports,
            "--probe-hold-ms",
            "500",
        ],
        stage.dir.path(),
    );
    let dial = via.map_or(gateway.addr, |f| f(gateway.addr));
    let agent = start_agent(&pad, dial, &[], stage.dir.path());
    Net {
        stage,
        _gateway: gateway,
        agent,
        _pad: pad,
    }
}

fn status(agent: SocketAddr) -> serde_json::Value {
    let out = curl(&[&format!("http://{agent}/status")]);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn number(s: &serde_json::Value, key: &str) -> u64 {
    s[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no {key}: {s}"))
}

/// curl through the agent: (status code, body, the x-padnet-error header).
fn fetch(agent: SocketAddr, url: &str, extra: &[&str]) -> (u16, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let proxy = agent.to_string();
    let mut args = vec![
        "-x",
        &proxy,
        "-D",
        headers.to_str().unwrap(),
        "-w",
        "\n%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let code = String::from_utf8_lossy(&body[nl + 1..])
        .parse()
        .unwrap_or(0);
    body.truncate(nl);
    let error = std::fs::read_to_string(&headers)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-padnet-error:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, body, error)
}

#[test]
fn oversized_headers_get_a_431_and_leave_the_tunnel_a_download_and_the_pad_intact() {
    let n = net(None);
    let origin = n.stage.origin.http;
    let agent = n.agent.addr;
    let (code, _, _) = fetch(agent, &format!("http://{origin}/"), &[]);
    assert_eq!(code, 200, "the tunnel is up");
    let before = status(agent);

    // A download in flight the whole time.
    let size = 24 << 20;
    let download = std::thread::spawn(move || {
        fetch(
            agent,
            &format!("http://{origin}/__origin/bytes/{size}"),
            &["--limit-rate", "8M"],
        )
    });
    std::thread::sleep(Duration::from_millis(300));

    // Over the tunnel's header list limit (64 KiB, counted as h2 does: 32
    // bytes more per field) in a raw head short enough for the agent to read
    // (it reads 64 KiB, in at most 100 fields): 94 fields of 670 bytes are
    // about 62.5 KiB raw and 65 KiB as a list. The agent's 431 page.
    let many: Vec<String> = (10..104)
        .map(|i| format!("X-F{i}: {}", "v".repeat(670)))
        .collect();
    let many_args: Vec<&str> = many.iter().flat_map(|h| ["-H", h.as_str()]).collect();
    for _ in 0..10 {
        let (code, body, error) = fetch(agent, &format!("http://{origin}/"), &many_args);
        assert_eq!(code, 431, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error, "request-headers-too-large");
        assert!(String::from_utf8_lossy(&body).contains("was not sent"));
    }
    // One raw head longer than the agent reads: still a 431 (hyper's own).
    let big = format!("X-Big: {}", "A".repeat(64 << 10));
    let (code, body, _) = fetch(agent, &format!("http://{origin}/"), &["-H", &big]);
    assert_eq!(code, 431, "{}", String::from_utf8_lossy(&body));
    // Big but within what the tunnel carries (h2's default would refuse it).
    let fits = format!("X-Fits: {}", "B".repeat(40 << 10));
    let (code, body, _) = fetch(agent, &format!("http://{origin}/"), &["-H", &fits]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, body, error) = download.join().unwrap();
    assert_eq!((code, error.as_str()), (200, ""));
    assert_eq!(body.len(), size, "the download in flight arrived whole");

    let after = status(agent);
    assert_eq!(after["tunnel"], "up");
    assert_eq!(
        number(&after, "ticket_slots_left"),
        number(&before, "ticket_slots_left"),
        "no reconnect: the tunnel was never torn down"
    );
    let used = number(&before, "key_bytes_left") - number(&after, "key_bytes_left");
    assert!(
        used < (size as u64) * 11 / 10,
        "key material used {used} for a {size}-byte download"
    );
}

/// An origin on loopback that answers every request with `response`.
fn raw_origin(response: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let response = response.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        let _ = c.write_all(&response);
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn an_origin_with_oversized_headers_gets_a_502_and_the_tunnel_stays_up() {
    let n = net(None);
    let agent = n.agent.addr;
    let (code, _, _) = fetch(agent, &format!("http://{}/", n.stage.origin.http), &[]);
    assert_eq!(code, 200);
    let before = status(agent);
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..20 {
        resp.extend_from_slice(format!("Set-Cookie: c{i}={}\r\n", "v".repeat(5000)).as_bytes());
    }
    resp.extend_from_slice(b"\r\nok");
    let site = raw_origin(resp);
    let (code, body, error) = fetch(agent, &format!("http://{site}/"), &[]);
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error, "origin-headers-too-large");
    let (code, _, _) = fetch(agent, &format!("http://{}/", n.stage.origin.http), &[]);
    assert_eq!(code, 200, "the tunnel still carries requests");
    assert_eq!(
        number(&status(agent), "ticket_slots_left"),
        number(&before, "ticket_slots_left"),
        "no reconnect"
    );
}

#[test]
fn a_content_length_beside_chunked_never_cuts_the_body_short() {
    let n = net(None);
    let site = raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"
            .to_vec(),
    );
    let (code, body, _) = fetch(n.agent.addr, &format!("http://{site}/"), &[]);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "0123456789",
        "the chunked body, not the 3 bytes the stale length promised"
    );
}

/// A TCP relay in front of the gateway whose connections the test can cut,
/// and which notes, per connection, how many bytes the agent sent before
/// the gateway's first byte came back: the hello's size on the wire.
struct Relay {
    addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    hellos: Arc<Mutex<Vec<usize>>>,
}

impl Relay {
    fn start(to: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = open.clone();
        let hellos: Arc<Mutex<Vec<usize>>> = Arc::default();
        let sizes = hellos.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(a) = conn else { return };
                let Ok(b) = TcpStream::connect(to) else {
                    continue;
                };
                let mut list = keep.lock().unwrap();
                list.push(a.try_clone().unwrap());
                list.push(b.try_clone().unwrap());
                drop(list);
                // Bytes up before the first byte down; None once answered.
                let before = Arc::new(Mutex::new(Some(0usize)));
                for (up, mut from, mut into) in [
                    (true, a.try_clone().unwrap(), b.try_clone().unwrap()),
                    (false, b, a),
                ] {
                    let (before, sizes) = (before.clone(), sizes.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n > 0 {
                                let mut b = before.lock().unwrap();
                                match (up, *b) {
                                    (true, Some(sent)) => *b = Some(sent + n),
                                    (false, Some(sent)) => {
                                        sizes.lock().unwrap().push(sent);
                                        *b = None;
                                    }
                                    _ => {}
                                }
                            }
                            if n == 0 || into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, open, hellos }
    }

    /// Cut every connection through the relay, as a network failure would.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_hundred_reconnects_waste_at_most_128_kib_of_key_material_each() {
    let relay: Arc<Mutex<Option<Relay>>> = Arc::default();
    let r = relay.clone();
    let make = move |gw: SocketAddr| {
        let relay = Relay::start(gw);
        let addr = relay.addr;
        *r.lock().unwrap() = Some(relay);
        addr
    };
    let n = net(Some(&make));
    let relay = relay.lock().unwrap().take().unwrap();
    let agent = n.agent.addr;
    let page = format!("http://{}/", n.stage.origin.http);
    assert_eq!(fetch(agent, &page, &[]).0, 200);
    let first = status(agent);
    const RECONNECTS: u64 = 100;
    for i in 0..RECONNECTS {
        let slots = number(&status(agent), "ticket_slots_left");
        relay.cut();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = status(agent);
            if s["tunnel"] == "up" && number(&s, "ticket_slots_left") < slots {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reconnect {i} did not happen: {s}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (code, _, _) = fetch(agent, &page, &[]);
        assert_eq!(code, 200, "request after reconnect {i}");
    }
    let last = status(agent);
    let used = number(&first, "key_bytes_left") - number(&last, "key_bytes_left");
    let wasted = number(&last, "pad_bytes_wasted") - number(&first, "pad_bytes_wasted");
    let carried = (number(&last, "pad_bytes_sent") + number(&last, "pad_bytes_received"))
        - (number(&first, "pad_bytes_sent") + number(&first, "pad_bytes_received"));
    eprintln!(
        "{RECONNECTS} reconnects: key material used {used} B ({} per reconnect), \
         wasted {wasted} B ({} per reconnect), carried {carried} B",
        used / RECONNECTS,
        wasted / RECONNECTS
    );
    assert!(
        used / RECONNECTS <= 128 << 10,
        "{} bytes of key material per reconnect",
        used / RECONNECTS
    );
    assert!(wasted > 0, "the abandoned leases are counted as wasted");
    // The opening's size is no fingerprint: hellos of many lengths.
    let hellos = relay.hellos.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<usize> = hellos.iter().copied().collect();
    eprintln!(
        "hello sizes on the wire: {} tunnels, {} distinct, {}..={} bytes",
        hellos.len(),
        distinct.len(),
        distinct.first().unwrap(),
        distinct.last().unwrap()
    );
    assert!(hellos.len() as u64 > RECONNECTS, "{hellos:?}");
    assert!(
        hellos.iter().all(|&h| (48..=1200).contains(&h)),
        "{hellos:?}"
    );
    assert!(distinct.len() > 50, "hello sizes repeat: {hellos:?}");
    // Within one tunnel's leases either way: the first tunnel's remainder
    // at the first snapshot is wasted later but is not in `used`, and the
    // live tunnel's unused leases are in `used` but not yet wasted.
    assert!(
        (wasted + carried).abs_diff(used) <= 192 << 10,
        "status accounts for the key material used: used {used}, wasted {wasted}, carried {carried}"
    );
}

#[test]
fn a_rebound_name_or_a_foreign_origin_cannot_read_the_agents_pages() {
    let n = net(None);
    let agent = n.agent.addr;
    let serial = serial_of(&n._pad);
    let own = status(agent);
    assert_eq!(
        own["serial"],
        serial.as_str(),
        "the agent answers its own name"
    );
    let url = format!("http://{agent}/status");
    let port = agent.port();
    for (header, what) in [
        (format!("Host: evil.example:{port}"), "a rebound name"),
        (format!("Host: 127.0.0.1:{}", port + 1), "another port"),
    ] {
        let out = curl(&["-H", &header, "-w", "\n%{http_code}", &url]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n403"), "{what}: {text}");
        assert!(!text.contains(&serial), "{what} read the serial: {text}");
    }
    let out = curl(&[
        "-H",
        "Origin: http://evil.example",
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n403") && !text.contains(&serial), "{text}");
    let out = curl(&[
        "-H",
        &format!("Host: localhost:{port}"),
        "-H",
        &format!("Origin: http://localhost:{port}"),
        &url,
    ]);
    let ok: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(ok["serial"], serial.as_str());
    let out = curl(&["-X", "POST", "-w", "\n%{http_code}", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("\n405"));
}

#[test]
fn idle_connections_never_starve_tunnels_or_their_origins_of_descriptors() {
    let stage = stage("<html><body>fds</body></html>\n");
    let user = stage.dir.path().join("user");
    let pad_a = mint(&stage.state, "5.00", "4MiB", &user);
    let pad_b = mint(&stage.state, "5.00", "4MiB", &user);
    // A gateway allowed 256 descriptors in all (soft and hard).
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$@\"")
        .arg("sh")
        .arg(bin("padnet-gateway"))
        .args(["serve", "--state"])
        .arg(&stage.state)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--allow-private-upstreams",
            "--probe-hold-ms",
            "20000",
        ]);
    let (_gw, addr) = Proc::start(
        cmd,
        "gateway",
        stage.dir.path(),
        "padnet-gateway listening on ",
    );
    let gw: SocketAddr = addr.trim().parse().unwrap();
    let a = start_agent(&pad_a, gw, &[], stage.dir.path());
    let page = format!("http://{}/", stage.origin.http);
    assert_eq!(fetch(a.addr, &page, &[]).0, 200, "tunnel A is up");
    // 300 connections that never send a hello, held open.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(gw).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fetch(a.addr, &page, &[]).0,
        200,
        "the open tunnel still reaches its origin"
    );
    let b = start_agent(&pad_b, gw, &[], stage.dir.path());
    let (code, body, _) = fetch(b.addr, &page, &[]);
    assert_eq!(
        code,
        200,
        "a new tunnel opens: {}",
        String::from_utf8_lossy(&body)
    );
    drop(idle);
}
