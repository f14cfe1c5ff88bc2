//! End to end: power loss. The gateway's state directory lives on
//! padnet-lossyfs, which drops everything not fsynced when told the power went;
//! each round kills the gateway (and a mint in flight) mid-work, cuts the power,
//! and checks that every acknowledged mint kept its value, audit passes, no pad
//! holds more than it was issued nor was charged more than it was served, and
//! the agent's tunnel comes back without reusing a pad byte.
//!
//! Needs /dev/fuse and root (the mount syscall); without them it says so and
//! passes. `PADNET_POWER_ROUNDS` sets the number of rounds (default 50, ~3 min).
//! The file system keeps serving the synced state after a cut, so no remount.

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use padnet_tests::*;

const PER_MIB: i64 = 100_000;
const PER_REQUEST: i64 = 100;
const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.10\"\nper_request = \"0.0001\"\n";
const AGENT_VALUE: &str = "1000.00";
const MINT_VALUE: &str = "2.50";

/// The lossy mount; on drop it is unmounted (SIGTERM, then `umount -l` if the
/// daemon did not manage).
struct Mount {
    fs: Proc,
    point: PathBuf,
}

impl Mount {
    fn new(work: &Path) -> Mount {
        let backing = work.join("backing");
        let point = work.join("mnt");
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(&point).unwrap();
        let mut cmd = Command::new(bin("padnet-lossyfs"));
        cmd.arg(&backing).arg(&point);
        let (fs, _) = Proc::start(cmd, "lossyfs", work, "padnet-lossyfs mounted ");
        Mount { fs, point }
    }

