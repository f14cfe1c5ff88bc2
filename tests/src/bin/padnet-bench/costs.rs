//! What features cost, measured on a gateway of their own against the same
//! binary without them, runs interleaved: metering (the sample tariff
//! against a free one) and site prices (a priced, verified site against an
//! unpriced one on the same gateway); and what erasing used key material costs.

use std::time::{Duration, Instant};

use padnet_tests::*;

use crate::{
    bulk, cpu_secs, median, small_load, status, BULK_MIB, CMP_PAD, CONCURRENCY, PAD_VALUE, RUNS,
    SMALL_SECS,
};

/// A gateway with its own state directory and pad, and an agent for it.
pub struct Setup {
    pub state: std::path::PathBuf,
    pub serial: String,
    pub gateway: Gateway,
    pub agent: Agent,
}

impl Setup {
    /// `tariff`: `serve --tariff FILE`; `None`: the sample tariff.
    pub fn start(work: &std::path::Path, tariff: Option<&std::path::Path>) -> Setup {
        std::fs::create_dir_all(work).expect("work directory");
        let state = work.join("state");
        gateway_init(&state);
        let pad = mint(&state, PAD_VALUE, CMP_PAD, &work.join("user"));
        let t = tariff.map(|t| t.to_string_lossy().to_string());
        let mut extra = vec!["--allow-private-upstreams"];
        if let Some(t) = &t {
            extra.extend(["--tariff", t.as_str()]);
        }
        let gateway = start_gateway(&state, "127.0.0.1:0", &extra, work);
        let agent = start_agent(&pad, gateway.addr, &[], work);
        Setup {
            state,
            serial: serial_of(&pad),
            gateway,
            agent,
        }
    }

