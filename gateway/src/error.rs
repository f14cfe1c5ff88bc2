//! The one place gateway failures become HTTP answers: each error kind maps to
//! a status and a page saying what happened and what to do, with an
//! `x-padnet-error` code the agent and tests can read.

use std::error::Error as StdError;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::metrics::Outcome;
use crate::units::format_amount;
use crate::Body;

/// The future of every layer of the request stack: a response, or the
/// error that becomes the user's page.
pub type BoxFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<Body>, GatewayError>> + Send>,
>;

/// Refusal to reach a non-public address (raised by the upstream guard, in
/// the resolver, and found again here by walking an error's sources).
#[derive(Debug, thiserror::Error)]
#[error("upstream {host} resolves only to non-public addresses, which this gateway does not reach")]
pub struct PrivateUpstream {
    pub host: String,
}

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The origin's addresses are loopback/private/link-local and the operator did not allow them.
    #[error("{0}")]
    PrivateUpstream(#[from] PrivateUpstream),
    /// CONNECT to a port the gateway does not tunnel.
    #[error("CONNECT to port {0} is not allowed (allowed: {1})")]
    PortNotAllowed(u16, String),
    /// The request is malformed (no host, bad URI...).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The pad's value cannot cover the request.
    #[error("this pad's value is used up: {spent} {currency} spent, {balance} {currency} left, which does not cover {what}. Buy a new pad to continue.", spent = format_amount(*spent), balance = format_amount(*balance), what = site_price.as_deref().map_or("a request".to_string(), |p| format!("this page ({p})")))]
    ValueExhausted {
        balance: i64,
        spent: i64,
        currency: String,
        /// The site's prices, when the request was to a priced site.
        site_price: Option<String>,
    },
    /// The pad's employer policy does not allow the request.
    #[error("{message} (policy \"{policy}\", rule {rule})")]
    PolicyDenied {
        policy: String,
        rule: String,
        message: String,
    },
    /// Over the pad's policy rate limit.
    #[error("too many requests: this pad's policy allows {per_minute} per minute; try again in {retry_after_secs} s")]
    RateLimited {
        per_minute: u32,
        retry_after_secs: u64,
    },
    /// A daily limit of the pad's policy is reached.
    #[error("this pad's daily limit {limit} is reached ({detail}); it resets at midnight UTC")]
    DailyLimit { limit: &'static str, detail: String },
    /// The ledger could not record the reservation (nothing was served).
    #[error("the gateway cannot record payments right now ({0}); nothing was charged, try again shortly")]
    Ledger(String),
    /// The origin's response headers are more than the tunnel carries.
    #[error("{host} answered with {size} bytes of headers; the tunnel carries at most {limit}")]
    OriginHeadersTooLarge {
        host: String,
        size: usize,
        limit: usize,
    },
    /// The origin could not be reached.
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
}

impl GatewayError {
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            GatewayError::PrivateUpstream(_) => (StatusCode::FORBIDDEN, "private-upstream"),
            GatewayError::PortNotAllowed(..) => (StatusCode::FORBIDDEN, "port-not-allowed"),
            GatewayError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            GatewayError::Unreachable { .. } => (StatusCode::BAD_GATEWAY, "upstream-unreachable"),
            GatewayError::ValueExhausted { .. } => {
                (StatusCode::PAYMENT_REQUIRED, "value-exhausted")
            }
            GatewayError::PolicyDenied { .. } => (StatusCode::FORBIDDEN, "policy-denied"),
            GatewayError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            GatewayError::DailyLimit { .. } => (StatusCode::PAYMENT_REQUIRED, "daily-limit"),
            GatewayError::Ledger(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger-unavailable"),
            GatewayError::OriginHeadersTooLarge { .. } => {
                (StatusCode::BAD_GATEWAY, "origin-headers-too-large")
            }
        }
    }

    /// How `padnet_requests_total` counts this failure's answer.
    pub fn outcome(&self) -> Outcome {
        match self {
            GatewayError::ValueExhausted { .. } => Outcome::ValueExhausted,
            GatewayError::DailyLimit { .. } => Outcome::DailyLimit,
            GatewayError::PolicyDenied { .. }
            | GatewayError::PrivateUpstream(_)
            | GatewayError::PortNotAllowed(..) => Outcome::Forbidden,
            GatewayError::RateLimited { .. } => Outcome::RateLimited,
            other => Outcome::of_status(other.status_and_code().0),
        }
    }

    /// Classify a client error by walking its sources.
    pub fn from_client(host: &str, e: &(dyn StdError + 'static)) -> GatewayError {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(p) = err.downcast_ref::<PrivateUpstream>() {
                return GatewayError::PrivateUpstream(PrivateUpstream {
                    host: p.host.clone(),
                });
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(p) = io
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<PrivateUpstream>())
                {
                    return GatewayError::PrivateUpstream(PrivateUpstream {
                        host: p.host.clone(),
                    });
                }
            }
            cur = err.source();
        }
        let mut reason = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        GatewayError::Unreachable {
            host: host.to_string(),
            reason,
        }
    }

    /// The page the user sees (through the agent).
    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let msg = proto::page::Html::text(&self.to_string());
        let page = proto::page::render(
            &status.to_string(),
            &proto::page::Html::trusted(format!("<p>{}</p>", msg.as_str())),
            "padnet gateway",
        );
        let mut resp = Response::new(
            Full::new(Bytes::from(page))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(proto::headers::ERROR, http::HeaderValue::from_static(code));
        h.insert(
            proto::headers::REASON,
            proto::headers::reason_value(&self.to_string()),
        );
        if let Some(secs) = retry_after {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        resp
    }
}
