//! The rim shared by the gateway's small HTTP services (the owner portal,
//! the retail till API): refusals as status and message, bounded bodies,
//! bearer secrets, and a per-address throttle on failed secrets and on
//! argon2 work.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::sites::ops::OpError;

/// These services' response body.
pub type Body = Full<Bytes>;

/// The most of a request body these services read.
pub const MAX_BODY: usize = 64 * 1024;
/// Failed secrets allowed per client address per minute before it must wait.
pub const FAILURES_PER_MINUTE: u32 = 5;
/// Argon2 work (registrations, secret checks) per client address per minute.
pub const COSTLY_PER_MINUTE: u32 = 60;

type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

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

/// Per client address: failed secrets (then a lockout) and argon2 work.
pub struct Throttle {
    failures: Limiter,
    costly: Limiter,
    /// Addresses that used up their failures, and until when.
    locked: std::sync::Mutex<std::collections::HashMap<IpAddr, Instant>>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            failures: governor::RateLimiter::keyed(per_minute(FAILURES_PER_MINUTE)),
            costly: governor::RateLimiter::keyed(per_minute(COSTLY_PER_MINUTE)),
            locked: Default::default(),
        }
    }
}

impl Throttle {
    /// Refuse a client that is locked out for failed secrets, or has used up
    /// its argon2 budget.
    pub fn admit(&self, peer: IpAddr) -> Result<(), Refusal> {
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

    /// Count a wrong secret from `peer`; past the allowance it is locked out.
    pub fn failed(&self, peer: IpAddr) {
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
    }
}

/// The secret of `Authorization: Bearer SECRET`, if sent.
pub fn bearer(req: &Request<Incoming>) -> Option<String> {
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

/// An operation's failure as the API answers it.
pub fn op_refusal(e: OpError) -> Refusal {
    let status = match &e {
        OpError::Input(_) => StatusCode::BAD_REQUEST,
        OpError::NotFound(_) => StatusCode::NOT_FOUND,
        OpError::Forbidden(_) => StatusCode::FORBIDDEN,
        OpError::Conflict(_) => StatusCode::CONFLICT,
        OpError::Unverified(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OpError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let field = match &e {
        OpError::Input(f) => Some(f.field.clone()),
        _ => None,
    };
    Refusal {
        field,
        ..Refusal::new(status, e.to_string())
    }
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// A refusal as JSON (`{"error", "field"}`); a 401 names `realm`.
pub fn json_refusal(r: Refusal, realm: &str) -> Response<Body> {
    let mut v = json!({ "error": r.message });
    if let Some(f) = &r.field {
        v["field"] = Value::String(f.clone());
    }
    let mut resp = json_response(r.status, &v);
    if let Some(s) = r.retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
    }
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
                .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer")),
        );
    }
    resp
}

/// Serve HTTP/1.1 on `listener` until the task is dropped: `handle` answers
/// each request (given the client's address); headers must arrive within
/// 10 s and fit in 64 KiB.
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, what: &'static str, handle: F)
where
    F: Fn(std::net::SocketAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{what} accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let answer = handle(peer, req);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Run a blocking operation (a ledger write waits for its flush) off the runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(op_refusal)
}
