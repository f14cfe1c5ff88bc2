//! Request normalisation at the gateway: hop-by-hop headers go (the list is
//! the protocol's, in `proto`), and nothing that could identify the user
//! (Via, Forwarded, X-Forwarded-*) reaches the origin. Pure functions.

use http::header::{self, HeaderMap, HeaderName};

/// Headers that would tell the origin about the user or the path taken.
const IDENTIFYING: [HeaderName; 6] = [
    header::VIA,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-real-ip"),
];

pub use proto::headers::{strip_hop_by_hop, strip_padnet};

/// Prepare headers of a request for the origin (padnet's own headers,
/// such as the agent's request id, never leave the gateway).
pub fn for_origin(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    strip_padnet(h);
    for n in &IDENTIFYING {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
}
