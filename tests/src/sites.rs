//! Helpers for the site-owner tests: a gateway serving the owner portal,
//! the portal's API through real `curl`, and a site registered and verified
//! against the test origin (the token served from its document root).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{curl, start_gateway, Gateway, Stage};

/// A gateway with its owner portal.
pub struct PortalGateway {
    pub gateway: Gateway,
    pub portal: String,
}

/// `serve` with `--owner-listen 127.0.0.1:0` (and private upstreams allowed:
/// the test origin is on loopback) plus `extra`.
pub fn start_with_portal(state: &Path, extra: &[&str], work: &Path) -> PortalGateway {
    let mut args = vec!["--allow-private-upstreams", "--owner-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut gateway = start_gateway(state, "127.0.0.1:0", &args, work);
    let portal = gateway
        .proc
        .wait_line("padnet-gateway owner portal on ", Duration::from_secs(30));
    PortalGateway { gateway, portal }
}

/// One portal API call through curl: (status, JSON body or Null).
pub fn api(
    portal: &str,
    method: &str,
    path: &str,
    secret: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let url = format!("{portal}{path}");
    let auth = secret.map(|s| format!("Authorization: Bearer {s}"));
    let mut args = vec!["-s", "-X", method, "-w", "\n%{http_code}"];
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let status = code.trim().parse().unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A registered site: its owner, secret and token.
pub struct RegisteredSite {
    pub host: String,
    pub owner: String,
    pub secret: String,
    pub token: String,
}

/// Register `host` (e.g. the origin's `127.0.0.1:PORT`) with `prices_json`
/// (the JSON object's other fields, e.g. `"per_hit": "0.002"`) through the
/// portal, as a new owner or (with `secret`) an existing one.
pub fn register(
    portal: &str,
    host: &str,
    prices_json: &str,
    secret: Option<&str>,
) -> RegisteredSite {
    let body = if prices_json.is_empty() {
        format!("{{\"host\": \"{host}\"}}")
    } else {
        format!("{{\"host\": \"{host}\", {prices_json}}}")
    };
    let (status, v) = api(portal, "POST", "/api/sites", secret, Some(&body));
    assert_eq!(status, 201, "registering {host}: {v}");
    RegisteredSite {
        host: host.to_string(),
        owner: v["owner"].as_str().expect("owner").to_string(),
        secret: secret
            .map(str::to_string)
            .or_else(|| v["secret"].as_str().map(str::to_string))
            .expect("secret"),
        token: v["token"].as_str().expect("token").to_string(),
    }
}

/// Serve a site's token from the origin's document root.
pub fn serve_token(www: &Path, token: &str) -> PathBuf {
    let dir = www.join(".well-known/padnet");
    std::fs::create_dir_all(&dir).expect("well-known dir");
    let p = dir.join(token);
    std::fs::write(&p, format!("{token}\n")).expect("token file");
    p
}

/// Register `stage`'s origin (HTTP) as a site, serve its token, verify it.
pub fn register_verified(stage: &Stage, portal: &str, prices_json: &str) -> RegisteredSite {
    let host = stage.origin.http.to_string();
    let site = register(portal, &host, prices_json, None);
    serve_token(&stage.dir.path().join("www"), &site.token);
    let (status, v) = api(
        portal,
        "POST",
        &format!("/api/sites/{host}/verify"),
        Some(&site.secret),
        None,
    );
    assert_eq!(status, 200, "verifying {host}: {v}");
    site
}

/// `GET /api/owner`: the owner's view (balance, sites, statement).
pub fn owner_view(portal: &str, secret: &str) -> serde_json::Value {
    let (status, v) = api(portal, "GET", "/api/owner", Some(secret), None);
    assert_eq!(status, 200, "owner view: {v}");
    v
}

/// An owner's balance in micro-units.
pub fn owner_balance(portal: &str, secret: &str) -> i64 {
    owner_view(portal, secret)["balance_micros"]
        .as_i64()
        .expect("balance_micros")
}

/// `ledger export --json`.
pub fn export(state: &Path) -> serde_json::Value {
    let st = state.to_string_lossy().to_string();
    let o = crate::gateway_cmd(&["ledger", "export", "--state", &st, "--json"]);
    assert!(
        o.status.success(),
        "ledger export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("ledger export prints JSON")
}

/// The origin's HTTP address as a site's registry name ("127.0.0.1").
pub fn site_name(origin: SocketAddr) -> String {
    origin.ip().to_string()
}
