//! The agent's own pages (status, balance, proxy.pac) and the error pages a
//! browser sees when the tunnel cannot carry a request, each with the right
//! status and what to do about it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::link::{Finished, Link, LinkState};
use crate::own_origin::Foreign;
use crate::Body;
pub use policy::units::format_amount;
use proto::page::{self, escape, Html};

fn body(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

/// An HTML page with a status, a title and a message (markup: escape text
/// with [`Html::text`]).
pub fn simple(status: StatusCode, title: &str, msg: &Html) -> Response<Body> {
    let body_html = Html::trusted(format!("<p>{}</p>", msg.as_str()));
    let page = page::render(
        &format!("{} {title}", status.as_u16()),
        &body_html,
        "padnet agent",
    );
    let mut r = Response::new(body(page));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn error_code(r: &mut Response<Body>, code: &'static str) {
    r.headers_mut()
        .insert(proto::headers::ERROR, HeaderValue::from_static(code));
}

/// The page for a request the link could not carry.
pub fn link_error(state: &LinkState, link: &Link) -> Response<Body> {
    match state {
        LinkState::Finished { reason } => {
            let (title, msg) = match reason {
                Finished::KeyExhausted => (
                    "Pad used up",
                    "This pad's key material is used up, so nothing more can be sent safely. Buy a new pad and start the agent with it.".to_string(),
                ),
                Finished::NoTickets => (
                    "Pad used up",
                    "This pad has opened as many tunnels as it has tickets for. Buy a new pad and start the agent with it.".to_string(),
                ),
                Finished::ValueExhausted => ("Value used up", "This pad's value is used up. Buy a new pad, or top up your account.".to_string()),
                Finished::Cancelled => ("Pad cancelled", "The operator cancelled this pad.".to_string()),
                Finished::NotActivated => ("Pad not activated", "This pad has not been activated yet.".to_string()),
            };
            let mut r = simple(StatusCode::PAYMENT_REQUIRED, title, &Html::text(&msg));
            error_code(&mut r, "pad-finished");
            r
        }
        LinkState::Down { tried } => {
            let list: String = tried
                .iter()
                .map(|t| format!("<li>{}</li>", escape(t)))
                .collect();
            let mut r = simple(
                StatusCode::BAD_GATEWAY,
                "Gateway unreachable",
                &Html::trusted(format!("The agent could not open a tunnel to any gateway of this pad. It tried:<ul>{list}</ul>It keeps retrying; reload in a moment.")),
            );
            error_code(&mut r, "gateway-unreachable");
            r
        }
        _ => {
            let tried: Vec<String> = link.addrs.clone();
            simple(
                StatusCode::BAD_GATEWAY,
                "Gateway unreachable",
                &Html::text(&format!(
                    "The tunnel is still connecting to {}; reload in a moment.",
                    tried.join(", ")
                )),
            )
        }
    }
}

/// The page for a request whose headers the tunnel does not carry: it is
/// never sent (a header block that large would close the tunnel).
pub fn headers_too_large(size: usize) -> Response<Body> {
    let mut r = simple(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Request headers too large",
        &Html::text(&format!(
            "This request's headers come to {size} bytes; the tunnel carries at most {} per request. \
             It was not sent, and nothing was charged. Clearing this site's cookies usually helps.",
            proto::h2::MAX_HEADER_LIST
        )),
    );
    error_code(&mut r, "request-headers-too-large");
    r
}

/// The answer to a request without the agent's credentials (`--proxy-auth`):
/// 407 for proxied requests, 401 for the agent's own pages.
pub fn credentials_required(proxied: bool) -> Response<Body> {
    let (status, challenge) = if proxied {
        (
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            header::PROXY_AUTHENTICATE,
        )
    } else {
        (StatusCode::UNAUTHORIZED, header::WWW_AUTHENTICATE)
    };
    let mut r = simple(
        status,
        "Credentials required",
        &Html::text("This agent was started with --proxy-auth: give the user name and password from its file."),
    );
    r.headers_mut().insert(
        challenge,
        HeaderValue::from_static("Basic realm=\"padnet agent\", charset=\"UTF-8\""),
    );
    error_code(&mut r, "credentials-required");
    r
}

/// The page for a request the tunnel dropped.
pub fn tunnel_failed(err: &str) -> Response<Body> {
    let mut r = simple(
        StatusCode::BAD_GATEWAY,
        "Tunnel failed",
        &Html::text(&format!(
            "The tunnel failed while carrying this request: {err}. The agent reconnects by itself; reload."
        )),
    );
    error_code(&mut r, "tunnel-failed");
    r
}

/// Requests to the agent itself. Only the agent's own origin may read them
/// (see `own_origin`), and only with GET or HEAD: none of them changes
/// anything.
pub fn own(link: &Link, listen: std::net::SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if let Err(foreign) = crate::own_origin::check(req.headers(), listen) {
        let what = match foreign {
            Foreign::Host(h) => format!("Host {h:?}"),
            Foreign::Origin(o) => format!("Origin {o:?}"),
        };
        let mut r = simple(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &Html::text(&format!(
                "The agent's pages answer only at http://{listen}/ (or http://localhost:{}/); this request came with {what}.",
                listen.port()
            )),
        );
        error_code(&mut r, "foreign-origin");
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return simple(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            &Html::text("The agent's pages are read-only: GET or HEAD."),
        );
    }
    match req.uri().path() {
        "/status" => {
            let mut r = Response::new(body(status_json(link).to_string() + "\n"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        "/proxy.pac" => {
            let pac = format!(
                "function FindProxyForURL(url, host) {{\n  return \"PROXY {listen}\";\n}}\n"
            );
            let mut r = Response::new(body(pac));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            r
        }
        "/" => {
            let s = status_json(link);
            let rows: String = s
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!(
                                "<tr><th>{}</th><td>{}</td></tr>",
                                escape(k),
                                escape(&v.to_string())
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let page = page::render(
                "padnet agent",
                &Html::trusted(format!(
                    "<table>{rows}</table><p>Point your browser's HTTP proxy at <code>{listen}</code>, \
                     or use <a href=\"/proxy.pac\">/proxy.pac</a> for automatic configuration.</p>"
                )),
                "padnet agent",
            );
            let mut r = Response::new(body(page));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        _ => simple(
            StatusCode::NOT_FOUND,
            "Not found",
            &Html::text(
                "The agent serves /, /status and /proxy.pac. To browse, use it as a proxy.",
            ),
        ),
    }
}

/// The agent's status as JSON.
pub fn status_json(link: &Link) -> serde_json::Value {
    let h = link.pad.header();
    let t = &link.totals;
    let spent = t.max(|s| s.lease_hwm.load(Ordering::Relaxed));
    let balance = t.balance().unwrap_or(h.value_micros);
    serde_json::json!({
        "serial": h.serial.to_string(),
        "balance": format_amount(balance),
        "currency": t.currency(),
        "key_bytes_left": h.data_size.saturating_sub(spent),
        "ticket_slots_left": link.pad.slots_left(),
        "tunnel": link.state.borrow().word(),
        "gateways": link.addrs,
        "payload_bytes_sent": t.sum(|s| s.payload_sent.load(Ordering::Relaxed)),
        "payload_bytes_received": t.sum(|s| s.payload_recv.load(Ordering::Relaxed)),
        "pad_bytes_sent": t.sum(|s| s.pad_sent.load(Ordering::Relaxed)),
        "pad_bytes_received": t.sum(|s| s.pad_recv.load(Ordering::Relaxed)),
        "pad_bytes_wasted": t.sum(|s| s.pad_wasted.load(Ordering::Relaxed)),
    })
}
