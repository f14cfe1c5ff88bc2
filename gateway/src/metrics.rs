//! Operator metrics: aggregate counts of tunnels, hellos, requests, bytes,
//! ledger flushes, float refills and policy decisions, and the Prometheus text
//! page `serve --metrics-listen` answers with. Every label is a small fixed
//! enum: nothing here can name a pad, a host, a client address or an account.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The path the metrics page is served at.
pub const PATH: &str = "/metrics";

/// One label and its value, both fixed strings (never built from input).
type Label = [(&'static str, &'static str); 1];

/// Why a connection did not become a tunnel (`padnet_hellos_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloRefusal {
    /// No whole hello before the probe hold ran out (probers, port checks).
    NoHello,
    /// A ticket no active pad has next (or a replayed, already burned one).
    UnknownTicket,
    /// A known ticket whose hello failed authentication (a forgery).
    BadHello,
    /// A blank pad, not yet activated at a till.
    NotActivated,
    /// A cancelled pad.
    Cancelled,
    /// The pad's key material is used up.
    KeyExhausted,
    /// Anything else (i/o during the handshake).
    Other,
}

impl HelloRefusal {
    pub const ALL: [HelloRefusal; 7] = [
        HelloRefusal::NoHello,
        HelloRefusal::UnknownTicket,
        HelloRefusal::BadHello,
        HelloRefusal::NotActivated,
        HelloRefusal::Cancelled,
        HelloRefusal::KeyExhausted,
        HelloRefusal::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HelloRefusal::NoHello => "no_hello",
            HelloRefusal::UnknownTicket => "unknown_ticket",
            HelloRefusal::BadHello => "bad_hello",
            HelloRefusal::NotActivated => "not_activated",
            HelloRefusal::Cancelled => "cancelled",
            HelloRefusal::KeyExhausted => "key_exhausted",
            HelloRefusal::Other => "other",
        }
    }
}

/// How a request through a tunnel was answered (`padnet_requests_total{outcome}`).
/// The gateway's own refusals have their own outcome; every other answer
/// (the origin's, or the gateway's other errors) counts by status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 1xx and 2xx (a CONNECT that opened counts here).
    Success,
    Redirect,
    /// 4xx other than the gateway's refusals below.
    ClientError,
    /// 5xx (502 for an unreachable origin, 503 when the ledger fails).
    ServerError,
    /// 402: the pad's value does not cover the request.
    ValueExhausted,
    /// 402: a daily limit of the pad's policy is reached.
    DailyLimit,
    /// 403: the pad's policy, or the upstream guard (private address,
    /// CONNECT port), refused it.
    Forbidden,
    /// 429: over the pad's policy rate.
    RateLimited,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Redirect,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::ValueExhausted,
        Outcome::DailyLimit,
        Outcome::Forbidden,
        Outcome::RateLimited,
    ];

    /// An answer counted by its status class.
    pub fn of_status(status: StatusCode) -> Outcome {
        match status.as_u16() {
            0..=299 => Outcome::Success,
            300..=399 => Outcome::Redirect,
            400..=499 => Outcome::ClientError,
            _ => Outcome::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "2xx",
            Outcome::Redirect => "3xx",
            Outcome::ClientError => "4xx",
            Outcome::ServerError => "5xx",
            Outcome::ValueExhausted => "402_value",
            Outcome::DailyLimit => "402_daily_limit",
            Outcome::Forbidden => "403",
            Outcome::RateLimited => "429",
        }
    }
}

/// Which way body bytes went (`padnet_bytes_total{direction}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Agent → origin: request bodies, CONNECT uploads.
    Up,
    /// Origin → agent.
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// The gateway's metric families and the registry that renders them.
/// Made once by `serve` and shared (`Arc`) with what counts.
pub struct Metrics {
    registry: Registry,
    tunnels_open: Gauge,
    tunnels_opened: Counter,
    hellos_refused: Family<Label, Counter>,
    requests: Family<Label, Counter>,
    bytes: Family<Label, Counter>,
    ledger_flushes: Counter,
    ledger_flush_seconds: Histogram,
    float_refills: Counter,
    policy_decisions: Family<Label, Counter>,
}

