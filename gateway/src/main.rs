//! `padnet-gateway`: the operator's command. Parses arguments and calls the
//! subcommand in the library (`padnet_gateway::cmd`); nothing else lives here.

use clap::{Parser, Subcommand};
use padnet_gateway::cmd;

#[derive(Parser)]
#[command(
    name = "padnet-gateway",
    version,
    about = "padnet gateway: serves OTP tunnels for prepaid pads"
)]
struct Cli {
    /// How log lines on stderr are written: `text` for people, `json` (one
    /// object a line) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a state directory; ADDR is the default listen address, written into pads.
    Init(cmd::init::InitArgs),
    /// Serve tunnels.
    Serve(cmd::serve::ServeArgs),
    /// Mint pads: the twin goes into the state directory, the user's copy into --out.
    Mint(cmd::mint::MintArgs),
    /// Employer policies: check a file, show a pad's, update one for all its pads.
    Policy {
        #[command(subcommand)]
        cmd: cmd::policy::PolicyCmd,
    },
    /// Balances by account kind: pads, revenue, issuance, open reservations.
    Ledger(cmd::report::LedgerArgs),
    /// Pads: inspect one.
    Pad {
        #[command(subcommand)]
        cmd: cmd::report::PadCmd,
    },
    /// Check that the ledger conserves value: exit 0 when it holds, 1 naming each discrepancy.
    Audit(cmd::report::AuditArgs),
    /// Sites owners are paid for: register, verify, show, list, change prices, remove.
    Site {
        #[command(subcommand)]
        cmd: cmd::site::SiteCmd,
    },
    /// Site owners' money: statement, funding (advertisers), cash-out into a pad.
    Owner {
        #[command(subcommand)]
        cmd: cmd::site::OwnerCmd,
    },
    /// Shops that activate blank pads at their tills: add one (its till token), show its count and sum.
    Retailer {
        #[command(subcommand)]
        cmd: cmd::retail::RetailerCmd,
    },
    /// Activate pads minted with --inactive (as a till would).
    Activate(cmd::retail::ActivateArgs),
    /// Cancel a lost or stolen pad: its value to a user's account or into a replacement pad.
    Cancel(cmd::retail::CancelArgs),
    /// Users' anonymous accounts.
    Account {
        #[command(subcommand)]
        cmd: cmd::retail::AccountCmd,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PADNET_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // Pads and the ledger are keys and money: out of core dumps, in files
    // only the operator reads.
    for failed in tunnel::process::harden() {
        tracing::warn!("{failed}");
    }
    let result = match cli.cmd {
        Cmd::Init(a) => cmd::init::run(a),
        Cmd::Serve(a) => cmd::serve::run(a),
        Cmd::Mint(a) => cmd::mint::run(a),
        Cmd::Policy { cmd } => cmd::policy::run(cmd),
        Cmd::Ledger(a) => cmd::report::ledger(a),
        Cmd::Pad { cmd } => cmd::report::pad(cmd),
        Cmd::Site { cmd } => cmd::site::site(cmd),
        Cmd::Owner { cmd } => cmd::site::owner(cmd),
        Cmd::Retailer { cmd } => cmd::retail::retailer(cmd),
        Cmd::Activate(a) => cmd::retail::activate(a),
        Cmd::Cancel(a) => cmd::retail::cancel(a),
        Cmd::Account { cmd } => cmd::retail::account(cmd),
        Cmd::Audit(a) => match cmd::report::audit(a) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        match cli.log_format {
            LogFormat::Text => eprintln!("padnet-gateway: {e:#}"),
            // Every stderr line stays JSON for the collector.
            LogFormat::Json => tracing::error!("padnet-gateway: {e:#}"),
        }
        std::process::exit(1);
    }
}
