//! End-to-end: `padnet-gateway mint` refuses what it cannot do (a size past
//! 64 bits, more than the disk holds, an absurd number of ticket slots,
//! nothing to mint) naming the flag and the figures, before it writes
//! anything: no pad file, no state file, no ledger entry.

use std::path::{Path, PathBuf};
use std::process::Command;

use padnet_tests::*;
use rustix::process::Resource;

/// Every file under `dir` with its length, sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(e.path());
            } else {
                files.push((e.path(), meta.len()));
            }
        }
    }
    files.sort();
    files
}

fn ledger(state: &Path) -> String {
    let st = state.to_string_lossy().to_string();
    let o = gateway_cmd(&["ledger", "--state", &st, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Run `mint` with `args` on a state directory that already has one pad;
/// check it fails cleanly and leaves everything as it was; return stderr.
fn refused_mint(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    gateway_init(&state);
    mint(&state, "1.00", "1MiB", &dir.path().join("earlier"));
    let ledger_before = ledger(&state);
    let state_before = tree(&state);
    let out = dir.path().join("out");
    let mut cmd = Command::new(bin("padnet-gateway"));
    cmd.args(["mint", "--state"])
        .arg(&state)
        .args(["--value", "1.00", "--out"])
        .arg(&out)
        .args(args);
    // Should the checks ever go, a mint stops at 64 MiB a file (SIGXFSZ)
    // instead of filling the disk.
    with_rlimit(&mut cmd, Resource::Fsize, 64 << 20);
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "mint {args:?} should fail with exit code 1, ended {:?}: {err}",
        o.status
    );
    assert!(o.stdout.is_empty(), "mint {args:?} printed a pad");
    assert!(
        !out.exists() || tree(&out).is_empty(),
        "mint {args:?} left {:?}",
        tree(&out)
    );
    assert_eq!(
        tree(&state),
        state_before,
        "mint {args:?} changed the state directory"
    );
    assert_eq!(ledger(&state), ledger_before, "mint {args:?} moved value");
    err
}

/// The byte counts a message gives, in the order given ("(123 bytes)").
fn byte_figures(msg: &str) -> Vec<u64> {
    msg.split('(')
        .filter_map(|s| s.split_once(" bytes)"))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

#[test]
fn a_size_past_64_bits_is_too_large_not_too_small() {
    let err = refused_mint(&["--size", "18446744073709551615"]);
    assert!(err.contains("--size"), "{err}");
    assert!(err.contains("too large"), "{err}");
    assert!(err.contains("18446744073709551615"), "{err}");
    assert!(!err.contains("at least"), "{err}");
}

#[test]
fn more_than_the_disk_holds_is_refused_with_what_is_needed_and_what_is_free() {
    // 1 PiB in one pad; 1 TiB in each of 4096 pads. Two copies of each.
    for (args, size) in [
        (&["--size", "1024TiB"][..], 1u64 << 50),
        (&["--size", "1TiB", "--count", "4096"][..], 4096 << 40),
    ] {
        let err = refused_mint(args);
        assert!(err.contains("--size"), "{err}");
        assert!(err.contains("--count"), "{err}");
        assert!(err.contains("free"), "{err}");
        let figures = byte_figures(&err);
        let [needed, free] = figures[..] else {
            panic!("expected the bytes needed and free: {err}");
        };
        assert!(needed >= 2 * size, "needs {needed} for {args:?}: {err}");
        assert!(free < needed, "{err}");
    }
}

#[test]
fn ticket_slots_are_capped() {
    let err = refused_mint(&["--size", "1MiB", "--tickets", "4294967295"]);
    assert!(err.contains("--tickets 4294967295"), "{err}");
    assert!(err.contains("1048576"), "the cap is named: {err}");
    let err = refused_mint(&["--size", "1MiB", "--tickets", "0"]);
    assert!(err.contains("--tickets 0"), "{err}");
}

#[test]
fn a_count_of_zero_is_refused() {
    let err = refused_mint(&["--size", "1MiB", "--count", "0"]);
    assert!(err.contains("--count 0"), "{err}");
}

/// A pad whose credit fails (here the ledger's issued total would pass
/// what an i64 holds) leaves no file behind: not the user's copy, not the
/// twin, not its state. The pad minted before it keeps its files and value.
#[test]
fn a_pad_whose_credit_fails_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    gateway_init(&state);
    let first = mint(
        &state,
        "9223372036854.775807",
        "1MiB",
        &dir.path().join("earlier"),
    );
    let ledger_before = ledger(&state);
    let state_before = tree(&state);
    let out = dir.path().join("out");
    let st = state.to_string_lossy().to_string();
    let o = gateway_cmd(&[
        "mint",
        "--state",
        &st,
        "--value",
        "1.00",
        "--size",
        "1MiB",
        "--count",
        "2",
        "--out",
        &out.to_string_lossy(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "the mint should fail: {err}");
    assert!(
        err.contains("crediting") && err.contains("overflow"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "a pad with no value was printed");
    assert!(tree(&out).is_empty(), "left {:?}", tree(&out));
    assert_eq!(tree(&state), state_before, "the state directory changed");
    assert_eq!(ledger(&state), ledger_before, "value moved");
    assert!(first.exists(), "the earlier pad was removed");
}
