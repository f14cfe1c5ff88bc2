//! `make bench`: measures padnet against direct loopback and against
//! shadowsocks-rust in the same run, runs interleaved — bulk MB/s and 1 KiB
//! requests/s with p50/p99 latency over plain HTTP and over HTTPS through
//! CONNECT, latency one request at a time, CPU per GB and per request of each
//! tunnel's two processes, page loads of a 100-resource page in headless
//! Chromium — and beside them two plain TCP relays (the ceiling), pad bytes
//! per payload byte, the pad in the page cache or not (a cold-pad bulk run),
//! the cost of metering (the sample tariff against a free one), of site
//! prices, and of erasure. Prints figures and ratios (medians of several
//! runs); asserts nothing.

use std::net::SocketAddr;

use padnet_tests::*;

mod cluster;
mod compare;
mod costs;
mod https;
mod load;
mod padcache;
mod page_load;
mod peers;
mod shadowsocks;
use costs::{erasure_cost, metering_cost, site_pricing_cost, Setup};
use load::{bulk, small_load, small_load_count};

const RUNS: usize = 3;
const BULK_MIB: usize = 256;
const SMALL_SECS: u64 = 4;
/// Each run of 1 KiB requests one at a time.
const LATENCY_SECS: u64 = 2;
const CONCURRENCY: usize = 50;
const SEQ_SMALL: usize = 1000;
/// Loads of the page-load demo page per peer and scheme.
const PAGE_LOADS: usize = 10;
/// Value of every bench pad: far more than all its traffic costs at the
/// sample tariff (2.56 per 256 MiB download, ~25 for the small-request
/// runs), so nothing is refused with 402.
const PAD_VALUE: &str = "100000";
/// Key material of the main pad: 12 × 256 MiB bulk (plain HTTP, HTTPS, warm
/// and cold pad, 3 each) + 6 × 4 s of 1 KiB requests at 50 concurrent
/// (~1.2 KiB of pad each) + the rest (one at a time, page loads) + margin
/// (checked before each run).
const MAIN_PAD: &str = "4GiB";
/// Key material of each metered/free pad: 3 × 256 MiB bulk + 3 × 4 s of
/// 1 KiB requests (and, on the metered one, 6 × 4 s more for site prices)
/// + margin (checked before each run).
const CMP_PAD: &str = "1792MiB";
/// The free tariff: the meter still reserves, counts and settles each
/// request, but never needs to extend a reservation.
const FREE_TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0\"\nper_request = \"0\"\n";

/// The median of `v` (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / rustix::param::clock_ticks_per_second() as f64
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
    if args.first().is_some_and(|a| a == "cluster") {
        return cluster::cluster_only();
    }
    if args.first().is_some_and(|a| a == "relay") {
        return relay_only(&args[1..]);
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root)?;
    random_file(&root.join("bulk.bin"), BULK_MIB << 20);
    random_file(&root.join("small.bin"), 1024);
    let page = page_load::write_page(&root)?;
    let work = dir.path();
    let origin = start_origin(&root, work);
    let state = work.join("state");
    gateway_init(&state);
    eprintln!("minting bench pads ({CMP_PAD} each for metered and free, then {MAIN_PAD})...");
    // Two more, identical but for the tariff: the sample (metered) and free.
    let free_tariff = work.join("free-tariff.toml");
    std::fs::write(&free_tariff, FREE_TARIFF)?;
    let metered = Setup::start(&work.join("metered"), None);
    let free = Setup::start(&work.join("free"), Some(&free_tariff));
    // The main pad last: the most recently written pages are the last the
    // kernel evicts.
    let pad = mint(&state, PAD_VALUE, MAIN_PAD, &work.join("user"));
    let twin = state.join("pads").join(format!("{}.pad", serial_of(&pad)));
    let https_port = origin.https.port().to_string();
    let gateway = start_gateway(
        &state,
        "127.0.0.1:0",
        &["--allow-private-upstreams", "--connect-ports", &https_port],
        work,
    );
    let agent = start_agent(&pad, gateway.addr, &[], work);
    let ss = shadowsocks::Shadowsocks::start(work);
    // Let the minted pads' writeback settle before measuring.
    let _ = std::process::Command::new("sync").status();
    let tls = https::TlsOrigin::new(origin.https, &origin.ca)?;
    let bulk_url = format!("http://{}/bulk.bin", origin.http);
    let small_url = format!("http://{}/small.bin", origin.http);

    let mut peers = vec![peers::Peer {
        name: "direct",
        proxy: None,
        procs: vec![],
    }];
    if let Ok(ss) = &ss {
        peers.push(peers::Peer {
            name: "shadowsocks",
            proxy: Some(ss.proxy),
            procs: vec![("sslocal", ss.local_pid()), ("ssserver", ss.server_pid())],
        });
    }
    peers.push(peers::Peer {
        name: "padnet",
        proxy: Some(agent.addr),
        procs: vec![("agent", agent.proc.pid()), ("gateway", gateway.proc.pid())],
    });

    // Warm up (origin cache, tunnels, TLS).
    bulk(&bulk_url, None);
    for a in [&agent, &metered.agent, &free.agent] {
        bulk(&small_url, Some(a.addr));
    }
    for p in &peers {
        bulk(&small_url, p.proxy);
        tls.bulk("/small.bin", p.proxy);
    }

    println!(
        "padnet bench — loopback, {} cores, medians of {RUNS} runs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    match &ss {
        Ok(ss) => println!(
            "shadowsocks-rust: {} (sslocal --protocol http, ssserver; chacha20-ietf-poly1305)",
            ss.version
        ),
        Err(e) => println!("shadowsocks-rust: skipped ({e:#})"),
    }
    let pads = [
        ("agent pad", pad.as_path()),
        ("gateway twin", twin.as_path()),
    ];
    let key_left = || status(agent.addr)["key_bytes_left"].as_u64().unwrap_or(0);
    println!(
        "pad in the page cache after minting: {}",
        padcache::describe(&pads, key_left())
    );
    warm_pads(&pads, key_left());
    println!(
        "  after reading it once:             {}",
        padcache::describe(&pads, key_left())
    );
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let targets = compare::Targets {
        origin: origin.http,
        bulk_url: &bulk_url,
        small_url: &small_url,
        tls: &tls,
        agent: agent.addr,
        work,
        page,
    };
    let head = compare::compare(&rt, &peers, &targets);
    println!(
        "  pad in the page cache after these: {}",
        padcache::describe(&pads, key_left())
    );

    // The ceiling: the same three loopback hops through two plain relays.
    let relays = relay_chain(origin.http, work)?;
    let relay_bulk_url = format!("http://{}/bulk.bin", relays[0].addr);
    let relayed = median((0..RUNS).map(|_| bulk(&relay_bulk_url, None)).collect());
    let relay_small_url = format!("http://{}/small.bin", relays[0].addr);
    let relayed_small = median(
        (0..RUNS)
            .map(|_| {
                let l = small_load(
                    relays[0].addr,
                    &relay_small_url,
                    false,
                    CONCURRENCY,
                    SMALL_SECS,
                );
                rt.block_on(l).0
            })
            .collect(),
    );
    drop(relays);
    println!();
    println!("ceiling: two plain TCP relays in series (no crypto, no HTTP: the topology alone)");
    println!(
        "  bulk {relayed:8.1} MB/s   relays/direct {:.2}x   padnet/ceiling {:.2}x",
        relayed / head.direct_bulk,
        head.padnet_bulk / relayed
    );
    println!(
        "  1 KiB x{CONCURRENCY} {relayed_small:8.0} req/s  relays/direct {:.2}x   padnet/ceiling {:.2}x",
        relayed_small / head.direct_small,
        head.padnet_small / relayed_small
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
    cold_pad(&agent, &gateway, &pads, &bulk_url);
    drop(ss);
    println!();
    metering_cost(&rt, &metered, &free, &bulk_url, &small_url);
    println!();
    site_pricing_cost(&rt, &metered, origin.http, &root);
    println!();
    erasure_cost(work)?;
    println!();
    cluster::shared_ledger(&rt, &small_url, work);
    Ok(())
}

