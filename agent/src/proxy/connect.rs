//! `CONNECT`: an h2 CONNECT stream through the tunnel, spliced to the
//! browser's upgraded connection once the gateway answers 2xx; any other
//! answer (the gateway's 403 or 502 page) goes to the browser as it is.
//! The stream carries the agent's request id; its bytes are counted.

use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Permit;
use crate::link::Link;
use crate::pages;
use crate::Body;

pub(super) async fn connect(link: &Link, req: Request<Incoming>, permit: Permit) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut resp = open(link, req, permit).await;
    super::note_refusal(link, &host, &mut resp);
    resp
}

async fn open(link: &Link, mut req: Request<Incoming>, permit: Permit) -> Response<Body> {
    let mut sender = match link.sender().await {
        Ok(s) => s,
        Err(state) => return pages::link_error(&state, link),
    };
    let Some(authority) = req.uri().authority().cloned() else {
        return pages::simple(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &proto::page::Html::text("CONNECT needs host:port."),
        );
    };
    let tracked = link.spending.begin(authority.as_str());
    let mut h2req = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    h2req
        .headers_mut()
        .insert(proto::headers::REQUEST, tracked.id.into());
    *h2req.method_mut() = Method::CONNECT;
    *h2req.version_mut() = Version::HTTP_2;
    match http::Uri::builder().authority(authority).build() {
        Ok(uri) => *h2req.uri_mut() = uri,
        Err(e) => {
            return pages::simple(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &proto::page::Html::text(&e.to_string()),
            )
        }
    }
    if let Some(refused) =
        super::too_large_for_the_tunnel(h2req.method(), h2req.uri(), h2req.headers())
    {
        return refused;
    }
    let mut resp = match sender.send_request(h2req).await {
        Ok(r) => r,
        Err(e) => return pages::tunnel_failed(&e.to_string()),
    };
    // The site's price (on the 200 and on a refusal alike) is for the agent's pages.
    tracked.priced(link.sites.take(resp.headers_mut()));
    if !resp.status().is_success() {
        if resp.headers().contains_key(proto::headers::ERROR) {
            tracked.refused();
        }
        // The gateway's page (403, 502...) goes to the browser as it is
        // (browsers do not show it; the agent's page names the refusal).
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, body.map_err(Into::into).boxed());
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let browser = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        // The browser's connection stays open, and counted, until the splice ends.
        let _permit = permit;
        match tokio::try_join!(browser, upstream) {
            Ok((b, u)) => {
                let mut b = TokioIo::new(b);
                let mut u = Counted::new(TokioIo::new(u), tracked.counter());
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut b, &mut u, 64 * 1024, 64 * 1024)
                        .await;
            }
            Err(e) => tracing::debug!("CONNECT upgrade failed: {e}"),
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

/// An I/O that counts every byte read and written through it (the bytes a
/// CONNECT stream carried, both ways, as the gateway meters them).
struct Counted<T> {
    io: T,
    bytes: Arc<AtomicU64>,
}

impl<T> Counted<T> {
    fn new(io: T, bytes: Arc<AtomicU64>) -> Counted<T> {
        Counted { io, bytes }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
