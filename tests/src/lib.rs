//! Helpers for padnet's end-to-end tests and benchmark: start the real
//! binaries (origin, gateway, agent) as processes on 127.0.0.1 port 0, wait for
//! their ready lines, and kill them on drop. No fixed ports, no sleeps to wait.

pub mod cluster;
pub mod postgres;
pub mod sites;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where the binaries under test are (`PADNET_BIN_DIR`, default target/release).
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("PADNET_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make test` (it builds the release binaries first)",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) when dropped; its stderr goes to a log file.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Start `cmd`, wait for a stdout line starting with `ready`, return the rest of it.
    pub fn start(mut cmd: Command, name: &str, log_dir: &Path, ready: &str) -> (Proc, String) {
        let log = log_dir.join(format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Proc {
            child,
            name: name.to_string(),
            log,
            lines: rx,
        };
        let rest = p.wait_line(ready, Duration::from_secs(60));
        (p, rest)
    }

    /// Wait for a stdout line starting with `prefix`; return what follows it.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!(
                    "{} did not print {prefix:?} in time; its log:\n{}",
                    self.name,
                    self.log_tail()
                ),
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful stop) and reap.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("not an address: {s:?}: {e}"))
}

/// The test origin: HTTP and HTTPS on loopback, serving `root`.
pub struct Origin {
    pub proc: Proc,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub ca: PathBuf,
}

pub fn start_origin(root: &Path, work: &Path) -> Origin {
    let mut cmd = Command::new(bin("padnet-origin"));
    cmd.arg("--root")
        .arg(root)
        .args([
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--cert-dir",
        ])
        .arg(work);
    let (mut proc, http) = Proc::start(cmd, "origin", work, "padnet-origin http listening on ");
    let https = proc.wait_line("padnet-origin https listening on ", Duration::from_secs(30));
    Origin {
        proc,
        http: addr(&http),
        https: addr(&https),
        ca: work.join("ca.pem"),
    }
}

/// Where most end-to-end tests start: a temporary directory, an origin
/// serving `www/index.html` from it, and an initialised (not yet serving)
/// gateway state directory.
pub struct Stage {
    pub dir: tempfile::TempDir,
    pub origin: Origin,
    pub state: PathBuf,
}

/// Set up a [`Stage`] whose origin's `index.html` is `page`.
pub fn stage(page: &str) -> Stage {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).expect("www dir");
    std::fs::write(root.join("index.html"), page).expect("index.html");
    let origin = start_origin(&root, dir.path());
    let state = dir.path().join("state");
    gateway_init(&state);
    Stage { dir, origin, state }
}

/// `padnet-gateway init` a state directory.
pub fn gateway_init(state: &Path) {
    let out = Command::new(bin("padnet-gateway"))
        .args(["init", "--state"])
        .arg(state)
        .args(["--listen", "127.0.0.1:7443"])
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mint one pad; returns the user's copy.
pub fn mint(state: &Path, value: &str, size: &str, out_dir: &Path) -> PathBuf {
    let out = Command::new(bin("padnet-gateway"))
        .args(["mint", "--state"])
        .arg(state)
        .args(["--value", value, "--size", size, "--out"])
        .arg(out_dir)
        .output()
        .expect("mint");
    assert!(
        out.status.success(),
        "mint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("a pad path")
            .trim(),
    )
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
}

/// Start `serve` on `listen` (e.g. "127.0.0.1:0") with extra arguments.
pub fn start_gateway(state: &Path, listen: &str, extra: &[&str], work: &Path) -> Gateway {
    let mut cmd = Command::new(bin("padnet-gateway"));
    cmd.args(["serve", "--state"])
        .arg(state)
        .args(["--listen", listen])
        .args(extra);
    let (proc, a) = Proc::start(cmd, "gateway", work, "padnet-gateway listening on ");
    Gateway {
        proc,
        addr: addr(&a),
    }
}

pub struct Agent {
    pub proc: Proc,
    pub addr: SocketAddr,
}

pub fn start_agent(pad: &Path, gateway: SocketAddr, extra: &[&str], work: &Path) -> Agent {
    start_agent_cmd(agent_command(pad, gateway, extra), work)
}

/// The command [`start_agent`] runs, to adjust before starting it.
pub fn agent_command(pad: &Path, gateway: SocketAddr, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin("padnet-agent"));
    cmd.arg("--pad")
        .arg(pad)
        .args(["--listen", "127.0.0.1:0", "--gateway"])
        .arg(gateway.to_string())
        .args(extra);
    cmd
}

/// Start an agent command (from [`agent_command`]) and wait until it listens.
pub fn start_agent_cmd(cmd: Command, work: &Path) -> Agent {
    let (proc, a) = Proc::start(cmd, "agent", work, "padnet-agent listening on ");
    Agent {
        proc,
        addr: addr(&a),
    }
}

/// Run `cmd` with its soft and hard `resource` limits set to `value`.
pub fn with_rlimit(cmd: &mut Command, resource: rustix::process::Resource, value: u64) {
    use std::os::unix::process::CommandExt;
    let limit = rustix::process::Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    // SAFETY: the closure runs in the child between fork and exec; it makes
    // one system call (setrlimit, async-signal-safe), allocates nothing and
    // takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setrlimit(resource, limit).map_err(std::io::Error::from)
        });
    }
}

/// CPU time (user + system) a process has used so far, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start after ")".
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 here.
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    let hz = rustix::param::clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / hz)
}

/// Run curl with `args`.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .expect("curl is installed (make test installs it)")
}

