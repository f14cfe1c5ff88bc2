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
    /// A PostgreSQL ledger several gateways share (`postgres://user@host/db`);
    /// absent: the embedded store in this directory, for this gateway alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
}

/// Check a shared ledger's address: a PostgreSQL connection string.
pub fn check_ledger_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a PostgreSQL URL, postgres://user@host:port/database".into());
    }
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
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
    pub fn init(root: &Path, listen: &str, ledger: Option<&str>) -> anyhow::Result<StateDir> {
        if let Some(url) = ledger {
            check_ledger_url(url).map_err(|e| anyhow::anyhow!("--ledger-url: {e}"))?;
        }
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
            ledger: ledger.map(str::to_string),
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
        if let Some(url) = &config.ledger {
            check_ledger_url(url)
                .map_err(|e| anyhow::anyhow!("{}: ledger: {e}", cfg_path.display()))?;
        }
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

    /// This gateway's id among those sharing a ledger (`DIR/gateway.id`,
    /// made at first use): the reservations it opens carry it.
    pub fn gateway_id(&self) -> anyhow::Result<String> {
        let path = self.root.join("gateway.id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            let id = id.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("{}: expected a hex gateway id", path.display());
            }
            return Ok(id.to_string());
        }
        let mut raw = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let id = hex::encode(raw);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{id}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(id)
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
