//! HTTPS through CONNECT: a TLS client that trusts the bench origin's test CA
//! (ca.pem, written by padnet-origin) and reaches the origin's TLS port either
//! straight or through a proxy's CONNECT; the 1 KiB load runs inside TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::{bulk_with, keepalive_load, LoadFigures};

/// Where the TLS origin is and how to trust it.
#[derive(Clone)]
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub ca: std::path::PathBuf,
    config: Arc<rustls::ClientConfig>,
}

impl TlsOrigin {
    /// A client configuration trusting only the certificates in `ca`.
    pub fn new(addr: SocketAddr, ca: &Path) -> anyhow::Result<TlsOrigin> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading the origin's CA {}", ca.display()))?
        {
            let cert = cert.with_context(|| format!("{}: not a PEM certificate", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: a certificate rustls refuses", ca.display()))?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsOrigin {
            addr,
            ca: ca.to_path_buf(),
            config: Arc::new(config),
        })
    }

    /// `https://ADDR/path`: by IP, which the origin's certificate names, so
    /// that no proxy has to resolve "localhost" (it might pick ::1).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// One curl download of `path` over HTTPS, through `proxy` when given; MB/s.
    pub fn bulk(&self, path: &str, proxy: Option<SocketAddr>) -> f64 {
        let ca = self.ca.to_string_lossy().to_string();
        bulk_with(&self.url(path), proxy, &["--cacert", &ca])
    }

    /// `n` concurrent keep-alive TLS connections (each through `proxy`'s
    /// CONNECT when given) doing GETs of `path` for `secs`.
    pub async fn small_load(
        &self,
        proxy: Option<SocketAddr>,
        path: &str,
        n: usize,
        secs: u64,
    ) -> LoadFigures {
        let this = self.clone();
        let connect = move || {
            let this = this.clone();
            async move {
                match this.connect(proxy).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("warning: TLS connection to the origin failed: {e:#}");
                        None
                    }
                }
            }
        };
        keepalive_load(n, secs, connect, path.to_string(), self.addr.to_string()).await
    }

    /// A TLS connection to the origin, through `proxy`'s CONNECT when given.
    async fn connect(
        &self,
        proxy: Option<SocketAddr>,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut tcp = TcpStream::connect(proxy.unwrap_or(self.addr))
            .await
            .context("connecting")?;
        let _ = tcp.set_nodelay(true);
        if proxy.is_some() {
            let a = self.addr;
            tcp.write_all(format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
                .await
                .context("sending CONNECT")?;
            // The proxy says nothing after its answer until TLS starts, so
            // reading a byte at a time up to the blank line takes no more.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > 16 << 10 {
                    anyhow::bail!("CONNECT answer longer than 16 KiB");
                }
                head.push(tcp.read_u8().await.context("reading the CONNECT answer")?);
            }
            let status = String::from_utf8_lossy(&head);
            let line = status.lines().next().unwrap_or_default();
            if line.split_whitespace().nth(1) != Some("200") {
                anyhow::bail!("CONNECT refused: {line}");
            }
        }
        let name = ServerName::IpAddress(self.addr.ip().into());
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")
    }
}
