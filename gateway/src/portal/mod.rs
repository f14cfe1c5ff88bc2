//! The owner portal (`serve --owner-listen ADDR`): site owners register
//! hosts, prove them, set prices, read earnings and cash out, through a JSON
//! API (`api`) and plain HTML pages (`page`). This file is the rim: the
//! listener, request limits, bearer secrets and the rate limit on failures.

mod api;
mod earnings_chart;
mod page;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

pub use crate::rim::Refusal;
use crate::rim::{bearer, Throttle};

use crate::sites::ops::SiteOps;

/// The portal's shared state.
pub struct Portal {
    pub ops: SiteOps,
    throttle: Throttle,
}

impl Portal {
    pub fn new(ops: SiteOps) -> Arc<Portal> {
        Arc::new(Portal {
            ops,
            throttle: Throttle::default(),
        })
    }

    /// Refuse a client that is locked out or over its argon2 budget.
    pub fn admit(&self, peer: IpAddr) -> Result<(), Refusal> {
        self.throttle.admit(peer)
    }

    /// The owner `Authorization: Bearer SECRET` names, if the secret
    /// matches; a wrong or missing one is a 401, and too many a 429.
    pub fn owner(&self, peer: IpAddr, req: &Request<Incoming>) -> Result<String, Refusal> {
        let presented = bearer(req).ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "this needs the owner's secret: Authorization: Bearer SECRET",
            )
        })?;
        self.owner_by_secret(peer, &presented)
    }

    /// The owner a presented secret belongs to (see [`Portal::owner`]).
    pub fn owner_by_secret(&self, peer: IpAddr, presented: &str) -> Result<String, Refusal> {
        self.throttle.admit(peer)?;
        match self.ops.authenticate(presented) {
            Some(owner) => Ok(owner),
            None => {
                self.throttle.failed(peer);
                Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "the secret is not an owner's secret",
                ))
            }
        }
    }
}

pub use crate::rim::body;

/// The portal's response body.
pub type PortalBody = Full<Bytes>;

/// Serve the portal on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, portal: Arc<Portal>) {
    crate::rim::serve(listener, "owner portal", move |peer, req| {
        handle(portal.clone(), peer, req)
    })
    .await
}

async fn handle(
    portal: Arc<Portal>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<PortalBody> {
    let wants_html = !req.uri().path().starts_with("/api/");
    let ledger = portal.ops.ledger.clone();
    if ledger.is_shared() {
        // The owner may have registered on another gateway a moment ago.
        let _ = tokio::task::spawn_blocking(move || ledger.refresh()).await;
    }
    let r = if wants_html {
        page::route(&portal, peer.ip(), req).await
    } else {
        api::route(&portal, peer.ip(), req).await
    };
    r.unwrap_or_else(|refusal| {
        if wants_html {
            page::refusal(refusal)
        } else {
            api::refusal(refusal)
        }
    })
}