    /// Key material the agent has left.
    fn key_left(&self) -> u64 {
        status(self.agent.addr)["key_bytes_left"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The pad's balance in micro-units, once its requests have settled.
    fn balance(&self) -> i64 {
        micros(
            wait_settled(&self.state, &self.serial)["balance"]
                .as_str()
                .unwrap_or("0"),
        )
    }

    fn gateway_cpu(&self) -> f64 {
        cpu_secs(self.gateway.proc.pid())
    }
}

/// What metering costs: bulk downloads and 1 KiB requests through a gateway
/// with the sample tariff against one with a free tariff, runs interleaved.
pub fn metering_cost(
    rt: &tokio::runtime::Runtime,
    metered: &Setup,
    free: &Setup,
    bulk_url: &str,
    small_url: &str,
) {
    let sides = [metered, free];
    // Enough key for one bulk run, with room for the record overhead.
    let bulk_need = (BULK_MIB as u64 * 105 / 100) << 20;
    let before: Vec<i64> = sides.iter().map(|s| s.balance()).collect();
    let mut mbs = [Vec::new(), Vec::new()];
    let mut cpu = [0.0; 2];
    for _ in 0..RUNS {
        for (i, s) in sides.iter().enumerate() {
            if s.key_left() < bulk_need {
                eprintln!("warning: a bench pad is low on key material; skipping a bulk run");
                continue;
            }
            let c = s.gateway_cpu();
            mbs[i].push(bulk(bulk_url, Some(s.agent.addr)));
            cpu[i] += s.gateway_cpu() - c;
        }
    }
    let after: Vec<i64> = sides.iter().map(|s| s.balance()).collect();
    let mut rps = [Vec::new(), Vec::new()];
    let mut p50 = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (i, s) in sides.iter().enumerate() {
            // ~1.2 KiB of pad per request; far above any rate seen here.
            if s.key_left() < 64 << 20 {
                eprintln!("warning: a bench pad is low on key material; skipping a small run");
                continue;
            }
            let (r, l50, _) = rt.block_on(small_load(
                s.agent.addr,
                small_url,
                true,
                CONCURRENCY,
                SMALL_SECS,
            ));
            rps[i].push(r);
            p50[i].push(l50);
        }
    }
    if mbs.iter().chain(rps.iter()).any(|v| v.is_empty()) {
        println!("metering cost: not measured (a bench pad ran out of key material)");
        return;
    }
    let [bm, bf] = [0, 1].map(|i| median(mbs[i].clone()));
    let [rm, rf] = [0, 1].map(|i| median(rps[i].clone()));
    let [lm, lf] = [0, 1].map(|i| median(p50[i].clone()));
    let gb = |i: usize| (mbs[i].len() * BULK_MIB) as f64 * (1u64 << 20) as f64 / 1e9;
    println!(
        "metering cost (same gateway binary, two gateways, runs interleaved; medians of {RUNS})"
    );
    println!("  metered: sample tariff (0.01 per MiB, 0.0001 per request): reserve, extend as the flow goes, settle");
    println!("  free: per_mib = 0, per_request = 0: the meter still runs (a durable reservation, counting, settling) but never needs extensions");
    println!(
        "  bulk download ({BULK_MIB} MiB, tunnel)  metered {bm:8.1} MB/s   free {bf:8.1} MB/s   metered / free {:.2}x",
        bm / bf
    );
    println!(
        "    gateway cpu s per GB            metered {:.2}   free {:.2}",
        cpu[0] / gb(0),
        cpu[1] / gb(1)
    );
    let charged = |i: usize| (before[i] - after[i]) as f64 / 1e6;
    println!(
        "    charged for {} downloads         metered {:.4}   free {:.4}   (EUR; expected {:.4} and 0)",
        mbs[0].len(),
        charged(0),
        charged(1),
        mbs[0].len() as f64 * (0.0001 + BULK_MIB as f64 * 0.01)
    );
    println!(
        "  1 KiB requests, {CONCURRENCY} concurrent   metered {rm:8.0} req/s  free {rf:8.0} req/s  metered / free {:.2}x",
        rm / rf
    );
    println!("    latency p50 (ms)                metered {lm:.2}   free {lf:.2}");
}

/// What site prices cost: 1 KiB requests through one gateway and agent to a
/// registered, verified site with a hit and a per-MiB price (each request's
/// price looked up, the owner credited in the same settlement) against the
/// same origin under a name that is not registered, runs interleaved.
pub fn site_pricing_cost(
    rt: &tokio::runtime::Runtime,
    s: &Setup,
    origin: std::net::SocketAddr,
    root: &std::path::Path,
) {
    let st = s.state.to_string_lossy().to_string();
    let host = origin.to_string();
    let run = |args: &[&str]| -> Result<serde_json::Value, String> {
        let o = gateway_cmd(args);
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        Ok(serde_json::from_slice(&o.stdout).unwrap_or_default())
    };
    let registered = run(&[
        "site",
        "add",
        "--state",
        &st,
        &host,
        "--per-hit",
        "0.002",
        "--per-mib",
        "0.01",
        "--json",
    ])
    .and_then(|v| {
        let token = v["token"].as_str().unwrap_or_default().to_string();
        let dir = root.join(".well-known/padnet");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(&token), &token).map_err(|e| e.to_string())?;
        let o = gateway_cmd(&["site", "verify", "--state", &st, &host]);
        if o.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
    });
    if let Err(e) = registered {
        println!("site prices: not measured (registering the bench site failed: {e})");
        return;
    }
    let priced = format!("http://{origin}/small.bin");
    let unpriced = format!("http://localhost:{}/small.bin", origin.port());
    for url in [&priced, &unpriced] {
        bulk(url, Some(s.agent.addr));
    }
    let mut rps = [Vec::new(), Vec::new()];
    let mut p50 = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (i, url) in [&priced, &unpriced].into_iter().enumerate() {
            if status(s.agent.addr)["key_bytes_left"].as_u64().unwrap_or(0) < 64 << 20 {
                eprintln!("warning: the bench pad is low on key material; skipping a run");
                continue;
            }
            let (r, l50, _) =
                rt.block_on(small_load(s.agent.addr, url, true, CONCURRENCY, SMALL_SECS));
            rps[i].push(r);
            p50[i].push(l50);
        }
    }
    if rps.iter().any(|v| v.is_empty()) {
        println!("site prices: not measured (the bench pad ran out of key material)");
        return;
    }
    let [rp, ru] = [0, 1].map(|i| median(rps[i].clone()));
    let [lp, lu] = [0, 1].map(|i| median(p50[i].clone()));
    // Not a timing: the owner was really credited for the priced runs.
    std::thread::sleep(Duration::from_millis(600));
    let site = run(&["site", "show", "--state", &st, "127.0.0.1", "--json"]).unwrap_or_default();
    println!("site prices (one gateway and agent, the sample tariff; medians of {RUNS})");
    println!("  priced: a verified site at 0.002 per hit + 0.01 per MiB; unpriced: the same origin as \"localhost\", not registered");
    println!(
        "  1 KiB requests, {CONCURRENCY} concurrent   priced {rp:8.0} req/s  unpriced {ru:8.0} req/s  priced / unpriced {:.2}x (target >= 0.95)",
        rp / ru
    );
    println!("    latency p50 (ms)                priced {lp:.2}   unpriced {lu:.2}");
    println!(
        "    the owner was credited {} for {} hits",
        site["totals"]["credits"].as_str().unwrap_or("?"),
        site["totals"]["hits"]
    );
}

/// What destroying used key material costs: `take` (read + punch a hole) of
/// 2 MiB leases, against punching alone.
pub fn erasure_cost(dir: &std::path::Path) -> anyhow::Result<()> {
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
        shares: Vec::new(),
        holds: None,
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
