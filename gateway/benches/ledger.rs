//! Ledger settlements per second on redb (or sled, with PADNET_LEDGER_STORE=sled,
//! whose flush is no fsync; or the shared PostgreSQL ledger, with
//! PADNET_LEDGER_STORE=postgres and PADNET_LEDGER_URL, which
//! scripts/with-postgres.sh sets), durability on: request cycles
//! (reserve, awaited until durable, then settle) driven by K concurrent tokio
//! tasks over 10 pads, against a baseline in the same run that forces one
//! flush per request (one task, `flush_now` after every settle). Prints
//! cycles/s, group flushes/s and requests per flush (the group-commit
//! factor), and the ratio to the baseline; medians of 3 runs of ~1.5 s, each
//! on a fresh ledger (every figure on a line is the median run's, by cycles/s;
//! the cycles/s range of the runs is in parentheses). Then the same cycles at
//! 64 tasks where each settlement also credits a site's owner (the pad's
//! debit, the owner's credit, the statement and revenue in one write),
//! against plain settlements in the same run. Configurations are
//! interleaved. Asserts nothing about timings.
//! Run: cargo bench -p padnet-gateway --bench ledger

use std::sync::Arc;
use std::time::{Duration, Instant};

use padnet_gateway::ledger::pg_store::PgStore;
use padnet_gateway::ledger::redb_store::RedbStore;
use padnet_gateway::ledger::sled_store::SledStore;
use padnet_gateway::ledger::Persist;
use padnet_gateway::ledger::{
    Capture, Ledger, LedgerError, Micros, Owner, Prices, Site, SiteCharge,
};

const RUNS: usize = 3;
const RUN_TIME: Duration = Duration::from_millis(1500);
const PADS: usize = 10;
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
/// What the meter reserves for a request at the sample tariff: the request
/// charge (0.0001) and a first 256 KiB chunk (0.01/MiB).
const RESERVE_MIN: Micros = 101;
const RESERVE_MAX: Micros = 100 + 2_500;
/// A 1 KiB request's charge.
const CHARGE: Micros = 110;
const BYTES: u64 = 1024;
const DAY: i64 = 20_000;
/// The site charge of an owner-credit settlement (a 0.002 hit) and the
/// owner's share at 10 % commission.
const SITE_CHARGE: Micros = 2_000;
const SITE_CREDIT: Micros = 1_800;
const OWNER: &str = "0123456789abcdef";
const SITE: &str = "news.example";
/// Tasks in the owner-credit comparison.
const OWNER_TASKS: usize = 64;

/// One run's figures.
#[derive(Clone, Copy)]
struct Run {
    cycles: u64,
    secs: f64,
    /// fsyncs: group flushes, plus explicit `flush_now` calls (baseline).
    flushes: u64,
    /// Latency p50 / p99 in ms: reserve (until durable), settle (blocking).
    reserve_ms: (f64, f64),
    settle_ms: (f64, f64),
}

impl Run {
    fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.secs
    }
    fn flushes_per_s(&self) -> f64 {
        self.flushes as f64 / self.secs
    }
    fn per_flush(&self) -> f64 {
        self.cycles as f64 / (self.flushes as f64).max(1.0)
    }
}

/// The store under test: `PADNET_LEDGER_STORE` (`redb`, the default, `sled`
/// or `postgres`).
fn store_name() -> &'static str {
    match std::env::var("PADNET_LEDGER_STORE").as_deref() {
        Ok("sled") => "sled",
        Ok("postgres") => "postgres",
        _ => "redb",
    }
}

/// The shared ledger at `PADNET_LEDGER_URL`, emptied first (a fresh run).
fn fresh_postgres() -> Result<Box<dyn Persist>, LedgerError> {
    let url = std::env::var("PADNET_LEDGER_URL").map_err(|_| {
        LedgerError::Store("PADNET_LEDGER_STORE=postgres needs PADNET_LEDGER_URL".into())
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LedgerError::Store(e.to_string()))?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(
                "SET client_min_messages = warning;
                 DROP TABLE IF EXISTS padnet_ledger, padnet_gateways, padnet_migrations;
                 DROP SEQUENCE IF EXISTS padnet_ledger_versions",
            )
            .await
    })
    .map_err(|e| LedgerError::Store(e.to_string()))?;
    Ok(Box::new(PgStore::open(&url, "bench")?))
}

/// A fresh ledger in a temporary directory, with `PADS` funded pads.
fn fresh() -> Result<(tempfile::TempDir, Arc<Ledger>), LedgerError> {
    let dir = tempfile::tempdir().map_err(|e| LedgerError::Store(e.to_string()))?;
    let store: Box<dyn Persist> = if store_name() == "sled" {
        Box::new(SledStore::open(&dir.path().join("ledger"))?)
    } else if store_name() == "postgres" {
        fresh_postgres()?
    } else {
        Box::new(RedbStore::open(&dir.path().join("ledger.redb"))?)
    };
    let (ledger, _released) = Ledger::open(store)?;
    for p in 0..PADS {
        ledger.issue(&format!("pad-{p}"), 1_000_000_000)?;
    }
    ledger.change_now(|b| {
        let mut changes = b.add_owner(
            OWNER,
            Owner {
                secret_hash: String::new(),
                created: DAY,
            },
        )?;
        let site = Site {
            owner: OWNER.into(),
            host: SITE.into(),
            prices: Prices {
                per_hit: SITE_CHARGE,
                ..Prices::default()
            },
            category: None,
            verified: true,
            token: String::new(),
        };
        changes.sites.extend(b.register_site(SITE, site)?.sites);
        Ok(((), changes))
    })?;
    Ok((dir, Arc::new(ledger)))
}

