//! The clients every measure uses: curl for bulk downloads, and hyper clients
//! for many concurrent keep-alive 1 KiB GETs over any connection (plain TCP
//! here, TLS through CONNECT in https.rs) and for sequential GETs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use padnet_tests::curl;
use tokio::io::{AsyncRead, AsyncWrite};

/// Requests per second, p50 and p99 latency in ms.
pub type LoadFigures = (f64, f64, f64);

/// One curl download of `url` to /dev/null, through `proxy` when given, with
/// `extra` curl arguments; MB/s (0 when it failed).
pub fn bulk_with(url: &str, proxy: Option<SocketAddr>, extra: &[&str]) -> f64 {
    let mut args = vec!["-o", "/dev/null", "-w", "%{speed_download}"];
    let p;
    if let Some(a) = proxy {
        p = format!("http://{a}");
        args.extend(["-x", &p]);
    }
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    if !out.status.success() {
        eprintln!(
            "warning: curl {url}{}: {}",
            proxy.map(|p| format!(" via {p}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1e6
}

/// [`bulk_with`] with no extra arguments.
pub fn bulk(url: &str, proxy: Option<SocketAddr>) -> f64 {
    bulk_with(url, proxy, &[])
}

/// `n` concurrent keep-alive connections doing 1 KiB GETs of `url` for
/// `secs`, to `target`: the origin (`proxied` false) or a proxy.
pub async fn small_load(
    target: SocketAddr,
    url: &str,
    proxied: bool,
    n: usize,
    secs: u64,
) -> LoadFigures {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("warning: not a URL: {url}: {e}");
            return (0.0, 0.0, 0.0);
        }
    };
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let req_uri = if proxied {
        url.to_string()
    } else {
        uri.path().to_string()
    };
    let connect = move || async move {
        let tcp = tokio::net::TcpStream::connect(target).await.ok()?;
        let _ = tcp.set_nodelay(true);
        Some(tcp)
    };
    keepalive_load(n, secs, connect, req_uri, host).await
}

/// `n` tasks, each on a connection from `connect`, sending GET `uri` (with
/// `Host: host`) one after another for `secs`; a task stops at its first
/// error or non-200 answer.
pub async fn keepalive_load<C, F, IO>(
    n: usize,
    secs: u64,
    connect: C,
    uri: String,
    host: String,
) -> LoadFigures
where
    C: Fn() -> F + Clone + Send + 'static,
    F: Future<Output = Option<IO>> + Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (connect, uri, host) = (connect.clone(), uri.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Some(io) = connect().await else {
                return lat;
            };
            let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io)).await
            else {
                return lat;
            };
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let Ok(req) = http::Request::builder()
                    .uri(uri.as_str())
                    .header(http::header::HOST, &host)
                    .body(Empty::new())
                else {
                    break;
                };
                let t = Instant::now();
                match send.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        if resp.into_body().collect().await.is_err() || !ok {
                            break;
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(_) => break,
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let rps = all.len() as f64 / secs as f64;
    all.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    (rps, pct(0.50), pct(0.99))
}

/// `count` sequential 1 KiB requests on one keep-alive connection (reopened
/// if it closes, as a browser would; reopenings are reported): requests per
/// second, body bytes received, reopenings.
pub async fn small_load_count(target: SocketAddr, url: &str, count: usize) -> (f64, f64, usize) {
    async fn open(
        target: SocketAddr,
    ) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(target).await.ok()?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
                .await
                .ok()?;
        tokio::spawn(conn);
        Some(send)
    }
    let t0 = Instant::now();
    let mut body_bytes = 0usize;
    let mut reopened = 0;
    let Some(mut send) = open(target).await else {
        return (0.0, 0.0, 0);
    };
    for _ in 0..count {
        for _attempt in 0..3 {
            if send.ready().await.is_err() {
                reopened += 1;
                match open(target).await {
                    Some(s) => send = s,
                    None => break,
                }
            }
            let Ok(req) = http::Request::builder().uri(url).body(Empty::new()) else {
                break;
            };
            match send.send_request(req).await {
                Ok(resp) if resp.status() == 200 => {
                    body_bytes += resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    break;
                }
                Ok(resp) => {
                    eprintln!("unexpected status {}", resp.status());
                    break;
                }
                Err(_) => continue,
            }
        }
    }
    (
        count as f64 / t0.elapsed().as_secs_f64(),
        body_bytes as f64,
        reopened,
    )
}
