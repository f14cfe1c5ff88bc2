//! The innermost service: fetch a plain request from its origin with a pooled
//! hyper-util client (rustls for https origins), or open a CONNECT tunnel to
//! host:port and splice bytes. Upstream addresses pass the guard first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio_util::task::AbortOnDropHandle;

use crate::error::GatewayError;
use crate::metering::meter::{Dir, Meter};
use crate::metering::metered::MeteredIo;
use crate::request::front::{self, FirstBytes};
use crate::request::guard::{GuardedResolver, UpstreamGuard};
use crate::request::headers;
use crate::Body;
use tokio_util::either::Either;

/// Settings for upstream fetches.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub guard: UpstreamGuard,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Extra trust anchors for https origins (tests, private CAs).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

type HttpsClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Body>;

/// The fetch service. Cheap to clone: the pool is shared.
#[derive(Clone)]
pub struct Fetch {
    client: HttpsClient,
    /// The guarded TCP connector under `client`, also what CONNECT dials with.
    connector: HttpConnector<GuardedResolver>,
    cfg: Arc<FetchConfig>,
    /// Where origin requests and their connections run: the main
    /// (multi-threaded) runtime, so reading from origins proceeds in parallel
    /// with the tunnel threads that encrypt what they read.
    origin_rt: tokio::runtime::Handle,
}

