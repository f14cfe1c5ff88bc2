//! Where a request goes: host and port, from a CONNECT authority or an
//! absolute URI, parsed one way for every layer that needs it.

use http::{Method, Request};

use crate::error::GatewayError;

/// Host and port a request is for (CONNECT: its authority; plain: its URI).
pub fn destination<B>(req: &Request<B>) -> Result<(String, u16), GatewayError> {
    let uri = req.uri();
    let host = uri
        .host()
        .ok_or_else(|| GatewayError::BadRequest("the request has no host".into()))?;
    let port = match uri.port_u16() {
        Some(p) => p,
        None if req.method() == Method::CONNECT => {
            return Err(GatewayError::BadRequest("CONNECT needs host:port".into()))
        }
        None if uri.scheme_str() == Some("https") => 443,
        None => 80,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn ports_default_by_scheme_and_connect_needs_one() {
        assert_eq!(
            destination(&req(Method::GET, "http://a.example/x")).unwrap(),
            ("a.example".to_string(), 80)
        );
        assert_eq!(
            destination(&req(Method::GET, "https://a.example/"))
                .unwrap()
                .1,
            443
        );
        assert_eq!(
            destination(&req(Method::CONNECT, "a.example:8443"))
                .unwrap()
                .1,
            8443
        );
        assert!(destination(&req(Method::GET, "/relative")).is_err());
    }
}
