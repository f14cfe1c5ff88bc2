//! The ledger on PostgreSQL, shared by several gateways: the embedded store's
//! entries in one table, each stamped with the version of the write that set
//! it. Every operation is one transaction under the cluster's ledger lock (a
//! transaction-scoped advisory lock): read what other gateways wrote since
//! this one last looked, apply the book's rules, write the changed entries.
//! So the balance check and the debit are one atomic step for the whole
//! cluster, and no two gateways can spend one balance twice.
//!
//! Commits are asynchronous (`synchronous_commit = off`); a flush is one
//! synchronous commit, which hardens every commit before it (the WAL is one
//! sequence) and renews this gateway's lease on the reservations it holds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Statement};

use super::book::{Book, Changes, LedgerError};
use super::entries::{apply_entry, decode, encode};
use super::Persist;

/// The advisory lock every ledger transaction of the cluster takes.
const LEDGER_LOCK: i64 = 0x7061_646e_6574_6c67;
/// Held while the schema is brought up to date.
const MIGRATION_LOCK: i64 = LEDGER_LOCK + 1;
/// A gateway's reservations are released by its peers this long after its
/// last flush (it flushes at least every second while it runs).
pub const LEASE_SECS: f64 = 10.0;
/// Removed entries are kept this long, so every running gateway sees the removal.
const TOMBSTONE_HOURS: i32 = 24;
/// A statement that has not answered in this long has failed (the server is gone).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, in order: each file runs once, in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_ledger.sql"))];

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> LedgerError + '_ {
    move |e| {
        // The server's own message says what was wrong (a missing database,
        // a refused password), not just "db error".
        let detail = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        LedgerError::Store(format!("PostgreSQL, {what}: {detail}"))
    }
}

/// A connection and its prepared statements.
struct Conn {
    client: Client,
    nextval: Statement,
    since: Statement,
    upsert: Statement,
    renew: Statement,
}

const NEXTVAL: &str = "SELECT nextval('padnet_ledger_versions')";
const SINCE: &str = "SELECT key, value, version FROM padnet_ledger WHERE version > $1";
const UPSERT: &str = "INSERT INTO padnet_ledger (key, value, version)
     SELECT k, v, $3 FROM unnest($1::bytea[], $2::bytea[]) AS t(k, v)
     ON CONFLICT (key) DO UPDATE
     SET value = EXCLUDED.value, version = EXCLUDED.version, written = now()";
const RENEW: &str = "INSERT INTO padnet_gateways (name, alive_until)
     VALUES ($1, now() + make_interval(secs => $2))
     ON CONFLICT (name) DO UPDATE SET alive_until = EXCLUDED.alive_until
     RETURNING (xmax = 0) AS inserted";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct PgStore {
    url: String,
    gateway: String,
    /// The runtime that drives the connections (a thread of its own: the
    /// ledger is called from blocking code and from other runtimes).
    pg: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Operations' connection; `None` after it failed (reconnected on use).
    ops: Mutex<Option<Arc<Conn>>>,
    /// Flushes' connection (synchronous commits, lease renewals).
    flusher: Mutex<Option<Arc<Conn>>>,
    /// The newest version applied to the book.
    seen: Mutex<i64>,
    /// The version of the open transaction, between `begin` and `write`.
    open: Mutex<Option<i64>>,
    /// Set when this gateway's lease was found gone (it stalled past
    /// [`LEASE_SECS`]): the next operation reloads the whole book.
    lapsed: AtomicBool,
    /// Set once the lease has been renewed.
    leased: AtomicBool,
    /// Set once the operations' connection has been made.
    connected: AtomicBool,
}

