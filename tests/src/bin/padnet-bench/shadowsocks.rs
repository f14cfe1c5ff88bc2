//! shadowsocks-rust as a peer: ssserver and sslocal (an HTTP proxy, CONNECT
//! included) on 127.0.0.1, chacha20-ietf-poly1305, from .bench-tools/ (which
//! scripts/ensure-bench-tools.sh fills). Absent tools mean a skip, with why.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

const METHOD: &str = "chacha20-ietf-poly1305";

/// Where sslocal and ssserver are: `PADNET_BENCH_TOOLS/bin`, by default the
/// workspace's `.bench-tools/bin`.
fn tools_bin() -> PathBuf {
    match std::env::var_os("PADNET_BENCH_TOOLS") {
        Some(d) => PathBuf::from(d).join("bin"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.bench-tools/bin"),
    }
}

/// A child killed (SIGKILL) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running ssserver and sslocal pair.
pub struct Shadowsocks {
    local: Killed,
    server: Killed,
    /// sslocal's HTTP proxy address.
    pub proxy: SocketAddr,
    pub version: String,
}

impl Shadowsocks {
    /// Start ssserver, then sslocal as an HTTP proxy in front of it; their
    /// logs go to `work/ssserver.log` and `work/sslocal.log`.
    pub fn start(work: &Path) -> anyhow::Result<Shadowsocks> {
        let bin = tools_bin();
        let (sslocal, ssserver) = (bin.join("sslocal"), bin.join("ssserver"));
        for p in [&sslocal, &ssserver] {
            if !p.exists() {
                anyhow::bail!(
                    "{} is missing (scripts/ensure-bench-tools.sh installs it)",
                    p.display()
                );
            }
        }
        let version = Command::new(&sslocal)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let password = hex::encode(rand::random::<[u8; 16]>());
        let server_addr = free_port()?;
        let server = spawn(
            Command::new(&ssserver).args([
                "-s",
                &server_addr.to_string(),
                "-m",
                METHOD,
                "-k",
                &password,
            ]),
            &work.join("ssserver.log"),
        )?;
        wait_listening(server_addr, "ssserver", &work.join("ssserver.log"))?;
        let proxy = free_port()?;
        let local = spawn(
            Command::new(&sslocal).args([
                "--protocol",
                "http",
                "-b",
                &proxy.to_string(),
                "-s",
                &server_addr.to_string(),
                "-m",
                METHOD,
                "-k",
                &password,
            ]),
            &work.join("sslocal.log"),
        )?;
        wait_listening(proxy, "sslocal", &work.join("sslocal.log"))?;
        Ok(Shadowsocks {
            local,
            server,
            proxy,
            version,
        })
    }

    pub fn local_pid(&self) -> u32 {
        self.local.0.id()
    }

    pub fn server_pid(&self) -> u32 {
        self.server.0.id()
    }
}

/// A loopback port free a moment ago (ss wants ports on its command line).
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Killed> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok(Killed(child))
}

/// Wait (up to 20 s) until `addr` accepts connections.
fn wait_listening(addr: SocketAddr, name: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    anyhow::bail!("{name} did not listen on {addr} within 20 s; its log:\n{tail}")
}
