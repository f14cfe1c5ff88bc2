//! The browsers' listener: accepts connections, at most `max_connections`
//! open at once (the rest wait in the kernel's backlog), serves each as
//! HTTP/1.1 with a deadline for its request headers (so idle and slowloris
//! connections are closed), and backs off when accept fails (out of file
//! descriptors) instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::accept::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::access::ProxyAuth;
use crate::link::Link;
use crate::proxy::Permit;

/// Connections open at once when RLIMIT_NOFILE does not ask for fewer.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// File descriptors left for everything but browser connections (the
/// tunnel, the pad and its state, the runtime, stdio).
const RESERVED_FDS: u64 = 64;

/// How the listener limits browsers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Browser connections open at once (CONNECT tunnels included).
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, from
    /// when the agent starts waiting for them (also between keep-alive requests).
    pub header_timeout: Duration,
}

/// The default for `--max-connections`: [`DEFAULT_MAX_CONNECTIONS`], or
/// fewer when the soft RLIMIT_NOFILE leaves no room for that many.
pub fn default_max_connections() -> usize {
    match tunnel::process::open_file_limit() {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) => usize::try_from(n.saturating_sub(RESERVED_FDS))
            .unwrap_or(usize::MAX)
            .clamp(1, DEFAULT_MAX_CONNECTIONS),
    }
}

/// Serve browsers on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    link: Arc<Link>,
    auth: Option<Arc<ProxyAuth>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::pages::set_home(listener.local_addr()?);
    let serving = Arc::new(Serving {
        link,
        local: listener.local_addr()?,
        auth,
        header_timeout: limits.header_timeout,
    });
    let places = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        // Take a place first: beyond the cap, connections wait in the backlog.
        let permit = tokio::select! {
            p = places.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()), // closed: nothing closes it
            },
            _ = &mut shutdown => return Ok(()),
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return Ok(()),
        };
        match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                tokio::spawn(serve_one(tcp, serving.clone(), Arc::new(permit)));
            }
            Err(e) => {
                drop(permit);
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

/// What every browser connection is served with.
struct Serving {
    link: Arc<Link>,
    /// The listener's address (the agent's own pages answer only to it).
    local: SocketAddr,
    auth: Option<Arc<ProxyAuth>>,
    header_timeout: Duration,
}

/// The kernel's send buffer on a browser connection. Left to autotune it
/// grows to megabytes that a slow or cancelling reader never takes, and
/// the pad pays for every byte of it; on loopback a small one costs no speed.
const BROWSER_SEND_BUFFER: usize = 64 << 10;
/// What hyper buffers for one browser connection, either way (its default
/// is ~400 KB): bytes queued toward the browser are paid for and lost when
/// the user cancels, and a larger queue lets a download's adaptive window
/// grow further before the browser's pace shows. A request head longer than
/// this gets hyper's own 431; the tunnel carries none that long anyway (the
/// h2 header list, [`proto::h2::MAX_HEADER_LIST`], counts more than the raw
/// bytes), and shorter ones over the list limit get the agent's 431 page.
const BROWSER_WRITE_BUFFER: usize = 64 << 10;

async fn serve_one(tcp: TcpStream, serving: Arc<Serving>, permit: Permit) {
    let _ = tcp.set_nodelay(true);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&tcp, BROWSER_SEND_BUFFER);
    let header_timeout = serving.header_timeout;
    let svc = service_fn(move |req| {
        let s = &serving;
        crate::proxy::handle(s.link.clone(), s.local, s.auth.clone(), permit.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(BROWSER_WRITE_BUFFER)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("browser connection: {e}");
    }
}