/// curl through `proxy`, returning (status, body).
pub fn get_via(proxy: SocketAddr, url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let p = format!("http://{proxy}");
    let mut args = vec!["-x", &p, "-w", "\n%{http_code}", url];
    args.extend_from_slice(extra);
    let out = curl(&args);
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[nl..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(nl);
    (code, body)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).expect("open");
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

/// Write `len` random bytes to `path`.
pub fn random_file(path: &Path, len: usize) {
    use rand::RngCore;
    let mut buf = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut buf);
    std::fs::write(path, &buf).expect("write random file");
}

/// A journal's leases as (side, offset, len).
pub type JournalLeases = Vec<(String, u64, u64)>;
/// A journal's ticket slot uses as (side, slot).
pub type JournalSlots = Vec<(String, u64)>;

/// Parse a lease journal into its leases and ticket slot uses.
pub fn read_journal(p: &Path) -> (JournalLeases, JournalSlots) {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let mut leases = Vec::new();
    let mut slots = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [side, "lease", off, len] => leases.push((
                side.to_string(),
                off.parse().expect("offset"),
                len.parse().expect("len"),
            )),
            [side, "slot", n] => slots.push((side.to_string(), n.parse().expect("slot"))),
            _ => panic!("bad journal line {line:?}"),
        }
    }
    (leases, slots)
}

/// Check that no pad byte was used twice: per side, no two leases overlap
/// and no ticket slot repeats; and the agent used only leases the gateway made.
pub fn assert_no_reuse(gateway_journal: &Path, agent_journal: &Path) -> (usize, usize) {
    let (gl, gs) = read_journal(gateway_journal);
    let (al, as_) = read_journal(agent_journal);
    for (name, leases) in [("gateway", &gl), ("agent", &al)] {
        let mut v: Vec<(u64, u64)> = leases.iter().map(|(_, o, l)| (*o, *l)).collect();
        v.sort();
        for w in v.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{name} used overlapping leases {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    for (name, slots) in [("gateway", &gs), ("agent", &as_)] {
        let mut s: Vec<u64> = slots.iter().map(|x| x.1).collect();
        s.sort();
        let n = s.len();
        s.dedup();
        assert_eq!(s.len(), n, "{name} used a ticket slot twice");
    }
    let made: std::collections::HashSet<(u64, u64)> = gl.iter().map(|(_, o, l)| (*o, *l)).collect();
    for (_, o, l) in &al {
        assert!(
            made.contains(&(*o, *l)),
            "agent used lease ({o}, {l}) the gateway never allocated"
        );
    }
    (gl.len(), al.len())
}

/// True if `needle` occurs in any file under `dir`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(hit) = dir_contains(&p, needle) {
                return Some(hit);
            }
        } else if let Ok(data) = std::fs::read(&p) {
            if data.windows(needle.len()).any(|w| w == needle) {
                return Some(p);
            }
        }
    }
    None
}

/// Run `padnet-gateway` with `args`.
pub fn gateway_cmd(args: &[&str]) -> Output {
    Command::new(bin("padnet-gateway"))
        .args(args)
        .output()
        .expect("padnet-gateway runs")
}

/// Mint pads with extra arguments; returns the user copies.
pub fn mint_with(
    state: &Path,
    value: &str,
    size: &str,
    out_dir: &Path,
    extra: &[&str],
) -> Vec<PathBuf> {
    let st = state.to_string_lossy().to_string();
    let out = out_dir.to_string_lossy().to_string();
    let mut args = vec![
        "mint", "--state", &st, "--value", value, "--size", size, "--out", &out,
    ];
    args.extend_from_slice(extra);
    let o = gateway_cmd(&args);
    assert!(
        o.status.success(),
        "mint failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .collect()
}

/// A pad's serial, from its file name.
pub fn serial_of(pad: &Path) -> String {
    pad.file_stem()
        .and_then(|s| s.to_str())
        .expect("a pad file name")
        .to_string()
}

/// `padnet-gateway pad show --json`.
pub fn pad_show(state: &Path, serial: &str) -> serde_json::Value {
    let st = state.to_string_lossy().to_string();
    let o = gateway_cmd(&["pad", "show", "--state", &st, serial, "--json"]);
    assert!(
        o.status.success(),
        "pad show failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("pad show prints JSON")
}

/// Parse a decimal amount ("0.4321") into micro-units (test-side, independent of the gateway).
pub fn micros(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    let f = format!("{f:0<6}");
    w.parse::<i64>().expect("whole part") * 1_000_000 + f[..6].parse::<i64>().expect("fraction")
}

/// The charge for one request that carried `bytes`, at `per_mib` and
/// `per_request` micro-units: per_request + ceil(bytes × per_mib / MiB).
pub fn expected_charge(bytes: u64, per_mib: i64, per_request: i64) -> i64 {
    per_request + ((bytes as i128 * per_mib as i128 + (1 << 20) - 1) >> 20) as i64
}

/// `padnet-gateway audit`: (exit success, stdout+stderr).
pub fn audit(state: &Path) -> (bool, String) {
    let st = state.to_string_lossy().to_string();
    let o = gateway_cmd(&["audit", "--state", &st]);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Wait until a pad has no open reservation (its requests have settled).
pub fn wait_settled(state: &Path, serial: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = pad_show(state, serial);
        if v["reserved"] == "0.00" || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Headless Chromium's flags for a machine with no network beyond loopback:
/// no background requests (updates, safe browsing, sync, translation...),
/// which such a machine refuses many at a time.
pub const CHROMIUM_OFFLINE: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-component-extensions-with-background-pages",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
];

/// A download through `agent` at `rate` (curl's `--limit-rate`), in the
/// background; it prints the bytes received.
pub fn slow_download(agent: SocketAddr, url: &str, rate: &str) -> std::process::Child {
    let proxy = format!("http://{agent}");
    Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--limit-rate",
            rate,
            "-x",
            &proxy,
            url,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl")
}
