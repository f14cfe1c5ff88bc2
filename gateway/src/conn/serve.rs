//! `padnet-gateway serve`: accept tunnels on a TCP listener, run the handshake,
//! then serve each tunnel's HTTP/2 streams through the request stack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use proto::accept::AcceptBackoff;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::AccountService;
use crate::conn::accept::{accept, Refused};
use crate::conn::pending::Pending;
use crate::conn::registry::Registry;
use crate::metering::context::{PadContext, Services};
use crate::metering::float::Float;
use crate::request::fetch::Fetch;
use crate::request::stack;

/// An accepted connection on its way to a tunnel thread.
type Accepted = (std::net::TcpStream, SocketAddr);
type Handoff = tokio::sync::mpsc::Sender<Accepted>;
/// Connections queued for one tunnel thread: beyond this the listener
/// stops accepting and the kernel's backlog holds the rest.
const HANDOFF_QUEUE: usize = 256;

pub struct Server {
    /// Connections still waiting for their hello (capped).
    pub pending: Arc<Pending>,
    pub registry: Arc<Registry>,
    pub services: Arc<Services>,
    pub fetch: Fetch,
    /// The account service tunnels reach at its reserved authority (it
    /// also knows which tunnels are open, to close a cancelled pad's).
    pub accounts: Arc<AccountService>,
    /// How long a connection without a valid hello is held before closing.
    pub probe_hold: Duration,
    /// Cancelled at shutdown: every tunnel finishes its open streams (h2
    /// GOAWAY) and ends.
    pub stopping: CancellationToken,
    /// The tunnels being served, waited for at shutdown.
    pub tunnels: TaskTracker,
    /// How long a shutdown waits for open streams to finish.
    pub drain_limit: Duration,
}

