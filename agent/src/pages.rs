//! The agent's own pages (status, balance, proxy.pac) and the error pages a
//! browser sees when the tunnel cannot carry a request, each with the right
//! status and what to do about it.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::link::{Finished, Link, LinkState};
use crate::own_origin::Foreign;
use crate::Body;
use proto::page::{self, escape, Html};

/// The agent's own address, once it listens: every page links to it.
static HOME: OnceLock<SocketAddr> = OnceLock::new();

/// Record where the agent's own page is (the listener's address).
pub fn set_home(listen: SocketAddr) {
    let _ = HOME.set(listen);
}

/// The line every page ends with: where the agent's page is.
fn home_link() -> String {
    match HOME.get() {
        Some(a) => format!(
            "<p><a href=\"http://{a}/\">Your agent's page</a> shows your balance, what you spent and why requests were refused.</p>"
        ),
        None => String::new(),
    }
}

fn body(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

/// An HTML page with a status, a title and a message (markup: escape text
/// with [`Html::text`]).
pub fn simple(status: StatusCode, title: &str, msg: &Html) -> Response<Body> {
    let body_html = Html::trusted(format!("<p>{}</p>{}", msg.as_str(), home_link()));
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

/// The refusal in words, for the agent's list of refusals (the proxy
/// removes it before the browser sees the page).
fn set_reason(r: &mut Response<Body>, why: &str) {
    r.headers_mut()
        .insert(proto::headers::REASON, proto::headers::reason_value(why));
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
                Finished::Cancelled => ("Pad cancelled", "This pad was cancelled, by the holder of the account it is registered to or by the operator; its value moved to that account (or into the pad it was handed to). Use another pad, or top one up from the account.".to_string()),
                Finished::NotActivated => ("Pad not activated", "This pad has not been activated yet: the shop that sold it activates it at the till. Once it is, start the agent again.".to_string()),
            };
            let mut r = simple(StatusCode::PAYMENT_REQUIRED, title, &Html::text(&msg));
            error_code(&mut r, "pad-finished");
            set_reason(&mut r, title);
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
            set_reason(
                &mut r,
                &format!("gateway unreachable: {}", tried.join("; ")),
            );
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

/// Requests to the agent itself. Only the agent's own origin may use them
/// (see `own_origin`): a page on another site can neither read them nor
/// post to them. The account operations (`/api/account/*`,
/// `/api/pad/receive`, `/account`) and `/history/forget` take POST; the
/// rest are read-only.
pub async fn own(
    link: &Link,
    listen: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(foreign) = crate::own_origin::check(req.headers(), listen) {
        let what = match foreign {
            Foreign::Host(h) => format!("Host {h:?}"),
            Foreign::Origin(o) => format!("Origin {o:?}"),
        };
        let why = format!(
            "The agent's pages answer only at http://{listen}/ (or http://localhost:{}/); this request came with {what}.",
            listen.port()
        );
        let mut r = if req.uri().path().starts_with("/api/") {
            crate::account::Answer::error(StatusCode::FORBIDDEN, why).into_response()
        } else {
            simple(StatusCode::FORBIDDEN, "Forbidden", &Html::text(&why))
        };
        error_code(&mut r, "foreign-origin");
        return r;
    }
    let path = req.uri().path();
    if let Some(op) = crate::account::api_operation(path) {
        return crate::account::api(link, op, req).await;
    }
    if path.starts_with("/api/") {
        return crate::account::unknown_api(path);
    }
    if req.method() == Method::POST && (path == "/account" || path == "/account/receive") {
        return crate::account::form(link, req).await;
    }
    if req.method() == Method::POST && path == "/history/forget" {
        return forget_history(link, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return simple(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            &Html::text("The agent's pages are read with GET or HEAD; account operations are POSTs to /account or /api/account/."),
        );
    }
    match req.uri().path() {
        "/status" => {
            let mut r = Response::new(body(crate::home::status_json(link).to_string() + "\n"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        "/proxy.pac" => {
            let pac = format!(
                "// padnet agent. When a site will not load, open http://{listen}/ : it says why.\nfunction FindProxyForURL(url, host) {{\n  return \"PROXY {listen}\";\n}}\n"
            );
            let mut r = Response::new(body(pac));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            r
        }
        "/account" => crate::account::page(link, None),
        "/" => {
            let mut r = Response::new(body(crate::home::home(link, listen)));
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
                "The agent serves /, /account, /status and /proxy.pac. To browse, use it as a proxy.",
            ),
        ),
    }
}

/// `POST /history/forget` (the page's button, with the page token): the
/// history is emptied and its file removed; back to the page.
async fn forget_history(link: &Link, req: Request<Incoming>) -> Response<Body> {
    let form = match crate::account::read_body(req.into_body(), 1024).await {
        Ok(b) => b,
        Err(a) => return simple(a.status, "Bad request", &Html::text(&a.message())),
    };
    let token = form_urlencoded::parse(&form[..])
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    if !link.token_ok(token.as_deref()) {
        let mut r = simple(
            StatusCode::FORBIDDEN,
            "Not from the agent's page",
            &Html::text("This form did not come from the agent's own page (its token is missing or stale: the agent restarted?). Nothing was forgotten."),
        );
        r.headers_mut().insert(
            proto::headers::ERROR,
            http::HeaderValue::from_static("form-token"),
        );
        return r;
    }
    // Past charges not yet settled belong to the forgotten past too.
    link.settle_charges();
    let result = link.history.forget();
    match result {
        Ok(()) => {
            tracing::info!("spending history forgotten");
            let mut r = Response::new(body(String::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut().insert(
                http::header::LOCATION,
                http::HeaderValue::from_static("/#spending"),
            );
            r
        }
        Err(e) => simple(
            StatusCode::INTERNAL_SERVER_ERROR,
            "History not forgotten",
            &Html::text(&format!("The history could not be removed: {e}")),
        ),
    }
}

/// The page for a request the gateway refused, in the agent's words: what
/// happened (the gateway's reason), what to do next, and the way to the
/// agent's page. `code` and `reason` came from the gateway: escaped.
pub fn refused(status: StatusCode, code: &str, reason: &str) -> Response<Body> {
    let (title, next) = match code {
        "value-exhausted" => (
            "Value used up",
            "Top up this pad from your account, or start the agent with a new pad.",
        ),
        "daily-limit" => (
            "Daily limit reached",
            "This pad's policy sets a daily limit; it resets at midnight UTC.",
        ),
        "policy-denied" => (
            "Not allowed by this pad's policy",
            "Whoever issued this pad (your employer) set a policy that does not allow this. Ask them if you need it.",
        ),
        "rate-limited" => (
            "Too many requests",
            "This pad's policy limits requests per minute; wait the time given and reload.",
        ),
        "private-upstream" | "port-not-allowed" => (
            "Not reachable through padnet",
            "padnet's gateway does not reach private networks or unusual ports.",
        ),
        "upstream-unreachable" | "origin-headers-too-large" => (
            "Site unreachable",
            "The gateway could not get this page from the site; the site may be down. Reload later.",
        ),
        "ledger-unavailable" => (
            "Payments paused",
            "The gateway cannot record payments right now; nothing was charged. Reload shortly.",
        ),
        _ => ("Refused", "Reload, or see the agent's page."),
    };
    let mut r = simple(
        status,
        title,
        &Html::trusted(format!(
            "{}</p><p>{}",
            Html::text(reason).as_str(),
            Html::text(next).as_str()
        )),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert(proto::headers::ERROR, v);
    }
    r
}
