//! `padnet-gateway pad install`: take a split pad's twin (one share, as
//! `mint --twins-out` wrote it) into this gateway's `pads/`, its state file
//! first and the twin last, each whole or absent, and the source removed,
//! so the share's key material ends on this one gateway only.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tunnel::pad::{sync_parent, PadFile};
use tunnel::store::state_path;

use crate::state_dir::StateDir;

/// Install each twin in `files` into `state`'s `pads/`; prints one line each.
pub fn run(state: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let state = StateDir::open(state)?;
    if state.config.ledger.is_none() {
        anyhow::bail!(
            "{}: this gateway's ledger is its own; a split pad's twins go to gateways sharing one ledger (`ledger = \"postgres://…\"` in gateway.toml)",
            StateDir::config_path(&state.root).display()
        );
    }
    if files.is_empty() {
        anyhow::bail!(
            "name the twin files to install (DIR/SERIAL.K.pad, as mint --twins-out wrote them)"
        );
    }
    for file in files {
        install_one(&state, file)?;
    }
    Ok(())
}

fn install_one(state: &StateDir, file: &Path) -> anyhow::Result<()> {
    let (serial, share, address) = {
        let pad = PadFile::open(file)?;
        let h = pad.header();
        let Some(k) = h.holds else {
            anyhow::bail!(
                "{}: not a twin of a split pad (it holds every share: a user's copy or a whole twin)",
                file.display()
            );
        };
        let address = h.gateways.get(usize::from(k)).cloned().unwrap_or_default();
        (h.serial, k, address)
    };
    let source_state = state_path(file);
    if !source_state.exists() {
        anyhow::bail!(
            "{}: missing; install the twin with the state file mint wrote beside it",
            source_state.display()
        );
    }
    let pads = state.pads_dir();
    let dest = pads.join(format!("{serial}.pad"));
    let dest_state = state_path(&dest);
    for d in [&dest, &dest_state] {
        if d.exists() {
            anyhow::bail!(
                "{}: already exists (pad {serial} is installed here)",
                d.display()
            );
        }
    }
    // The state first: serve opens a twin only once its state is there.
    move_file(&source_state, &dest_state)?;
    if let Err(e) = move_file(file, &dest) {
        let _ = std::fs::rename(&dest_state, &source_state);
        return Err(e);
    }
    println!(
        "installed share {} of pad {serial} (gateway {address}) as {}",
        share + 1,
        dest.display()
    );
    Ok(())
}

/// Move `from` to `to` (which must not exist): a rename on one file system,
/// else a copy to a temporary name, synced, renamed into place, and only
/// then the source removed.
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let ctx = || format!("moving {} to {}", from.display(), to.display());
    match std::fs::rename(from, to) {
        Ok(()) => return sync_parent(to).with_context(ctx),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {}
        Err(e) => return Err(e).with_context(ctx),
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let copied = (|| {
        let mut src = std::fs::File::open(from)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        std::fs::rename(&tmp, to)?;
        sync_parent(to)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(ctx);
    }
    std::fs::remove_file(from)
        .with_context(|| format!("removing {} after copying it", from.display()))
}
