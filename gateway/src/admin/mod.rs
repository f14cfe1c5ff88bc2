//! Operator commands against the ledger, whether or not `serve` runs. redb
//! admits one process, so while `serve` holds the store the commands reach it
//! through a Unix socket in the state directory (`admin.sock`, owner-only,
//! plus a token made at first use); otherwise they open the store directly,
//! holding the serve lock so a `serve` cannot start meanwhile.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::accounts::{AccountOps, CancelTo};
use crate::conn::registry::Registry;
use crate::ledger::pg_store::PgStore;
use crate::ledger::redb_store::open_migrating;
use crate::ledger::{Account, Ledger};
use crate::metering::float::Floats;
use crate::request::guard::UpstreamGuard;
use crate::retail::RetailOps;
use crate::sites::ops::{Actor, SiteOps};
use crate::state_dir::StateDir;
use crate::units::format_amount;

mod op;
mod pad_show;
mod policy_ops;
pub use op::AdminOp;

#[derive(Serialize, Deserialize)]
struct Envelope {
    token: String,
    #[serde(flatten)]
    op: AdminOp,
}

/// Executes operator requests against an open ledger.
pub struct AdminApi {
    pub state: StateDir,
    pub ledger: Arc<Ledger>,
    /// The running gateway's pads (None when run directly from a command).
    pub registry: Option<Arc<Registry>>,
    /// Called for `ReloadPolicies` in a running gateway.
    pub on_reload: Option<Box<dyn Fn() -> Result<usize, String> + Send + Sync>>,
    /// Live tunnels' floats (None when run directly from a command).
    pub floats: Option<Arc<Floats>>,
    pub currency: String,
    /// The site registry's operations.
    pub sites: SiteOps,
    /// Retailers and the activation of blank pads.
    pub retail: RetailOps,
    /// Users' accounts and cancellations.
    pub accounts: AccountOps,
}

/// Run an async operation from a blocking admin thread (in the serving
/// gateway's runtime, or a small one of its own for a direct command).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => Ok(h.block_on(f)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
            .map_err(|e| e.to_string()),
    }
}

