//! `padnet-gateway mint`: new pads from the OS CSPRNG, written twice — the
//! gateway's twin into the state directory, the user's copy into `--out` —
//! with a progress bar; or split, one twin per gateway holding its share
//! only, into `--twins-out`. Safe while `serve` runs: a twin appears in
//! `pads/` only after its state file, by rename, and serve picks it up on rescan.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tunnel::mint::{mint, mint_split};
use tunnel::pad::{split, Mode, PadHeader, Serial, Share, HEADER_LEN, PAGE};
use tunnel::store::{AllocatingPad, PadStatus};

use crate::state_dir::StateDir;
use crate::units::format_size;

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
    /// Split each pad into one share per gateway and write the twins here
    /// (none into the state directory): see [`mint_pads`].
    pub twins_out: Option<PathBuf>,
}

/// Most ticket slots a pad may have (each one tunnel opened): 1,048,576,
/// 256 MiB of each copy. gateway.toml's default is 4096.
pub const MAX_TICKET_SLOTS: u32 = 1 << 20;

/// What a mint will write, worked out and checked before anything is written.
#[derive(Debug)]
pub struct MintPlan {
    data_size: u64,
    slots: u32,
    gateways: Vec<String>,
    /// One per gateway when the pads are split (else empty).
    shares: Vec<Share>,
    /// Bytes of each copy of each pad.
    file_len: u64,
}

/// Check a request and work out what it writes: `count` at least 1, ticket
/// slots within [`MAX_TICKET_SLOTS`], sizes that fit in a u64, and room for
/// both copies of every pad (the twin in the state directory's `pads/`, the
/// user's copy in `--out`) on their file systems.
pub fn plan(state: &StateDir, req: &MintRequest) -> anyhow::Result<MintPlan> {
    if req.count == 0 {
        anyhow::bail!("--count 0: nothing to mint; give --count 1 or more");
    }
    let slots = req.ticket_slots.unwrap_or(state.config.ticket_slots);
    check_slots(slots, req.ticket_slots.is_some())?;
    let too_large = || {
        anyhow::anyhow!(
            "--size {} bytes is too large: a pad file cannot hold it",
            req.data_size
        )
    };
    let data_size = req
        .data_size
        .checked_next_multiple_of(PAGE)
        .ok_or_else(too_large)?;
    if data_size < 4 * tunnel::lease::MIN_LEASE {
        anyhow::bail!("--size must be at least 256KiB");
    }
    let gateways = if req.gateways.is_empty() {
        vec![state.config.listen.clone()]
    } else {
        req.gateways.clone()
    };
    let shares = match &req.twins_out {
        None => Vec::new(),
        Some(dir) => {
            if state.config.ledger.is_none() {
                anyhow::bail!(
                    "--twins-out {}: a split pad's value must be seen by every gateway serving it, but this gateway's ledger is its own; give gateway.toml a shared `ledger = \"postgres://…\"` (docs/operations.md)",
                    dir.display()
                );
            }
            if gateways.len() < 2 {
                anyhow::bail!(
                    "--twins-out {}: splitting a pad needs two or more --gateway addresses, one per share",
                    dir.display()
                );
            }
            split(slots, data_size, gateways.len())
                .map_err(|e| anyhow::anyhow!("--twins-out: {e}"))?
        }
    };
    let mut plan = MintPlan {
        data_size,
        slots,
        gateways,
        shares,
        file_len: 0,
    };
    plan.file_len = plan
        .header(Serial([0; 8]))
        .data_offset()
        .checked_add(data_size)
        .ok_or_else(too_large)?;
    check_free_space(state, req, plan.file_len)?;
    Ok(plan)
}

impl MintPlan {
    fn header(&self, serial: Serial) -> PadHeader {
        PadHeader {
            mode: Mode::Otp,
            serial,
            ticket_slots: self.slots,
            data_size: self.data_size,
            created_unix: 0,
            value_micros: 0,
            policy_id: [0; 32],
            gateways: self.gateways.clone(),
            shares: self.shares.clone(),
            holds: None,
        }
    }
}

fn check_slots(slots: u32, from_flag: bool) -> anyhow::Result<()> {
    if (1..=MAX_TICKET_SLOTS).contains(&slots) {
        return Ok(());
    }
    let source = if from_flag {
        format!("--tickets {slots}")
    } else {
        format!("ticket_slots = {slots} in gateway.toml")
    };
    anyhow::bail!(
        "{source}: a pad has 1 to {MAX_TICKET_SLOTS} ticket slots (one per tunnel opened)"
    )
}