impl Server {
    /// Accept tunnels until `shutdown` resolves. Each tunnel lives on one of
    /// `threads` single-threaded runtimes (round robin): its h2 connection
    /// and streams share a thread, so a response's HEADERS and first DATA
    /// leave in one record instead of racing each other to the socket.
    /// Origin requests run on this (multi-threaded) runtime, see `Fetch`.
    /// Why: docs/decisions.md, "Gateway threads".
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        threads: usize,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let workers = self.start_workers(threads.max(1))?;
        let me = self.clone();
        tokio::spawn(async move { me.rescan_forever().await });
        let mut next = 0usize;
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted.and_then(|(tcp, peer)| Ok((tcp.into_std()?, peer))) {
                    Ok(conn) => {
                        backoff.succeeded();
                        next = (next + 1) % workers.len();
                        if workers[next].send(conn).await.is_err() {
                            anyhow::bail!("tunnel thread {next} has stopped");
                        }
                    }
                    Err(e) => {
                        let failure = backoff.failed(Instant::now());
                        if let Some(line) = failure.line(&e) {
                            tracing::warn!("{line}");
                        }
                        tokio::time::sleep(failure.wait).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        // Stop taking tunnels; let each finish its open streams, then end.
        self.stopping.cancel();
        self.tunnels.close();
        if tokio::time::timeout(self.drain_limit, self.tunnels.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} tunnel(s) still open after {:?}; stopping anyway",
                self.tunnels.len(),
                self.drain_limit
            );
        }
        Ok(())
    }

    /// Start the tunnel threads. They run until the process ends: after
    /// shutdown stops accepting, finished requests' charges still become
    /// final on them.
    fn start_workers(self: &Arc<Self>, threads: usize) -> anyhow::Result<Vec<Handoff>> {
        let mut senders = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Accepted>(HANDOFF_QUEUE);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let me = self.clone();
            std::thread::Builder::new()
                .name(format!("tunnels-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while let Some((tcp, peer)) = rx.recv().await {
                            match tokio::net::TcpStream::from_std(tcp) {
                                Ok(tcp) => {
                                    let m = me.clone();
                                    me.tunnels.spawn(async move { m.tunnel(tcp, peer).await });
                                }
                                Err(e) => tracing::warn!("taking a connection: {e}"),
                            }
                        }
                        std::future::pending::<()>().await
                    })
                })?;
            senders.push(tx);
        }
        Ok(senders)
    }

    /// Pick up pads minted while serving.
    async fn rescan_forever(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let reg = self.registry.clone();
            match tokio::task::spawn_blocking(move || reg.scan()).await {
                Ok(Ok(n)) if n > 0 => tracing::info!("{n} new pad(s) loaded"),
                Ok(Err(e)) => tracing::warn!("rescanning pads: {e}"),
                _ => {}
            }
        }
    }

    async fn tunnel(&self, tcp: tokio::net::TcpStream, _peer: SocketAddr) {
        // The peer address is never logged with anything that names a pad.
        let _ = tcp.set_nodelay(true);
        let waiting = self.pending.enter();
        let accepted = accept(
            tcp,
            &self.registry,
            &self.services.ledger,
            self.probe_hold,
            &waiting.evicted,
        )
        .await;
        drop(waiting);
        let metrics = &self.services.metrics;
        if let Err(e) = &accepted {
            metrics.hello_refused(e.reason());
        }
        let accepted = match accepted {
            Ok(a) => a,
            Err(Refused::Io(e)) => {
                tracing::debug!("handshake i/o: {e}");
                return;
            }
            Err(e) => {
                tracing::debug!("connection refused: {e}");
                return;
            }
        };
        // Counted as open until this function returns.
        let _open = metrics.tunnel_opened();
        tracing::debug!("tunnel open");
        let header = accepted.pad.header();
        let serial = header.serial.to_string();
        let float = Float::new(
            self.services.ledger.clone(),
            serial.clone(),
            self.services.float_refill(),
            self.services.tasks.clone(),
            self.services.metrics.clone(),
        );
        self.services.floats.register(&float);
        let notifier = accepted.stream.notifier();
        // Open until this function returns: a cancellation closes it.
        let _live = self.accounts.live.enter(&serial, notifier.clone());
        let ctx = Arc::new(PadContext {
            serial,
            policy_id: header.policy_id,
            issued: header.value_micros,
            tell_agent: {
                let (notifier, pad) = (notifier.clone(), accepted.pad.clone());
                Box::new(move |balance, reserved| notifier.post(balance, reserved, pad.key_left()))
            },
            report_charge: {
                let notifier = notifier.clone();
                Box::new(move |charge| notifier.report(charge))
            },
            services: self.services.clone(),
            float,
            balance_dirty: false.into(),
            ads_paid: Default::default(),
        });
        PadContext::spawn_notices(&ctx);
        // Tell the agent its balance and currency at once.
        notifier.set_currency(&self.services.tariff.currency);
        notifier.set_tariff(tunnel::stream::TariffNote {
            per_mib: self.services.tariff.per_mib,
            per_request: self.services.tariff.per_request,
        });
        if let Some(balance) = self.services.ledger.pad_balance(&ctx.serial) {
            ctx.notify_balance(balance);
        }
        let service =
            TowerToHyperService::new(stack::build(self.fetch.clone(), self.accounts.clone(), ctx));
        // A second handle on the socket, for after h2 is done (see `linger`).
        let socket = {
            use std::os::fd::AsFd;
            accepted.stream.get_ref().as_fd().try_clone_to_owned().ok()
        };
        let h2 = proto::h2::server(TokioExecutor::new());
        let conn = h2.serve_connection(TokioIo::new(accepted.stream), service);
        tokio::pin!(conn);
        let ended = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.stopping.cancelled() => {
                // GOAWAY: streams already open finish, no new ones start.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!("tunnel ended: {e}");
        }
        if let Some(socket) = socket {
            linger(socket).await;
        }
        let pad = accepted.pad;
        if let Err(e) = tunnel::store::blocking(move || pad.sync_erasures()).await {
            tracing::warn!("flushing erasures: {e}");
        }
    }
}

/// How long a finished tunnel's socket waits for the agent to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// After h2 has flushed its last frames: read (and drop) what the agent
/// still sends until it closes its side, for at most [`LINGER`]. Closing a
/// socket with unread bytes in it (the agent's last window updates, its
/// answer to our CLOSE) makes the kernel send a reset, which throws away
/// the download's tail still queued toward the agent, or unread by it.
async fn linger(socket: std::os::fd::OwnedFd) {
    use tokio::io::AsyncReadExt;
    let std_socket = std::net::TcpStream::from(socket);
    let _ = std_socket.shutdown(std::net::Shutdown::Write);
    if std_socket.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut tcp) = tokio::net::TcpStream::from_std(std_socket) else {
        return;
    };
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