impl AdminApi {
    pub fn execute(&self, op: &AdminOp) -> Result<Value, String> {
        // On a shared ledger: over what every gateway has written.
        self.ledger.refresh().map_err(|e| e.to_string())?;
        match op {
            AdminOp::Issue { serial, value } => {
                self.ledger
                    .issue(serial, *value)
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "serial": serial, "balance": format_amount(*value) }))
            }
            AdminOp::Ledger => Ok(self.ledger_summary()),
            AdminOp::PadShow { serial } => self.pad_show(serial),
            AdminOp::Audit => {
                let r = self.ledger.read(|b| b.audit());
                serde_json::to_value(r).map_err(|e| e.to_string())
            }
            AdminOp::StorePolicy { source, update } => self.store_policy(source, *update),
            AdminOp::ReloadPolicies => match &self.on_reload {
                Some(f) => f().map(|n| json!({ "policies": n })),
                None => Ok(json!({ "policies": 0 })),
            },
            AdminOp::SiteAdd {
                host,
                prices,
                category,
            } => self
                .sites
                .register(Actor::Operator, host, prices, category.as_deref())
                .map(|r| r.to_json())
                .map_err(|e| e.to_string()),
            AdminOp::SiteVerify { host } => {
                block_on(self.sites.verify(Actor::Operator, host))?.map_err(|e| e.to_string())
            }
            AdminOp::SiteShow { host } => self.sites.show(host).map_err(|e| e.to_string()),
            AdminOp::SiteList => Ok(self.sites.list()),
            AdminOp::SiteSet {
                host,
                prices,
                category,
            } => {
                let category = category.as_deref().map(|c| (!c.is_empty()).then_some(c));
                self.sites
                    .set(Actor::Operator, host, prices, category)
                    .map_err(|e| e.to_string())
            }
            AdminOp::SiteRemove { host } => self
                .sites
                .remove(Actor::Operator, host)
                .map_err(|e| e.to_string()),
            AdminOp::OwnerShow { owner } => self.sites.owner_view(owner).map_err(|e| e.to_string()),
            AdminOp::OwnerFund { owner, amount } => {
                self.sites.fund(owner, *amount).map_err(|e| e.to_string())
            }
            AdminOp::OwnerCashout { owner, out, size } => self
                .sites
                .cash_out(owner, out, size.as_deref())
                .map(|p| json!({ "pad": p.display().to_string() }))
                .map_err(|e| e.to_string()),
            AdminOp::LedgerExport => Ok(self.sites.export()),
            AdminOp::IssueInactive { serial, value } => {
                self.ledger
                    .change_now(|b| Ok(((), b.mint_inactive(serial, *value)?)))
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "serial": serial, "status": "inactive" }))
            }
            AdminOp::Activate { serial, value } => self
                .retail
                .activate(serial, *value, None)
                .map_err(|e| e.to_string()),
            AdminOp::RetailerAdd { name } => self.retail.add(name).map_err(|e| e.to_string()),
            AdminOp::RetailerShow { name } => self.retail.show(name).map_err(|e| e.to_string()),
            AdminOp::Cancel {
                serial,
                to_account,
                replace_out,
                size,
            } => {
                let to = match (to_account, replace_out) {
                    (Some(a), None) => CancelTo::Account(a),
                    (None, Some(out)) => CancelTo::Replacement {
                        out,
                        size: size.as_deref(),
                    },
                    _ => {
                        return Err("name one of --to-account ACCOUNT or --replace --out DIR".into())
                    }
                };
                self.accounts.cancel(serial, to).map_err(|e| e.to_string())
            }
            AdminOp::AccountShow { account } => {
                self.accounts.show(account).map_err(|e| e.to_string())
            }
        }
    }

    fn ledger_summary(&self) -> Value {
        self.ledger.read(|b| {
            let mut pads = 0u64;
            let mut pad_total = 0i64;
            let mut empty = 0u64;
            for (a, v) in &b.balances {
                if let Account::Pad(_) = a {
                    pads += 1;
                    pad_total += v;
                    if *v == 0 {
                        empty += 1;
                    }
                }
            }
            let held: i64 = b.holds.values().map(|h| h.amount).sum();
            let (owners, owner_total) = b
                .balances
                .iter()
                .filter(|(a, _)| matches!(a, Account::Owner(_)))
                .fold((0u64, 0i64), |(n, t), (_, v)| (n + 1, t + v));
            let (users, user_total) = b
                .balances
                .iter()
                .filter(|(a, _)| matches!(a, Account::User(_)))
                .fold((0u64, 0i64), |(n, t), (_, v)| (n + 1, t + v));
            json!({
                "currency": self.currency,
                "pads": { "accounts": pads, "used_up": empty, "balance": format_amount(pad_total) },
                "owners": { "accounts": owners, "balance": format_amount(owner_total) },
                "users": { "accounts": users, "balance": format_amount(user_total) },
                "revenue": format_amount(b.balance(&Account::Revenue).unwrap_or(0)),
                "issuance": format_amount(b.balance(&Account::Issuance).unwrap_or(0)),
                "reserved": { "open": b.holds.len(), "amount": format_amount(held) },
                "issued": format_amount(b.issued),
                "redeemed": format_amount(b.redeemed),
            })
        })
    }
}

pub fn socket_path(state: &Path) -> PathBuf {
    state.join("admin.sock")
}

fn token_path(state: &Path) -> PathBuf {
    state.join("admin.token")
}

