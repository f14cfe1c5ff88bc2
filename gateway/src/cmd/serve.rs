//! `padnet-gateway serve`: open the store, build the services, listen for
//! tunnels, the admin endpoint and the optional portal, retail and metrics
//! listeners, drain and flush on SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::admin::{open_ledger, serve_admin, socket_path, AdminApi};
use crate::conn::registry::Registry;
use crate::conn::serve::Server;
use crate::metering::context::Services;
use crate::metrics::Metrics;
use crate::policies::PolicyStore;
use crate::portal::Portal;
use crate::request::fetch::{Fetch, FetchConfig};
use crate::request::guard::UpstreamGuard;
use crate::retail::till::Till;
use crate::retail::RetailOps;
use crate::sites::categories::CategoryList;
use crate::sites::ops::SiteOps;
use crate::state_dir::StateDir;
use crate::tariff::Tariff;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub state: PathBuf,
    /// Listen address (default: the one given at init). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Allow upstream addresses in loopback, private and link-local ranges.
    #[arg(long)]
    pub allow_private_upstreams: bool,
    /// A PEM file of extra trust anchors for https origins.
    #[arg(long, value_name = "PEM")]
    pub extra_root_ca: Vec<PathBuf>,
    /// Ports CONNECT may reach (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "80,443")]
    pub connect_ports: Vec<u16>,
    /// Milliseconds a connection without a valid hello is held before closing.
    #[arg(long, default_value_t = 10_000)]
    pub probe_hold_ms: u64,
    /// Milliseconds a graceful stop (SIGTERM) waits for open streams to finish.
    #[arg(long, default_value_t = 10_000)]
    pub drain_ms: u64,
    /// Prices (TOML: currency, per_mib, per_request). Default: the sample data/tariff.toml.
    #[arg(long, value_name = "FILE")]
    pub tariff: Option<PathBuf>,
    /// Append every lease and ticket slot used to FILE (pad offsets only; for audits and tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub lease_journal: Option<PathBuf>,
    /// Threads serving tunnels (a tunnel stays on one). Default: one per core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Serve the owner portal (site owners' API and pages) on ADDR. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub owner_listen: Option<String>,
    /// Serve the retail API (shops' tills activate blank pads) on ADDR. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub retail_listen: Option<String>,
    /// The operator's host → category list (TOML) for sites not registered.
    #[arg(long, value_name = "FILE")]
    pub categories: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (aggregates only; no
    /// authentication: keep it on loopback or a private admin network).
    /// Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Keep the ledger in PostgreSQL, shared with other gateways (overrides
    /// gateway.toml's `ledger`): postgres://user@host:port/database.
    #[arg(long, value_name = "URL")]
    pub ledger_url: Option<String>,
}

