//! `padnet-gateway`: the operator's command. Parses arguments and calls into
//! the library; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use padnet_gateway::fetch::{Fetch, FetchConfig};
use padnet_gateway::guard::UpstreamGuard;
use padnet_gateway::mint::{mint_pads, MintRequest};
use padnet_gateway::registry::Registry;
use padnet_gateway::serve::Server;
use padnet_gateway::state_dir::StateDir;
use padnet_gateway::units::{parse_amount, parse_size};

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
        /// Append every lease and ticket slot used to FILE (pad offsets only; for audits and tests).
        #[arg(long, value_name = "FILE", hide = true)]
        lease_journal: Option<PathBuf>,
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
    if let Err(e) = run(Cli::parse()) {
        eprintln!("padnet-gateway: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
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
        } => {
            let state = StateDir::open(&state)?;
            let req = MintRequest {
                value_micros: parse_amount(&value).map_err(|e| anyhow::anyhow!("--value: {e}"))?,
                data_size: parse_size(&size).map_err(|e| anyhow::anyhow!("--size: {e}"))?,
                count,
                out,
                gateways,
                ticket_slots: tickets,
                inactive,
            };
            if req.value_micros < 0 {
                anyhow::bail!("--value must not be negative");
            }
            for p in mint_pads(&state, &req)? {
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
        } => {
            let state = StateDir::open(&state)?;
            let _lock = state.lock_for_serve()?;
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
            let fetch = Fetch::new(FetchConfig {
                guard: UpstreamGuard {
                    allow_private: allow_private_upstreams,
                },
                connect_ports,
                extra_roots,
            })?;
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
                let server = Arc::new(Server {
                    registry,
                    fetch,
                    probe_hold: Duration::from_millis(probe_hold_ms),
                });
                server.run(listener, shutdown_signal()).await;
                tracing::info!("shutting down");
                anyhow::Ok(())
            })
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
