//! Several gateways on one PostgreSQL ledger, for the end-to-end tests: a
//! database server, an origin and the gateways' state directories, with the
//! ledger's reports.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::postgres::Postgres;
use crate::sites::start_with_portal;
use crate::*;

/// 0.01 per MiB and 0.001 per request.
pub const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.01\"\nper_request = \"0.001\"\n";
pub const PIN: &str = "246810";

/// A database server, an origin, and gateways' state directories on one ledger.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pg: Postgres,
    pub url: String,
    pub origin: Origin,
    pub tariff: PathBuf,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::new()
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = Postgres::start(&dir.path().join("pg"));
        let url = pg.database("ledger");
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "<p>cluster</p>").unwrap();
        let origin = start_origin(&www, dir.path());
        let tariff = dir.path().join("tariff.toml");
        std::fs::write(&tariff, TARIFF).unwrap();
        Cluster {
            dir,
            pg,
            url,
            origin,
            tariff,
        }
    }

    pub fn work(&self) -> &Path {
        self.dir.path()
    }

    /// `init` gateway `name`'s state directory on the shared ledger.
    pub fn init(&self, name: &str) -> PathBuf {
        let state = self.work().join(name);
        let st = state.to_string_lossy().to_string();
        let o = gateway_cmd(&[
            "init",
            "--state",
            &st,
            "--listen",
            "127.0.0.1:7443",
            "--ledger-url",
            &self.url,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        state
    }

    /// `serve` with the owner portal.
    pub fn serve_portal(&self, state: &Path) -> (Gateway, String) {
        let tariff = self.tariff.to_string_lossy().to_string();
        let pg = start_with_portal(state, &["--tariff", &tariff], self.work());
        (pg.gateway, pg.portal)
    }

    pub fn serve(&self, state: &Path, listen: &str) -> Gateway {
        let tariff = self.tariff.to_string_lossy().to_string();
        let args = [
            "--allow-private-upstreams",
            "--probe-hold-ms",
            "300",
            "--tariff",
            &tariff,
        ];
        start_gateway(state, listen, &args, self.work())
    }

    pub fn mint(&self, state: &Path, value: &str, size: &str) -> PathBuf {
        mint(state, value, size, &self.work().join("pads"))
    }

    pub fn page(&self) -> String {
        format!("http://{}/", self.origin.http)
    }

    pub fn bytes_url(&self, n: u64) -> String {
        format!("http://{}/__origin/bytes/{n}", self.origin.http)
    }
}

pub fn ledger(state: &Path) -> Value {
    let s = state.to_string_lossy().to_string();
    let o = gateway_cmd(&["ledger", "--state", &s, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("ledger prints JSON")
}

pub fn revenue(state: &Path) -> i64 {
    micros(ledger(state)["revenue"].as_str().unwrap())
}

pub fn field(v: &Value, name: &str) -> i64 {
    micros(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {v}")),
    )
}

pub fn assert_audit(state: &Path, when: &str) {
    let (ok, out) = audit(state);
    assert!(ok, "audit failed {when}: {out}");
}
