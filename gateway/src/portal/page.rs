//! The portal's HTML pages: `GET /` (sign in with the owner's secret, and
//! how to register), `POST /owner` (the owner's balance, sites and
//! statement), `POST /owner/cashout` (the balance as a pad file).
//! Plain forms, no scripts, no cookies: the secret travels in each form.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use proto::page::Html;
use serde_json::Value;

use super::api::{cash_out_file, pad_download};
use super::{body, Portal, PortalBody, Refusal};

fn page(status: StatusCode, title: &str, body: String) -> Response<PortalBody> {
    let html = proto::page::render(title, &Html::trusted(body), "padnet owner portal");
    let mut r = Response::new(PortalBody::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    r
}

/// A refusal as a page.
pub fn refusal(r: Refusal) -> Response<PortalBody> {
    let mut msg = Html::text(&r.message).as_str().to_string();
    if let Some(f) = &r.field {
        msg = format!("{} (field {})", msg, Html::text(f).as_str());
    }
    let mut resp = page(
        r.status,
        &r.status.to_string(),
        format!("<p>{msg}</p><p><a href=\"/\">Back</a></p>"),
    );
    if let Some(s) = r.retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
    }
    resp
}

const SIGN_IN: &str = "<form method=post action=/owner>\
<p><label>Owner secret <input type=password name=secret size=80 autocomplete=off required></label> \
<button>Show earnings</button></p></form>";

const HOW: &str = "<h2>Register a site</h2>\
<p>Register with the API, then serve the token it returns at the <code>verify_url</code> and ask for verification:</p>\
<pre>curl -X POST http://PORTAL/api/sites -d '{\"host\": \"news.example\", \"per_hit\": \"0.002\", \"per_mib\": \"0.01\", \
\"premium\": [{\"prefix\": \"/reports/\", \"per_hit\": \"0.05\"}]}'\n\
curl -X POST -H 'Authorization: Bearer SECRET' http://PORTAL/api/sites/news.example/verify\n\
curl -X PUT -H 'Authorization: Bearer SECRET' http://PORTAL/api/sites/news.example -d '{\"per_hit\": \"0.003\"}'\n\
curl -H 'Authorization: Bearer SECRET' http://PORTAL/api/owner\n\
curl -X POST -H 'Authorization: Bearer SECRET' http://PORTAL/api/owner/cashout -o earnings.pad</pre>\
<p>The secret is shown once, at registration; keep it. Only verified sites earn. \
A negative <code>per_hit</code> pays readers from your balance (at most once per reader per 10 minutes).</p>\
<p>Premium prefixes apply to plain-HTTP requests only: inside HTTPS the gateway sees no path, so each \
HTTPS connection to your site pays <code>per_hit</code> once and <code>per_mib</code> on its bytes.</p>";

pub async fn route(
    portal: &Portal,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<PortalBody>, Refusal> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => Ok(page(
            StatusCode::OK,
            "padnet owner portal",
            format!("<p>Site owners earn when pads read their sites.</p>{SIGN_IN}{HOW}"),
        )),
        (Method::POST, "/owner") => {
            let secret = form_secret(body(req).await?)?;
            let owner = portal.owner_by_secret(peer, &secret)?;
            let v = portal
                .ops
                .owner_view(&owner)
                .map_err(super::api::op_refusal)?;
            Ok(page(
                StatusCode::OK,
                "Your earnings",
                owner_html(&v, &secret),
            ))
        }
        (Method::POST, "/owner/cashout") => {
            let secret = form_secret(body(req).await?)?;
            let owner = portal.owner_by_secret(peer, &secret)?;
            let (name, bytes) = cash_out_file(portal, owner, None).await?;
            Ok(pad_download(&name, bytes))
        }
        (_, p) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no page at {p}"),
        )),
    }
}

fn form_secret(raw: Bytes) -> Result<String, Refusal> {
    url::form_urlencoded::parse(&raw)
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "the form has no secret"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => Html::text(s).as_str().to_string(),
        Value::Null => "—".into(),
        other => Html::text(&other.to_string()).as_str().to_string(),
    }
}

/// The owner's page: balance (with a cash-out button), sites, statement.
fn owner_html(v: &Value, secret: &str) -> String {
    let cur = text(&v["currency"]);
    let mut out = format!(
        "<p>Owner <code>{}</code>: balance <b>{} {cur}</b></p>\
         <form method=post action=/owner/cashout><input type=hidden name=secret value=\"{}\">\
         <button>Cash out the whole balance as a new pad</button></form>",
        text(&v["owner"]),
        text(&v["balance"]),
        Html::text(secret).as_str()
    );
    out.push_str("<h2>Sites</h2><table border=1 cellpadding=4><tr><th>Host</th><th>Verified</th>\
                  <th>Per hit</th><th>Per MiB</th><th>Premium</th><th>Category</th><th>Hits</th><th>Credits</th></tr>");
    for s in v["sites"].as_array().into_iter().flatten() {
        let premium: Vec<String> = s["premium"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", text(&p["prefix"]), text(&p["per_hit"])))
            .collect();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&s["host"]),
            if s["verified"] == Value::Bool(true) { "yes" } else { "no: serve the token and verify" },
            text(&s["per_hit"]),
            text(&s["per_mib"]),
            premium.join("<br>"),
            text(&s["category"]),
            text(&s["totals"]["hits"]),
            text(&s["totals"]["credits"]),
        ));
    }
    let statement = v["statement"].as_array().map_or(&[][..], |a| &a[..]);
    out.push_str("</table><h2>Earnings</h2><div id=earnings-chart>");
    out.push_str(&super::earnings_chart::earnings_svg(
        statement,
        crate::metering::clock::today(),
        v["currency"].as_str().unwrap_or(""),
    ));
    out.push_str("</div>");
    out.push_str("<h2>Statement (UTC days)</h2><table border=1 cellpadding=4><tr><th>Day</th>\
                  <th>Site</th><th>Hits</th><th>MiB</th><th>Pads paid</th><th>Your credit</th><th>Paid to readers</th></tr>");
    for r in v["statement"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&r["day"]),
            text(&r["site"]),
            text(&r["hits"]),
            text(&r["mib"]),
            text(&r["charged"]),
            text(&r["credits"]),
            text(&r["ad_paid"]),
        ));
    }
    out.push_str("</table><p>Premium prefixes apply to plain-HTTP requests only; an HTTPS connection pays per hit once.</p>");
    out
}
