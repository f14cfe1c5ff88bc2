//! `make bench`: measures padnet against direct loopback in the same run —
//! bulk MB/s, 1 KiB requests/s with p50/p99 latency at 50 concurrent, pad
//! bytes per payload byte, and CPU seconds of the agent and gateway — and
//! the cost of metering: the same gateway binary with the sample tariff
//! against a free tariff (two gateways, runs interleaved), and the cost of
//! site prices (a priced, verified site against an unpriced one). Prints figures
//! and ratios (medians of several runs); asserts nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use padnet_tests::*;

mod costs;
use costs::{metering_cost, site_pricing_cost, Setup};

const RUNS: usize = 3;
const BULK_MIB: usize = 256;
const SMALL_SECS: u64 = 4;
const CONCURRENCY: usize = 50;
const SEQ_SMALL: usize = 1000;
/// Value of every bench pad: far more than all its traffic costs at the
/// sample tariff (2.56 per 256 MiB download, ~25 for the small-request
/// runs), so nothing is refused with 402.
const PAD_VALUE: &str = "100000";
/// Key material of the main pad: 4 × 256 MiB bulk (warm-up included) +
/// 3 × 4 s of 1 KiB requests (~1.2 KiB of pad each) + margin.
const MAIN_PAD: &str = "2GiB";
/// Key material of each metered/free pad: 3 × 256 MiB bulk + 3 × 4 s of
/// 1 KiB requests (and, on the metered one, 6 × 4 s more for site prices)
/// + margin (checked before each run).
const CMP_PAD: &str = "1792MiB";
/// The free tariff: the meter still reserves, counts and settles each
/// request, but never needs to extend a reservation.
const FREE_TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0\"\nper_request = \"0\"\n";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn bulk(url: &str, proxy: Option<SocketAddr>) -> f64 {
    let mut args = vec!["-o", "/dev/null", "-w", "%{speed_download}"];
    let p;
    if let Some(a) = proxy {
        p = format!("http://{a}");
        args.extend(["-x", &p]);
    }
    args.push(url);
    let out = curl(&args);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1e6
}

/// `n` concurrent keep-alive connections doing 1 KiB GETs for `secs`.
async fn small_load(
    target: SocketAddr,
    url: &str,
    proxied: bool,
    n: usize,
    secs: u64,
) -> (f64, f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(tcp) = tokio::net::TcpStream::connect(target).await else {
                return lat;
            };
            let _ = tcp.set_nodelay(true);
            let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await
            else {
                return lat;
            };
            tokio::spawn(conn);
            let uri: http::Uri = url.parse().expect("url");
            let path = uri.path().to_string();
            let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            while Instant::now() < deadline {
                let req = http::Request::builder()
                    .uri(if proxied { url.as_str() } else { path.as_str() })
                    .header(http::header::HOST, &host)
                    .body(Empty::new())
                    .expect("request");
                let t = Instant::now();
                match send.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        if resp.into_body().collect().await.is_err() || !ok {
                            break;
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(_) => break,
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let rps = all.len() as f64 / secs as f64;
    all.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    (rps, pct(0.50), pct(0.99))
}

fn status(agent: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&curl(&[&format!("http://{agent}/status")]).stdout).unwrap_or_default()
}

fn pad_used(s: &serde_json::Value) -> (f64, f64) {
    let g = |k: &str| s[k].as_u64().unwrap_or(0) as f64;
    (
        g("pad_bytes_sent") + g("pad_bytes_received") + g("pad_bytes_wasted"),
        g("payload_bytes_sent") + g("payload_bytes_received"),
    )
}

/// Argument `i` of a bench mode parsed, or `default` when it is absent.
fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(args
        .get(i)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(default))
}

/// Argument `i` of a bench mode, required: `usage` says what is expected.
fn arg_required<T: std::str::FromStr>(args: &[String], i: usize, usage: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let a = args
        .get(i)
        .ok_or_else(|| anyhow::anyhow!("usage: {usage}"))?;
    Ok(a.parse()?)
}

/// `padnet-bench load ADDR URL [proxied] [CONNS] [SECS]`: only the 1 KiB
/// load, against a running origin (direct) or agent (`proxied`), for
/// profiling one side by hand.
fn load_only(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "padnet-bench load ADDR URL [proxied] [CONNS] [SECS]";
    let target: SocketAddr = arg_required(args, 0, USAGE)?;
    let url: String = arg_required(args, 1, USAGE)?;
    let proxied = args.get(2).is_some_and(|a| a == "proxied");
    let conns = arg(args, 3, CONCURRENCY)?;
    let secs = arg(args, 4, SMALL_SECS)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (r, p50, p99) = rt.block_on(small_load(target, &url, proxied, conns, secs));
    println!("{r:.0} req/s   p50 {p50:.2} ms   p99 {p99:.2} ms");
    Ok(())
}

