//! Whether the pads are in the page cache: residency of the agent's pad and
//! the gateway's twin (util-linux `fincore`), and dropping them from the
//! cache (`posix_fadvise(POSIX_FADV_DONTNEED)`) for a cold-pad run.

use std::path::Path;

/// Resident and total bytes of `path`, from `fincore`; `Err` says why not.
pub fn residency(path: &Path) -> Result<(u64, u64), String> {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES,SIZE"])
        .arg(path)
        .output()
        .map_err(|e| format!("fincore (util-linux) could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fincore {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    match f.as_slice() {
        [res, size] => Ok((*res, *size)),
        _ => Err(format!("fincore printed {text:?}")),
    }
}

/// "agent pad 1234 MiB resident; gateway twin 1230 MiB, of 1300 MiB of key
/// material left (95 %, 95 %)" for `pads`. Used key material is punched out
/// of the files, so what is resident is (nearly all) unused key material.
pub fn describe(pads: &[(&str, &Path)], key_left: u64) -> String {
    let mut parts = Vec::new();
    let mut shares = Vec::new();
    for (name, p) in pads {
        match residency(p) {
            Ok((res, _)) => {
                parts.push(format!("{name} {} MiB resident", res >> 20));
                shares.push(format!(
                    "{:.0} %",
                    res as f64 * 100.0 / key_left.max(1) as f64
                ));
            }
            Err(e) => parts.push(format!("{name}: residency unknown ({e})")),
        }
    }
    format!(
        "{}, of {} MiB of key material left ({})",
        parts.join("; "),
        key_left >> 20,
        shares.join(", ")
    )
}

/// Read the last `key_left` bytes of `path` (the unused key material: leases
/// are handed out from the front) through the page cache, so that they are
/// resident; the used, punched-out part is not touched.
pub fn warm_unused(path: &Path, key_left: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut off = size.saturating_sub(key_left);
    let mut buf = vec![0u8; 1 << 20];
    while off < size {
        let n = f.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    Ok(())
}

/// Write back and drop `path`'s pages from the page cache. Dirty pages
/// cannot be dropped, so the file's data is synced first.
pub fn drop_from_cache(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    f.sync_data()?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}
