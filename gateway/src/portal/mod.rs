//! The owner portal (`serve --owner-listen ADDR`): site owners register
//! hosts, prove them, set prices, read earnings and cash out, through a JSON
//! API (`api`) and plain HTML pages (`page`). This file is the rim: the
//! listener, request limits, bearer secrets and the rate limit on failures.

mod api;
mod page;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::sites::ops::SiteOps;

/// The most of a request body the portal reads.
pub const MAX_BODY: usize = 64 * 1024;
/// Failed secrets allowed per client address per minute before it must wait.
pub const FAILURES_PER_MINUTE: u32 = 5;
/// Argon2 work (registrations, secret checks) per client address per minute.
pub const COSTLY_PER_MINUTE: u32 = 60;

type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// The portal's shared state.
pub struct Portal {
    pub ops: SiteOps,
    /// Failed bearer secrets, per client address.
    failures: Limiter,
    /// Argon2 work per client address (hashing costs memory and time).
    costly: Limiter,
    /// Addresses that used up their failures, and until when.
    locked: std::sync::Mutex<std::collections::HashMap<IpAddr, Instant>>,
}

/// Why a request was refused, as the status and message it gets.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
}

fn per_minute(n: u32) -> governor::Quota {
    governor::Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Portal {
    pub fn new(ops: SiteOps) -> Arc<Portal> {
        Arc::new(Portal {
            ops,
            failures: governor::RateLimiter::keyed(per_minute(FAILURES_PER_MINUTE)),
            costly: governor::RateLimiter::keyed(per_minute(COSTLY_PER_MINUTE)),
            locked: Default::default(),
        })
    }

    /// Refuse a client that is locked out for failed secrets, or has used up
    /// its argon2 budget.
    fn admit(&self, peer: IpAddr) -> Result<(), Refusal> {
        let now = Instant::now();
        let locked = {
            let mut m = self.locked.lock().unwrap_or_else(|p| p.into_inner());
            m.retain(|_, until| *until > now);
            m.get(&peer).copied()
        };
        if let Some(until) = locked {
            let secs = until.duration_since(now).as_secs().max(1);
            return Err(Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many wrong secrets from this address; try again in {secs} s"),
                )
            });
        }
        if self.costly.check_key(&peer).is_err() {
            return Err(Refusal {
                retry_after: Some(60),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("more than {COSTLY_PER_MINUTE} requests a minute from this address"),
                )
            });
        }
        Ok(())
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
        self.admit(peer)?;
        match self.ops.authenticate(presented) {
            Some(owner) => Ok(owner),
            None => {
                if let Err(not_until) = self.failures.check_key(&peer) {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    let until = Instant::now() + wait.max(Duration::from_secs(1));
                    self.locked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(peer, until);
                }
                Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "the secret is not an owner's secret",
                ))
            }
        }
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Read a request body, at most [`MAX_BODY`] bytes (413 beyond).
pub async fn body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    // Frame by frame rather than through `Limited`, whose boxed error type
    // trips rustc's Send check for the connection future.
    let mut incoming = req.into_body();
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > MAX_BODY {
                return Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out.freeze())
}

/// The portal's response body.
pub type PortalBody = Full<Bytes>;

/// Serve the portal on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, portal: Arc<Portal>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("owner portal accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let portal = portal.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let portal = portal.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(portal, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    portal: Arc<Portal>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<PortalBody> {
    let wants_html = !req.uri().path().starts_with("/api/");
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
