//! End to end: a download the user cancels is charged for little more than
//! what the user received. A reader takes the body at 3, 10 and 30 MB/s and
//! closes the connection after 0.7 s; the pad pays for the bytes the
//! gateway handed on, some still in flight when the reader left: the
//! agent's adaptive stream window (small for a reader this slow), one 64 KiB
//! frame and the agent's small buffers toward the browser (its kernel send
//! buffer and hyper's). This test bounds all of it at one MiB, at every rate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use padnet_tests::*;
use rustix::net::{sockopt, AddressFamily, SocketType};

/// 1.00 per MiB and nothing per request: a charge in micro-units is bytes
/// × 1,000,000 / MiB, so bytes charged are read straight off the balance.
const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"1.00\"\nper_request = \"0\"\n";
const MIB: f64 = 1_048_576.0;
/// How much more than it received a cancelled download may be charged.
const BOUND: f64 = MIB;
/// The reader's own kernel receive buffer, fixed (as set before connect,
/// which turns Linux's autotuning off): autotuned it grows to tens of MiB.
/// Bytes waiting in it at the cancel have reached the browser's machine:
/// they count as received, not as padnet's excess.
const READER_RCVBUF: usize = 64 << 10;

/// A browser tab reading `url` through the proxy at `rate` bytes/s, then
/// closing the connection after `for_how_long`: the body bytes that reached
/// it (read, or waiting in its socket's receive queue).
fn read_then_cancel(proxy: SocketAddr, url: &str, rate: f64, for_how_long: Duration) -> u64 {
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, READER_RCVBUF).unwrap();
    rustix::net::connect(&fd, &proxy).unwrap();
    let mut s = TcpStream::from(fd);
    write!(s, "GET {url} HTTP/1.1\r\nHost: origin\r\n\r\n").unwrap();
    let start = Instant::now();
    let (mut total, mut head) = (0u64, None);
    let mut buf = vec![0u8; 16 << 10];
    let mut seen = Vec::new();
    while start.elapsed() < for_how_long {
        // Read only as much as the rate allows so far.
        let allowed = (start.elapsed().as_secs_f64() * rate) as u64;
        if total >= allowed {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let want = ((allowed - total) as usize).min(buf.len());
        let n = s.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "the download ended early");
        if head.is_none() {
            seen.extend_from_slice(&buf[..n]);
            head = seen
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p as u64 + 4);
        }
        total += n as u64;
    }
    let waiting = rustix::io::ioctl_fionread(&s).expect("FIONREAD on the reader's socket");
    total + waiting - head.expect("a response head")
}

#[test]
fn a_cancelled_download_costs_at_most_a_mib_more_than_was_received() {
    let Stage { dir, origin, state } = stage("<html>hello</html>\n");
    let tariff = dir.path().join("tariff.toml");
    std::fs::write(&tariff, TARIFF).unwrap();
    let t = tariff.to_string_lossy().to_string();
    let gateway = start_gateway(
        &state,
        "127.0.0.1:0",
        &[
            "--allow-private-upstreams",
            "--tariff",
            &t,
            "--probe-hold-ms",
            "500",
        ],
        dir.path(),
    );
    let pad = mint(&state, "5000.00", "1536MiB", &dir.path().join("user"));
    let serial = serial_of(&pad);
    let agent = start_agent(&pad, gateway.addr, &[], dir.path());
    let url = format!("http://{}/__origin/bytes/{}", origin.http, 1u64 << 30);
    let mut report = Vec::new();
    let mut worst = 0.0f64;
    for rate in [3e6, 10e6, 30e6] {
        let mut excess = Vec::new();
        for _ in 0..20 {
            let before = micros(wait_settled(&state, &serial)["balance"].as_str().unwrap());
            let received = read_then_cancel(agent.addr, &url, rate, Duration::from_millis(700));
            std::thread::sleep(Duration::from_millis(300));
            let after = micros(wait_settled(&state, &serial)["balance"].as_str().unwrap());
            let charged = (before - after) as f64 * MIB / 1e6;
            assert!(
                charged + 1.0 >= received as f64,
                "charged {charged} for {received} received"
            );
            excess.push(charged - received as f64);
        }
        excess.sort_by(f64::total_cmp);
        let max = excess[excess.len() - 1];
        worst = worst.max(max);
        report.push(format!(
            "{} MB/s: charged − received median {:.2} MiB, max {:.2} MiB",
            rate / 1e6,
            excess[excess.len() / 2] / MIB,
            max / MIB
        ));
    }
    println!("{}", report.join("\n"));
    assert!(
        worst <= BOUND,
        "a cancel cost more than {:.1} MiB extra:\n{}",
        BOUND / MIB,
        report.join("\n")
    );
    audit(&state);
}