/// What one settlement charges: transport only, or transport and a hit
/// credited to the site's owner.
#[derive(Clone, Copy, PartialEq)]
enum Settle {
    Transport,
    OwnerCredit,
}

/// One request cycle: reserve (returns once durable), then settle (durable
/// with the next group flush, not awaited). Returns both calls' durations.
async fn cycle(
    ledger: &Ledger,
    pad: &str,
    mode: Settle,
) -> Result<(Duration, Duration), LedgerError> {
    let t = Instant::now();
    let (hold, _amount) = match mode {
        Settle::Transport => ledger.reserve(pad, RESERVE_MIN, RESERVE_MAX).await?,
        Settle::OwnerCredit => {
            ledger
                .reserve(pad, RESERVE_MIN + SITE_CHARGE, RESERVE_MAX + SITE_CHARGE)
                .await?
        }
    };
    let reserved = t.elapsed();
    let t = Instant::now();
    match mode {
        Settle::Transport => {
            ledger.settle(hold, CHARGE, BYTES, DAY)?;
        }
        Settle::OwnerCredit => {
            let capture = Capture {
                sites: vec![SiteCharge {
                    owner: OWNER.into(),
                    site: SITE.into(),
                    charged: SITE_CHARGE,
                    credits: SITE_CREDIT,
                    hits: 1,
                    bytes: BYTES,
                }],
                ..Capture::transport(CHARGE, BYTES)
            };
            ledger.settle_with(hold, &capture, DAY)?;
        }
    }
    Ok((reserved, t.elapsed()))
}

/// Latencies of every cycle of a run.
#[derive(Default)]
struct Lat {
    reserve: Vec<f64>,
    settle: Vec<f64>,
}

impl Lat {
    fn push(&mut self, (r, s): (Duration, Duration)) {
        self.reserve.push(r.as_secs_f64() * 1e3);
        self.settle.push(s.as_secs_f64() * 1e3);
    }
    fn extend(&mut self, other: Lat) {
        self.reserve.extend(other.reserve);
        self.settle.extend(other.settle);
    }
    /// (reserve p50, p99), (settle p50, p99) in ms.
    fn percentiles(mut self) -> ((f64, f64), (f64, f64)) {
        let pct = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |p: f64| {
                v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0.0)
            };
            (at(0.50), at(0.99))
        };
        (pct(&mut self.reserve), pct(&mut self.settle))
    }
}

/// Group commit: `k` tasks doing cycles until the deadline.
fn group_run(
    rt: &tokio::runtime::Runtime,
    k: usize,
    time: Duration,
    mode: Settle,
) -> Result<Run, LedgerError> {
    let (_dir, ledger) = fresh()?;
    let pads: Arc<Vec<String>> = Arc::new((0..PADS).map(|p| format!("pad-{p}")).collect());
    let f0 = ledger.flush_count();
    let t0 = Instant::now();
    let deadline = t0 + time;
    let lat = rt.block_on(async {
        let mut tasks = Vec::with_capacity(k);
        for i in 0..k {
            let (ledger, pads) = (ledger.clone(), pads.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Lat::default();
                let mut n = 0usize;
                while Instant::now() < deadline {
                    lat.push(cycle(&ledger, &pads[(i + n) % PADS], mode).await?);
                    n += 1;
                }
                Ok::<Lat, LedgerError>(lat)
            }));
        }
        let mut all = Lat::default();
        for t in tasks {
            all.extend(
                t.await
                    .map_err(|e| LedgerError::Store(format!("bench task: {e}")))??,
            );
        }
        Ok::<Lat, LedgerError>(all)
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let flushes = ledger.flush_count() - f0;
    check(&ledger)?;
    let cycles = lat.reserve.len() as u64;
    let (reserve_ms, settle_ms) = lat.percentiles();
    Ok(Run {
        cycles,
        secs,
        flushes,
        reserve_ms,
        settle_ms,
    })
}

