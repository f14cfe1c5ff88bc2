//! `padnet-gateway policy`: check a policy file, show a pad's policy, and
//! update a policy for every pad bound to it (a running gateway applies it
//! to new requests at once).

use std::path::PathBuf;

use anyhow::Context;
use policy::Policy;
use tunnel::pad::{PadFile, Serial};

use crate::admin::{Admin, AdminOp};
use crate::policies::PolicyStore;
use crate::state_dir::StateDir;

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
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

pub fn run(cmd: PolicyCmd) -> anyhow::Result<()> {
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
            // The gateway (running, or this command on its store) checks
            // the name, stores it and, on a shared ledger, tells every gateway.
            let v = Admin::connect(&state, &state.config.currency)?
                .call(AdminOp::StorePolicy {
                    source: src,
                    update: true,
                })
                .with_context(|| format!("{}", file.display()))?;
            let applies = match (v["applied"].as_bool(), v["shared"].as_bool()) {
                (_, Some(true)) => {
                    " (every gateway of the shared ledger applies it to new requests)"
                }
                (Some(true), _) => " (the running gateway applies it to new requests)",
                _ => "",
            };
            println!("policy {:?} is now {}{applies}", p.name(), p.id_hex());
            Ok(())
        }
    }
}
