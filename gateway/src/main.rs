//! `padnet-gateway`: the operator's command. Parses arguments and calls into
//! the library; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use padnet_gateway::admin::{open_ledger, serve_admin, socket_path, Admin, AdminApi, AdminOp};
use padnet_gateway::context::Services;
use padnet_gateway::fetch::{Fetch, FetchConfig};
use padnet_gateway::guard::UpstreamGuard;
use padnet_gateway::ledger::AuditReport;
use padnet_gateway::mint::{mint_pads, MintRequest};
use padnet_gateway::policies::PolicyStore;
use padnet_gateway::registry::Registry;
use padnet_gateway::serve::Server;
use padnet_gateway::state_dir::StateDir;
use padnet_gateway::tariff::Tariff;
use padnet_gateway::units::{format_amount, parse_amount, parse_size};
use policy::Policy;
use tunnel::pad::{PadFile, Serial};

#[derive(Parser)]
#[command(
    name = "padnet-gateway",
    version,
    about = "padnet gateway: serves OTP tunnels for prepaid pads"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a state directory; ADDR is the default listen address, written into pads.
    Init {
        #[arg(long)]
        state: PathBuf,
        #[arg(long, value_name = "ADDR")]
        listen: String,
    },
    /// Serve tunnels.
    Serve {
        #[arg(long)]
        state: PathBuf,
        /// Listen address (default: the one given at init). Port 0 picks a free port.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Allow upstream addresses in loopback, private and link-local ranges.
        #[arg(long)]
        allow_private_upstreams: bool,
        /// A PEM file of extra trust anchors for https origins.
        #[arg(long, value_name = "PEM")]
        extra_root_ca: Vec<PathBuf>,
        /// Ports CONNECT may reach (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "80,443")]
        connect_ports: Vec<u16>,
        /// Milliseconds a connection without a valid hello is held before closing.
        #[arg(long, default_value_t = 10_000)]
        probe_hold_ms: u64,
        /// Prices (TOML: currency, per_mib, per_request). Default: the sample data/tariff.toml.
        #[arg(long, value_name = "FILE")]
        tariff: Option<PathBuf>,
        /// Append every lease and ticket slot used to FILE (pad offsets only; for audits and tests).
        #[arg(long, value_name = "FILE", hide = true)]
        lease_journal: Option<PathBuf>,
        /// Threads serving tunnels (a tunnel stays on one). Default: one per core.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Mint pads: the twin goes into the state directory, the user's copy into --out.
    Mint {
        #[arg(long)]
        state: PathBuf,
        /// Value of each pad, as a decimal ("5.00").
        #[arg(long)]
        value: String,
        /// Key material per pad ("64MiB", "1GiB").
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Directory for the user's copies.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Gateway addresses written into the pads, tried in order (default: the init address).
        #[arg(long = "gateway", value_name = "ADDR")]
        gateways: Vec<String>,
        /// Ticket slots per pad (tunnels it can open; default from gateway.toml).
        #[arg(long)]
        tickets: Option<u32>,
        /// Mint inactive: the pad serves only after `activate`.
        #[arg(long)]
        inactive: bool,
        /// Bind the pads to an employer policy (TOML); checked before anything is minted.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Employer policies: check a file, show a pad's, update one for all its pads.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Balances by account kind: pads, revenue, issuance, open reservations.
    Ledger {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Pads: inspect one.
    Pad {
        #[command(subcommand)]
        cmd: PadCmd,
    },
    /// Check that the ledger conserves value: exit 0 when it holds, 1 naming each discrepancy.
    Audit {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy file and print a summary (exit 0 when valid).
    Check { file: PathBuf },
    /// Show which policy a pad carries.
    Show {
        #[arg(long)]
        state: PathBuf,
        serial: String,
    },
    /// Replace the policy of the same `name` for every pad bound to it; a
    /// running gateway applies it to new requests at once.
    Update {
        #[arg(long)]
        state: PathBuf,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PadCmd {
    /// Value left, key material left and status of one pad.
    Show {
        #[arg(long)]
        state: PathBuf,
        serial: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PADNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Pads are key material: none of it may end up in a core file.
    if let Err(e) = tunnel::secret::keep_out_of_core_dumps() {
        tracing::warn!("cannot keep key material out of core dumps: {e}");
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("padnet-gateway: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        cmd @ (Cmd::Ledger { .. } | Cmd::Pad { .. } | Cmd::Audit { .. }) => report(cmd),
        Cmd::Policy { cmd } => policy_cmd(cmd),
        Cmd::Init { state, listen } => {
            let s = StateDir::init(&state, &listen)?;
            println!(
                "initialised {} (pads will name gateway {})",
                s.root.display(),
                s.config.listen
            );
            Ok(())
        }
        Cmd::Mint {
            state,
            value,
            size,
            count,
            out,
            gateways,
            tickets,
            inactive,
            policy,
        } => {
            let state = StateDir::open(&state)?;
            let policy_id = match &policy {
                Some(path) => {
                    // Read once: the id is the hash of exactly what is stored.
                    let src = std::fs::read_to_string(path)
                        .with_context(|| format!("--policy {}", path.display()))?;
                    let p = Policy::parse(&src, &path.display().to_string())
                        .map_err(|e| anyhow::anyhow!("--policy {e}"))?;
                    PolicyStore::open(&state.root)?.store(&src, &p, false)?;
                    p.id()
                }
                None => [0; 32],
            };
            let req = MintRequest {
                value_micros: parse_amount(&value).map_err(|e| anyhow::anyhow!("--value: {e}"))?,
                data_size: parse_size(&size).map_err(|e| anyhow::anyhow!("--size: {e}"))?,
                count,
                out,
                gateways,
                ticket_slots: tickets,
                inactive,
                policy_id,
            };
            if req.value_micros < 0 {
                anyhow::bail!("--value must not be negative");
            }
            let admin = Admin::connect(&state, &state.config.currency)?;
            if policy.is_some() {
                // A running gateway learns the policy before any pad bound to it exists.
                admin.call(AdminOp::ReloadPolicies)?;
            }
            for p in mint_pads(&state, &req)? {
                let serial = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                admin
                    .call(AdminOp::Issue {
                        serial,
                        value: req.value_micros,
                    })
                    .with_context(|| format!("crediting {}", p.display()))?;
                println!("{}", p.display());
            }
            Ok(())
        }
        Cmd::Serve {
            state,
            listen,
            allow_private_upstreams,
            extra_root_ca,
            connect_ports,
            probe_hold_ms,
            lease_journal,
            tariff,
            threads,
        } => {
            let state = StateDir::open(&state)?;
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
            let (ledger, released) = open_ledger(&state)?;
            let policies = PolicyStore::open(&state.root)?;
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
                println!("padnet-gateway listening on {local}");
                use std::io::Write;
                std::io::stdout().flush()?;
                tracing::info!("tariff: {}", tariff.describe());
                let services = Arc::new(Services {
                    ledger: ledger.clone(),
                    tariff,
                    policies: policies.clone(),
                    limiters: Default::default(),
                    floats: Default::default(),
                });
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
                });
                tokio::spawn(async move {
                    if let Err(e) = serve_admin(api).await {
                        tracing::error!("admin endpoint: {e:#}");
                    }
                });
                let server = Arc::new(Server {
                    services,
                    registry,
                    fetch,
                    probe_hold: Duration::from_millis(probe_hold_ms),
                });
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
                server.run(listener, threads, shutdown_signal()).await?;
                tracing::info!("shutting down");
                // Let finished requests' charges become final, then flush.
                tokio::time::sleep(
                    padnet_gateway::meter::SETTLE_DELAY + Duration::from_millis(100),
                )
                .await;
                ledger.flush_now()?;
                let _ = std::fs::remove_file(socket_path(&state.root));
                anyhow::Ok(())
            })
        }
    }
}

fn print_value(v: &serde_json::Value, json: bool, human: impl FnOnce(&serde_json::Value)) {
    if json {
        println!("{v}");
    } else {
        human(v);
    }
}

fn s(v: &serde_json::Value, k: &str) -> String {
    match v.pointer(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn report(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Ledger { state, json } => {
            let state = StateDir::open(&state)?;
            let v = Admin::connect(&state, &state.config.currency)?.call(AdminOp::Ledger)?;
            print_value(&v, json, |v| {
                let c = s(v, "/currency");
                println!(
                    "pads       {:>16} {c}  ({} accounts, {} used up)",
                    s(v, "/pads/balance"),
                    s(v, "/pads/accounts"),
                    s(v, "/pads/used_up")
                );
                println!(
                    "reserved   {:>16} {c}  ({} open)",
                    s(v, "/reserved/amount"),
                    s(v, "/reserved/open")
                );
                println!("revenue    {:>16} {c}", s(v, "/revenue"));
                println!("issuance   {:>16} {c}", s(v, "/issuance"));
                println!("issued     {:>16} {c}", s(v, "/issued"));
                println!("redeemed   {:>16} {c}", s(v, "/redeemed"));
            });
            Ok(())
        }
        Cmd::Pad {
            cmd:
                PadCmd::Show {
                    state,
                    serial,
                    json,
                },
        } => {
            let state = StateDir::open(&state)?;
            let v = Admin::connect(&state, &state.config.currency)?
                .call(AdminOp::PadShow { serial })?;
            print_value(&v, json, |v| {
                let c = s(v, "/currency");
                println!("serial          {}", s(v, "/serial"));
                println!("status          {}", s(v, "/status"));
                println!(
                    "balance         {} {c} (of {} issued; {} reserved now)",
                    s(v, "/balance"),
                    s(v, "/issued"),
                    s(v, "/reserved")
                );
                println!(
                    "key material    {} of {} bytes left",
                    s(v, "/key_bytes_left"),
                    s(v, "/key_bytes_total")
                );
                println!("tickets left    {}", s(v, "/tickets_left"));
                println!(
                    "policy          {}",
                    match v.get("policy") {
                        Some(serde_json::Value::String(p)) => p.clone(),
                        _ => "none (unrestricted)".into(),
                    }
                );
            });
            Ok(())
        }
        Cmd::Audit { state, json } => {
            let state = StateDir::open(&state)?;
            let v = Admin::connect(&state, &state.config.currency)?.call(AdminOp::Audit)?;
            let report: AuditReport = serde_json::from_value(v.clone())?;
            print_value(&v, json, |_| {
                let c = &state.config.currency;
                println!(
                    "balances {} + reserved {} = {} {c}; issued {} - redeemed {} = {} {c}; {} accounts, {} open reservations",
                    format_amount(report.balances),
                    format_amount(report.held),
                    format_amount(report.balances.saturating_add(report.held)),
                    format_amount(report.issued),
                    format_amount(report.redeemed),
                    format_amount(report.issued - report.redeemed),
                    report.accounts,
                    report.open_holds
                );
            });
            if report.problems.is_empty() {
                eprintln!("audit: the ledger conserves value");
                Ok(())
            } else {
                for p in &report.problems {
                    eprintln!("audit: DISCREPANCY: {p}");
                }
                std::process::exit(1);
            }
        }
        _ => unreachable!("report() is only called for reporting commands"),
    }
}

fn policy_cmd(cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Check { file } => {
            let p = Policy::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}: valid", file.display());
            println!("{}", p.summary());
            Ok(())
        }
        PolicyCmd::Show { state, serial } => {
            let state = StateDir::open(&state)?;
            let serial: Serial = serial
                .parse()
                .map_err(|e| anyhow::anyhow!("{serial:?} is not a pad serial: {e}"))?;
            let path = state.pads_dir().join(format!("{serial}.pad"));
            let pad = PadFile::open(&path)?;
            let id = pad.header().policy_id;
            if id == [0; 32] {
                println!("pad {serial}: no policy (unrestricted)");
                return Ok(());
            }
            let store = PolicyStore::open(&state.root)?;
            let Some(minted) = store.by_id(&id) else {
                anyhow::bail!(
                    "pad {serial} is bound to policy {} which is not in {}",
                    hex::encode(id),
                    state.root.join("policies").display()
                );
            };
            let effective = store.effective(&id).unwrap_or_else(|| minted.clone());
            println!("pad {serial}: policy \"{}\"", minted.name());
            println!("minted with {}", minted.id_hex());
            if effective.id() != minted.id() {
                println!("updated to  {} (applies now)", effective.id_hex());
            }
            println!("{}", effective.summary());
            Ok(())
        }
        PolicyCmd::Update { state, file } => {
            let state = StateDir::open(&state)?;
            let src = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the policy", file.display()))?;
            let p = Policy::parse(&src, &file.display().to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = PolicyStore::open(&state.root)?;
            let previous = store.current_id(p.name());
            if previous.is_none() {
                anyhow::bail!(
                    "{}: no pads are bound to a policy named {:?} on this gateway (policy update replaces an existing policy; mint with --policy to use a new one)",
                    file.display(),
                    p.name()
                );
            }
            store.store(&src, &p, true)?;
            // A running gateway re-reads policies now; a stopped one reads them at start.
            if std::os::unix::net::UnixStream::connect(socket_path(&state.root)).is_ok() {
                Admin::connect(&state, &state.config.currency)?.call(AdminOp::ReloadPolicies)?;
                println!(
                    "policy {:?} is now {} (the running gateway applies it to new requests)",
                    p.name(),
                    p.id_hex()
                );
            } else {
                println!("policy {:?} is now {}", p.name(), p.id_hex());
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
