//! The `/account` page: every account operation as a plain HTML form (no
//! JavaScript), each carrying the agent's per-process token, and the
//! answer of the last one. A form posted without the token (from a page
//! on another site) is refused before anything is read or sent.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::Incoming;
use proto::account::{AccountRequest, Operation, MAX_BODY};
use proto::page::{self, escape, Html};
use serde_json::{Map, Value};

use super::receive::{self, Upload};
use super::{ask_gateway, read_body, Answer};
use crate::link::Link;
use crate::Body;

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not framed by another site (no clickjacking), forms post only here.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `GET /account`: the forms, with `result` (the last answer) on top.
pub fn page(link: &Link, result: Option<(StatusCode, Html)>) -> Response<Body> {
    let token = escape(&link.page_token);
    let field = |name: &str, label: &str, kind: &str, extra: &str| {
        format!("<label>{label} <input name={name} type={kind} {extra} required></label> ")
    };
    let account = field(
        "account",
        "Account number",
        "text",
        "autocomplete=off size=22",
    );
    let pin = field(
        "pin",
        "PIN",
        "password",
        "inputmode=numeric autocomplete=off minlength=6 maxlength=20",
    );
    let serial = field(
        "serial",
        "Serial of the pad to cancel",
        "text",
        "autocomplete=off",
    );
    let amount = field(
        "amount",
        "Amount",
        "text",
        "inputmode=decimal autocomplete=off",
    );
    let form = |op: Operation, title: &str, what: &str, fields: &[&str]| {
        format!(
            "<section><h2>{title}</h2><p>{what}</p><form method=post action=/account>\
             <input type=hidden name=op value={op}><input type=hidden name=token value=\"{token}\">\
             {fields}<button>{title}</button></form></section>",
            op = op.name(),
            fields = fields.concat(),
        )
    };
    let (status, banner) = match result {
        Some((s, h)) => (
            s,
            format!("<section><h2>Result</h2>{}</section>", h.as_str()),
        ),
        None => (StatusCode::OK, String::new()),
    };
    let serial_in_use = link.pad.header().serial;
    let body = format!(
        "{banner}<p>The pad in use is <code>{serial_in_use}</code>. An account keeps value for \
         the pads registered to it: cancel a lost pad and its value moves there. The account \
         number and PIN are all it takes; nothing else about you is kept.</p>\
         {open}{register}{show}{cancel}{topup}{withdraw}\
         <section><h2>Receive a pad</h2><p>Someone handed you a pad file: its whole value moves \
         into the pad in use, and the file (and every copy of it) is worthless afterwards.</p>\
         <form method=post action=/account/receive enctype=multipart/form-data>\
         <input type=hidden name=token value=\"{token}\">\
         <label>Pad file <input name=pad type=file required></label> <button>Receive</button></form></section>\
         <p><a href=/>Back to the agent's page</a></p>",
        open = form(Operation::Open, "Open an account", "Choose a PIN of at least 6 digits; the pad in use is registered to the new account. Write down the account number you get.", &[&pin]),
        register = form(Operation::Register, "Register this pad", "Register the pad in use to an account you have.", &[&account, &pin]),
        show = form(Operation::Show, "Show the account", "Its balance and its pads.", &[&account, &pin]),
        cancel = form(Operation::Cancel, "Cancel a lost pad", "The pad stops at once and its value moves to the account.", &[&account, &pin, &serial]),
        topup = form(Operation::Topup, "Top up this pad", "From the account to the pad in use.", &[&account, &pin, &amount]),
        withdraw = form(Operation::Withdraw, "Withdraw to the account", "From the pad in use to the account.", &[&account, &pin, &amount]),
    );
    html(
        status,
        page::render("Your account", &Html::trusted(body), "padnet agent"),
    )
}

/// What an answer says, as HTML.
fn describe(op: Operation, a: &Answer) -> Html {
    if !a.status.is_success() {
        return Html::trusted(format!(
            "<p><strong>{} refused ({}):</strong> {}</p><p>Nothing changed.</p>",
            escape(op.name()),
            a.status.as_u16(),
            escape(&a.message())
        ));
    }
    let b = &a.body;
    let s = |k: &str| escape(b[k].as_str().unwrap_or(""));
    let currency = s("currency");
    Html::trusted(match op {
        Operation::Open => format!(
            "<p>Account opened: <strong><code>{}</code></strong>. Write this number down with your PIN: \
             without both, the account cannot be used, and nobody can look them up.</p>",
            s("account")
        ),
        Operation::Register => format!("<p>Pad <code>{}</code> is registered to account <code>{}</code>.</p>", s("serial"), s("account")),
        Operation::Show => {
            let rows: String = b["pads"]
                .as_array()
                .map(|v| v.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|p| {
                    format!(
                        "<tr><td><code>{}</code></td><td>{} {currency}</td><td>{}</td></tr>",
                        escape(p["serial"].as_str().unwrap_or("")),
                        escape(p["balance"].as_str().unwrap_or("")),
                        escape(p["status"].as_str().unwrap_or("")),
                    )
                })
                .collect();
            format!(
                "<p>Account <code>{}</code> holds <strong>{} {currency}</strong>.</p>\
                 <table><tr><th>pad</th><th>balance</th><th>status</th></tr>{rows}</table>",
                s("account"),
                s("balance"),
            )
        }
        Operation::Cancel => format!(
            "<p>Pad <code>{}</code> is cancelled; {} moved to the account (now {}). Value its open \
             transfers still held follows when they end.</p>",
            s("serial"),
            s("moved"),
            s("account_balance")
        ),
        Operation::Topup | Operation::Withdraw => format!(
            "<p>Done: the pad in use holds {}, the account {}.</p>",
            s("pad_balance"),
            s("account_balance")
        ),
        Operation::Receive => format!(
            "<p>Received pad <code>{}</code>: {} moved into the pad in use, which now holds {}. \
             The file is worthless now; delete it.</p>",
            s("serial"),
            s("moved"),
            s("pad_balance")
        ),
    })
}

