//! `padnet-agent`: the user's command. Opens the pad, keeps the tunnel up and
//! serves the browser on loopback; the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use padnet_agent::history::HistoryFile;
use padnet_agent::history_store::HistoryStore;
use padnet_agent::link::Link;
use padnet_agent::listen::{default_max_connections, Limits};
use tunnel::store::{FollowingPad, LeaseJournal};

#[derive(Parser)]
#[command(
    name = "padnet-agent",
    version,
    about = "padnet agent: your browser's private proxy, paid by a pad"
)]
struct Cli {
    /// The pad file.
    #[arg(long)]
    pad: PathBuf,
    /// Where the browser connects (loopback only unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Gateway address to use instead of the pad's (repeat to try several, in order).
    #[arg(long = "gateway", value_name = "ADDR")]
    gateways: Vec<String>,
    /// Accept browser connections from other machines (anyone who can reach it spends your pad).
    #[arg(long)]
    allow_non_loopback: bool,
    /// Seconds to wait for a gateway to connect and answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Require the `user:password` in FILE (mode 0600) from every browser
    /// request (for machines with several users: otherwise any local user
    /// can spend the pad through the agent).
    #[arg(long, value_name = "FILE")]
    proxy_auth: Option<PathBuf>,
    /// Milliseconds a browser connection may take to send a request's headers
    /// (also how long an idle keep-alive connection stays open).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Browser connections open at once, CONNECT tunnels included; more wait
    /// to be accepted (default: 1024, or fewer if the open-files limit is lower).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: Option<usize>,
    /// Below this balance (an amount, e.g. 0.50) the agent's page shows a
    /// low-balance banner and the log says so once.
    #[arg(long, value_name = "AMOUNT", default_value = "0.50", value_parser = parse_amount)]
    warn_below: i64,
    /// Keep no spending history on disk (by default it is kept beside the
    /// pad, in PAD.history, and never sent anywhere); the page then shows
    /// this session's spending only.
    #[arg(long)]
    no_history: bool,
    /// Append every lease and ticket slot used to FILE (pad offsets only; for audits and tests).
    #[arg(long, value_name = "FILE", hide = true)]
    lease_journal: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PADNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Pads are key material: out of core dumps, in files only the user reads.
    for failed in tunnel::process::harden() {
        tracing::warn!("{failed}");
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("padnet-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.listen.ip().is_loopback() && !cli.allow_non_loopback {
        anyhow::bail!(
            "--listen {}: not a loopback address; anyone who reaches it would spend your pad. Use 127.0.0.1, or add --allow-non-loopback",
            cli.listen
        );
    }
    let journal = cli
        .lease_journal
        .as_deref()
        .map(LeaseJournal::open)
        .transpose()
        .context("--lease-journal")?;
    let auth = cli
        .proxy_auth
        .as_deref()
        .map(padnet_agent::access::ProxyAuth::load)
        .transpose()?
        .map(Arc::new);
    let pad = Arc::new(FollowingPad::open(&cli.pad, journal)?);
    warn_if_others_can_read(&cli.pad);
    let history = if cli.no_history {
        HistoryStore::default()
    } else {
        let path = HistoryFile::path_for(&cli.pad);
        HistoryStore::File(HistoryFile::open(&path).with_context(|| {
            format!(
                "the spending history {} cannot be read; move it away (a new one is started) or run with --no-history",
                path.display()
            )
        })?)
    };
    let addrs = if cli.gateways.is_empty() {
        pad.header().gateways.clone()
    } else {
        cli.gateways.clone()
    };
    if addrs.is_empty() {
        anyhow::bail!(
            "{}: the pad names no gateway; give one with --gateway",
            cli.pad.display()
        );
    }
    let shares = gateway_shares(pad.header(), &addrs, !cli.gateways.is_empty())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.pad.display()))?;
    // One thread: the agent serves one user over one tunnel, and with every
    // task on one thread there are no cross-thread wake-ups (-11 % agent CPU
    // per 1 KiB request, same bulk throughput; docs/performance.md). Pad
    // reads still run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("binding {}", cli.listen))?;
        let local = listener.local_addr()?;
        let link = Link::new(
            pad.clone(),
            addrs,
            shares,
            Duration::from_secs(cli.timeout),
            history,
        );
        tokio::spawn(save_history(link.clone()));
        link.warn_below
            .store(cli.warn_below, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(link.clone().run());
        tracing::info!(
            "pad {}: {} key bytes, {} ticket slots left",
            pad.header().serial,
            pad.header().data_size,
            pad.slots_left()
        );
        println!("padnet-agent listening on {local}");
        use std::io::Write;
        std::io::stdout().flush()?;
        let limits = Limits {
            max_connections: cli.max_connections.unwrap_or_else(default_max_connections),
            header_timeout: Duration::from_millis(cli.header_timeout_ms),
        };
        // Ctrl-C or SIGTERM: stop accepting, then save the history.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let ctrl_c = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        padnet_agent::listen::serve(listener, link.clone(), auth, limits, ctrl_c).await?;
        link.settle_charges();
        let keep = link.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || keep.history.save_if_dirty()).await
        {
            tracing::warn!("saving the spending history: {e}");
        }
        anyhow::Ok(())
    })
}

/// How often the spending history is saved while it changes.
const HISTORY_SAVE: Duration = Duration::from_secs(10);

/// Save the spending history every [`HISTORY_SAVE`] while it changes.
async fn save_history(link: Arc<Link>) {
    let mut tick = tokio::time::interval(HISTORY_SAVE);
    loop {
        tick.tick().await;
        let keep = link.clone();
        match tokio::task::spawn_blocking(move || keep.history.save_if_dirty()).await {
            Ok(Err(e)) => tracing::warn!("saving the spending history: {e}"),
            Ok(Ok(_)) => {}
            Err(_) => return,
        }
    }
}

/// A pad (or its state) that other users can read is a pad they can copy
/// and spend: say so, with the fix.
fn warn_if_others_can_read(pad: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let state = tunnel::store::state_path(pad);
    for p in [pad, state.as_path()] {
        if let Ok(m) = std::fs::metadata(p) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{}: other users can read this file (mode {mode:o}) and spend the pad; run: chmod 600 {}",
                    p.display(),
                    p.display()
                );
            }
        }
    }
}

/// `--warn-below`: an amount in the currency, as the gateway writes them.
fn parse_amount(s: &str) -> Result<i64, String> {
    policy::units::parse_amount(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The share the agent uses with each of `addrs`. A pad that is not split
/// uses its one share everywhere. A split pad's own addresses use their
/// shares; `--gateway` may name some of them, in any order (a device kept
/// on one gateway), or, naming none of them, replace all of them in order
/// (the gateways moved).
fn gateway_shares(
    h: &tunnel::pad::PadHeader,
    addrs: &[String],
    from_flag: bool,
) -> Result<Vec<usize>, String> {
    if h.shares.is_empty() {
        return Ok(vec![0; addrs.len()]);
    }
    let known: Vec<Option<usize>> = addrs
        .iter()
        .map(|a| h.gateways.iter().position(|g| g == a))
        .collect();
    if known.iter().all(Option::is_some) {
        return Ok(known.into_iter().flatten().collect());
    }
    if from_flag && known.iter().all(Option::is_none) && addrs.len() == h.shares.len() {
        return Ok((0..addrs.len()).collect());
    }
    Err(format!(
        "the pad is split into {} shares, one per gateway ({}): --gateway names some of these, or replaces all {} in order",
        h.shares.len(),
        h.gateways.join(", "),
        h.shares.len()
    ))
}