/// `padnet-bench relay LISTEN TARGET`: a plain TCP forwarder (one thread,
/// 256 KiB copy buffers, no crypto, no HTTP). Two in series give the
/// topology of agent + gateway with none of their work: the ceiling any
/// two-process tunnel can reach on this machine. Prints "listening on ADDR".
fn relay_only(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "padnet-bench relay LISTEN TARGET";
    let listen: SocketAddr = arg_required(args, 0, USAGE)?;
    let target: SocketAddr = arg_required(args, 1, USAGE)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on {}", l.local_addr()?);
        loop {
            let (mut a, _) = l.accept().await?;
            tokio::spawn(async move {
                let Ok(mut b) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = a.set_nodelay(true);
                let _ = b.set_nodelay(true);
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 256 << 10, 256 << 10)
                        .await;
            });
        }
    })
}

/// A relay process started by [`relay_chain`] (killed when dropped).
struct Relay {
    _proc: Proc,
    addr: SocketAddr,
}

/// Two relays in series in front of `target`: returns them, the outer first.
fn relay_chain(target: SocketAddr, work: &std::path::Path) -> anyhow::Result<Vec<Relay>> {
    let exe = std::env::current_exe()?;
    let mut chain: Vec<Relay> = Vec::new();
    let mut next = target;
    for i in 0..2 {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["relay", "127.0.0.1:0", &next.to_string()]);
        let (proc, addr) = Proc::start(cmd, &format!("relay-{i}"), work, "listening on ");
        let addr: SocketAddr = addr.parse()?;
        chain.push(Relay { _proc: proc, addr });
        next = addr;
    }
    chain.reverse();
    Ok(chain)
}