fn token_ok(link: &Link, given: Option<&str>) -> bool {
    link.token_ok(given)
}

fn refused_form(link: &Link) -> Response<Body> {
    let mut r = page(
        link,
        Some((
            StatusCode::FORBIDDEN,
            Html::text("This form did not come from the agent's own page (its token is missing or stale: the agent restarted?). Nothing was sent. Use the forms below."),
        )),
    );
    r.headers_mut().insert(
        proto::headers::ERROR,
        HeaderValue::from_static("form-token"),
    );
    r
}

/// `POST /account` (a form) and `POST /account/receive` (a file).
pub async fn form(link: &Link, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/account/receive" {
        return receive_form(link, req).await;
    }
    let body = match read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(a) => return page(link, Some((a.status, Html::text(&a.message())))),
    };
    let mut fields = Map::new();
    let mut token = None;
    let mut op = None;
    for (k, v) in form_urlencoded::parse(&body[..]) {
        match &*k {
            "token" => token = Some(v.into_owned()),
            "op" => {
                op = Operation::ALL
                    .into_iter()
                    .find(|o| o.name() == v && *o != Operation::Receive)
            }
            _ if !v.is_empty() => {
                fields.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            _ => {}
        }
    }
    if !token_ok(link, token.as_deref()) {
        return refused_form(link);
    }
    let Some(op) = op else {
        return page(
            link,
            Some((
                StatusCode::BAD_REQUEST,
                Html::text("The form names no operation."),
            )),
        );
    };
    let json =
        zeroize::Zeroizing::new(serde_json::to_vec(&Value::Object(fields)).unwrap_or_default());
    let answer = match AccountRequest::parse(op, &json) {
        Ok(r) => ask_gateway(link, &r).await,
        Err(e) => Answer {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({ "error": e.to_string() }),
        },
    };
    page(link, Some((answer.status, describe(op, &answer))))
}

async fn receive_form(link: &Link, req: Request<Incoming>) -> Response<Body> {
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return page(
            link,
            Some((
                StatusCode::BAD_REQUEST,
                Html::text("The receive form sends multipart/form-data."),
            )),
        );
    };
    let stream = BodyStream::new(req.into_body()).filter_map(|f| async move {
        match f {
            Ok(frame) => frame.into_data().ok().map(Ok::<Bytes, hyper::Error>),
            Err(e) => Some(Err(e)),
        }
    });
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .for_field("token", 128)
            .per_field(u64::MAX),
    );
    let mut parts = multer::Multipart::with_constraints(stream, boundary, limits);
    let mut token = None;
    let mut upload = None;
    let fail = |msg: String| page(link, Some((StatusCode::BAD_REQUEST, Html::text(&msg))));
    loop {
        let field = match parts.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return fail(format!("reading the form: {e}")),
        };
        match field.name() {
            Some("token") => match field.text().await {
                Ok(t) if t.len() <= 128 => token = Some(t),
                _ => return refused_form(link),
            },
            Some("pad") => {
                let mut u = Upload::default();
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(c)) => {
                            if let Err(e) = u.feed(&c) {
                                return page(
                                    link,
                                    Some((
                                        StatusCode::BAD_REQUEST,
                                        describe(Operation::Receive, &receive::refused(e)),
                                    )),
                                );
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return fail(format!("reading the pad file: {e}")),
                    }
                }
                upload = Some(u);
            }
            _ => {}
        }
    }
    // Nothing is sent before the token is known good.
    if !token_ok(link, token.as_deref()) {
        return refused_form(link);
    }
    let Some(upload) = upload else {
        return fail("Choose the pad file to receive.".into());
    };
    let answer = match receive::request(upload, link) {
        Ok(r) => ask_gateway(link, &r).await,
        Err(a) => a,
    };
    page(
        link,
        Some((answer.status, describe(Operation::Receive, &answer))),
    )
}
