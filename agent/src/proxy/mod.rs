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
    Ok(if req.method() == Method::CONNECT {
        connect::connect(&link, req, permit).await
    } else if req.uri().scheme().is_some() {
        forward::forward(&link, req).await
    } else {
        pages::own(&link, listen, req)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderMap, HeaderValue};

    #[test]
    fn strips_connection_specific_headers_for_h2() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
