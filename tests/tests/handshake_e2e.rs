//! End-to-end: the handshake under attack and misfortune. A relay between a
//! real agent and a real gateway duplicates hellos onto many connections,
//! swallows them, or a second agent opens the same pad; the one-time key
//! material of a ticket slot is used for one reply at most, and the pad keeps
//! working.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use padnet_tests::*;

/// The hello's fixed part; random padding of the slot's length follows.
const HELLO_LEN: usize = 48;

/// The agent's whole opening (the hello and its padding, sent in one
/// write): at least the hello, then whatever follows until it pauses.
fn read_opening(agent: &mut TcpStream) -> Option<Vec<u8>> {
    let mut hello = vec![0u8; HELLO_LEN];
    agent.read_exact(&mut hello).ok()?;
    agent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut buf = [0u8; 2048];
    while let Ok(n) = agent.read(&mut buf) {
        if n == 0 {
            break;
        }
        hello.extend_from_slice(&buf[..n]);
    }
    agent.set_read_timeout(None).ok()?;
    Some(hello)
}

/// A gateway serving one fresh pad, and that pad's user copy.
struct World {
    stage: Stage,
    gateway: Gateway,
    pad: std::path::PathBuf,
}

fn world() -> World {
    let stage = stage("<html><body>handshake-page</body></html>\n");
    let pad = mint(
        &stage.state,
        "5.00",
        "16MiB",
        &stage.dir.path().join("user"),
    );
    let gateway = start_gateway(
        &stage.state,
        "127.0.0.1:0",
        &["--allow-private-upstreams", "--probe-hold-ms", "1000"],
        stage.dir.path(),
    );
    World {
        stage,
        gateway,
        pad,
    }
}

impl World {
    fn page(&self) -> String {
        format!("http://{}/", self.stage.origin.http)
    }
}

/// Copy bytes both ways between two sockets until either side ends.
fn splice(a: TcpStream, b: TcpStream) {
    let (mut a_r, mut b_w) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_r, &mut b_w);
        let _ = b_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut b_r, mut a_w) = (b, a);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b_r, &mut a_w);
        let _ = a_w.shutdown(std::net::Shutdown::Write);
    });
}

/// Everything a connection receives within `wait` (until EOF or the wait ends).
fn read_for(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let deadline = std::time::Instant::now() + wait;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    got
}

/// An on-path attacker copies the agent's hello onto `copies` gateway
/// connections at the same instant. At most one of them receives any byte;
/// the relay carries on with that one, so the agent's tunnel still works.
fn duplicated_hello(copies: usize) {
    let w = world();
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let gw = w.gateway.addr;
    let answered = Arc::new(Mutex::new(Vec::<usize>::new()));
    let a2 = answered.clone();
    std::thread::spawn(move || {
        let Ok((mut agent, _)) = relay.accept() else {
            return;
        };
        let hello = Arc::new(read_opening(&mut agent).unwrap());
        let barrier = Arc::new(Barrier::new(copies));
        let handles: Vec<_> = (0..copies)
            .map(|_| {
                let (barrier, hello) = (barrier.clone(), hello.clone());
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(gw).unwrap();
                    barrier.wait();
                    s.write_all(&hello).unwrap();
                    // The losers are held for the probe hold (1 s), then closed.
                    let got = read_for(&mut s, Duration::from_millis(2500));
                    (s, got)
                })
            })
            .collect();
        let conns: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut winner = None;
        for (i, (s, got)) in conns.into_iter().enumerate() {
            if !got.is_empty() {
                a2.lock().unwrap().push(i);
                if winner.is_none() {
                    agent.write_all(&got).unwrap();
                    winner = Some(s);
                }
            }
        }
        if let Some(s) = winner {
            splice(agent, s);
        }
    });
    let agent = start_agent(&w.pad, relay_addr, &[], w.stage.dir.path());
    let (code, body) = get_via(agent.addr, &w.page(), &[]);
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() <= 1,
        "{} of {copies} connections carrying one hello got bytes back: {answered:?}",
        answered.len()
    );
    assert_eq!(
        answered.len(),
        1,
        "the hello's one claim gets its one reply"
    );
    assert_eq!(code, 200, "agent log:\n{}", agent.proc.log_tail());
    assert!(String::from_utf8_lossy(&body).contains("handshake-page"));
}

#[test]
fn a_hello_copied_onto_two_connections_gets_one_reply() {
    duplicated_hello(2);
}

#[test]
fn a_hello_copied_onto_eight_connections_gets_one_reply() {
    duplicated_hello(8);
}

