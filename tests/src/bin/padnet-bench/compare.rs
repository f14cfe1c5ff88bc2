//! The peer comparison: direct, shadowsocks-rust and padnet, each measure's
//! runs interleaved, in one table: plain HTTP bulk and 1 KiB requests (50
//! concurrent and one at a time), HTTPS through CONNECT, CPU, page loads.

use std::net::SocketAddr;
use std::path::Path;

use crate::https::TlsOrigin;
use crate::load::{bulk, small_load, LoadFigures};
use crate::peers::{interleaved, medians, Peer, Runs, Table};
use crate::{pad_used, status, BULK_MIB, CONCURRENCY, LATENCY_SECS, PAGE_LOADS, RUNS, SMALL_SECS};

/// What the comparison reaches the origin with.
pub struct Targets<'a> {
    pub origin: SocketAddr,
    pub bulk_url: &'a str,
    pub small_url: &'a str,
    pub tls: &'a TlsOrigin,
    /// The padnet agent, for its key material and pad use.
    pub agent: SocketAddr,
    pub work: &'a Path,
    /// The page-load demo page's path on the origin.
    pub page: &'a str,
}

/// Medians the ceiling lines compare against.
pub struct Headline {
    pub direct_bulk: f64,
    pub padnet_bulk: f64,
    pub direct_small: f64,
    pub padnet_small: f64,
}

/// Enough key material (checked on padnet only) for a run needing `need` bytes.
fn key_ok(p: &Peer, agent: SocketAddr, need: u64) -> bool {
    if p.name != "padnet" {
        return true;
    }
    let left = status(agent)["key_bytes_left"].as_u64().unwrap_or(0);
    if left < need {
        eprintln!(
            "warning: the bench pad has {} MiB of key material left, a run needs {}; skipping it",
            left >> 20,
            need >> 20
        );
    }
    left >= need
}

/// CPU of each peer's processes (together) per unit of work, times `scale`;
/// `None` for a peer without processes (direct).
fn cpu_row<T>(
    peers: &[Peer],
    runs: &[Runs<T>],
    units: impl Fn(&Runs<T>) -> f64,
    scale: f64,
) -> Vec<Option<f64>> {
    peers
        .iter()
        .zip(runs)
        .map(|(p, r)| {
            (!p.procs.is_empty() && units(r) > 0.0).then(|| r.cpu_total() * scale / units(r))
        })
        .collect()
}