/// How often a gateway on a shared ledger catches up with the others
/// (cancellations reach its tunnels within this), and how often of those it
/// renews its lease on its reservations.
const SYNC_EVERY: Duration = Duration::from_millis(250);
const RENEW_EVERY_SYNCS: u32 = 4;

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        state,
        listen,
        allow_private_upstreams,
        extra_root_ca,
        connect_ports,
        probe_hold_ms,
        drain_ms,
        lease_journal,
        tariff,
        threads,
        owner_listen,
        retail_listen,
        categories,
        metrics_listen,
        ledger_url,
    } = a;
    let mut state = StateDir::open(&state)?;
    if let Some(url) = ledger_url {
        crate::state_dir::check_ledger_url(&url)
            .map_err(|e| anyhow::anyhow!("--ledger-url: {e}"))?;
        state.config.ledger = Some(url);
    }
    let _lock = state.lock_for_serve()?;
    let tariff = match &tariff {
        Some(p) => Tariff::load(p).map_err(anyhow::Error::msg)?,
        None => Tariff::default_tariff(),
    };
    if tariff.currency != state.config.currency {
        anyhow::bail!(
            "--tariff: currency {} differs from the ledger's {} (gateway.toml)",
            tariff.currency,
            state.config.currency
        );
    }
    let categories = match &categories {
        Some(p) => CategoryList::load(p).map_err(|e| anyhow::anyhow!("--categories {e}"))?,
        None => CategoryList::default(),
    };
    let (ledger, released) = open_ledger(&state)?;
    let metrics = Arc::new(Metrics::new());
    ledger.set_metrics(metrics.clone());
    let policies = PolicyStore::open(&state.root)?;
    if ledger.is_shared() {
        share_policies(&ledger, &policies)?;
        // A pad bound to a policy stored elsewhere a moment ago: catch up
        // with the book now rather than refuse until the next sync.
        let (l, store) = (ledger.clone(), Arc::downgrade(&policies));
        policies.set_on_miss(Box::new(move || {
            let Some(store) = store.upgrade() else { return };
            if let Err(e) = l.refresh() {
                tracing::warn!("shared ledger, looking for a policy: {e}");
                return;
            }
            let (sources, current) = l.read(|b| (b.policies.clone(), b.policy_current.clone()));
            if let Err(e) = store.adopt(&sources, &current) {
                tracing::error!("adopting the shared ledger's policies: {e:#}");
            }
        }));
    }
    if released > 0 {
        tracing::info!("released {released} reservation(s) left open by a crash");
    }
    let mut extra_roots = Vec::new();
    for path in &extra_root_ca {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("--extra-root-ca {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "--extra-root-ca {}: not a PEM certificate file",
                    path.display()
                )
            })?;
        if certs.is_empty() {
            anyhow::bail!(
                "--extra-root-ca {}: no certificate in the file",
                path.display()
            );
        }
        extra_roots.extend(certs);
    }
    let fetch_cfg = FetchConfig {
        guard: UpstreamGuard {
            allow_private: allow_private_upstreams,
        },
        connect_ports,
        extra_roots,
    };
    let registry = Arc::new(Registry::new(
        state.pads_dir(),
        state.max_lease,
        lease_journal,
    ));
    let n = registry
        .scan()
        .with_context(|| format!("reading {}", state.pads_dir().display()))?;
    let addr = listen.unwrap_or_else(|| state.config.listen.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fetch_cfg_guard = fetch_cfg.guard;
    let fetch = Fetch::new(fetch_cfg, rt.handle().clone())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        tracing::info!(
            "{n} pad(s) loaded; private upstreams {}",
            if allow_private_upstreams {
                "ALLOWED"
            } else {
                "refused"
            }
        );
        // Handlers in place before anyone is told we listen: a SIGTERM
        // from then on is a graceful stop, never the default sudden exit.
        let stop = shutdown_signal()?;
        println!("padnet-gateway listening on {local}");
        use std::io::Write;
        std::io::stdout().flush()?;
        tracing::info!("tariff: {}", tariff.describe());
        if categories.len() > 0 {
            tracing::info!("{} host categories from --categories", categories.len());
        }
        let guard = fetch_cfg_guard;
        let site_ops = SiteOps {
            ledger: ledger.clone(),
            state: state.clone(),
            guard,
            currency: state.config.currency.clone(),
            fetch: Some(fetch.clone()),
        };
        if let Some(addr) = &owner_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--owner-listen {addr}"))?;
            println!("padnet-gateway owner portal on http://{}", l.local_addr()?);
            std::io::stdout().flush()?;
            tokio::spawn(crate::portal::serve(l, Portal::new(site_ops.clone())));
        }
        let retail = RetailOps {
            ledger: ledger.clone(),
            state: state.clone(),
            registry: Some(registry.clone()),
            currency: state.config.currency.clone(),
        };
        retail.sync_twins(&registry);
        if let Some(addr) = &retail_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--retail-listen {addr}"))?;
            println!("padnet-gateway retail API on http://{}", l.local_addr()?);
            std::io::stdout().flush()?;
            tokio::spawn(crate::retail::till::serve(l, Till::new(retail.clone())));
        }
        if let Some(addr) = &metrics_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?;
            println!(
                "padnet-gateway metrics on http://{}{}",
                l.local_addr()?,
                crate::metrics::PATH
            );
            std::io::stdout().flush()?;
            let m = metrics.clone();
            tokio::spawn(crate::rim::serve(l, "metrics", move |_peer, req| {
                let answer = m.answer(&req);
                async move { answer }
            }));
        }
        let services = Arc::new(Services {
            ledger: ledger.clone(),
            tariff,
            policies: policies.clone(),
            limiters: Default::default(),
            floats: Default::default(),
            tasks: Default::default(),
            categories: Arc::new(categories),
            metrics,
        });
        let live: Arc<crate::conn::live::LiveTunnels> = Default::default();
        let accounts = crate::accounts::AccountService::new(
            ledger.clone(),
            registry.clone(),
            live.clone(),
            state.config.currency.clone(),
        );
        let reload = policies.clone();
        let api = Arc::new(AdminApi {
            state: state.clone(),
            ledger: ledger.clone(),
            registry: Some(registry.clone()),
            floats: Some(services.floats.clone()),
            on_reload: Some(Box::new(move || {
                reload.reload().map_err(|e| format!("{e:#}"))
            })),
            currency: state.config.currency.clone(),
            sites: site_ops,
            retail,
            accounts: crate::accounts::AccountOps {
                ledger: ledger.clone(),
                state: state.clone(),
                currency: state.config.currency.clone(),
                live: Some(live.clone()),
            },
        });
        if ledger.is_shared() {
            tokio::spawn(sync_shared_ledger(ledger.clone(), live, policies.clone()));
        }
        tokio::spawn(async move {
            if let Err(e) = serve_admin(api).await {
                tracing::error!("admin endpoint: {e:#}");
            }
        });
        // Every tunnel, origin connection and prober holds a descriptor
        // (the limit was raised at start).
        let open_files = tunnel::process::open_file_limit().unwrap_or(u64::MAX);
        let pending =
            crate::conn::pending::Pending::new(crate::conn::pending::Pending::cap_for(open_files));
        tracing::info!("{open_files} open files allowed; at most a quarter wait for a hello");
        let server = Arc::new(Server {
            pending,
            services,
            registry,
            fetch,
            accounts,
            probe_hold: Duration::from_millis(probe_hold_ms),
            stopping: Default::default(),
            tunnels: Default::default(),
            drain_limit: Duration::from_millis(drain_ms),
        });
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let tasks = server.services.tasks.clone();
        // Returns once every tunnel has finished its open streams.
        server.run(listener, threads, stop).await?;
        tracing::info!("shutting down");
        // Finished requests' charges become final (SETTLE_DELAY after their
        // last byte) and floats go back to their pads; then the last flush.
        tasks.close();
        tasks.wait().await;
        ledger.flush_now()?;
        let _ = std::fs::remove_file(socket_path(&state.root));
        anyhow::Ok(())
    })
}

