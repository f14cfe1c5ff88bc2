//! Request and response normalisation at the gateway: hop-by-hop headers go,
//! and nothing that could identify the user (Via, Forwarded, X-Forwarded-*)
//! reaches the origin. Pure functions over `http::HeaderMap`.

use http::header::{self, HeaderMap, HeaderName};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Headers that would tell the origin about the user or the path taken.
const IDENTIFYING: [HeaderName; 6] = [
    header::VIA,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

/// Remove hop-by-hop headers, including any named by `Connection`, and `Upgrade`.
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
    h.remove(header::UPGRADE);
}

/// Prepare headers of a request for the origin.
pub fn for_origin(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    for n in &IDENTIFYING {
        h.remove(n);
    }
}

/// Remove every `x-padnet-*` header: only the gateway may send those to the
/// agent (an origin could otherwise forge a length or a stop).
pub fn strip_padnet(h: &mut HeaderMap) {
    let names: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("x-padnet-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
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
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn removes_identifying_headers_for_the_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.1 agent"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(header::FORWARDED, HeaderValue::from_static("for=10.0.0.1"));
        h.insert(header::USER_AGENT, HeaderValue::from_static("curl"));
        for_origin(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn only_the_gateway_speaks_x_padnet() {
        let mut h = HeaderMap::new();
        h.insert("x-padnet-content-length", "5".parse().unwrap());
        h.insert("x-padnet-stopped", "value-exhausted".parse().unwrap());
        h.insert("x-padnetwork", "kept".parse().unwrap());
        strip_padnet(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-padnetwork"));
    }
}