impl PgStore {
    /// Connect to `url` as gateway `gateway`, bringing the schema up to date.
    pub fn open(url: &str, gateway: &str) -> Result<PgStore, LedgerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ledger-pg".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| LedgerError::Store(format!("starting the PostgreSQL thread: {e}")))?;
        let pg = rx
            .recv()
            .map_err(|e| LedgerError::Store(format!("starting the PostgreSQL thread: {e}")))?
            .map_err(|e| LedgerError::Store(format!("starting the PostgreSQL runtime: {e}")))?;
        let store = PgStore {
            url: url.to_string(),
            gateway: gateway.to_string(),
            pg,
            stop: Some(stop),
            ops: Mutex::new(None),
            flusher: Mutex::new(None),
            seen: Mutex::new(0),
            open: Mutex::new(None),
            lapsed: AtomicBool::new(false),
            leased: AtomicBool::new(false),
            connected: AtomicBool::new(false),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Run `f` on the connection runtime, waiting at most [`CALL_TIMEOUT`].
    fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, LedgerError>> + Send + 'static,
    ) -> Result<T, LedgerError> {
        // The timer is made on the connection runtime (it needs its clock).
        let job = self
            .pg
            .spawn(async move { tokio::time::timeout(CALL_TIMEOUT, f).await });
        match futures::executor::block_on(job) {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LedgerError::Store(format!(
                "PostgreSQL, {what}: no answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
            Err(e) => Err(LedgerError::Store(format!("PostgreSQL, {what}: {e}"))),
        }
    }

    fn connect(&self, synchronous: bool, prepare: bool) -> Result<Arc<Conn>, LedgerError> {
        let url = self.url.clone();
        self.call("connecting", async move {
            let e = pg_err("connecting");
            let (client, conn) = tokio_postgres::connect(&url, NoTls).await.map_err(&e)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    let detail = e.as_db_error().map(|d| d.message().to_string());
                    let detail = detail.unwrap_or_else(|| e.to_string());
                    tracing::warn!("ledger database connection: {detail}");
                }
            });
            if !synchronous {
                client
                    .batch_execute("SET synchronous_commit = off")
                    .await
                    .map_err(&e)?;
            }
            // Before the schema exists (migrating) nothing can be prepared.
            let sql = |s: &'static str| if prepare { s } else { "SELECT 1" };
            let (nextval, since, upsert, renew) = futures::future::join4(
                client.prepare(sql(NEXTVAL)),
                client.prepare(sql(SINCE)),
                client.prepare(sql(UPSERT)),
                client.prepare(sql(RENEW)),
            )
            .await;
            Ok(Arc::new(Conn {
                nextval: nextval.map_err(&e)?,
                since: since.map_err(&e)?,
                upsert: upsert.map_err(&e)?,
                renew: renew.map_err(&e)?,
                client,
            }))
        })
    }

    /// The connection in `slot`, connecting if it has none or it closed.
    fn conn(
        &self,
        slot: &Mutex<Option<Arc<Conn>>>,
        synchronous: bool,
    ) -> Result<Arc<Conn>, LedgerError> {
        let mut s = lock(slot);
        if let Some(c) = s.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        *s = None;
        let c = self.connect(synchronous, true)?;
        *s = Some(c.clone());
        if std::ptr::eq(slot, &self.ops) && self.connected.swap(true, Ordering::Relaxed) {
            // The server may have restarted, losing commits not yet flushed
            // (this gateway's and those of others it had seen): the book must
            // come from the server again, whole.
            self.lapsed.store(true, Ordering::Relaxed);
        }
        Ok(c)
    }

    fn migrate(&self) -> Result<(), LedgerError> {
        let conn = self.connect(true, false)?;
        self.call("migrating the schema", async move {
            let client = &conn.client;
            let e = pg_err("migrating the schema");
            client
                .batch_execute(&format!(
                    "SET client_min_messages = warning;
                     SELECT pg_advisory_lock({MIGRATION_LOCK});
                     CREATE TABLE IF NOT EXISTS padnet_migrations (
                         version integer PRIMARY KEY,
                         applied timestamptz NOT NULL DEFAULT now())"
                ))
                .await
                .map_err(&e)?;
            let done: Vec<i32> = client
                .query("SELECT version FROM padnet_migrations", &[])
                .await
                .map_err(&e)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut result = Ok(());
            for (version, sql) in MIGRATIONS {
                if done.contains(version) {
                    continue;
                }
                let step = format!(
                    "BEGIN; {sql}; INSERT INTO padnet_migrations (version) VALUES ({version}); COMMIT"
                );
                if let Err(err) = client.batch_execute(&step).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    result = Err(e(err));
                    break;
                }
            }
            client
                .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .await
                .map_err(&e)?;
            result
        })
    }

    /// Give up the open transaction, if any (its lock goes with it).
    fn rollback(&self) {
        if lock(&self.open).take().is_none() {
            return;
        }
        let Some(conn) = lock(&self.ops).clone() else {
            return;
        };
        let r = self.call("rolling back", async move {
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(pg_err("rolling back"))
        });
        if let Err(e) = r {
            tracing::warn!("{e}");
            // The connection is in an unknown state: start a new one.
            *lock(&self.ops) = None;
        }
    }

    /// A failed statement: the transaction is gone; so is the connection if
    /// it closed.
    fn failed(&self, e: LedgerError) -> LedgerError {
        self.rollback();
        e
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Rows = Vec<(Vec<u8>, Option<Vec<u8>>, i64)>;

impl Persist for PgStore {
    fn load(&self) -> Result<Book, LedgerError> {
        self.rollback();
        let conn = self.conn(&self.ops, false)?;
        let (rows, version): (Rows, i64) = self.call("reading the ledger", async move {
            let client = &conn.client;
            let e = pg_err("reading the ledger");
            let lock_sql = format!("SELECT pg_advisory_xact_lock({LEDGER_LOCK})");
            client.batch_execute("BEGIN").await.map_err(&e)?;
            let r = async {
                client.execute(lock_sql.as_str(), &[]).await?;
                let rows = client
                    .query(
                        "SELECT key, value, version FROM padnet_ledger WHERE value IS NOT NULL",
                        &[],
                    )
                    .await?;
                let top: i64 = client
                    .query_one("SELECT coalesce(max(version), 0) FROM padnet_ledger", &[])
                    .await?
                    .get(0);
                Ok::<_, tokio_postgres::Error>((rows, top))
            }
            .await;
            let _ = client.batch_execute("COMMIT").await;
            let (rows, top) = r.map_err(&e)?;
            let rows = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            Ok((rows, top))
        })?;
        let book = decode(
            rows.into_iter()
                .filter_map(|(k, v, _)| v.map(|v| Ok((k, v)))),
        )?;
        *lock(&self.seen) = version;
        self.lapsed.store(false, Ordering::Relaxed);
        Ok(book)
    }

    fn begin(&self, book: &mut Book) -> Result<Changes, LedgerError> {
        self.rollback();
        self.conn(&self.ops, false)?;
        if self.lapsed.load(Ordering::Relaxed) {
            // Peers may have released this gateway's holds and purged what
            // it never saw, or the server lost unflushed commits: start again
            // from the whole book.
            tracing::warn!("reloading the whole ledger from the database");
            let gateway = std::mem::take(&mut book.gateway);
            *book = self.load()?;
            book.gateway = gateway;
        }
        let conn = self.conn(&self.ops, false)?;
        let since = *lock(&self.seen);
        let (rows, version): (Rows, i64) = self
            .call("starting an operation", async move {
                let e = pg_err("starting an operation");
                let c = &conn.client;
                let begin = format!("BEGIN; SELECT pg_advisory_xact_lock({LEDGER_LOCK})");
                // One round trip: the statements go out pipelined, in order.
                let (b, v, r) = futures::future::join3(
                    c.batch_execute(&begin),
                    c.query_one(&conn.nextval, &[]),
                    c.query(&conn.since, &[&since]),
                )
                .await;
                b.map_err(&e)?;
                let version: i64 = v.map_err(&e)?.get(0);
                let rows = r
                    .map_err(&e)?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                Ok((rows, version))
            })
            .inspect_err(|_| *lock(&self.ops) = None)?;
        *lock(&self.open) = Some(version);
        let mut theirs = Changes::default();
        let mut newest = since;
        for (key, value, v) in rows {
            if let Err(e) = apply_entry(book, &key, value.as_deref()) {
                return Err(self.failed(e));
            }
            newest = newest.max(v);
            if let Some(pad) = key.strip_prefix(b"p/") {
                theirs
                    .pad_states
                    .push(String::from_utf8_lossy(pad).into_owned());
            } else if let Some(site) = key.strip_prefix(b"s/") {
                theirs
                    .sites
                    .push(String::from_utf8_lossy(site).into_owned());
            }
        }
        *lock(&self.seen) = newest;
        Ok(theirs)
    }

    fn write(&self, book: &Book, changes: &Changes) -> Result<(), LedgerError> {
        let Some(version) = *lock(&self.open) else {
            return Err(LedgerError::Store(
                "PostgreSQL: a write outside an operation".into(),
            ));
        };
        // One row per key (the last value wins), as one statement allows.
        let entries: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            encode(book, changes)?.into_iter().collect();
        let (keys, values): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) = entries.into_iter().unzip();
        let conn = self.conn(&self.ops, false)?;
        let r = self.call("writing", async move {
            let e = pg_err("writing");
            let c = &conn.client;
            let (w, done) = futures::future::join(
                c.execute(&conn.upsert, &[&keys, &values, &version]),
                c.batch_execute("COMMIT"),
            )
            .await;
            w.map_err(&e)?;
            done.map_err(&e)?;
            Ok(())
        });
        match r {
            Ok(()) => {
                *lock(&self.open) = None;
                let mut seen = lock(&self.seen);
                *seen = (*seen).max(version);
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn abandon(&self) {
        self.rollback();
    }

    fn gone_gateways(&self) -> Result<Vec<String>, LedgerError> {
        if lock(&self.open).is_none() {
            return Ok(Vec::new());
        }
        let conn = self.conn(&self.ops, false)?;
        let me = self.gateway.clone();
        self.call("sweeping", async move {
            let client = &conn.client;
            let e = pg_err("sweeping");
            let purge = format!(
                "DELETE FROM padnet_ledger WHERE value IS NULL
                 AND written < now() - make_interval(hours => {TOMBSTONE_HOURS})"
            );
            let (gone, purged) = futures::future::join(
                client.query(
                    "DELETE FROM padnet_gateways WHERE alive_until < now() AND name <> $1
                     RETURNING name",
                    &[&me],
                ),
                client.execute(purge.as_str(), &[]),
            )
            .await;
            purged.map_err(&e)?;
            Ok(gone.map_err(&e)?.iter().map(|r| r.get(0)).collect())
        })
        .map_err(|e| self.failed(e))
    }

    fn flush(&self) -> Result<(), LedgerError> {
        let conn = self.conn(&self.flusher, true)?;
        let me = self.gateway.clone();
        let r = self.call("flushing", async move {
            // A synchronous commit: it returns once the WAL, every earlier
            // asynchronous commit included, is on disk.
            let row = conn
                .client
                .query_one(&conn.renew, &[&me, &LEASE_SECS])
                .await
                .map_err(pg_err("flushing"))?;
            Ok(row.get::<_, bool>(0))
        });
        match r {
            Ok(inserted) => {
                if inserted && self.leased.swap(true, Ordering::Relaxed) {
                    self.lapsed.store(true, Ordering::Relaxed);
                }
                self.leased.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                *lock(&self.flusher) = None;
                Err(e)
            }
        }
    }

    fn shared(&self) -> bool {
        true
    }
}
