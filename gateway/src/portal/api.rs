//! The portal's JSON API: `POST /api/sites`, `POST /api/sites/HOST/verify`,
//! `PUT` and `DELETE /api/sites/HOST`, `GET /api/owner`, `POST
//! /api/owner/cashout`. Errors are `{"error": ..., "field": ...}` with the
//! status that says what kind.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use super::{body, Portal, PortalBody, Refusal};
use crate::sites::input::{from_json, PricesInput, RegisterInput};
use crate::sites::ops::{Actor, OpError};

pub use crate::rim::{blocking, json_response, op_refusal};

/// A refusal as JSON.
pub fn refusal(r: Refusal) -> Response<PortalBody> {
    crate::rim::json_refusal(r, "padnet owner portal")
}

/// The host a `/api/sites/HOST[/verify]` path names (percent-decoded).
fn host_in(rest: &str) -> Result<String, Refusal> {
    percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map(|h| h.into_owned())
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the host in the path is not UTF-8"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CashoutInput {
    size: Option<String>,
}

pub async fn route(
    portal: &std::sync::Arc<Portal>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<PortalBody>, Refusal> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let ops = portal.ops.clone();
    match (method, path.as_str()) {
        (Method::POST, "/api/sites") => {
            // With a secret: another site for that owner; without: a new owner.
            let owner = match req.headers().contains_key(http::header::AUTHORIZATION) {
                true => Some(portal.owner(peer, &req)?),
                false => {
                    portal.admit(peer)?;
                    None
                }
            };
            let input: RegisterInput =
                from_json(&body(req).await?).map_err(|e| op_refusal(e.into()))?;
            let reg = blocking(move || {
                let actor = owner.as_deref().map_or(Actor::Operator, Actor::Owner);
                ops.register(actor, &input.host, &input.prices(), None)
            })
            .await?;
            Ok(json_response(StatusCode::CREATED, &reg.to_json()))
        }
        (Method::GET, "/api/owner") => {
            let owner = portal.owner(peer, &req)?;
            let v = ops.owner_view(&owner).map_err(op_refusal)?;
            Ok(json_response(StatusCode::OK, &v))
        }
        (Method::POST, "/api/owner/cashout") => {
            let owner = portal.owner(peer, &req)?;
            let raw = body(req).await?;
            let input: CashoutInput = if raw.iter().all(u8::is_ascii_whitespace) {
                CashoutInput::default()
            } else {
                from_json(&raw).map_err(|e| op_refusal(e.into()))?
            };
            let (name, bytes) = cash_out_file(portal, owner, input.size).await?;
            Ok(pad_download(&name, bytes))
        }
        (m, p) if p.starts_with("/api/sites/") => {
            let rest = &p["/api/sites/".len()..];
            let owner = portal.owner(peer, &req)?;
            if let Some(host) = rest.strip_suffix("/verify") {
                if m != Method::POST {
                    return Err(Refusal::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "use POST to verify",
                    ));
                }
                let host = host_in(host)?;
                let v = ops
                    .verify(Actor::Owner(&owner), &host)
                    .await
                    .map_err(op_refusal)?;
                return Ok(json_response(StatusCode::OK, &v));
            }
            let host = host_in(rest)?;
            match m {
                Method::PUT => {
                    let input: PricesInput =
                        from_json(&body(req).await?).map_err(|e| op_refusal(e.into()))?;
                    let v = blocking(move || ops.set(Actor::Owner(&owner), &host, &input, None))
                        .await?;
                    Ok(json_response(StatusCode::OK, &v))
                }
                Method::DELETE => {
                    let v = blocking(move || ops.remove(Actor::Owner(&owner), &host)).await?;
                    Ok(json_response(StatusCode::OK, &v))
                }
                Method::GET => {
                    let v = ops.show(&host).map_err(op_refusal)?;
                    if v["owner"] != Value::String(owner) {
                        return Err(Refusal::new(StatusCode::FORBIDDEN, "not this owner's site"));
                    }
                    Ok(json_response(StatusCode::OK, &v))
                }
                _ => Err(Refusal::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "a site takes GET, PUT (prices) or DELETE",
                )),
            }
        }
        (_, p) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no API at {p}: see GET / for what the portal offers"),
        )),
    }
}

/// A cashed-out pad as a download named by its serial.
pub fn pad_download(name: &str, bytes: Vec<u8>) -> Response<PortalBody> {
    let mut r = Response::new(PortalBody::new(Bytes::from(bytes)));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Cash the owner's balance out into a pad, minted into a private scratch
/// directory, read and removed: the gateway keeps only the twin. Returns
/// the file name and contents.
pub async fn cash_out_file(
    portal: &Portal,
    owner: String,
    size: Option<String>,
) -> Result<(String, Vec<u8>), Refusal> {
    let ops = portal.ops.clone();
    blocking(move || {
        let scratch = ops.state.root.join("cashout");
        let fail = |e: std::io::Error| OpError::Ledger(format!("{}: {e}", scratch.display()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&scratch)
                .map_err(fail)?;
        }
        let path = ops.cash_out(&owner, &scratch, size.as_deref())?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The value is in the pad now: a pad that cannot be read stays
        // where it is, for the operator to hand over.
        let bytes = std::fs::read(&path).map_err(|e| {
            OpError::Ledger(format!(
                "the pad {name} was minted with the balance but cannot be read ({e}); \
                 ask the operator for it"
            ))
        })?;
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("removing the portal's copy of a cashed-out pad: {e}");
        }
        Ok((name, bytes))
    })
    .await
}
