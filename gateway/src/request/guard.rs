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
/// documentation or otherwise non-public range. An IPv6 address that
/// carries an IPv4 address (mapped, compatible, translated, NAT64, 6to4) is
/// judged by the IPv4 address inside; transition prefixes whose far end the
/// gateway cannot judge (Teredo, local-use NAT64) are refused whole.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_non_public(v4),
        IpAddr::V6(v6) => v6_non_public(v6),
    }
}

fn v6_non_public(v6: Ipv6Addr) -> bool {
    if let Some(v4) = v6_embedded_v4(v6) {
        return v4_non_public(v4);
    }
    let s = v6.segments();
    v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 outside the well-known /96: local-use 64:ff9b:1::/48 and the rest
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: the client's address is hidden
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// The IPv4 address an IPv6 address stands for, where it stands for one:
/// IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (deprecated; `::`
/// and `::1` are not), IPv4-translated `::ffff:0:0:0/96`, NAT64 well-known
/// `64:ff9b::/96` (last 32 bits), 6to4 `2002::/16` (bits 16..48).
fn v6_embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let last = embedded_v4(v6);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last),
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_unspecified() && !v6.is_loopback() => Some(last),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
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
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast 192.88.99.0/24
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

pub use crate::error::PrivateUpstream;

/// What the gateway may dial (by default: public addresses only).
#[derive(Debug, Clone, Copy, Default)]
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

    /// Every range the guard knows, as (address, refused?).
    const TABLE: &[(&str, bool)] = &[
        // IPv4
        ("127.0.0.1", true),
        ("10.1.2.3", true),
        ("172.16.0.1", true),
        ("192.168.1.1", true),
        ("169.254.169.254", true),
        ("100.64.0.1", true),
        ("0.0.0.0", true),
        ("224.0.0.1", true),
        ("255.255.255.255", true),
        ("192.88.99.1", true),  // 6to4 relay anycast
        ("192.88.98.1", false), // just outside it
        ("93.184.216.34", false),
        ("1.1.1.1", false),
        // IPv6 native
        ("::", true),
        ("::1", true),
        ("fe80::1", true),
        ("fd00::1", true),
        ("fec0::1", true), // site-local
        ("feff::1", true), // site-local, top of fec0::/10
        ("ff02::1", true),
        ("2001:db8::1", true),
        ("2606:4700::1111", false),
        // IPv4-mapped ::ffff:0:0/96
        ("::ffff:127.0.0.1", true),
        ("::ffff:10.0.0.1", true),
        ("::ffff:8.8.8.8", false),
        // IPv4-compatible ::/96
        ("::127.0.0.1", true),
        ("::10.0.0.1", true),
        ("::192.168.0.1", true),
        ("::8.8.8.8", false),
        // IPv4-translated ::ffff:0:0:0/96
        ("::ffff:0:127.0.0.1", true),
        ("::ffff:0:10.0.0.1", true),
        ("::ffff:0:169.254.169.254", true),
        ("::ffff:0:8.8.8.8", false),
        // NAT64 well-known 64:ff9b::/96
        ("64:ff9b::127.0.0.1", true),
        ("64:ff9b::10.0.0.1", true),
        ("64:ff9b::8.8.8.8", false),
        // NAT64 local-use 64:ff9b:1::/48, refused whole
        ("64:ff9b:1::8.8.8.8", true),
        ("64:ff9b:1:ffff::1", true),
        // 6to4 2002::/16, IPv4 in bits 16..48
        ("2002:7f00:1::", true),     // 127.0.0.1
        ("2002:a00:1::1", true),     // 10.0.0.1
        ("2002:c0a8:101::1", true),  // 192.168.1.1
        ("2002:a9fe:a9fe::1", true), // 169.254.169.254
        ("2002:c058:6301::1", true), // 192.88.99.1
        ("2002:808:808::1", false),  // 8.8.8.8
        // Teredo 2001::/32, refused whole
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
        ("2001::808:808:f7f7:f7f7", true), // public server, public client
        ("2001:4860::8888", false),        // outside it
    ];

    #[test]
    fn classifies_addresses() {
        let wrong: Vec<String> = TABLE
            .iter()
            .filter(|(ip, refused)| is_non_public(ip.parse().unwrap()) != *refused)
            .map(|(ip, refused)| {
                format!(
                    "{ip} must be {}",
                    if *refused { "refused" } else { "allowed" }
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
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
