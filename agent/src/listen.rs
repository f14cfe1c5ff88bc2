//! The browsers' listener: accepts connections, serves each as HTTP/1.1,
//! and backs off when accept fails (out of file descriptors) instead of
//! spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proto::accept::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};

use crate::access::ProxyAuth;
use crate::link::Link;

/// Serve browsers on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    link: Arc<Link>,
    auth: Option<Arc<ProxyAuth>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return Ok(()),
        };
        match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                tokio::spawn(serve_one(tcp, link.clone(), local, auth.clone()));
            }
            Err(e) => {
                let failure = backoff.failed(Instant::now());
                if let Some(line) = failure.line(&e) {
                    tracing::warn!("{line}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(failure.wait) => {}
                    _ = &mut shutdown => return Ok(()),
                }
            }
        }
    }
}

async fn serve_one(
    tcp: TcpStream,
    link: Arc<Link>,
    local: SocketAddr,
    auth: Option<Arc<ProxyAuth>>,
) {
    let _ = tcp.set_nodelay(true);
    let svc = service_fn(move |req| crate::proxy::handle(link.clone(), local, auth.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("browser connection: {e}");
    }
}