/// Refuse, with the figures, a mint whose copies do not fit where they go.
/// Both copies are counted against one file system when they share it.
fn check_free_space(state: &StateDir, req: &MintRequest, file_len: u64) -> anyhow::Result<()> {
    let per_copy = file_len.checked_mul(u64::from(req.count)).ok_or_else(|| {
        anyhow::anyhow!(
            "--count {} of --size {} bytes is too large: more than 16 EiB",
            req.count,
            req.data_size
        )
    })?;
    // A split pad's twins together hold one copy's worth.
    let twins = match &req.twins_out {
        Some(dir) => existing_ancestor(dir)?,
        None => state.pads_dir(),
    };
    let users = existing_ancestor(&req.out)?;
    let same_fs = device(&twins)? == device(&users)?;
    let places: Vec<(&Path, u64, &str)> = if same_fs {
        vec![(
            users.as_path(),
            per_copy.saturating_mul(2),
            "the gateway's twins and the user's copies",
        )]
    } else {
        vec![
            (twins.as_path(), per_copy, "the gateway's twins"),
            (users.as_path(), per_copy, "the user's copies"),
        ]
    };
    for (dir, needed, what) in places {
        let free = free_bytes(dir)?;
        if needed > free {
            anyhow::bail!(
                "not enough free space for --count {} of --size {}: {what} need {} ({needed} bytes) on the file system of {}, which has {} ({free} bytes) free",
                req.count,
                format_size(req.data_size),
                format_size(needed),
                dir.display(),
                format_size(free),
            );
        }
    }
    Ok(())
}

/// `p` if it exists, else its nearest existing ancestor (where `--out`
/// will be created).
fn existing_ancestor(p: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::path::absolute(p).with_context(|| format!("--out {}", p.display()))?;
    abs.ancestors()
        .find(|a| a.exists())
        .map(Path::to_path_buf)
        .with_context(|| format!("--out {}: no existing directory above it", p.display()))
}

fn device(p: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .dev())
}

/// Bytes an unprivileged writer may still use on `dir`'s file system.
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let st = rustix::fs::statvfs(dir)
        .with_context(|| format!("reading the free space of {}", dir.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Mint the pads `plan` (from [`plan`]) worked out for `req`, one at a
/// time: each pad's files, then `credit` with its user copy's path. A pad
/// is whole or absent: if its files or its credit fail, its twin, state and
/// user copy are removed and the error returned (pads before it stand,
/// files and value both). Returns the user copies' paths in order.
pub fn mint_pads(
    state: &StateDir,
    req: &MintRequest,
    plan: &MintPlan,
    mut credit: impl FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&req.out).with_context(|| format!("creating {}", req.out.display()))?;
    if let Some(dir) = &req.twins_out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Key bytes written per pad and copy, as `mint` reports progress. No
    // overflow: `plan` checked that `count` whole files fit in a u64.
    let per_pad = plan.file_len - HEADER_LEN;
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
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            value_micros: req.value_micros,
            policy_id: req.policy_id,
            ..plan.header(Serial::random())
        };
        let name = format!("{}.pad", header.serial);
        let user = req.out.join(&name);
        if user.exists() {
            anyhow::bail!("{}: already exists", user.display());
        }
        let twins: Vec<PathBuf> = match &req.twins_out {
            None => vec![state.pads_dir().join(&name)],
            Some(dir) => (0..plan.shares.len())
                .map(|k| dir.join(format!("{}.{k}.pad", header.serial)))
                .collect(),
        };
        let status = if req.inactive {
            PadStatus::Inactive
        } else {
            PadStatus::Active
        };
        let mut written: Vec<PathBuf> = vec![user.clone()];
        let base = per_pad * u64::from(i);
        let minted = (|| {
            for twin in &twins {
                written.push(tunnel::store::state_path(twin));
                AllocatingPad::create_state(twin, status)
                    .with_context(|| format!("creating the state of {}", twin.display()))?;
                written.push(twin.clone());
            }
            let progress = |done| bar.set_position(base + done);
            match &req.twins_out {
                None => mint(&header, &[twins[0].clone(), user.clone()], progress),
                Some(_) => mint_split(&header, &user, &twins, progress),
            }
            .with_context(|| format!("minting {}", user.display()))?;
            credit(&user).with_context(|| format!("crediting {}", user.display()))
        })();
        if let Err(e) = minted {
            bar.finish_and_clear();
            for f in written {
                match std::fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(re) => eprintln!("removing {}: {re}", f.display()),
                }
            }
            return Err(e);
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