/// Read the unused key material of `pads` into the page cache.
fn warm_pads(pads: &[(&str, &std::path::Path)], key_left: u64) {
    for (name, p) in pads {
        if let Err(e) = padcache::warm_unused(p, key_left) {
            eprintln!("warning: reading the {name} into the page cache: {e}");
        }
    }
}

/// padnet bulk with its pads in the page cache (warm: their unused key
/// material read once first) and dropped from it before each run (cold: the
/// pad comes from the disk, by direct I/O), and the residency before and after.
fn cold_pad(agent: &Agent, gateway: &Gateway, pads: &[(&str, &std::path::Path)], bulk_url: &str) {
    let need = (BULK_MIB as u64 * 105 / 100) << 20;
    let key_left = || status(agent.addr)["key_bytes_left"].as_u64().unwrap_or(0);
    let describe = || padcache::describe(pads, key_left());
    let procs = [agent.proc.pid(), gateway.proc.pid()];
    let cpu = || procs.map(cpu_secs);
    let run = |cold: bool| -> Option<(f64, [f64; 2])> {
        if key_left() < need {
            eprintln!("warning: the bench pad is low on key material; skipping a bulk run");
            return None;
        }
        if cold {
            for (name, p) in pads {
                if let Err(e) = padcache::drop_from_cache(p) {
                    eprintln!("warning: dropping the {name} from the page cache: {e}");
                }
            }
        }
        let c0 = cpu();
        let v = bulk(bulk_url, Some(agent.addr));
        let c1 = cpu();
        Some((v, [c1[0] - c0[0], c1[1] - c0[1]]))
    };
    println!("pad in the page cache or not (padnet bulk {BULK_MIB} MiB; cold: both pad files dropped from the cache with posix_fadvise(DONTNEED) before each run)");
    println!("  before:             {}", describe());
    warm_pads(pads, key_left());
    println!("  read once:          {}", describe());
    let warm: Vec<_> = (0..RUNS).filter_map(|_| run(false)).collect();
    println!("  after warm runs:    {}", describe());
    for (name, p) in pads {
        if let Err(e) = padcache::drop_from_cache(p) {
            eprintln!("warning: dropping the {name} from the page cache: {e}");
        }
    }
    println!("  after the drop:     {}", describe());
    let cold: Vec<_> = (0..RUNS).filter_map(|_| run(true)).collect();
    println!("  after cold runs:    {}", describe());
    if warm.is_empty() || cold.is_empty() {
        println!("  not measured (the bench pad ran out of key material)");
        return;
    }
    let show = |v: &[(f64, [f64; 2])]| {
        let gb = (v.len() * BULK_MIB) as f64 * (1u64 << 20) as f64 / 1e9;
        let cpu = |i: usize| v.iter().map(|x| x.1[i]).sum::<f64>() / gb;
        (median(v.iter().map(|x| x.0).collect()), cpu(0), cpu(1))
    };
    let (w, wa, wg) = show(&warm);
    let (c, ca, cg) = show(&cold);
    println!("  warm {w:8.1} MB/s   cpu s per GB agent {wa:.2} gateway {wg:.2}");
    println!(
        "  cold {c:8.1} MB/s   cpu s per GB agent {ca:.2} gateway {cg:.2}   cold/warm {:.2}x",
        c / w
    );
}
