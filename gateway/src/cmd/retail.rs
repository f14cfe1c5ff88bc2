//! `padnet-gateway retailer ...`, `activate`, `cancel` and `account show`:
//! the operator's side of pads as money (shops and their till tokens, blanks
//! activated by hand, lost or stolen pads cancelled into an account or a
//! replacement, accounts shown). Through the running gateway or directly.

use std::path::PathBuf;

use crate::admin::{Admin, AdminOp};
use crate::state_dir::StateDir;
use crate::units::parse_amount;

#[derive(clap::Subcommand)]
pub enum RetailerCmd {
    /// Make a retailer: prints its till token once (kept only hashed).
    Add {
        #[arg(long)]
        state: PathBuf,
        /// 1 to 32 lower-case letters, digits and dashes ("corner-shop").
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// How many pads the retailer activated, and their sum.
    Show {
        #[arg(long)]
        state: PathBuf,
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct ActivateArgs {
    #[arg(long)]
    pub state: PathBuf,
    /// Serials of pads minted with --inactive.
    #[arg(required = true)]
    pub serials: Vec<String>,
    /// The value to activate with (default: the value each was minted with).
    #[arg(long, value_name = "AMOUNT")]
    pub value: Option<String>,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    #[arg(long)]
    pub state: PathBuf,
    pub serial: String,
    /// Move the pad's value into this user's account.
    #[arg(long, value_name = "ACCOUNT", conflicts_with = "replace")]
    pub to_account: Option<String>,
    /// Move the pad's value into a new pad minted in --out (prints its path).
    #[arg(long, requires = "out")]
    pub replace: bool,
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Key material of the replacement pad.
    #[arg(long, default_value = crate::accounts::DEFAULT_REPLACEMENT_SIZE)]
    pub size: String,
}

#[derive(clap::Subcommand)]
pub enum AccountCmd {
    /// A user's account: its balance and registered pads.
    Show {
        #[arg(long)]
        state: PathBuf,
        account: String,
        #[arg(long)]
        json: bool,
    },
}

/// Cancel a pad (its hellos refused from now on) into an account or a replacement pad.
pub fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    if a.to_account.is_none() && !a.replace {
        anyhow::bail!("name where the value goes: --to-account ACCOUNT, or --replace --out DIR");
    }
    let replace_out = match (a.replace, &a.out) {
        (true, Some(out)) => {
            std::fs::create_dir_all(out)
                .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
            Some(
                std::fs::canonicalize(out)
                    .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?,
            )
        }
        _ => None,
    };
    let v = admin(&a.state)?.call(AdminOp::Cancel {
        serial: a.serial,
        to_account: a.to_account,
        replace_out,
        size: Some(a.size),
    })?;
    match v["replacement"].as_str() {
        Some(path) => {
            eprintln!(
                "cancelled {}; {} moved into the replacement",
                v["serial"].as_str().unwrap_or(""),
                v["moved"].as_str().unwrap_or("")
            );
            println!("{path}");
        }
        None => println!(
            "cancelled {}; {} moved to {}",
            v["serial"].as_str().unwrap_or(""),
            v["moved"].as_str().unwrap_or(""),
            v["to"].as_str().unwrap_or("")
        ),
    }
    Ok(())
}

pub fn account(cmd: AccountCmd) -> anyhow::Result<()> {
    let AccountCmd::Show {
        state,
        account,
        json,
    } = cmd;
    let v = admin(&state)?.call(AdminOp::AccountShow { account })?;
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

fn admin(state: &std::path::Path) -> anyhow::Result<Admin> {
    let state = StateDir::open(state)?;
    Admin::connect(&state, &state.config.currency)
}

pub fn retailer(cmd: RetailerCmd) -> anyhow::Result<()> {
    match cmd {
        RetailerCmd::Add { state, name, json } => {
            let v = admin(&state)?.call(AdminOp::RetailerAdd { name })?;
            if json {
                println!("{v}");
            } else {
                println!("retailer {}", v["retailer"].as_str().unwrap_or(""));
                println!(
                    "till token (shown once): {}",
                    v["token"].as_str().unwrap_or("")
                );
            }
        }
        RetailerCmd::Show { state, name, json } => {
            let v = admin(&state)?.call(AdminOp::RetailerShow { name })?;
            if json {
                println!("{v}");
            } else {
                println!(
                    "retailer {}: {} pad(s) activated, {} {}",
                    v["retailer"].as_str().unwrap_or(""),
                    v["activated"],
                    v["sum"].as_str().unwrap_or(""),
                    v["currency"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Activate each serial in turn; every one is tried, and the command fails
/// (naming each refusal) if any was refused.
pub fn activate(a: ActivateArgs) -> anyhow::Result<()> {
    let value = match &a.value {
        Some(v) => {
            let v = parse_amount(v).map_err(|e| anyhow::anyhow!("--value: {e}"))?;
            if v <= 0 {
                anyhow::bail!("--value must be above zero");
            }
            Some(v)
        }
        None => None,
    };
    let admin = admin(&a.state)?;
    let mut refused = 0;
    for serial in a.serials {
        match admin.call(AdminOp::Activate {
            serial: serial.clone(),
            value,
        }) {
            Ok(v) => println!(
                "{} activated: {} {}",
                v["serial"].as_str().unwrap_or(&serial),
                v["balance"].as_str().unwrap_or(""),
                v["currency"].as_str().unwrap_or("")
            ),
            Err(e) => {
                eprintln!("{serial}: {e:#}");
                refused += 1;
            }
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} pad(s) not activated");
    }
    Ok(())
}
