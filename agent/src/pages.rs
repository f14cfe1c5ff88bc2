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
use proto::headers::SitePrice;
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
                Finished::Cancelled => ("Pad cancelled", "This pad was cancelled, by the holder of the account it is registered to or by the operator; its value moved to that account (or into the pad it was handed to). Use another pad, or top one up from the account.".to_string()),
                Finished::NotActivated => ("Pad not activated", "This pad has not been activated yet: the shop that sold it activates it at the till. Once it is, start the agent again.".to_string()),
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

/// Requests to the agent itself. Only the agent's own origin may use them
/// (see `own_origin`): a page on another site can neither read them nor
/// post to them. The account operations (`/api/account/*`,
/// `/api/pad/receive`, `/account`) take POST; the rest are read-only.
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
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return simple(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            &Html::text("The agent's pages are read with GET or HEAD; account operations are POSTs to /account or /api/account/."),
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
        "/account" => crate::account::page(link, None),
        "/" => {
            let mut r = Response::new(body(home(link, listen)));
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

/// The agent's own page: its status as a table, the sites' prices when it
/// has seen any, and how to point a browser at it.
fn home(link: &Link, listen: std::net::SocketAddr) -> String {
    let s = status_json(link);
    let rows: String = s
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "sites") // a table of its own
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
    page::render(
        "padnet agent",
        &Html::trusted(format!(
            "<table>{rows}</table>{sites}<p><a href=\"/account\">Your account</a>: open one, cancel a lost pad, top up, receive a pad handed to you.</p><p>Point your browser's HTTP proxy at <code>{listen}</code>, \
             or use <a href=\"/proxy.pac\">/proxy.pac</a> for automatic configuration.</p>",
            sites = site_prices(&link.sites.list()).as_str(),
        )),
        "padnet agent",
    )
}

/// The "Site prices" table, empty markup when there are none. Every field
/// came from the network: each goes through [`Html::text`].
fn site_prices(sites: &[SitePrice]) -> Html {
    if sites.is_empty() {
        return Html::trusted(String::new());
    }
    let amount = |a: &str, currency: &str| Html::text(&format!("{a} {currency}"));
    let rows: String = sites
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Html::text(&p.host).as_str(),
                amount(&p.per_hit, &p.currency).as_str(),
                amount(&p.per_mib, &p.currency).as_str(),
                amount(&p.hit, &p.currency).as_str(),
            )
        })
        .collect();
    Html::trusted(format!(
        "<h2>Site prices</h2><table><tr><th>host</th><th>per hit</th><th>per MiB</th>\
         <th>last hit charged</th></tr>{rows}</table>"
    ))
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
        "sites": link.sites.json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tunnel::mint::mint;
    use tunnel::pad::{Mode, PadHeader, Serial, PAGE};
    use tunnel::store::FollowingPad;

    /// A link over a freshly minted pad (never dialled); keep the directory alive.
    fn link() -> (tempfile::TempDir, Arc<Link>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.pad");
        let h = PadHeader {
            mode: Mode::Otp,
            serial: Serial::random(),
            ticket_slots: 8,
            data_size: 16 * PAGE,
            created_unix: 0,
            value_micros: 5_000_000,
            policy_id: [0; 32],
            gateways: vec!["127.0.0.1:1".into()],
        };
        mint(&h, std::slice::from_ref(&path), |_| {}).unwrap();
        let pad = Arc::new(FollowingPad::open(&path, None).unwrap());
        let link = Link::new(pad, vec!["127.0.0.1:1".into()], Duration::from_secs(1));
        (dir, link)
    }

    fn price(host: &str, per_hit: &str, hit: &str) -> SitePrice {
        SitePrice {
            host: host.into(),
            per_hit: per_hit.into(),
            per_mib: "0.01".into(),
            hit: hit.into(),
            currency: "EUR".into(),
        }
    }

    fn listen() -> std::net::SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    mod status_json {
        use super::*;

        #[test]
        fn keeps_every_key_and_adds_sites_sorted_by_host() {
            let (_dir, link) = link();
            let s = status_json(&link);
            let keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            for k in [
                "serial",
                "balance",
                "currency",
                "key_bytes_left",
                "ticket_slots_left",
                "tunnel",
                "gateways",
                "payload_bytes_sent",
                "payload_bytes_received",
                "pad_bytes_sent",
                "pad_bytes_received",
                "pad_bytes_wasted",
                "sites",
            ] {
                assert!(keys.contains(&k), "{k} missing from {s}");
            }
            assert_eq!(s["sites"], serde_json::json!([]));

            let t = Instant::now();
            link.sites.record(price("news.example", "0.002", "0.05"), t);
            link.sites.record(price("ads.example", "-0.01", "0"), t);
            let s = status_json(&link);
            assert_eq!(s["sites"][0]["host"], "ads.example");
            assert_eq!(s["sites"][0]["per_hit"], "-0.01");
            assert_eq!(s["sites"][0]["last_hit"], "0");
            assert_eq!(s["sites"][1]["host"], "news.example");
            assert_eq!(s["sites"][1]["per_mib"], "0.01");
            assert_eq!(s["sites"][1]["last_hit"], "0.05");
            assert_eq!(s["sites"][1]["currency"], "EUR");
        }
    }

    mod home {
        use super::*;

        #[test]
        fn shows_no_price_table_before_any_priced_site() {
            let (_dir, link) = link();
            let page = home(&link, listen());
            assert!(!page.contains("Site prices"), "{page}");
            assert!(!page.contains("<th>sites</th>"), "{page}");
        }

        #[test]
        fn shows_the_prices_seen() {
            let (_dir, link) = link();
            link.sites
                .record(price("news.example", "0.002", "0.05"), Instant::now());
            let page = home(&link, listen());
            assert!(page.contains("<h2>Site prices</h2>"), "{page}");
            assert!(
                page.contains(
                    "<tr><td>news.example</td><td>0.002 EUR</td><td>0.01 EUR</td><td>0.05 EUR</td></tr>"
                ),
                "{page}"
            );
        }
    }

    mod site_prices {
        use super::*;

        #[test]
        fn escapes_every_field() {
            let evil = SitePrice {
                host: "<script>alert(1)</script>".into(),
                per_hit: "\"1".into(),
                per_mib: "'2".into(),
                hit: "&3".into(),
                currency: "<b>".into(),
            };
            let html = site_prices(&[evil]);
            let html = html.as_str();
            assert!(!html.contains("<script>"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
            assert!(html.contains("&lt;script&gt;"), "{html}");
            assert!(html.contains("&quot;1 &lt;b&gt;"), "{html}");
            assert!(html.contains("&#39;2"), "{html}");
            assert!(html.contains("&amp;3"), "{html}");
        }
    }
}
