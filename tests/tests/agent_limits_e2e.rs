//! End-to-end: the agent under pressure from its browser side. It backs off
//! when it runs out of file descriptors (quietly, without spinning), closes
//! connections that do not send their request headers in time, and serves at
//! most `--max-connections` at once; then it serves normally again.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use padnet_tests::*;
use rustix::process::Resource;

/// GET the agent's own /status page: the status code (0: no answer in `wait`).
fn status_code(agent: SocketAddr, wait: Duration) -> u16 {
    let secs = format!("{:.1}", wait.as_secs_f64());
    let url = format!("http://{agent}/status");
    let out = curl(&[
        "--max-time",
        &secs,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Wait until the agent answers /status with 200, for at most `limit`.
fn serves_within(agent: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if status_code(agent, Duration::from_secs(2)) == 200 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_for_log(p: &Proc, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !std::fs::read_to_string(&p.log)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{}",
            p.name,
            p.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway serving one fresh pad, and that pad.
fn gateway_and_pad(work: &Path) -> (Gateway, std::path::PathBuf) {
    let state = work.join("state");
    gateway_init(&state);
    let pad = mint(&state, "1.00", "1MiB", &work.join("user"));
    let gateway = start_gateway(&state, "127.0.0.1:0", &[], work);
    (gateway, pad)
}

#[test]
fn out_of_file_descriptors_the_agent_backs_off_quietly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, pad) = gateway_and_pad(dir.path());
    // 64 descriptors, and a connection cap that does not stop it using them up.
    let mut cmd = agent_command(&pad, gateway.addr, &["--max-connections", "1024"]);
    with_rlimit(&mut cmd, Resource::Nofile, 64);
    let agent = start_agent_cmd(cmd, dir.path());
    wait_for_log(&agent.proc, "tunnel up", Duration::from_secs(20));

    // More connections than descriptors, fewer than those and the listen
    // backlog (128) together: the rest wait there, and every accept fails
    // until some close.
    let held: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(agent.addr).expect("connect to the agent"))
        .collect();
    wait_for_log(&agent.proc, "Too many open files", Duration::from_secs(10));
    let cpu_before = cpu_time(agent.proc.pid());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(agent.proc.pid()) - cpu_before;
    let wall = started.elapsed();
    let log = std::fs::read_to_string(&agent.proc.log).unwrap();
    let lines = log.lines().count();
    eprintln!("out of descriptors: {cpu:?} of CPU in {wall:?}, {lines} log lines in all");
    assert!(
        lines < 20,
        "{lines} log lines ({} bytes); the last:\n{}",
        log.len(),
        agent.proc.log_tail()
    );
    assert!(
        cpu < Duration::from_millis(200),
        "the agent used {cpu:?} of CPU in {wall:?} while out of descriptors"
    );

    drop(held);
    assert!(
        serves_within(agent.addr, Duration::from_secs(10)),
        "the agent does not serve again once descriptors are free:\n{}",
        agent.proc.log_tail()
    );
}

/// Feed `s` one byte every 100 ms (when `trickle`) of a request whose
/// headers never end, until the agent closes it; how long that took.
fn open_for(mut s: TcpStream, trickle: bool, limit: Duration) -> Duration {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = b"GET /status HTTP/1.1\r\nHost: agent\r\nX-Slow: ";
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        assert!(
            started.elapsed() < limit,
            "still open after {limit:?} (trickle: {trickle}, {sent} bytes sent)"
        );
        if trickle {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).is_err() {
                return started.elapsed();
            }
            sent += 1;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {} // a 408 may come before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return started.elapsed(),
        }
    }
}

#[test]
fn connections_that_do_not_finish_their_headers_in_time_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, pad) = gateway_and_pad(dir.path());
    let agent = start_agent(
        &pad,
        gateway.addr,
        &["--header-timeout-ms", "300"],
        dir.path(),
    );
    for trickle in [true, false] {
        let s = TcpStream::connect(agent.addr).unwrap();
        let open = open_for(s, trickle, Duration::from_secs(4));
        assert!(
            open <= Duration::from_secs(2),
            "trickle {trickle}: closed after {open:?}"
        );
        assert!(
            open >= Duration::from_millis(250),
            "trickle {trickle}: closed after {open:?}, before the timeout"
        );
    }
    assert_eq!(status_code(agent.addr, Duration::from_secs(5)), 200);
}

#[test]
fn beyond_max_connections_a_browser_waits_for_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, pad) = gateway_and_pad(dir.path());
    let agent = start_agent(&pad, gateway.addr, &["--max-connections", "2"], dir.path());
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(agent.addr).unwrap())
        .collect();
    // Both places are taken (accepted, waiting for headers): a third waits.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        status_code(agent.addr, Duration::from_secs(1)),
        0,
        "a third connection was served"
    );
    drop(idle);
    assert!(
        serves_within(agent.addr, Duration::from_secs(5)),
        "no place given back:\n{}",
        agent.proc.log_tail()
    );
}
