//! `padnet-gateway retailer ...` and `activate`: the operator's side of pads
//! sold at a till (make a shop and its till token, see its count and sum;
//! activate blank pads by hand). Through the running gateway or, when none
//! runs, directly.

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
