//! `padnet-gateway mint`: new pads from the OS CSPRNG, written twice — the
//! gateway's twin into the state directory, the user's copy into `--out` —
//! with a progress bar. Safe while `serve` runs: a twin appears in `pads/`
//! only after its state file, by rename, and serve picks it up on rescan.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tunnel::mint::mint;
use tunnel::pad::{Mode, PadHeader, Serial, PAGE};
use tunnel::store::{AllocatingPad, PadStatus};

use crate::state_dir::StateDir;

pub struct MintRequest {
    pub value_micros: i64,
    pub data_size: u64,
    pub count: u32,
    pub out: PathBuf,
    pub gateways: Vec<String>,
    pub ticket_slots: Option<u32>,
    pub inactive: bool,
    /// The policy the pads are bound to (zero: unrestricted).
    pub policy_id: [u8; 32],
}

/// Mint `count` pads; returns the user copies' paths in order.
pub fn mint_pads(state: &StateDir, req: &MintRequest) -> anyhow::Result<Vec<PathBuf>> {
    let data_size = req.data_size.div_ceil(PAGE) * PAGE;
    if data_size < 4 * tunnel::lease::MIN_LEASE {
        anyhow::bail!("--size must be at least 256KiB");
    }
    std::fs::create_dir_all(&req.out).with_context(|| format!("creating {}", req.out.display()))?;
    let gateways = if req.gateways.is_empty() {
        vec![state.config.listen.clone()]
    } else {
        req.gateways.clone()
    };
    let slots = req.ticket_slots.unwrap_or(state.config.ticket_slots);
    let per_pad = data_size + u64::from(slots) * tunnel::pad::SLOT_SIZE as u64;
    let total = per_pad * u64::from(req.count);
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} minting [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut paths = Vec::new();
    for i in 0..req.count {
        let header = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: slots,
            data_size,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            value_micros: req.value_micros,
            policy_id: req.policy_id,
            gateways: gateways.clone(),
        };
        let name = format!("{}.pad", header.serial);
        let twin = state.pads_dir().join(&name);
        let user = req.out.join(&name);
        if user.exists() {
            anyhow::bail!("{}: already exists", user.display());
        }
        let status = if req.inactive {
            PadStatus::Inactive
        } else {
            PadStatus::Active
        };
        AllocatingPad::create_state(&twin, status)
            .with_context(|| format!("creating the state of {}", twin.display()))?;
        let base = per_pad * u64::from(i);
        if let Err(e) = mint(&header, &[twin.clone(), user.clone()], |done| {
            bar.set_position(base + done)
        }) {
            let _ = std::fs::remove_file(tunnel::store::state_path(&twin));
            return Err(e).with_context(|| format!("minting {}", user.display()));
        }
        paths.push(user);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "minted {} pad(s), {} MiB of key material, {:.1} MB/s (two copies each)",
        req.count,
        total >> 20,
        total as f64 / secs.max(1e-9) / 1e6
    );
    Ok(paths)
}
