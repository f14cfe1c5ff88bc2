//! The gateway's state directory: its layout, its configuration file
//! (`gateway.toml`, written by `init`) and the lock that admits one `serve`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::units::parse_size;

/// `DIR/gateway.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Default listen address, also written into minted pads.
    pub listen: String,
    /// Largest lease handed out, as a size ("2MiB").
    #[serde(default = "default_max_lease")]
    pub max_lease: String,
    /// Ticket slots in newly minted pads (one per tunnel opened).
    #[serde(default = "default_ticket_slots")]
    pub ticket_slots: u32,
    /// The ledger's currency; a tariff in another currency is refused.
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_currency() -> String {
    "EUR".into()
}

fn default_max_lease() -> String {
    "2MiB".into()
}

fn default_ticket_slots() -> u32 {
    4096
}

/// A state directory, opened.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
    pub config: GatewayConfig,
    pub max_lease: u64,
}

impl StateDir {
    pub fn config_path(root: &Path) -> PathBuf {
        root.join("gateway.toml")
    }

    pub fn pads_dir(&self) -> PathBuf {
        self.root.join("pads")
    }

    /// Create a new state directory (refusing to overwrite an existing one).
    pub fn init(root: &Path, listen: &str) -> anyhow::Result<StateDir> {
        listen
            .parse::<std::net::SocketAddr>()
            .or_else(|_| {
                if listen.contains(':') {
                    Ok("0.0.0.0:0".parse()?)
                } else {
                    Err(anyhow::anyhow!(""))
                }
            })
            .with_context(|| format!("--listen {listen:?}: expected host:port"))?;
        let cfg_path = Self::config_path(root);
        if cfg_path.exists() {
            bail!(
                "{}: already exists; this state directory is initialised",
                cfg_path.display()
            );
        }
        std::fs::create_dir_all(root.join("pads"))
            .with_context(|| format!("creating {}", root.display()))?;
        // The state directory holds key material, the ledger and the admin
        // socket and token: owner-only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", root.display()))?;
        }
        let config = GatewayConfig {
            listen: listen.to_string(),
            max_lease: default_max_lease(),
            ticket_slots: default_ticket_slots(),
            currency: default_currency(),
        };
        let text = format!(
            "# padnet gateway configuration, written by `padnet-gateway init`.\n{}",
            toml::to_string(&config).context("encoding gateway.toml")?
        );
        std::fs::write(&cfg_path, text)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        Self::open(root)
    }

    /// Open an initialised state directory.
    pub fn open(root: &Path) -> anyhow::Result<StateDir> {
        let cfg_path = Self::config_path(root);
        let text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!("{}: cannot read the gateway configuration (run `padnet-gateway init --state {}` first)", cfg_path.display(), root.display())
        })?;
        let config: GatewayConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
        let max_lease = parse_size(&config.max_lease)
            .map_err(|e| anyhow::anyhow!("{}: max_lease: {e}", cfg_path.display()))?;
        if max_lease < tunnel::lease::MIN_LEASE {
            bail!("{}: max_lease must be at least 64KiB", cfg_path.display());
        }
        if !root.join("pads").is_dir() {
            bail!("{}: missing the pads/ directory", root.display());
        }
        Ok(StateDir {
            root: root.to_path_buf(),
            config,
            max_lease,
        })
    }

    /// Take the serve lock: one `serve` per state directory, ever, since two
    /// would allocate the same leases. Held until the returned file is dropped.
    pub fn lock_for_serve(&self) -> anyhow::Result<File> {
        let path = self.root.join("serve.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(f),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                bail!(
                    "{}: another padnet-gateway serve is running on this state directory",
                    path.display()
                )
            }
            Err(e) => {
                Err(io::Error::from(e)).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

pub use proto::lease::lease_len_for;
