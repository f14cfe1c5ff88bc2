//! The browser-facing HTTP/1.1 proxy: dispatch by request form.
//! `CONNECT` becomes an h2 CONNECT stream through the tunnel ([`connect`]),
//! absolute-form requests become h2 requests ([`forward`]), and origin-form
//! requests to the agent itself get the agent's own pages.

mod connect;
mod forward;

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::access::ProxyAuth;
use crate::link::Link;
use crate::pages;
use crate::Body;

pub use proto::headers::strip_hop_by_hop;

/// A connection's place under the connection cap (`--max-connections`), given back when
/// the connection ends; a CONNECT tunnel keeps it past the upgrade.
pub type Permit = Arc<tokio::sync::OwnedSemaphorePermit>;

/// The 431 page for a request whose header list is more than the tunnel
/// carries: it is never sent (h2 would close the tunnel over it).
fn too_large_for_the_tunnel(
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<Response<Body>> {
    let size = proto::h2::request_header_list_size(method, uri, headers);
    (size >= proto::h2::MAX_HEADER_LIST as usize).then(|| pages::headers_too_large(size))
}

/// Dispatch one browser request (after its credentials, with `auth`);
/// `permit` is its connection's place under the connection cap, which a
/// CONNECT tunnel keeps until it ends.
pub async fn handle(
    link: Arc<Link>,
    listen: std::net::SocketAddr,
    auth: Option<Arc<ProxyAuth>>,
    permit: Permit,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let proxied = req.method() == Method::CONNECT || req.uri().scheme().is_some();
    if let Some(auth) = auth {
        let given = if proxied {
            req.headers().get(http::header::PROXY_AUTHORIZATION)
        } else {
            req.headers().get(http::header::AUTHORIZATION)
        };
        if !auth.allows(given) {
            return Ok(pages::credentials_required(proxied));
        }
    }
    if proxied && is_account_service(req.uri()) {
        // Only the agent's own account code speaks to it: a page the
        // browser loads must not reach the user's money through the proxy.
        return Ok(pages::simple(
            http::StatusCode::FORBIDDEN,
            "Reserved",
            &proto::page::Html::text(&format!(
                "{} is the gateway's account service; only the agent's own page reaches it.",
                proto::account::AUTHORITY
            )),
        ));
    }
    Ok(if req.method() == Method::CONNECT {
        connect::connect(&link, req, permit).await
    } else if req.uri().scheme().is_some() {
        forward::forward(&link, req).await
    } else {
        pages::own(&link, listen, req).await
    })
}

/// Keep a refusal (a response naming `x-padnet-error`) for the agent's
/// page, then drop its reason header: the browser has the page.
fn note_refusal(link: &Link, host: &str, resp: &mut Response<Body>) {
    link.refusals
        .record_answer(host, resp.status(), resp.headers());
    resp.headers_mut().remove(proto::headers::REASON);
}

/// Whether a proxied request names the account service's authority (in any
/// case, with or without a trailing dot).
fn is_account_service(uri: &http::Uri) -> bool {
    uri.host().is_some_and(|h| {
        h.trim_end_matches('.')
            .eq_ignore_ascii_case(proto::account::AUTHORITY)
    })
}