    fn signal(&mut self, sig: &str, done: &str) -> String {
        let ok = Command::new("kill")
            .args([sig, &self.fs.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "signalling padnet-lossyfs");
        self.fs.wait_line(done, Duration::from_secs(60))
    }

    /// The power goes: everything not fsynced is gone.
    fn power_cut(&mut self) -> String {
        self.signal("-USR1", "padnet-lossyfs power cut: ")
    }

    /// `sync`: everything so far is durable.
    fn sync(&mut self) {
        self.signal("-USR2", "padnet-lossyfs synced");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.fs.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.fs.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if mounts.contains(&self.point.to_string_lossy().to_string()) {
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// `pad show --json`, or why it failed.
fn try_pad_show(state: &Path, serial: &str) -> Result<serde_json::Value, String> {
    let st = state.to_string_lossy().to_string();
    let o = gateway_cmd(&["pad", "show", "--state", &st, serial, "--json"]);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    serde_json::from_slice(&o.stdout).map_err(|e| format!("pad show output: {e}"))
}

fn serve(state: &Path, listen: &str, tariff: &Path, journal: &Path, work: &Path) -> Gateway {
    let t = tariff.to_string_lossy().to_string();
    let j = journal.to_string_lossy().to_string();
    start_gateway(
        state,
        listen,
        &[
            "--allow-private-upstreams",
            "--tariff",
            &t,
            "--probe-hold-ms",
            "500",
            "--lease-journal",
            &j,
        ],
        work,
    )
}

/// One small priced download through the agent: (status, bytes received).
fn fetch(proxy: std::net::SocketAddr, url: &str) -> (u16, u64) {
    let p = format!("http://{proxy}");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-x", &p, "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, size)
}

/// A mint in flight: the child, so a power cut can kill it too.
fn spawn_mint(state: &Path, out: &Path) -> Child {
    Command::new(bin("padnet-gateway"))
        .args(["mint", "--state"])
        .arg(state)
        .args([
            "--value",
            MINT_VALUE,
            "--size",
            "256KiB",
            "--tickets",
            "16",
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mint")
}

#[test]
fn power_cuts_keep_every_acknowledged_mint_and_the_ledger_conserves_value() {
    let rounds: usize = std::env::var("PADNET_POWER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    if !Path::new("/dev/fuse").exists() || !rustix::process::geteuid().is_root() {
        eprintln!("skipped: power-loss rounds need /dev/fuse and root (to mount padnet-lossyfs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let www = work.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<html>hello</html>\n").unwrap();
    let origin = start_origin(&www, work);
    let tariff = work.join("tariff.toml");
    std::fs::write(&tariff, TARIFF).unwrap();
    let (gj, aj) = (work.join("gateway.journal"), work.join("agent.journal"));
    let user = work.join("user");

    let mut mount = Mount::new(work);
    let state = mount.point.join("state");
    gateway_init(&state);
    // Each cut abandons the tunnel's leases both ways (about 2.6 MiB a round
    // here): 50 rounds used up 128 MiB once, so the pad has twice that.
    let agent_pad = mint_with(&state, AGENT_VALUE, "256MiB", &user, &["--tickets", "512"])
        .pop()
        .expect("a pad");
    let agent_serial = serial_of(&agent_pad);
    mount.sync(); // installed cleanly; from here on only fsync makes things durable

    let mut gateway = serve(&state, "127.0.0.1:0", &tariff, &gj, work);
    let port = gateway.addr.to_string();
    let aj_s = aj.to_string_lossy().to_string();
    let agent = start_agent(&agent_pad, gateway.addr, &["--lease-journal", &aj_s], work);

    // Pads whose mint printed them and that have not (yet) been found lost.
    let mut minted: Vec<String> = Vec::new();
    let mut served: i64 = 0; // value of what the agent received, at the tariff
    let mut failed_rounds = Vec::new();
    let mut lost_total = 0usize;
    let mut mints_total = 0usize;
    let mut last_acked = 0usize;
    let started = Instant::now();
    for round in 0..rounds {
        let mut problems: Vec<String> = Vec::new();
        // Priced requests through the agent while we mint.
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(0i64));
        let load = {
            let (stop, got) = (stop.clone(), got.clone());
            let url = format!(
                "http://{}/__origin/bytes/{}",
                origin.http,
                8_000 + round * 97
            );
            let proxy = agent.addr;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (code, n) = fetch(proxy, &url);
                    if code == 200 && n > 0 {
                        *got.lock().unwrap() += expected_charge(n, PER_MIB, PER_REQUEST);
                    }
                }
            })
        };
        let cut_after = Duration::from_millis(300 + rand::random::<u64>() % 1200);
        let deadline = Instant::now() + cut_after;
        let mut in_flight: Option<Child> = None;
        let mut acked = 0;
        while Instant::now() < deadline {
            let mut child = match in_flight.take() {
                Some(c) => c,
                None => spawn_mint(&state, &user),
            };
            match child.try_wait().expect("mint status") {
                Some(status) => {
                    let mut out = String::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_string(&mut out)
                        .unwrap();
                    if status.success() {
                        for l in out.lines() {
                            minted.push(serial_of(Path::new(l.trim())));
                            acked += 1;
                        }
                        // A few mints a round, spread over it.
                        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 250));
                    } else {
                        let mut err = String::new();
                        child
                            .stderr
                            .take()
                            .unwrap()
                            .read_to_string(&mut err)
                            .unwrap();
                        problems.push(format!("a mint failed before the cut: {}", err.trim()));
                    }
                }
                None => {
                    in_flight = Some(child);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        // The power goes: the gateway and any mint in flight die with it.
        gateway.proc.kill9();
        if let Some(mut c) = in_flight {
            let _ = c.kill();
            let _ = c.wait();
        }
        let lost_changes = mount.power_cut();
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        served += *got.lock().unwrap();
        mints_total += acked;

        // Every acknowledged mint keeps its value: this round's and the last
        // round's each round (what a cut can lose is recent), all of them
        // every tenth round and at the end (each check is one process).
        let mut lost = Vec::new();
        let all = round % 10 == 9 || round + 1 == rounds;
        let recent = minted.len().saturating_sub(acked + last_acked);
        last_acked = acked;
        for s in &minted[if all { 0 } else { recent }..] {
            match try_pad_show(&state, s) {
                Ok(v) if v["balance"] == MINT_VALUE => {}
                Ok(v) => lost.push(format!(
                    "{s}: balance {} (minted {MINT_VALUE})",
                    v["balance"]
                )),
                Err(e) => lost.push(format!("{s}: {e}")),
            }
        }
        if !lost.is_empty() {
            lost_total += lost.len();
            problems.push(format!(
                "{} acknowledged mints lost: {}",
                lost.len(),
                lost.join("; ")
            ));
            let gone: Vec<String> = lost
                .iter()
                .map(|l| l[..l.find(':').unwrap()].to_string())
                .collect();
            minted.retain(|s| !gone.contains(s));
        }
        let (ok, report) = audit(&state);
        if !ok {
            problems.push(format!("audit: {}", report.trim()));
        }
        // The agent's pad: never above its issue, never charged beyond what it was served.
        let mut charged = None;
        match try_pad_show(&state, &agent_serial) {
            Ok(v) => {
                let bal = micros(v["balance"].as_str().unwrap_or("0"));
                let c = micros(AGENT_VALUE) - bal;
                charged = Some(c);
                if bal > micros(AGENT_VALUE) {
                    problems.push(format!("agent pad balance {bal} over its issue"));
                }
                if c > served {
                    problems.push(format!("agent pad charged {c} µ but served {served} µ"));
                }
            }
            Err(e) => problems.push(format!("agent pad: {e}")),
        }

        // Back up: the gateway restarts on its port and the agent's tunnel works.
        let restarted = catch_unwind(AssertUnwindSafe(|| {
            serve(&state, &port, &tariff, &gj, work)
        }));
        match restarted {
            Ok(g) => {
                gateway = g;
                let deadline = Instant::now() + Duration::from_secs(20);
                let url = format!("http://{}/", origin.http);
                loop {
                    let (code, n) = fetch(agent.addr, &url);
                    if code == 200 {
                        served += expected_charge(n, PER_MIB, PER_REQUEST);
                        break;
                    }
                    if Instant::now() > deadline {
                        let pad = try_pad_show(&state, &agent_serial).unwrap_or_default();
                        problems.push(format!(
                            "the tunnel did not come back (last status {code}; agent pad {})",
                            pad["status"]
                        ));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Err(_) => {
                problems.push(format!(
                    "the gateway did not restart: {}",
                    gateway.proc.log_tail()
                ));
                failed_rounds.push((round, problems));
                break;
            }
        }
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| assert_no_reuse(&gj, &aj))) {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            problems.push(format!("pad bytes reused: {msg}"));
        }
        eprintln!(
            "round {round}: cut after {} ms; {acked} mints acknowledged; {lost_changes}; \
             agent pad charged {charged:?} µ of {served} µ served; {}",
            cut_after.as_millis(),
            if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join(" | ")
            }
        );
        if !problems.is_empty() {
            failed_rounds.push((round, problems));
        }
    }
    eprintln!(
        "{} of {rounds} rounds failed; {lost_total} of {mints_total} acknowledged mints lost; {:.0} s",
        failed_rounds.len(),
        started.elapsed().as_secs_f64()
    );
    drop(agent);
    drop(gateway);
    drop(mount);
    assert!(
        failed_rounds.is_empty(),
        "rounds that failed: {failed_rounds:#?}"
    );
}
