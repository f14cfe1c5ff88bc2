//! Headers both ends agree on: what never crosses a hop, the `x-padnet-*`
//! names only the gateway may send, the error codes it names refusals by,
//! and the reasons it stops a transfer early. Pure functions over `HeaderMap`.

use http::header::{self, HeaderMap, HeaderName};

/// The gateway's refusal, as a code (`x-padnet-error: policy-denied`).
pub const ERROR: HeaderName = HeaderName::from_static("x-padnet-error");
/// The origin's Content-Length, carried beside a metered response (the
/// agent restores it), so a metered body may end early in order.
pub const CONTENT_LENGTH: HeaderName = HeaderName::from_static("x-padnet-content-length");
/// Trailer on a body the gateway ended early, naming a [`StopReason`].
pub const STOPPED: HeaderName = HeaderName::from_static("x-padnet-stopped");
/// Every padnet header starts so.
pub const PREFIX: &str = "x-padnet-";

/// Headers that describe one hop (RFC 9110 §7.6.1), never forwarded, and
/// forbidden in HTTP/2 anyway.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Remove hop-by-hop headers, and any header `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// Remove every `x-padnet-*` header: only the gateway may send those to the
/// agent (an origin, or a browser, could otherwise forge a length or a stop).
pub fn strip_padnet(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Why the gateway ended a transfer early (the [`STOPPED`] trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The pad's value ran out.
    ValueExhausted,
    /// A daily limit of the pad's policy was reached.
    DailyLimit,
    /// The pad's policy no longer allows the site (its hours ended).
    PolicyDenied,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ValueExhausted => "value-exhausted",
            StopReason::DailyLimit => "daily-limit",
            StopReason::PolicyDenied => "policy-denied",
        }
    }

    pub fn parse(s: &str) -> Option<StopReason> {
        [
            StopReason::ValueExhausted,
            StopReason::DailyLimit,
            StopReason::PolicyDenied,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn strips_connection_specific_headers_for_h2() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn only_the_gateway_speaks_x_padnet() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "5".parse().unwrap());
        h.insert(STOPPED, "value-exhausted".parse().unwrap());
        h.insert("x-padnetwork", "kept".parse().unwrap());
        strip_padnet(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-padnetwork"));
    }

    #[test]
    fn stop_reasons_round_trip() {
        for r in [
            StopReason::ValueExhausted,
            StopReason::DailyLimit,
            StopReason::PolicyDenied,
        ] {
            assert_eq!(StopReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(StopReason::parse("nope"), None);
    }
}