/// Baseline: one task, one forced flush per request (after each settle).
fn baseline_run(rt: &tokio::runtime::Runtime, time: Duration) -> Result<Run, LedgerError> {
    let (_dir, ledger) = fresh()?;
    let f0 = ledger.flush_count();
    let t0 = Instant::now();
    let lat = rt.block_on(async {
        let mut lat = Lat::default();
        while t0.elapsed() < time {
            let pad = format!("pad-{}", lat.reserve.len() % PADS);
            lat.push(cycle(&ledger, &pad, Settle::Transport).await?);
            ledger.flush_now()?;
        }
        Ok::<Lat, LedgerError>(lat)
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let cycles = lat.reserve.len() as u64;
    // The reserve's group flush (and any the settle woke), plus flush_now.
    let flushes = ledger.flush_count() - f0 + cycles;
    check(&ledger)?;
    let (reserve_ms, settle_ms) = lat.percentiles();
    Ok(Run {
        cycles,
        secs,
        flushes,
        reserve_ms,
        settle_ms,
    })
}

/// Not a timing: the run really did the work (nothing left open, value conserved).
fn check(ledger: &Ledger) -> Result<(), LedgerError> {
    ledger.flush_now()?;
    ledger.read(|b| {
        let report = b.audit();
        if !b.holds.is_empty() || !report.problems.is_empty() {
            return Err(LedgerError::Store(format!(
                "ledger inconsistent after a run: {} open holds, {:?}",
                b.holds.len(),
                report.problems
            )));
        }
        Ok(())
    })
}

/// The median run by cycles/s, and the cycles/s range.
fn median(mut runs: Vec<Run>) -> (Run, f64, f64) {
    runs.sort_by(|a, b| a.cycles_per_s().total_cmp(&b.cycles_per_s()));
    let (lo, hi) = (runs[0].cycles_per_s(), runs[runs.len() - 1].cycles_per_s());
    (runs[runs.len() / 2], lo, hi)
}

fn main() -> Result<(), LedgerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LedgerError::Store(format!("runtime: {e}")))?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Warm up (page cache, allocator, runtime threads).
    group_run(&rt, 16, Duration::from_millis(300), Settle::Transport)?;

    let mut base = Vec::with_capacity(RUNS);
    let mut groups: Vec<Vec<Run>> = vec![Vec::with_capacity(RUNS); CONCURRENCY.len()];
    // Interleave configurations so drift (disk, page cache) spreads evenly.
    for _ in 0..RUNS {
        base.push(baseline_run(&rt, RUN_TIME)?);
        for (i, &k) in CONCURRENCY.iter().enumerate() {
            groups[i].push(group_run(&rt, k, RUN_TIME, Settle::Transport)?);
        }
    }
    let (mut plain, mut credited) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        plain.push(group_run(&rt, OWNER_TASKS, RUN_TIME, Settle::Transport)?);
        credited.push(group_run(&rt, OWNER_TASKS, RUN_TIME, Settle::OwnerCredit)?);
    }

    println!(
        "ledger settlements ({}, durable; reserve awaited + settle; {PADS} pads; \
         {cores} cores; median of {RUNS} runs of {:.1} s, fresh ledger each)",
        store_name(),
        RUN_TIME.as_secs_f64()
    );
    let (b, blo, bhi) = median(base);
    println!(
        "  baseline, 1 task, flush_now after every settle: {:8.0} cycles/s  ({blo:.0}–{bhi:.0})  \
         {:7.0} fsyncs/s  {:.2} fsyncs per cycle",
        b.cycles_per_s(),
        b.flushes_per_s(),
        b.flushes as f64 / (b.cycles as f64).max(1.0)
    );
    println!(
        "    latency p50 / p99 (ms): reserve {:.2} / {:.2}, settle {:.3} / {:.3}",
        b.reserve_ms.0, b.reserve_ms.1, b.settle_ms.0, b.settle_ms.1
    );
    println!("  group commit:");
    for (runs, &k) in groups.into_iter().zip(CONCURRENCY.iter()) {
        let (r, lo, hi) = median(runs);
        println!(
            "    {k:3} tasks {:8.0} cycles/s  ({lo:.0}–{hi:.0})  {:7.0} flushes/s  \
             {:6.1} requests per flush   {:6.2}x group commit vs one flush per request",
            r.cycles_per_s(),
            r.flushes_per_s(),
            r.per_flush(),
            r.cycles_per_s() / b.cycles_per_s().max(f64::MIN_POSITIVE)
        );
        println!(
            "              latency p50 / p99 (ms): reserve {:.2} / {:.2}, settle {:.3} / {:.3}",
            r.reserve_ms.0, r.reserve_ms.1, r.settle_ms.0, r.settle_ms.1
        );
    }
    let (p, _, _) = median(plain);
    let (c, clo, chi) = median(credited);
    println!(
        "  owner-credit settlements ({OWNER_TASKS} tasks; pad debit + owner credit + statement + revenue in one write):"
    );
    println!(
        "    {:8.0} settlements/s  ({clo:.0}–{chi:.0})   transport-only {:8.0}/s   owner-credit / transport-only {:.2}x",
        c.cycles_per_s(),
        p.cycles_per_s(),
        c.cycles_per_s() / p.cycles_per_s().max(f64::MIN_POSITIVE)
    );
    println!(
        "              latency p50 / p99 (ms): reserve {:.2} / {:.2}, settle {:.3} / {:.3}",
        c.reserve_ms.0, c.reserve_ms.1, c.settle_ms.0, c.settle_ms.1
    );
    Ok(())
}