impl Fetch {
    pub fn new(cfg: FetchConfig, origin_rt: tokio::runtime::Handle) -> anyhow::Result<Fetch> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for c in &cfg.extra_roots {
            roots
                .add(c.clone())
                .map_err(|e| anyhow::anyhow!("extra root CA: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut connector = HttpConnector::new_with_resolver(GuardedResolver(cfg.guard));
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Fetch {
            client,
            connector,
            cfg: Arc::new(cfg),
            origin_rt,
        })
    }

    /// IP literals are not resolved, so the resolver's guard never sees
    /// them: check them here.
    fn check_ip_literal(&self, host: &str) -> Result<(), GatewayError> {
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) if !self.cfg.guard.allows(ip) => Err(crate::request::guard::PrivateUpstream {
                host: host.to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    async fn plain(self, mut req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let uri = req.uri().clone();
        let host = uri
            .host()
            .ok_or_else(|| GatewayError::BadRequest("the request has no host".into()))?
            .to_string();
        if uri.scheme_str().is_none_or(|s| s != "http" && s != "https") {
            return Err(GatewayError::BadRequest(format!(
                "unsupported scheme in {uri}"
            )));
        }
        self.check_ip_literal(&host)?;
        headers::for_origin(req.headers_mut());
        // The origin is told the host the policy checked, never another:
        // a Host header naming a different site would bypass the policy.
        let host_value = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let hv = http::HeaderValue::from_str(&host_value)
            .map_err(|_| GatewayError::BadRequest(format!("bad host {host:?}")))?;
        req.headers_mut().insert(http::header::HOST, hv);
        // The tunnel speaks h2; origins are reached over HTTP/1.1 (ALPN may not offer h2).
        *req.version_mut() = http::Version::HTTP_11;
        // A request the user gives up on is given up at the origin too:
        // dropping the handle aborts the task.
        let sent = AbortOnDropHandle::new(self.origin_rt.spawn(self.client.request(req)));
        let mut resp = sent
            .await
            .map_err(|e| GatewayError::Unreachable {
                host: host.clone(),
                reason: format!("the request was cancelled ({e})"),
            })?
            .map_err(|e| GatewayError::from_client(&host, &e))?;
        headers::strip_hop_by_hop(resp.headers_mut());
        headers::strip_padnet(resp.headers_mut());
        // A header block the agent would refuse closes the whole tunnel:
        // refuse this one response instead.
        let size = proto::h2::response_header_list_size(resp.headers());
        let limit = proto::h2::MAX_HEADER_LIST as usize - proto::h2::GATEWAY_HEADROOM;
        if size >= limit {
            return Err(GatewayError::OriginHeadersTooLarge { host, size, limit });
        }
        *resp.version_mut() = http::Version::HTTP_2;
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }

    async fn connect(self, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let auth = req
            .uri()
            .authority()
            .ok_or_else(|| GatewayError::BadRequest("CONNECT needs host:port".into()))?
            .clone();
        let port = auth
            .port_u16()
            .ok_or_else(|| GatewayError::BadRequest("CONNECT needs host:port".into()))?;
        if !self.cfg.connect_ports.contains(&port) {
            let allowed = self
                .cfg
                .connect_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(GatewayError::PortNotAllowed(port, allowed));
        }
        let host = auth.host().to_string();
        self.check_ip_literal(&host)?;
        // The same guarded connector as plain requests: it resolves through
        // the guard, tries each allowed address in turn (with a timeout) and
        // sets TCP_NODELAY.
        let target = http::Uri::builder()
            .scheme("http")
            .authority(auth)
            .path_and_query("/")
            .build()
            .map_err(|e| GatewayError::BadRequest(format!("CONNECT target: {e}")))?;
        let upstream = tower::ServiceExt::oneshot(self.connector.clone(), target)
            .await
            .map_err(|e| GatewayError::from_client(&host, &e))?
            .into_inner();
        let meter = req.extensions().get::<Arc<Meter>>().cloned();
        let fronting_check = meter.as_ref().and_then(|m| m.restricted_host());
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    // A restricted pad's stream must open with TLS to the
                    // host its policy allowed; those first bytes are then
                    // metered and passed on like the rest.
                    if let Some(host) = fronting_check {
                        let first = match first_bytes(&mut client, &host).await {
                            Ok(b) => b,
                            Err(why) => {
                                tracing::info!("a restricted pad's CONNECT closed: {why}");
                                if let Some(m) = &meter {
                                    m.mark_refused();
                                }
                                let _ = client.shutdown().await;
                                return;
                            }
                        };
                        if let Some(m) = &meter {
                            if m.take_exactly(Dir::Up, first.len()).await.is_err() {
                                let _ = client.shutdown().await;
                                return;
                            }
                        }
                        if upstream.write_all(&first).await.is_err() {
                            return;
                        }
                        if let Some(m) = &meter {
                            m.carried(Dir::Up, first.len());
                        }
                    }
                    let mut client = match meter {
                        Some(m) => Either::Left(MeteredIo::new(client, m)),
                        None => Either::Right(client),
                    };
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut client,
                        &mut upstream,
                        64 * 1024,
                        64 * 1024,
                    )
                    .await;
                    // End the agent's side in order (EOS after the data
                    // already passed on), also when the meter stopped it.
                    let _ = client.shutdown().await;
                }
                Err(e) => tracing::debug!("CONNECT upgrade failed: {e}"),
            }
        });
        let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
        *resp.status_mut() = StatusCode::OK;
        Ok(resp)
    }
}

/// How long a restricted pad's CONNECT may take to send its TLS hello.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// Read a CONNECT stream's first bytes until [`front::judge`] decides;
/// the bytes read when it allows them, why not otherwise.
async fn first_bytes<R: tokio::io::AsyncRead + Unpin>(
    client: &mut R,
    host: &str,
) -> Result<Vec<u8>, String> {
    let read = async {
        let mut buf = Vec::with_capacity(2048);
        loop {
            match front::judge(&buf, host) {
                FirstBytes::Allowed => return Ok(buf),
                FirstBytes::Refused(why) => return Err(why),
                FirstBytes::NeedMore => {}
            }
            let mut chunk = [0u8; 4096];
            let want = chunk.len().min(front::MAX_CLIENT_HELLO + 1 - buf.len());
            match client.read(&mut chunk[..want]).await {
                Ok(0) => return Err("the stream ended before its TLS hello".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading its TLS hello: {e}")),
            }
        }
    };
    tokio::time::timeout(FIRST_BYTES_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err("no TLS hello within 10 s".into()))
}

impl tower::Service<Request<Body>> for Fetch {
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let me = self.clone();
        if req.method() == Method::CONNECT {
            Box::pin(me.connect(req))
        } else {
            Box::pin(me.plain(req))
        }
    }
}
