//! `padnet-gateway mint`: mint pads (twin into the state directory, the
//! user's copy into --out), bind them to a policy, credit their value.

use std::path::PathBuf;

use anyhow::Context;
use policy::Policy;

use crate::admin::{Admin, AdminOp};
use crate::mint::{mint_pads, plan, MintRequest};
use crate::state_dir::StateDir;
use crate::units::{parse_amount, parse_size};

#[derive(clap::Args)]
pub struct MintArgs {
    #[arg(long)]
    pub state: PathBuf,
    /// Value of each pad, as a decimal ("5.00").
    #[arg(long)]
    pub value: String,
    /// Key material per pad ("64MiB", "1GiB").
    #[arg(long)]
    pub size: String,
    /// Number of pads (at least 1).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Directory for the user's copies.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Gateway addresses written into the pads, tried in order (default: the init address).
    #[arg(long = "gateway", value_name = "ADDR")]
    pub gateways: Vec<String>,
    /// Ticket slots per pad (tunnels it can open; 1 to 1048576; default from gateway.toml).
    #[arg(long)]
    pub tickets: Option<u32>,
    /// Mint inactive: the pad serves only after `activate`.
    #[arg(long)]
    pub inactive: bool,
    /// Bind the pads to an employer policy (TOML); checked before anything is minted.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Split each pad into one share per --gateway (two or more, on a shared
    /// ledger) and write gateway K's twin, holding only its share, to
    /// DIR/SERIAL.K.pad (with its .state); install each on its gateway with
    /// `padnet-gateway pad install`.
    #[arg(long, value_name = "DIR")]
    pub twins_out: Option<PathBuf>,
    /// Also write the shop's inventory (serial, value, status) to this CSV file, one row per pad as it is minted.
    #[arg(long, value_name = "FILE.csv")]
    pub manifest: Option<PathBuf>,
}

pub fn run(a: MintArgs) -> anyhow::Result<()> {
    let MintArgs {
        state,
        value,
        size,
        count,
        out,
        gateways,
        tickets,
        inactive,
        policy,
        twins_out,
        manifest,
    } = a;
    let state = StateDir::open(&state)?;
    // Everything is checked before anything is written: the policy file,
    // the amounts and sizes, the free space.
    let policy = match &policy {
        Some(path) => {
            // Read once: the id is the hash of exactly what is stored.
            let src = std::fs::read_to_string(path)
                .with_context(|| format!("--policy {}", path.display()))?;
            let p = Policy::parse(&src, &path.display().to_string())
                .map_err(|e| anyhow::anyhow!("--policy {e}"))?;
            Some((src, p))
        }
        None => None,
    };
    let req = MintRequest {
        value_micros: parse_amount(&value).map_err(|e| anyhow::anyhow!("--value: {e}"))?,
        data_size: parse_size(&size).map_err(|e| anyhow::anyhow!("--size: {e}"))?,
        count,
        out,
        gateways,
        ticket_slots: tickets,
        inactive,
        policy_id: policy.as_ref().map_or([0; 32], |(_, p)| p.id()),
        twins_out,
    };
    if req.value_micros < 0 {
        anyhow::bail!("--value must not be negative");
    }
    let plan = plan(&state, &req)?;
    let admin = Admin::connect(&state, &state.config.currency)?;
    if let Some((src, _)) = &policy {
        // Every gateway (a running one, and on a shared ledger all of them)
        // learns the policy before any pad bound to it exists.
        admin.call(AdminOp::StorePolicy {
            source: src.clone(),
            update: false,
        })?;
    }
    let mut manifest = match &manifest {
        Some(path) => Some(Manifest::create(path)?),
        None => None,
    };
    // Each pad is credited (or, minted blank, recorded as waiting for a
    // till) as soon as its files are written, and printed once it is: what
    // is printed has its value; what failed is gone.
    mint_pads(&state, &req, &plan, |p| {
        let serial = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let op = if req.inactive {
            AdminOp::IssueInactive {
                serial: serial.clone(),
                value: req.value_micros,
            }
        } else {
            AdminOp::Issue {
                serial: serial.clone(),
                value: req.value_micros,
            }
        };
        admin.call(op)?;
        if let Some(m) = &mut manifest {
            m.row(&serial, req.value_micros, req.inactive)?;
        }
        println!("{}", p.display());
        Ok(())
    })?;
    Ok(())
}

/// The shop's inventory list beside the pads: `serial,value,status`, one
/// row per pad once it is minted and recorded, synced at each row (a row
/// names a pad that exists).
struct Manifest {
    file: std::fs::File,
    path: PathBuf,
}

impl Manifest {
    fn create(path: &std::path::Path) -> anyhow::Result<Manifest> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| {
                format!(
                    "--manifest {}: cannot create it (it must not exist yet)",
                    path.display()
                )
            })?;
        writeln!(file, "serial,value,status")
            .with_context(|| format!("--manifest {}", path.display()))?;
        Ok(Manifest {
            file,
            path: path.to_path_buf(),
        })
    }

    fn row(&mut self, serial: &str, value: i64, inactive: bool) -> anyhow::Result<()> {
        use std::io::Write;
        let status = if inactive { "inactive" } else { "active" };
        writeln!(
            self.file,
            "{serial},{},{status}",
            crate::units::format_amount(value)
        )
        .and_then(|()| self.file.sync_data())
        .with_context(|| format!("--manifest {}", self.path.display()))
    }
}
