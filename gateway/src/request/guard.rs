//! The upstream address guard: the gateway is never an open proxy into
//! private networks. Addresses are checked after resolution (so DNS names
//! pointing inside are refused too), and the connector only dials checked ones.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// Whether `ip` lies in a loopback, private, link-local, shared, multicast,
/// documentation or otherwise non-public range.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_non_public(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_non_public(v4);
            }
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x64 && s[1] == 0xff9b && v4_non_public(embedded_v4(v6))) // NAT64
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn v4_non_public(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0.0/24
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

pub use crate::error::PrivateUpstream;

/// What the gateway may dial.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamGuard {
    pub allow_private: bool,
}

impl UpstreamGuard {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_non_public(ip)
    }

    /// Resolve `host:port` and keep only the addresses this guard allows.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
        };
        let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| self.allows(a.ip())).collect();
        if allowed.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                PrivateUpstream {
                    host: host.to_string(),
                },
            ));
        }
        Ok(allowed)
    }
}

/// A hyper-util resolver that applies the guard to every name it resolves.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub UpstreamGuard);

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.0;
        Box::pin(async move { Ok(guard.resolve(name.as_str(), 0).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn resolution_filters_and_names_the_host() {
        let g = UpstreamGuard {
            allow_private: false,
        };
        let e = g.resolve("localhost", 80).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("localhost"));
        assert!(g.resolve("127.0.0.1", 80).await.is_err());
        let open = UpstreamGuard {
            allow_private: true,
        };
        assert!(!open.resolve("127.0.0.1", 80).await.unwrap().is_empty());
    }
}
