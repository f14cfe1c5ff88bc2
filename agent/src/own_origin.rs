//! Which requests may read the agent's own pages: those whose `Host` names
//! the agent (its listen address, or `localhost` on its port) and whose
//! `Origin`, if any, is the agent too. A page on another site that rebinds
//! its name to 127.0.0.1 sends its own name as `Host`, and is refused.

use std::net::{IpAddr, SocketAddr};

use http::header::{HOST, ORIGIN};
use http::HeaderMap;

/// Why a request for an own page is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Foreign {
    /// `Host` is missing or names something other than the agent.
    Host(String),
    /// `Origin` names another site.
    Origin(String),
}

/// Whether `authority` (a `Host` value: `name[:port]`) names the agent
/// listening on `listen`.
pub fn names_agent(authority: &str, listen: SocketAddr) -> bool {
    let Ok(a) = authority.parse::<http::uri::Authority>() else {
        return false;
    };
    if a.port_u16().unwrap_or(80) != listen.port() {
        return false;
    }
    let host = a.host().trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip == listen.ip() || (listen.ip().is_unspecified() && ip.is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost") && listen.ip().is_loopback(),
    }
}

/// Check a request for one of the agent's own pages.
pub fn check(headers: &HeaderMap, listen: SocketAddr) -> Result<(), Foreign> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !names_agent(host, listen) {
        return Err(Foreign::Host(host.to_string()));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        let same = o
            .strip_prefix("http://")
            .is_some_and(|authority| names_agent(authority, listen));
        if !same {
            return Err(Foreign::Origin(o.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn listen() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    #[test]
    fn the_agent_is_named_by_its_address_or_localhost_on_its_port() {
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(names_agent(ok, listen()), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost",
            "127.0.0.2:8080",
            "[::1]:8080",
            "evil.example",
            "",
            "127.0.0.1:8080@evil",
        ] {
            assert!(!names_agent(bad, listen()), "{bad}");
        }
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(names_agent("[::1]:9000", v6));
        assert!(names_agent("localhost:9000", v6));
        assert!(!names_agent("127.0.0.1:9000", v6));
    }

    #[test]
    fn a_foreign_host_or_origin_is_refused() {
        let mut h = HeaderMap::new();
        assert!(
            matches!(check(&h, listen()), Err(Foreign::Host(_))),
            "no Host"
        );
        h.insert(HOST, HeaderValue::from_static("evil.example:8080"));
        assert_eq!(
            check(&h, listen()),
            Err(Foreign::Host("evil.example:8080".into()))
        );
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(check(&h, listen()), Ok(()));
        h.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert_eq!(
            check(&h, listen()),
            Err(Foreign::Origin("http://evil.example".into()))
        );
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(check(&h, listen()).is_err());
        h.insert(ORIGIN, HeaderValue::from_static("http://localhost:8080"));
        assert_eq!(check(&h, listen()), Ok(()));
    }
}