/// `padnet-bench padmix AGENT URL [COUNT]`: only the pad-use measurement
/// (1 KiB requests one at a time) against a running agent.
fn padmix_only(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "padnet-bench padmix AGENT URL [COUNT]";
    let agent: SocketAddr = arg_required(args, 0, USAGE)?;
    let url: String = arg_required(args, 1, USAGE)?;
    let count = arg(args, 2, SEQ_SMALL)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s0 = status(agent);
    let (r, body, _) = rt.block_on(small_load_count(agent, &url, count));
    let s1 = status(agent);
    let (p0, q0) = pad_used(&s0);
    let (p1, q1) = pad_used(&s1);
    println!(
        "{:.4} pad bytes per tunnel byte   {:.3} per body byte   {:.0} pad bytes/request   {r:.0} req/s",
        (p1 - p0) / (q1 - q0).max(1.0),
        (p1 - p0) / body.max(1.0),
        (p1 - p0) / count as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "load") {
        return load_only(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "padmix") {
        return padmix_only(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "relay") {
        return relay_only(&args[1..]);
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root)?;
    random_file(&root.join("bulk.bin"), BULK_MIB << 20);
    random_file(&root.join("small.bin"), 1024);
    let work = dir.path();
    let origin = start_origin(&root, work);
    let state = work.join("state");
    gateway_init(&state);
    eprintln!("minting bench pads ({MAIN_PAD}, and {CMP_PAD} each for metered and free)...");
    let pad = mint(&state, PAD_VALUE, MAIN_PAD, &work.join("user"));
    let gateway = start_gateway(&state, "127.0.0.1:0", &["--allow-private-upstreams"], work);
    let agent = start_agent(&pad, gateway.addr, &[], work);
    // Two more, identical but for the tariff: the sample (metered) and free.
    let free_tariff = work.join("free-tariff.toml");
    std::fs::write(&free_tariff, FREE_TARIFF)?;
    let metered = Setup::start(&work.join("metered"), None);
    let free = Setup::start(&work.join("free"), Some(&free_tariff));
    // Let the minted pads' writeback settle before measuring.
    let _ = std::process::Command::new("sync").status();
    let bulk_url = format!("http://{}/bulk.bin", origin.http);
    let small_url = format!("http://{}/small.bin", origin.http);
    // Warm up (origin cache, tunnels).
    bulk(&bulk_url, None);
    for a in [&agent, &metered.agent, &free.agent] {
        bulk(&small_url, Some(a.addr));
    }

    println!(
        "padnet bench — loopback, {} cores, medians of {RUNS} runs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();

    // Bulk.
    let direct: Vec<f64> = (0..RUNS).map(|_| bulk(&bulk_url, None)).collect();
    let cpu0 = (cpu_secs(agent.proc.pid()), cpu_secs(gateway.proc.pid()));
    let s0 = status(agent.addr);
    let tunnel: Vec<f64> = (0..RUNS)
        .map(|_| bulk(&bulk_url, Some(agent.addr)))
        .collect();
    let s1 = status(agent.addr);
    let cpu1 = (cpu_secs(agent.proc.pid()), cpu_secs(gateway.proc.pid()));
    let gb = (RUNS * BULK_MIB) as f64 / 1024.0 * (1u64 << 30) as f64 / 1e9;
    let (d, t) = (median(direct), median(tunnel));
    println!("bulk download ({BULK_MIB} MiB)      direct {d:8.1} MB/s   tunnel {t:8.1} MB/s   ratio {:.2}x", t / d);
    // The ceiling: the same three loopback hops through two plain relays.
    let relays = relay_chain(origin.http, work)?;
    let relay_bulk_url = format!("http://{}/bulk.bin", relays[0].addr);
    let relayed = median((0..RUNS).map(|_| bulk(&relay_bulk_url, None)).collect());
    println!(
        "  ceiling: two plain TCP relays    {relayed:8.1} MB/s   ratio {:.2}x   (no crypto, no HTTP: the topology alone; tunnel/ceiling {:.2}x)",
        relayed / d,
        t / relayed
    );
    let (p0, q0) = pad_used(&s0);
    let (p1, q1) = pad_used(&s1);
    let body = (RUNS * (BULK_MIB << 20)) as f64;
    println!(
        "  pad bytes per payload byte       {:.4} (per tunnel byte)   {:.4} (per body byte)",
        (p1 - p0) / (q1 - q0).max(1.0),
        (p1 - p0) / body
    );
    println!(
        "  cpu s per GB                     agent {:.2}   gateway {:.2}",
        (cpu1.0 - cpu0.0) / gb,
        (cpu1.1 - cpu0.1) / gb
    );

    // Small requests at 50 concurrent.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut dr = Vec::new();
    let mut tr = Vec::new();
    let mut dl = (Vec::new(), Vec::new());
    let mut tl = (Vec::new(), Vec::new());
    let cpu2 = (cpu_secs(agent.proc.pid()), cpu_secs(gateway.proc.pid()));
    let mut tunnel_reqs = 0.0;
    for _ in 0..RUNS {
        let (r, p50, p99) = rt.block_on(small_load(
            origin.http,
            &small_url,
            false,
            CONCURRENCY,
            SMALL_SECS,
        ));
        dr.push(r);
        dl.0.push(p50);
        dl.1.push(p99);
        let (r, p50, p99) = rt.block_on(small_load(
            agent.addr,
            &small_url,
            true,
            CONCURRENCY,
            SMALL_SECS,
        ));
        tunnel_reqs += r * SMALL_SECS as f64;
        tr.push(r);
        tl.0.push(p50);
        tl.1.push(p99);
    }
    let cpu3 = (cpu_secs(agent.proc.pid()), cpu_secs(gateway.proc.pid()));
    let relay_small_url = format!("http://{}/small.bin", relays[0].addr);
    let mut rr = Vec::new();
    for _ in 0..RUNS {
        let (r, _, _) = rt.block_on(small_load(
            relays[0].addr,
            &relay_small_url,
            false,
            CONCURRENCY,
            SMALL_SECS,
        ));
        rr.push(r);
    }
    drop(relays);
    let (d, t) = (median(dr), median(tr));
    let relayed = median(rr);
    println!();
    println!("1 KiB requests, {CONCURRENCY} concurrent  direct {d:8.0} req/s  tunnel {t:8.0} req/s  ratio {:.2}x", t / d);
    println!(
        "  ceiling: two plain TCP relays    {relayed:8.0} req/s  ratio {:.2}x   (tunnel/ceiling {:.2}x)",
        relayed / d,
        t / relayed
    );
    println!(
        "  latency p50 / p99 (ms)           direct {:.2} / {:.2}   tunnel {:.2} / {:.2}",
        median(dl.0),
        median(dl.1),
        median(tl.0),
        median(tl.1)
    );
    println!(
        "  cpu ms per request               agent {:.3}   gateway {:.3}  (includes direct runs' idle time)",
        (cpu3.0 - cpu2.0) * 1e3 / tunnel_reqs.max(1.0),
        (cpu3.1 - cpu2.1) * 1e3 / tunnel_reqs.max(1.0)
    );

    // Pad use on a mix of small requests, one at a time.
    let s2 = status(agent.addr);
    let (r, body, reopened) = rt.block_on(small_load_count(agent.addr, &small_url, SEQ_SMALL));
    if body as usize != SEQ_SMALL * 1024 {
        eprintln!(
            "warning: {body} body bytes arrived, expected {}",
            SEQ_SMALL * 1024
        );
    }
    if reopened > 0 {
        eprintln!("note: the client reopened its connection to the agent {reopened} time(s)");
    }
    let s3 = status(agent.addr);
    let (p2, q2) = pad_used(&s2);
    let (p3, q3) = pad_used(&s3);
    println!();
    println!(
        "pad use, {SEQ_SMALL} x 1 KiB one at a time     {:.4} per tunnel byte   {:.3} per body byte   ({:.0} pad bytes/request, {r:.0} req/s)",
        (p3 - p2) / (q3 - q2).max(1.0),
        (p3 - p2) / body.max(1.0),
        (p3 - p2) / SEQ_SMALL as f64
    );
    println!();
    metering_cost(&rt, &metered, &free, &bulk_url, &small_url);
    println!();
    site_pricing_cost(&rt, &metered, origin.http, &root);
    println!();
    erasure_cost(work)?;
    Ok(())
}

/// What destroying used key material costs: `take` (read + punch a hole) of
/// 2 MiB leases, against punching alone.
fn erasure_cost(dir: &std::path::Path) -> anyhow::Result<()> {
    use tunnel::lease::Lease;
    use tunnel::mint::mint;
    use tunnel::pad::{erase, Mode, PadFile, PadHeader, Serial};
    const LEASE: u64 = 2 << 20;
    const HALF: u64 = 256 << 20;
    let path = dir.join("erase-bench.pad");
    let header = PadHeader {
        mode: Mode::Otp,
        serial: Serial::random(),
        ticket_slots: 1,
        data_size: 2 * HALF,
        created_unix: 0,
        value_micros: 0,
        policy_id: [0; 32],
        gateways: vec!["127.0.0.1:1".into()],
    };
    mint(&header, std::slice::from_ref(&path), |_| {})?;
    let pad = PadFile::open(&path)?;
    let t = Instant::now();
    let mut off = 0;
    while off < HALF {
        drop(pad.take(Lease {
            offset: off,
            len: LEASE,
        })?);
        off += LEASE;
    }
    let take_s = t.elapsed().as_secs_f64();
    let f = std::fs::OpenOptions::new().write(true).open(&path)?;
    let t = Instant::now();
    while off < 2 * HALF {
        erase(&f, pad.header().data_offset() + off, LEASE)?;
        off += LEASE;
    }
    let erase_s = t.elapsed().as_secs_f64();
    let per_lease_us = erase_s / (HALF / LEASE) as f64 * 1e6;
    println!(
        "erasure: take (read + punch hole) {:.2} GB/s; punching alone {per_lease_us:.0} us per 2 MiB lease ({:.1} % of take)",
        HALF as f64 / take_s / 1e9,
        erase_s / take_s * 100.0
    );
    Ok(())
}

/// `count` sequential 1 KiB requests on one keep-alive connection (reopened
/// if it closes, as a browser would; reopenings are reported).
async fn small_load_count(target: SocketAddr, url: &str, count: usize) -> (f64, f64, usize) {
    async fn open(
        target: SocketAddr,
    ) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(target).await.ok()?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
                .await
                .ok()?;
        tokio::spawn(conn);
        Some(send)
    }
    let t0 = Instant::now();
    let mut body_bytes = 0usize;
    let mut reopened = 0;
    let Some(mut send) = open(target).await else {
        return (0.0, 0.0, 0);
    };
    for _ in 0..count {
        for _attempt in 0..3 {
            if send.ready().await.is_err() {
                reopened += 1;
                match open(target).await {
                    Some(s) => send = s,
                    None => break,
                }
            }
            let req = http::Request::builder()
                .uri(url)
                .body(Empty::new())
                .expect("request");
            match send.send_request(req).await {
                Ok(resp) if resp.status() == 200 => {
                    body_bytes += resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    break;
                }
                Ok(resp) => {
                    eprintln!("unexpected status {}", resp.status());
                    break;
                }
                Err(_) => continue,
            }
        }
    }
    (
        count as f64 / t0.elapsed().as_secs_f64(),
        body_bytes as f64,
        reopened,
    )
}
