//! Gateways sharing one ledger on PostgreSQL: 1 KiB requests/s at 50
//! concurrent through one gateway on the embedded store, one on PostgreSQL,
//! and two on one PostgreSQL database at once (each with its own agent and
//! pad, as two users), measured one after the other, medians of `RUNS`.

use std::net::SocketAddr;
use std::path::Path;

use padnet_tests::postgres::Postgres;
use padnet_tests::*;

use crate::load::small_load;
use crate::{median, CONCURRENCY, RUNS, SMALL_SECS};

/// A gateway and an agent on a pad of its own.
struct Leg {
    _gateway: Gateway,
    agent: Agent,
}

fn leg(work: &Path, name: &str, ledger: Option<&str>, pad_size: &str) -> Leg {
    let state = work.join(name);
    let st = state.to_string_lossy().to_string();
    let mut init = vec!["init", "--state", &st, "--listen", "127.0.0.1:7443"];
    if let Some(url) = ledger {
        init.extend(["--ledger-url", url]);
    }
    let o = gateway_cmd(&init);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pad = mint(
        &state,
        "100000",
        pad_size,
        &work.join(format!("{name}-user")),
    );
    let gateway = start_gateway(&state, "127.0.0.1:0", &["--allow-private-upstreams"], work);
    let agent = start_agent(&pad, gateway.addr, &[], work);
    Leg {
        _gateway: gateway,
        agent,
    }
}

/// Requests/s of a 1 KiB load through one agent.
fn alone(rt: &tokio::runtime::Runtime, agent: SocketAddr, url: &str) -> f64 {
    rt.block_on(small_load(agent, url, true, CONCURRENCY, SMALL_SECS))
        .0
}

/// Requests/s of a 1 KiB load through two agents at once, each.
fn both(rt: &tokio::runtime::Runtime, agents: [SocketAddr; 2], url: &str) -> (f64, f64) {
    let (a, b) = rt.block_on(async {
        tokio::join!(
            small_load(agents[0], url, true, CONCURRENCY, SMALL_SECS),
            small_load(agents[1], url, true, CONCURRENCY, SMALL_SECS)
        )
    });
    (a.0, b.0)
}

/// Print the figures (or why they were skipped).
pub fn shared_ledger(rt: &tokio::runtime::Runtime, small_url: &str, work: &Path) {
    println!("shared ledger: 1 KiB x{CONCURRENCY} req/s per agent, each gateway with its own agent and pad");
    let pg = match std::panic::catch_unwind(|| Postgres::start(&work.join("pg"))) {
        Ok(pg) => pg,
        Err(_) => {
            println!("  skipped: no PostgreSQL server (scripts/ensure-tools.sh installs one)");
            return;
        }
    };
    let url = pg.database("bench");
    let embedded = leg(work, "gw-embedded", None, "1GiB");
    let first = leg(work, "gw-pg-a", Some(&url), "1GiB");
    let peer = leg(work, "gw-pg-b", Some(&url), "768MiB");
    for a in [&embedded.agent, &first.agent, &peer.agent] {
        crate::load::bulk(small_url, Some(a.addr));
    }
    let mut runs = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        runs[0].push(alone(rt, embedded.agent.addr, small_url));
        runs[1].push(alone(rt, first.agent.addr, small_url));
        let (a, b) = both(rt, [first.agent.addr, peer.agent.addr], small_url);
        runs[2].push(a + b);
        runs[3].push(a);
        runs[4].push(b);
    }
    let [e, one, two, a, b] = runs.map(median);
    println!("  one gateway, embedded store        {e:8.0} req/s");
    println!(
        "  one gateway, PostgreSQL            {one:8.0} req/s   /embedded {:.2}x",
        one / e
    );
    println!(
        "  two gateways, one PostgreSQL       {two:8.0} req/s   ({a:.0} + {b:.0})   /one gateway {:.2}x",
        two / one
    );
    println!(
        "  (one machine of {} cores runs the gateways, agents, load and database: the sum is CPU-bound here)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
}

/// `padnet-bench cluster`: this measure alone, against an origin of its own.
pub fn cluster_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root)?;
    random_file(&root.join("small.bin"), 1024);
    let origin = start_origin(&root, dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    shared_ledger(
        &rt,
        &format!("http://{}/small.bin", origin.http),
        dir.path(),
    );
    Ok(())
}