/// The admin token, made (owner-only) on first use.
pub fn token(state: &Path) -> anyhow::Result<String> {
    let path = token_path(state);
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let t = hex::encode(raw);
    let tmp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Owner-only from its creation: no window in which others could open it.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(t.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(t)
}

/// Open the ledger of a state directory.
/// Open the ledger of a state directory: the shared one its gateway.toml
/// names, or its own embedded store.
pub fn open_ledger(state: &StateDir) -> anyhow::Result<(Arc<Ledger>, usize)> {
    if let Some(url) = &state.config.ledger {
        let id = state.gateway_id()?;
        let store = PgStore::open(url, &id)?;
        let (ledger, released) = Ledger::open_as(Box::new(store), &id)?;
        return Ok((Arc::new(ledger), released));
    }
    // `ledger/` was sled's directory (migrated once, then unused).
    let store = open_migrating(&state.root.join("ledger.redb"), &state.root.join("ledger"))?;
    let (ledger, released) = Ledger::open(Box::new(store))?;
    Ok((Arc::new(ledger), released))
}

/// Serve admin requests on the state directory's socket (in `serve`).
pub async fn serve_admin(api: Arc<AdminApi>) -> anyhow::Result<()> {
    let path = socket_path(&api.state.root);
    let _ = std::fs::remove_file(&path); // stale: we hold the serve lock
    let token = token(&api.state.root)?;
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let token = Arc::new(token);
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let api = api.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut line = String::new();
            let mut r = tokio::io::BufReader::new(r);
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Envelope>(&line) {
                Ok(env) if bool::from(env.token.as_bytes().ct_eq(token.as_bytes())) => {
                    let api = api.clone();
                    match tokio::task::spawn_blocking(move || api.execute(&env.op)).await {
                        Ok(Ok(v)) => json!({ "ok": v }),
                        Ok(Err(e)) => json!({ "error": e }),
                        Err(e) => json!({ "error": e.to_string() }),
                    }
                }
                Ok(_) => json!({ "error": "bad admin token" }),
                Err(e) => json!({ "error": format!("bad admin request: {e}") }),
            };
            let mut out = reply.to_string();
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
        });
    }
}

/// The way a command reaches the ledger.
pub enum Admin {
    /// Through the running gateway.
    Remote { state: PathBuf, token: String },
    /// Directly, holding the serve lock.
    Local { api: Box<AdminApi>, _lock: File },
}

impl Admin {
    /// Reach the running gateway, or open the store if none runs.
    pub fn connect(state: &StateDir, currency: &str) -> anyhow::Result<Admin> {
        Admin::connect_guarded(state, currency, UpstreamGuard::default())
    }

    /// [`Admin::connect`]; a direct command (no gateway runs) fetches
    /// through `guard` (a running gateway through its own).
    pub fn connect_guarded(
        state: &StateDir,
        currency: &str,
        guard: UpstreamGuard,
    ) -> anyhow::Result<Admin> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if UnixStream::connect(socket_path(&state.root)).is_ok() {
                return Ok(Admin::Remote {
                    state: state.root.clone(),
                    token: token(&state.root)?,
                });
            }
            if let Ok(lock) = state.lock_for_serve() {
                let (ledger, _) = open_ledger(state)?;
                return Ok(Admin::Local {
                    api: Box::new(AdminApi {
                        state: state.clone(),
                        ledger: ledger.clone(),
                        registry: None,
                        on_reload: None,
                        floats: None,
                        currency: currency.to_string(),
                        sites: SiteOps {
                            ledger: ledger.clone(),
                            state: state.clone(),
                            guard,
                            currency: currency.to_string(),
                            fetch: None,
                        },
                        retail: RetailOps {
                            ledger: ledger.clone(),
                            state: state.clone(),
                            registry: None,
                            currency: currency.to_string(),
                        },
                        accounts: AccountOps {
                            ledger: ledger.clone(),
                            state: state.clone(),
                            currency: currency.to_string(),
                            live: None,
                        },
                    }),
                    _lock: lock,
                });
            }
            // A gateway holds the lock but its socket is not up yet.
            if Instant::now() > deadline {
                bail!(
                    "{}: a gateway holds this state directory but does not answer on {}",
                    state.root.display(),
                    socket_path(&state.root).display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn call(&self, op: AdminOp) -> anyhow::Result<Value> {
        match self {
            Admin::Local { api, .. } => api.execute(&op).map_err(anyhow::Error::msg),
            Admin::Remote { state, token } => {
                let path = socket_path(state);
                let mut s = UnixStream::connect(&path)
                    .with_context(|| format!("connecting to {}", path.display()))?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                let mut line = serde_json::to_string(&Envelope {
                    token: token.clone(),
                    op,
                })?;
                line.push('\n');
                s.write_all(line.as_bytes())?;
                let mut reply = String::new();
                BufReader::new(s)
                    .read_line(&mut reply)
                    .with_context(|| format!("reading the answer from {}", path.display()))?;
                let v: Value = serde_json::from_str(&reply)
                    .with_context(|| format!("bad answer from {}: {reply:?}", path.display()))?;
                if let Some(e) = v.get("error") {
                    bail!("{}", e.as_str().unwrap_or("unknown error"));
                }
                Ok(v.get("ok").cloned().unwrap_or(Value::Null))
            }
        }
    }
}
