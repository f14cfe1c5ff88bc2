//! Proving control of a host, as ACME http-01 does: the gateway fetches
//! `http://HOST/.well-known/padnet/TOKEN` itself, through the same guarded
//! fetch as user traffic, and the body must be the token. A failure says
//! what was fetched and what came back.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceExt};

use crate::request::fetch::Fetch;
use crate::Body;

/// The most of a verification answer read (a token is 32 hex digits).
const MAX_ANSWER: usize = 4096;
/// How long a verification fetch may take in all.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where the token for `authority` is fetched.
pub fn verify_url(authority: &str, token: &str) -> String {
    format!("http://{authority}/.well-known/padnet/{token}")
}

/// Fetch the token and compare; `Err` says what happened.
pub async fn check(fetch: &Fetch, authority: &str, token: &str) -> Result<(), String> {
    let url = verify_url(authority, token);
    match tokio::time::timeout(TIMEOUT, fetch_body(fetch.clone(), &url)).await {
        Err(_) => Err(format!(
            "fetching {url}: no answer within {} s",
            TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("fetching {url}: {e}")),
        Ok(Ok((status, body))) => {
            if status != http::StatusCode::OK {
                return Err(format!(
                    "fetching {url}: the site answered {status}, not 200 with the token (body begins {:?})",
                    preview(&body)
                ));
            }
            if body.trim_ascii() == token.as_bytes() {
                Ok(())
            } else {
                Err(format!(
                    "fetching {url}: the body is not the token {token}: it begins {:?}",
                    preview(&body)
                ))
            }
        }
    }
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
    if body.len() > 64 {
        format!("{s}…")
    } else {
        s
    }
}

async fn fetch_body(mut fetch: Fetch, url: &str) -> Result<(http::StatusCode, Bytes), String> {
    let req: Request<Body> = Request::get(url)
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .map_err(|e| format!("bad URL: {e}"))?;
    let resp = fetch
        .ready()
        .await
        .map_err(|e| e.to_string())?
        .call(req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    // Frame by frame (not `Limited`, whose boxed error trips rustc's Send
    // check in the portal's connection future); only the first bytes matter.
    let mut body = resp.into_body();
    let mut out = bytes::BytesMut::new();
    while out.len() <= MAX_ANSWER {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
        if let Some(d) = frame.data_ref() {
            out.extend_from_slice(d);
        }
    }
    out.truncate(MAX_ANSWER);
    Ok((status, out.freeze()))
}
