//! Domain fronting: a restricted pad's CONNECT must carry TLS to the host
//! it asked for. This pure core judges a CONNECT stream's first client
//! bytes: a TLS ClientHello (read by rustls' own parser) whose SNI names the
//! CONNECT host. Cleartext, a missing SNI or another name is refused.

use rustls::server::Acceptor;

/// Most first bytes read while waiting for a whole ClientHello (a hello with
/// post-quantum key shares is about 2 KiB; rustls takes up to 64 KiB).
pub const MAX_CLIENT_HELLO: usize = 64 << 10;

/// What the first bytes of a CONNECT stream show.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// A ClientHello has begun; more bytes are needed.
    NeedMore,
    /// A ClientHello whose SNI names the CONNECT host.
    Allowed,
    /// Anything else, and why.
    Refused(String),
}

/// Judge the first bytes `buf` of a CONNECT to `connect_host`.
pub fn judge(buf: &[u8], connect_host: &str) -> FirstBytes {
    // A TLS handshake record starts 0x16 0x03: anything else (cleartext
    // HTTP with its own Host, another protocol) is not judged further.
    match buf {
        [] | [0x16] => return FirstBytes::NeedMore,
        [0x16, 0x03, ..] => {}
        _ => {
            return FirstBytes::Refused(
                "a restricted pad's CONNECT carries TLS only, and this stream is not TLS".into(),
            )
        }
    }
    let mut acceptor = Acceptor::default();
    let mut rest = buf;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return FirstBytes::Refused(format!("the TLS hello is malformed: {e}")),
        }
    }
    let accepted = match acceptor.accept() {
        Ok(Some(a)) => a,
        Ok(None) if buf.len() < MAX_CLIENT_HELLO => return FirstBytes::NeedMore,
        Ok(None) => return FirstBytes::Refused("the TLS hello is too large".into()),
        Err((e, _alert)) => return FirstBytes::Refused(format!("the TLS hello is malformed: {e}")),
    };
    let hello = accepted.client_hello();
    let Some(sni) = hello.server_name() else {
        return FirstBytes::Refused(
            "the TLS hello names no server (no SNI), so the policy cannot check it".into(),
        );
    };
    let same = match (
        policy::normalise_host(sni),
        policy::normalise_host(connect_host),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        FirstBytes::Allowed
    } else {
        FirstBytes::Refused("the TLS hello names another server than the CONNECT asked for".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls' client for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_hello_for_the_connect_host_is_allowed_whatever_its_spelling() {
        let h = client_hello("allowed.example");
        assert_eq!(judge(&h, "allowed.example"), FirstBytes::Allowed);
        assert_eq!(judge(&h, "ALLOWED.example."), FirstBytes::Allowed);
    }

    #[test]
    fn a_hello_arriving_in_pieces_needs_more_until_whole() {
        let h = client_hello("allowed.example");
        for cut in [1, 2, 5, 40, h.len() - 1] {
            assert_eq!(
                judge(&h[..cut], "allowed.example"),
                FirstBytes::NeedMore,
                "{cut}"
            );
        }
    }

    #[test]
    fn fronting_is_refused() {
        let other = judge(&client_hello("denied.example"), "allowed.example");
        assert!(
            matches!(other, FirstBytes::Refused(ref w) if w.contains("another server")),
            "{other:?}"
        );
        // An IP address: rustls, like curl and browsers, sends no SNI.
        let none = judge(&client_hello("127.0.0.1"), "allowed.example");
        assert!(
            matches!(none, FirstBytes::Refused(ref w) if w.contains("no SNI")),
            "{none:?}"
        );
        let clear = judge(
            b"GET / HTTP/1.1\r\nHost: denied.example\r\n\r\n",
            "allowed.example",
        );
        assert!(
            matches!(clear, FirstBytes::Refused(ref w) if w.contains("not TLS")),
            "{clear:?}"
        );
        let junk = judge(
            &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
            "allowed.example",
        );
        assert!(matches!(junk, FirstBytes::Refused(_)), "{junk:?}");
    }
}
