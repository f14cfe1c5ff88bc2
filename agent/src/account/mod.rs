//! The user's money operations at the agent: `POST /api/account/{open,
//! register,show,cancel,topup,withdraw}` and `POST /api/pad/receive` (JSON
//! answers), and the `/account` page with the same as plain HTML forms.
//! Each operation is checked here with the gateway's own parser, then
//! carried through the tunnel to the gateway's account service.
//!
//! - `receive`: a handed-over pad file becomes proofs of possession.
//! - `page`: the `/account` page and its forms (per-process token).

mod page;
mod receive;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use proto::account::{AccountRequest, Operation, AUTHORITY, MAX_BODY};
use serde_json::{json, Value};

use crate::link::{Finished, Link, LinkState};
use crate::Body;

pub use page::{form, page};
pub use receive::{Upload, UploadError};

/// The most of a gateway answer the agent reads.
const MAX_ANSWER: usize = 64 * 1024;

/// An operation's outcome: the status and JSON body the API answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn error(status: StatusCode, msg: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({ "error": msg.into() }),
        }
    }

    fn field(e: proto::account::FieldError) -> Answer {
        Answer {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": e.to_string(), "field": e.field }),
        }
    }

    /// The message of a failed answer.
    pub fn message(&self) -> String {
        self.body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string())
    }

    pub fn into_response(self) -> Response<Body> {
        json_response(self.status, &self.body)
    }
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{v}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The operation an API path names (`/api/account/NAME`, `/api/pad/receive`).
pub fn api_operation(path: &str) -> Option<Operation> {
    if path == "/api/pad/receive" {
        return Some(Operation::Receive);
    }
    let name = path.strip_prefix("/api/account/")?;
    Operation::ALL
        .into_iter()
        .find(|o| o.name() == name && *o != Operation::Receive)
}

/// Answer a path under `/api/` that names no operation.
pub fn unknown_api(path: &str) -> Response<Body> {
    let names: Vec<String> = Operation::ALL
        .into_iter()
        .map(|o| match o {
            Operation::Receive => "/api/pad/receive".to_string(),
            o => format!("/api/account/{}", o.name()),
        })
        .collect();
    Answer::error(
        StatusCode::NOT_FOUND,
        format!(
            "{path} is not an operation of the agent; they are {}",
            names.join(", ")
        ),
    )
    .into_response()
}

/// Answer `POST /api/account/NAME` (a JSON object) or `POST
/// /api/pad/receive` (the pad file itself).
pub async fn api(link: &Link, op: Operation, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return Answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "account operations take POST",
        )
        .into_response();
    }
    let answer = if op == Operation::Receive {
        match receive::proofs_from_body(link, req.into_body()).await {
            Ok(request) => ask_gateway(link, &request).await,
            Err(a) => a,
        }
    } else {
        // A JSON body only: a form on another site cannot send one
        // without the browser asking first (and the agent never says yes).
        // Exactly one Content-Type: with two, which one counts would be
        // a guess.
        let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
        let json = match (types.next(), types.next()) {
            (Some(v), None) => v.to_str().is_ok_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            }),
            _ => false,
        };
        if !json {
            return Answer::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request as Content-Type: application/json",
            )
            .into_response();
        }
        match read_body(req.into_body(), MAX_BODY).await {
            Err(a) => a,
            Ok(body) => match AccountRequest::parse(op, &body) {
                Err(e) => Answer::field(e),
                Ok(request) => ask_gateway(link, &request).await,
            },
        }
    };
    answer.into_response()
}

/// Read a body of at most `max` bytes.
pub(crate) async fn read_body(
    mut body: Incoming,
    max: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Answer> {
    let mut out = zeroize::Zeroizing::new(Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Answer::error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
        })?;
        if let Some(d) = frame.data_ref() {
            if out.len() + d.len() > max {
                return Err(Answer::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {max} bytes"),
                ));
            }
            out.extend_from_slice(d);
        }
    }
    Ok(out)
}

/// Carry `request` through the tunnel to the gateway's account service.
pub async fn ask_gateway(link: &Link, request: &AccountRequest) -> Answer {
    let mut sender = match link.sender().await {
        Ok(s) => s,
        Err(state) => return unavailable(&state),
    };
    let body = request.to_body();
    let uri = format!("http://{AUTHORITY}{}", request.operation().path());
    let mut req = Request::new(
        Full::new(Bytes::copy_from_slice(&body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *req.method_mut() = Method::POST;
    *req.version_mut() = Version::HTTP_2;
    match uri.parse() {
        Ok(u) => *req.uri_mut() = u,
        Err(e) => return Answer::error(StatusCode::INTERNAL_SERVER_ERROR, format!("{uri}: {e}")),
    }
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            return Answer::error(
                StatusCode::BAD_GATEWAY,
                format!("the tunnel failed while carrying the request: {e}; nothing may have changed, check with show"),
            )
        }
    };
    let status = resp.status();
    let bytes = match read_body(resp.into_body(), MAX_ANSWER).await {
        Ok(b) => b,
        Err(a) => {
            return Answer::error(
                StatusCode::BAD_GATEWAY,
                format!("the gateway's answer: {}", a.message()),
            )
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(body @ Value::Object(_)) => Answer { status, body },
        _ => Answer::error(
            StatusCode::BAD_GATEWAY,
            format!("the gateway answered {status} without a JSON object (an older gateway without accounts?)"),
        ),
    }
}

/// The answer when the tunnel cannot carry an operation.
fn unavailable(state: &LinkState) -> Answer {
    match state {
        LinkState::Finished { reason } => {
            let why = match reason {
                Finished::Cancelled => "this pad was cancelled",
                Finished::NotActivated => "this pad is not activated yet",
                Finished::KeyExhausted | Finished::NoTickets => {
                    "this pad's key material is used up"
                }
                Finished::ValueExhausted => "this pad's value is used up",
            };
            Answer::error(
                StatusCode::PAYMENT_REQUIRED,
                format!("{why}: the agent cannot reach the gateway with it. Use another pad's agent for your account."),
            )
        }
        LinkState::Down { tried } => Answer::error(
            StatusCode::BAD_GATEWAY,
            format!(
                "no gateway reachable ({}); nothing was sent",
                tried.join("; ")
            ),
        ),
        _ => Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the tunnel is still connecting; nothing was sent, try again in a moment",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_name_the_operations() {
        assert_eq!(api_operation("/api/account/open"), Some(Operation::Open));
        assert_eq!(
            api_operation("/api/account/withdraw"),
            Some(Operation::Withdraw)
        );
        assert_eq!(api_operation("/api/pad/receive"), Some(Operation::Receive));
        assert_eq!(api_operation("/api/account/receive"), None);
        assert_eq!(api_operation("/api/account/"), None);
        assert_eq!(api_operation("/api/account/open/x"), None);
    }
}