/// On a shared ledger: every [`SYNC_EVERY`], catch up with the other
/// gateways (their cancellations close this gateway's tunnels of the pad)
/// and release the reservations of gateways that are gone; renew this
/// gateway's own lease every [`RENEW_EVERY_SYNCS`] of those.
async fn sync_shared_ledger(
    ledger: Arc<crate::ledger::Ledger>,
    live: Arc<crate::conn::live::LiveTunnels>,
    policies: Arc<PolicyStore>,
) {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u32.. {
        tick.tick().await;
        let l = ledger.clone();
        let renew = n % RENEW_EVERY_SYNCS == 0;
        let synced = tokio::task::spawn_blocking(move || {
            if renew {
                l.flush_now()?;
            }
            l.sync()
        })
        .await;
        match synced {
            Ok(Ok((_, pads))) => {
                // Policies stored or updated through another gateway.
                let (sources, current) =
                    ledger.read(|b| (b.policies.clone(), b.policy_current.clone()));
                match policies.adopt(&sources, &current) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("adopted {n} policy change(s) from the shared ledger"),
                    Err(e) => tracing::error!("adopting the shared ledger's policies: {e:#}"),
                }
                for pad in pads {
                    if ledger.read(|b| b.is_cancelled(&pad)) {
                        let n = live.close(&pad, tunnel::stream::CloseReason::Cancelled);
                        if n > 0 {
                            tracing::info!("pad cancelled elsewhere: closed {n} tunnel(s)");
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!("shared ledger: {e}"),
            Err(e) => tracing::warn!("shared ledger sync: {e}"),
        }
    }
}

/// At start on a shared ledger: record in the book the policies this
/// gateway has and the book lacks (stored before it joined; current only
/// for a name the book has none for), then take the book's (so it applies
/// what the others stored or updated meanwhile: the book decides).
fn share_policies(ledger: &crate::ledger::Ledger, policies: &PolicyStore) -> anyhow::Result<()> {
    let known = ledger.read(|b| b.policies.clone());
    for id in policies.ids() {
        if known.contains_key(&hex::encode(id)) {
            continue;
        }
        let Some(p) = policies.by_id(&id) else {
            continue;
        };
        ledger
            .put_policy(&hex::encode(id), p.name(), &policies.source(&id)?, false)
            .map_err(|e| {
                anyhow::anyhow!(
                    "recording policy {} in the shared ledger: {e}",
                    hex::encode(id)
                )
            })?;
    }
    let (sources, current) = ledger.read(|b| (b.policies.clone(), b.policy_current.clone()));
    policies.adopt(&sources, &current)?;
    Ok(())
}

/// SIGTERM or SIGINT, with both handlers installed now (the future only
/// waits for them).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
