//! The gateway's policy store: each policy's source kept once by content id
//! (`state/policies/<id>.toml`), and for each policy name which id is current
//! (`state/policies/current/<sha256(name)>`). A pad carries the id it was
//! minted with; the policy it gets is the current one of that id's name, so
//! `policy update` re-restricts every pad bound to the name at once. On a
//! shared ledger the book holds the same records and this store adopts them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use policy::Policy;
use sha2::{Digest, Sha256};

pub struct PolicyStore {
    dir: PathBuf,
    /// Policies by id, and the current id per name: swapped together.
    maps: RwLock<Maps>,
    /// One reload at a time, so an older read never lands after a newer one.
    reloading: Mutex<Option<Instant>>,
    /// Where else to look for an unknown id (a shared ledger's book).
    on_miss: std::sync::OnceLock<MissHook>,
    /// When an unknown id last made the store look again.
    last_miss: Mutex<Option<Instant>>,
}

/// Called when an id is not in the store (at most once a second).
pub type MissHook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Maps {
    by_id: HashMap<[u8; 32], Policy>,
    current: HashMap<String, [u8; 32]>,
}

/// Unknown ids re-read the directory at most this often.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

fn name_key(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

impl PolicyStore {
    pub fn open(state_root: &Path) -> anyhow::Result<Arc<PolicyStore>> {
        let dir = state_root.join("policies");
        std::fs::create_dir_all(dir.join("current"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let store = Arc::new(PolicyStore {
            dir,
            maps: RwLock::default(),
            reloading: Mutex::new(None),
            on_miss: std::sync::OnceLock::new(),
            last_miss: Mutex::new(None),
        });
        store.reload()?;
        Ok(store)
    }

    /// Re-read every stored policy and the current-id pointers.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let mut last = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(Instant::now());
        let mut by_id = HashMap::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let p = Policy::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            by_id.insert(p.id(), p);
        }
        let mut current = HashMap::new();
        for p in by_id.values() {
            if current.contains_key(p.name()) {
                continue;
            }
            let ptr = self.dir.join("current").join(name_key(p.name()));
            let id = match std::fs::read_to_string(&ptr) {
                Ok(hexid) => hex::decode(hexid.trim())
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .with_context(|| format!("{}: not a policy id", ptr.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => p.id(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", ptr.display())),
            };
            current.insert(p.name().to_string(), id);
        }
        let n = by_id.len();
        *self.maps.write().unwrap_or_else(|p| p.into_inner()) = Maps { by_id, current };
        Ok(n)
    }

    /// The policy a pad minted with `id` is under now. None when the id, or
    /// the current policy of its name, is not here: the caller fails closed.
    pub fn effective(&self, id: &[u8; 32]) -> Option<Policy> {
        let lookup = |s: &PolicyStore| -> Option<Policy> {
            let maps = s.maps.read().unwrap_or_else(|p| p.into_inner());
            let minted = maps.by_id.get(id)?;
            let cur = maps.current.get(minted.name()).copied().unwrap_or(*id);
            maps.by_id.get(&cur).cloned()
        };
        if let Some(p) = lookup(self) {
            return Some(p);
        }
        // Perhaps minted while we were serving: read the directory again,
        // but not on every request for an id that stays unknown.
        // Timed apart from other reloads: a reload a moment ago (at start,
        // or adopting another id) must not make a new pad's id wait.
        let due = self
            .last_miss
            .lock()
            .map(|mut t| {
                let due = t.is_none_or(|t| t.elapsed() >= MISS_RELOAD_INTERVAL);
                if due {
                    *t = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if due {
            if let Err(e) = self.reload() {
                tracing::error!("reloading policies: {e:#}");
            }
            if let Some(hook) = self.on_miss.get() {
                hook();
            }
        }
        lookup(self)
    }

    /// Set where an unknown id is looked for next (once).
    pub fn set_on_miss(&self, hook: MissHook) {
        let _ = self.on_miss.set(hook);
    }

    /// The policy stored under `id`, as minted.
    pub fn by_id(&self, id: &[u8; 32]) -> Option<Policy> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .cloned()
    }

    /// The current id for a policy name.
    pub fn current_id(&self, name: &str) -> Option<[u8; 32]> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .get(name)
            .copied()
    }

    /// The stored source of policy `id`.
    pub fn source(&self, id: &[u8; 32]) -> anyhow::Result<String> {
        let file = self.dir.join(format!("{}.toml", hex::encode(id)));
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
    }

    /// The ids of every stored policy.
    pub fn ids(&self) -> Vec<[u8; 32]> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.by_id.keys().copied().collect()
    }

    /// Take what a shared ledger's book holds (`sources` by id hex, the
    /// `current` id hex per name) into this store: sources it lacks, and
    /// current ids that differ. A source whose content is not its id is
    /// refused (logged), never stored. Returns how many records changed.
    pub fn adopt(
        &self,
        sources: &std::collections::BTreeMap<String, String>,
        current: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<usize> {
        let mut changed = 0;
        let (have, names) = {
            let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
            (
                maps.by_id
                    .keys()
                    .map(hex::encode)
                    .collect::<std::collections::HashSet<_>>(),
                maps.current
                    .iter()
                    .map(|(n, id)| (n.clone(), hex::encode(id)))
                    .collect::<HashMap<_, _>>(),
            )
        };
        for (id, src) in sources.iter().filter(|(id, _)| !have.contains(*id)) {
            match Policy::parse(src, &format!("the ledger's policy {id}")) {
                Ok(p) if p.id_hex() == *id => {
                    write_atomic(&self.dir.join(format!("{id}.toml")), src.as_bytes())?;
                    changed += 1;
                }
                Ok(_) => tracing::error!(
                    "the ledger's policy {id}: its source has another id; not adopted"
                ),
                Err(e) => tracing::error!("the ledger's policy {id}: {e}; not adopted"),
            }
        }
        for (name, id) in current.iter().filter(|(n, id)| names.get(*n) != Some(*id)) {
            if !have.contains(id) && !sources.contains_key(id) {
                continue;
            }
            write_atomic(
                &self.dir.join("current").join(name_key(name)),
                id.as_bytes(),
            )?;
            changed += 1;
        }
        if changed > 0 {
            self.reload()?;
        }
        Ok(changed)
    }

    /// Store a policy's source (idempotent). With `make_current`, it becomes
    /// the policy for every pad bound to its name; otherwise it becomes
    /// current only if its name has none yet.
    pub fn store(&self, src: &str, p: &Policy, make_current: bool) -> anyhow::Result<()> {
        let file = self.dir.join(format!("{}.toml", p.id_hex()));
        if !file.exists() {
            write_atomic(&file, src.as_bytes())?;
        }
        let ptr = self.dir.join("current").join(name_key(p.name()));
        if make_current || !ptr.exists() {
            write_atomic(&ptr, p.id_hex().as_bytes())?;
        }
        self.reload()?;
        Ok(())
    }
}