/// The first 20 dials reach a listener that takes the hello and answers
/// nothing (a captive portal, a transparent proxy, an attacker); then the
/// network heals. The agent opens a tunnel to the real gateway, having used
/// a handful of ticket slots at most: it resends its unanswered hello.
#[test]
fn twenty_swallowed_hellos_do_not_lock_the_pad_out() {
    let w = world();
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let gw = w.gateway.addr;
    let swallowed = Arc::new(AtomicUsize::new(0));
    let tickets = Arc::new(Mutex::new(std::collections::HashSet::<[u8; 16]>::new()));
    let (s2, t2) = (swallowed.clone(), tickets.clone());
    std::thread::spawn(move || {
        for conn in relay.incoming() {
            let Ok(mut agent) = conn else { continue };
            if s2.load(Ordering::SeqCst) < 20 {
                if let Some(hello) = read_opening(&mut agent) {
                    t2.lock().unwrap().insert(hello[..16].try_into().unwrap());
                    s2.fetch_add(1, Ordering::SeqCst);
                }
                continue; // dropped: closed with nothing said
            }
            if let Ok(g) = TcpStream::connect(gw) {
                splice(agent, g);
            }
        }
    });
    let agent = start_agent(&w.pad, relay_addr, &["--timeout", "2"], w.stage.dir.path());
    // Each request that finds the tunnel down kicks a new dial.
    let mut tries = 0;
    while swallowed.load(Ordering::SeqCst) < 20 {
        tries += 1;
        assert!(
            tries < 400,
            "the agent stopped dialling; log:\n{}",
            agent.proc.log_tail()
        );
        let _ = get_via(agent.addr, &w.page(), &["--max-time", "5"]);
    }
    let mut served = false;
    for _ in 0..30 {
        let (code, body) = get_via(agent.addr, &w.page(), &[]);
        if code == 200 && String::from_utf8_lossy(&body).contains("handshake-page") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        served,
        "no tunnel after the network healed; log:\n{}",
        agent.proc.log_tail()
    );
    let distinct = tickets.lock().unwrap().len();
    assert!(
        distinct <= 3,
        "20 swallowed dials used {distinct} ticket slots (the gateway indexes a window of them)"
    );
}

/// Two agents on one pad file would hand the gateway two hellos per slot
/// and follow leases twice: the second is refused at start.
#[test]
fn a_second_agent_on_the_same_pad_file_is_refused() {
    let w = world();
    let first = start_agent(&w.pad, w.gateway.addr, &[], w.stage.dir.path());
    let log = w.stage.dir.path().join("second-agent.log");
    let mut second = std::process::Command::new(bin("padnet-agent"))
        .arg("--pad")
        .arg(&w.pad)
        .args(["--listen", "127.0.0.1:0", "--gateway"])
        .arg(w.gateway.addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second agent on the same pad kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success() && err.contains("pad in use by another agent"),
        "second agent: {err}"
    );
    let (code, _) = get_via(first.addr, &w.page(), &[]);
    assert_eq!(code, 200, "the first agent is unaffected");
}

/// A replayed hello, after its tunnel opened, is treated as an unknown
/// ticket: held, then closed with nothing sent.
#[test]
fn a_replayed_hello_is_held_and_closed_with_nothing_said() {
    let w = world();
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let gw: SocketAddr = w.gateway.addr;
    let captured = Arc::new(Mutex::new(None::<Vec<u8>>));
    let c2 = captured.clone();
    std::thread::spawn(move || {
        for conn in relay.incoming() {
            let Ok(mut agent) = conn else { continue };
            let Some(hello) = read_opening(&mut agent) else {
                continue;
            };
            c2.lock().unwrap().get_or_insert(hello.clone());
            let mut g = TcpStream::connect(gw).unwrap();
            g.write_all(&hello).unwrap();
            splice(agent, g);
        }
    });
    let agent = start_agent(&w.pad, relay_addr, &[], w.stage.dir.path());
    let (code, _) = get_via(agent.addr, &w.page(), &[]);
    assert_eq!(code, 200);
    let hello = captured.lock().unwrap().clone().expect("a hello went by");
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(gw).unwrap();
    s.write_all(&hello).unwrap();
    let got = read_for(&mut s, Duration::from_secs(5));
    assert!(
        got.is_empty(),
        "a replayed hello got {} bytes back",
        got.len()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "closed before the hold"
    );
    let (code, _) = get_via(agent.addr, &w.page(), &[]);
    assert_eq!(code, 200, "the agent's tunnel is unaffected");
}