/// A tunnel counted in `padnet_tunnels_open` until this is dropped.
pub struct OpenTunnel(Gauge);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            tunnels_open: Gauge::default(),
            tunnels_opened: Counter::default(),
            hellos_refused: Family::default(),
            requests: Family::default(),
            bytes: Family::default(),
            ledger_flushes: Counter::default(),
            // 0.1 ms to about 3 s: an fsync on a fast disk to a stalled one.
            ledger_flush_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            float_refills: Counter::default(),
            policy_decisions: Family::default(),
            registry: Registry::with_prefix("padnet"),
        };
        // Every label value exists from the start (at 0), so a scrape shows
        // the whole set and rates need no first increment.
        for r in HelloRefusal::ALL {
            let _ = m.hellos_refused.get_or_create(&[("reason", r.as_str())]);
        }
        for o in Outcome::ALL {
            let _ = m.requests.get_or_create(&[("outcome", o.as_str())]);
        }
        for d in [Direction::Up, Direction::Down] {
            let _ = m.bytes.get_or_create(&[("direction", d.as_str())]);
        }
        for d in ["allow", "deny"] {
            let _ = m.policy_decisions.get_or_create(&[("decision", d)]);
        }
        m.registry
            .register("tunnels_open", "Tunnels open now", m.tunnels_open.clone());
        m.registry.register(
            "tunnels_opened",
            "Tunnels opened (hellos accepted) since start",
            m.tunnels_opened.clone(),
        );
        m.registry.register(
            "hellos_refused",
            "Connections that did not become a tunnel, by reason",
            m.hellos_refused.clone(),
        );
        m.registry.register(
            "requests",
            "Requests through tunnels, by how they were answered",
            m.requests.clone(),
        );
        m.registry.register(
            "bytes",
            "Body bytes carried (request and response bodies, CONNECT streams), by direction",
            m.bytes.clone(),
        );
        m.registry.register(
            "ledger_flushes",
            "Ledger flushes (fsyncs) since start",
            m.ledger_flushes.clone(),
        );
        m.registry.register(
            "ledger_flush_seconds",
            "How long each ledger flush took",
            m.ledger_flush_seconds.clone(),
        );
        m.registry.register(
            "float_refills",
            "Durable reservations taken to refill tunnels' floats",
            m.float_refills.clone(),
        );
        m.registry.register(
            "policy_decisions",
            "Employer policy decisions (admission and running streams' rechecks)",
            m.policy_decisions.clone(),
        );
        m
    }

    // === counting ===

    /// A tunnel passed its handshake; it counts as open until the guard drops.
    pub fn tunnel_opened(&self) -> OpenTunnel {
        self.tunnels_opened.inc();
        self.tunnels_open.inc();
        OpenTunnel(self.tunnels_open.clone())
    }

    pub fn hello_refused(&self, why: HelloRefusal) {
        self.hellos_refused
            .get_or_create(&[("reason", why.as_str())])
            .inc();
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    pub fn carried(&self, dir: Direction, n: usize) {
        if n > 0 {
            self.bytes
                .get_or_create(&[("direction", dir.as_str())])
                .inc_by(n as u64);
        }
    }

    pub fn ledger_flushed(&self, took: Duration) {
        self.ledger_flushes.inc();
        self.ledger_flush_seconds.observe(took.as_secs_f64());
    }

    pub fn float_refilled(&self) {
        self.float_refills.inc();
    }

    pub fn policy_decided(&self, allowed: bool) {
        let d = if allowed { "allow" } else { "deny" };
        self.policy_decisions
            .get_or_create(&[("decision", d)])
            .inc();
    }

    // === the page ===

    /// Every family in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Answer a request to the metrics listener: `GET /metrics` is the
    /// page; another path is 404, another method 405.
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.uri().path() != PATH {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            );
        }
        if req.method() != Method::GET {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            return r;
        }
        match self.render() {
            Ok(text) => {
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
                );
                r
            }
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("encoding the metrics: {e}\n"),
            ),
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The sample line `name` (with its labels, as printed), as a number.
    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn every_family_has_help_and_type_lines_and_starts_at_zero() {
        let text = Metrics::new().render().unwrap();
        for (name, kind) in [
            ("padnet_tunnels_open", "gauge"),
            ("padnet_tunnels_opened_total", "counter"),
            ("padnet_hellos_refused_total", "counter"),
            ("padnet_requests_total", "counter"),
            ("padnet_bytes_total", "counter"),
            ("padnet_ledger_flushes_total", "counter"),
            ("padnet_ledger_flush_seconds", "histogram"),
            ("padnet_float_refills_total", "counter"),
            ("padnet_policy_decisions_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "no TYPE {kind} for {name}:\n{text}"
            );
        }
        for o in Outcome::ALL {
            let line = format!("padnet_requests_total{{outcome=\"{}\"}}", o.as_str());
            assert_eq!(value(&text, &line), 0.0);
        }
        for r in HelloRefusal::ALL {
            let line = format!("padnet_hellos_refused_total{{reason=\"{}\"}}", r.as_str());
            assert_eq!(value(&text, &line), 0.0);
        }
        assert_eq!(value(&text, "padnet_ledger_flush_seconds_count"), 0.0);
    }

    #[test]
    fn counting_moves_the_families() {
        let m = Metrics::new();
        let a = m.tunnel_opened();
        let b = m.tunnel_opened();
        drop(a);
        m.hello_refused(HelloRefusal::UnknownTicket);
        m.request(Outcome::Success);
        m.request(Outcome::Success);
        m.request(Outcome::ValueExhausted);
        m.request(Outcome::of_status(StatusCode::NOT_FOUND));
        m.carried(Direction::Down, 1000);
        m.carried(Direction::Down, 24);
        m.carried(Direction::Up, 7);
        m.ledger_flushed(Duration::from_millis(3));
        m.float_refilled();
        m.policy_decided(true);
        m.policy_decided(false);
        m.policy_decided(false);
        let t = m.render().unwrap();
        assert_eq!(value(&t, "padnet_tunnels_open"), 1.0);
        assert_eq!(value(&t, "padnet_tunnels_opened_total"), 2.0);
        let refused = "padnet_hellos_refused_total{reason=\"unknown_ticket\"}";
        assert_eq!(value(&t, refused), 1.0);
        assert_eq!(value(&t, "padnet_requests_total{outcome=\"2xx\"}"), 2.0);
        assert_eq!(value(&t, "padnet_requests_total{outcome=\"4xx\"}"), 1.0);
        let value_402 = "padnet_requests_total{outcome=\"402_value\"}";
        assert_eq!(value(&t, value_402), 1.0);
        assert_eq!(value(&t, "padnet_bytes_total{direction=\"down\"}"), 1024.0);
        assert_eq!(value(&t, "padnet_bytes_total{direction=\"up\"}"), 7.0);
        assert_eq!(value(&t, "padnet_ledger_flushes_total"), 1.0);
        assert_eq!(value(&t, "padnet_ledger_flush_seconds_count"), 1.0);
        assert_eq!(value(&t, "padnet_float_refills_total"), 1.0);
        let deny = "padnet_policy_decisions_total{decision=\"deny\"}";
        assert_eq!(value(&t, deny), 2.0);
        drop(b);
        assert_eq!(value(&m.render().unwrap(), "padnet_tunnels_open"), 0.0);
    }

    #[test]
    fn status_classes() {
        for (code, want) in [
            (200, "2xx"),
            (204, "2xx"),
            (301, "3xx"),
            (404, "4xx"),
            (402, "4xx"),
            (502, "5xx"),
        ] {
            let s = StatusCode::from_u16(code).unwrap();
            assert_eq!(Outcome::of_status(s).as_str(), want, "{code}");
        }
    }

    fn req(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn only_get_metrics_is_the_page() {
        let m = Metrics::new();
        let ok = m.answer(&req(Method::GET, "/metrics"));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[http::header::CONTENT_TYPE],
            prometheus_text::CONTENT_TYPE
        );
        let body = ok.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("# TYPE padnet_tunnels_open gauge"));
        let q = m.answer(&req(Method::GET, "/metrics?x=1"));
        assert_eq!(q.status(), StatusCode::OK);
        assert_eq!(
            m.answer(&req(Method::GET, "/")).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            m.answer(&req(Method::GET, "/metrics/x")).status(),
            StatusCode::NOT_FOUND
        );
        let post = m.answer(&req(Method::POST, "/metrics"));
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[http::header::ALLOW], "GET");
    }
}
