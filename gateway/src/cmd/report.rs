//! The reporting commands: `ledger` (balances by account kind), `pad show`
//! (one pad's value, key material and status) and `audit` (does the ledger
//! conserve value). Each asks the running gateway, or the store directly.

use std::path::PathBuf;

use crate::admin::{Admin, AdminOp};
use crate::ledger::AuditReport;
use crate::state_dir::StateDir;
use crate::units::format_amount;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub cmd: Option<LedgerCmd>,
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum LedgerCmd {
    /// Every record the ledger and site registry keep, as JSON (for audits):
    /// accounts, reservations, pads' day counters, owners, sites, statements.
    Export,
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum PadCmd {
    /// Value left, key material left and status of one pad.
    Show {
        #[arg(long)]
        state: PathBuf,
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Install twins of split pads (one share each, from `mint --twins-out`)
    /// into this gateway: moved, with their state files, into its pads/.
    Install {
        #[arg(long)]
        state: PathBuf,
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
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

/// `ledger`.
pub fn ledger(a: LedgerArgs) -> anyhow::Result<()> {
    let LedgerArgs { cmd, state, json } = a;
    let Some(state) = state else {
        anyhow::bail!("ledger: --state DIR is required");
    };
    let state = StateDir::open(&state)?;
    let admin = Admin::connect(&state, &state.config.currency)?;
    if let Some(LedgerCmd::Export) = cmd {
        let v = admin.call(AdminOp::LedgerExport)?;
        println!(
            "{}",
            if json {
                v.to_string()
            } else {
                serde_json::to_string_pretty(&v)?
            }
        );
        return Ok(());
    }
    let v = admin.call(AdminOp::Ledger)?;
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
        println!(
            "owners     {:>16} {c}  ({} accounts)",
            s(v, "/owners/balance"),
            s(v, "/owners/accounts")
        );
        println!(
            "accounts   {:>16} {c}  ({} users' accounts)",
            s(v, "/users/balance"),
            s(v, "/users/accounts")
        );
        println!("revenue    {:>16} {c}", s(v, "/revenue"));
        println!("issuance   {:>16} {c}", s(v, "/issuance"));
        println!("issued     {:>16} {c}", s(v, "/issued"));
        println!("redeemed   {:>16} {c}", s(v, "/redeemed"));
    });
    Ok(())
}

/// `pad show`.
pub fn pad(cmd: PadCmd) -> anyhow::Result<()> {
    let (state, serial, json) = match cmd {
        PadCmd::Show {
            state,
            serial,
            json,
        } => (state, serial, json),
        PadCmd::Install { state, files } => return crate::cmd::install::run(&state, &files),
    };
    let state = StateDir::open(&state)?;
    let v = Admin::connect(&state, &state.config.currency)?.call(AdminOp::PadShow { serial })?;
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

/// `audit`: `Ok(false)` when the ledger does not conserve value (each
/// discrepancy printed).
pub fn audit(a: AuditArgs) -> anyhow::Result<bool> {
    let AuditArgs { state, json } = a;
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
        Ok(true)
    } else {
        for p in &report.problems {
            eprintln!("audit: DISCREPANCY: {p}");
        }
        Ok(false)
    }
}