/// The same per process: "sslocal 0.41 + ssserver 0.52; agent …".
fn cpu_note<T>(
    what: &str,
    peers: &[Peer],
    runs: &[Runs<T>],
    units: impl Fn(&Runs<T>) -> f64,
    scale: f64,
) -> String {
    let parts: Vec<String> = peers
        .iter()
        .zip(runs)
        .filter(|(p, r)| !p.procs.is_empty() && units(r) > 0.0)
        .map(|(p, r)| {
            p.procs
                .iter()
                .zip(&r.cpu)
                .map(|((name, _), c)| format!("{name} {:.3}", c * scale / units(r)))
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    format!("{what}, by process: {}", parts.join("; "))
}

/// GB carried by a bulk measure's successful runs.
fn gb(r: &Runs<f64>) -> f64 {
    (r.values.len() * BULK_MIB) as f64 * (1u64 << 20) as f64 / 1e9
}

/// Requests answered in a load measure's runs.
fn requests(secs: u64) -> impl Fn(&Runs<LoadFigures>) -> f64 {
    move |r| r.values.iter().map(|v| v.0 * secs as f64).sum()
}

/// Rows for a load measure: req/s, p50, p99, and CPU per request.
fn load_rows(table: &mut Table, peers: &[Peer], runs: &[Runs<LoadFigures>], what: &str, secs: u64) {
    table.row(&format!("{what}, req/s"), medians(runs, |v| v.0), 0);
    table.row(&format!("{what}, p50 ms"), medians(runs, |v| v.1), 2);
    table.row(&format!("{what}, p99 ms"), medians(runs, |v| v.2), 2);
    table.row(
        &format!("{what}, cpu ms per request"),
        cpu_row(peers, runs, requests(secs), 1e3),
        4,
    );
    table.note(cpu_note(
        &format!("{what}: cpu ms per request"),
        peers,
        runs,
        requests(secs),
        1e3,
    ));
}

/// Run every measure, print the table; returns the medians the ceiling
/// lines need.
pub fn compare(rt: &tokio::runtime::Runtime, peers: &[Peer], t: &Targets) -> Headline {
    let bulk_need = (BULK_MIB as u64 * 105 / 100) << 20;
    let small_need = 128 << 20;
    let mut table = Table::new(peers);
    let ok = |v: f64| (v > 0.0).then_some(v);

    // Plain HTTP bulk; the agent's counters move only in padnet's runs.
    let s0 = status(t.agent);
    let b = interleaved(peers, RUNS, |p| {
        key_ok(p, t.agent, bulk_need)
            .then(|| bulk(t.bulk_url, p.proxy))
            .and_then(ok)
    });
    let s1 = status(t.agent);
    let what = format!("HTTP bulk {BULK_MIB} MiB");
    table.row(&format!("{what}, MB/s"), medians(&b, |&v| v), 0);
    table.row(
        &format!("{what}, cpu s per GB"),
        cpu_row(peers, &b, gb, 1.0),
        2,
    );
    table.note(cpu_note(
        &format!("{what}: cpu s per GB"),
        peers,
        &b,
        gb,
        1.0,
    ));
    let padnet_runs = peers
        .iter()
        .position(|p| p.name == "padnet")
        .map(|i| b[i].values.len());
    let ((p0, q0), (p1, q1)) = (pad_used(&s0), pad_used(&s1));
    table.note(format!(
        "{what}: padnet pad bytes per payload byte {:.4} (per tunnel byte), {:.4} (per body byte)",
        (p1 - p0) / (q1 - q0).max(1.0),
        (p1 - p0) / ((padnet_runs.unwrap_or(0) * (BULK_MIB << 20)) as f64).max(1.0)
    ));

    // Plain HTTP, 1 KiB, 50 concurrent and one at a time.
    let small = |p: &Peer, n: usize, secs: u64| {
        let target = p.proxy.unwrap_or(t.origin);
        key_ok(p, t.agent, small_need)
            .then(|| rt.block_on(small_load(target, t.small_url, p.proxy.is_some(), n, secs)))
    };
    let checked = |s: &serde_json::Value| s["meter"]["checked"].as_f64().unwrap_or(0.0);
    let c0 = checked(&status(t.agent));
    let s = interleaved(peers, RUNS, |p| small(p, CONCURRENCY, SMALL_SECS));
    // Every request's charge reaches the agent's history (settled within
    // ~0.5 s of its end), however fast they come.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let c1 = checked(&status(t.agent));
    if let Some(i) = peers.iter().position(|p| p.name == "padnet") {
        let sent = requests(SMALL_SECS)(&s[i]);
        table.note(format!(
            "HTTP 1 KiB x{CONCURRENCY}: padnet charges matched to the agent's own count: {:.0} of {sent:.0} requests ({:.1} %)",
            c1 - c0,
            100.0 * (c1 - c0) / sent.max(1.0)
        ));
    }
    load_rows(
        &mut table,
        peers,
        &s,
        &format!("HTTP 1 KiB x{CONCURRENCY}"),
        SMALL_SECS,
    );
    let one = interleaved(peers, RUNS, |p| small(p, 1, LATENCY_SECS));
    table.row("HTTP 1 KiB x1, req/s", medians(&one, |v| v.0), 0);
    table.row("HTTP 1 KiB x1, p50 ms", medians(&one, |v| v.1), 3);
    table.row("HTTP 1 KiB x1, p99 ms", medians(&one, |v| v.2), 3);

    // HTTPS through CONNECT (direct: TLS straight to the origin).
    let hb = interleaved(peers, RUNS, |p| {
        key_ok(p, t.agent, bulk_need)
            .then(|| t.tls.bulk("/bulk.bin", p.proxy))
            .and_then(ok)
    });
    let what = format!("HTTPS bulk {BULK_MIB} MiB");
    table.row(&format!("{what}, MB/s"), medians(&hb, |&v| v), 0);
    table.row(
        &format!("{what}, cpu s per GB"),
        cpu_row(peers, &hb, gb, 1.0),
        2,
    );
    table.note(cpu_note(
        &format!("{what}: cpu s per GB"),
        peers,
        &hb,
        gb,
        1.0,
    ));
    let hs = interleaved(peers, RUNS, |p| {
        key_ok(p, t.agent, small_need).then(|| {
            rt.block_on(
                t.tls
                    .small_load(p.proxy, "/small.bin", CONCURRENCY, SMALL_SECS),
            )
        })
    });
    load_rows(
        &mut table,
        peers,
        &hs,
        &format!("HTTPS 1 KiB x{CONCURRENCY}"),
        SMALL_SECS,
    );

    // Page loads in Chromium, plain HTTP then HTTPS.
    let http_page = format!("http://{}{}", t.origin, t.page);
    crate::page_load::page_loads(
        &mut table,
        peers,
        t.work,
        &http_page,
        "page load, HTTP, ms",
        PAGE_LOADS,
    );
    let https_page = t.tls.url(t.page);
    crate::page_load::page_loads(
        &mut table,
        peers,
        t.work,
        &https_page,
        "page load, HTTPS, ms",
        PAGE_LOADS,
    );

    let names: Vec<&str> = peers
        .iter()
        .map(|p| match p.name {
            "shadowsocks" => "shadowsocks-rust",
            n => n,
        })
        .collect();
    println!(
        "{}, same origin and clients, runs interleaved (medians of {RUNS}; page loads of {PAGE_LOADS})",
        names.join(" / ")
    );
    println!("  (ratios: higher is better for MB/s and req/s, lower for ms and cpu)");
    table.print();
    let pick = |runs: &[Runs<f64>], name: &str| -> f64 {
        let i = peers.iter().position(|p| p.name == name);
        i.and_then(|i| medians(runs, |&v| v)[i]).unwrap_or(0.0)
    };
    let pick_load = |runs: &[Runs<LoadFigures>], name: &str| -> f64 {
        let i = peers.iter().position(|p| p.name == name);
        i.and_then(|i| medians(runs, |v| v.0)[i]).unwrap_or(0.0)
    };
    Headline {
        direct_bulk: pick(&b, "direct"),
        padnet_bulk: pick(&b, "padnet"),
        direct_small: pick_load(&s, "direct"),
        padnet_small: pick_load(&s, "padnet"),
    }
}
