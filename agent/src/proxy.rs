//! The browser-facing HTTP/1.1 proxy: `CONNECT` becomes an h2 CONNECT stream
//! through the tunnel, absolute-form requests become h2 requests, and
//! origin-form requests to the agent itself get the agent's own pages.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::link::Link;
use crate::pages;
use crate::Body;

/// Dispatch one browser request.
pub async fn handle(
    link: Arc<Link>,
    listen: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(if req.method() == Method::CONNECT {
        connect(&link, req).await
    } else if req.uri().scheme().is_some() {
        forward(&link, req).await
    } else {
        pages::own(&link, listen, req)
    })
}

pub use proto::headers::strip_hop_by_hop;

async fn forward(link: &Link, req: Request<Incoming>) -> Response<Body> {
    let mut sender = match link.sender().await {
        Ok(s) => s,
        Err(state) => return pages::link_error(&state, link),
    };
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The authority travels as :authority; a Host header would only repeat it.
    parts.headers.remove(header::HOST);
    parts.version = Version::HTTP_2;
    let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    match sender.send_request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // The gateway carries the origin's length beside the h2 stream
            // (so a metered download can end early in order); restore it.
            if let Some(len) = parts.headers.remove(proto::headers::CONTENT_LENGTH) {
                parts.headers.insert(header::CONTENT_LENGTH, len);
            }
            parts.version = Version::HTTP_11;
            Response::from_parts(parts, Body::new(StopAware(body, None)))
        }
        Err(e) => pages::tunnel_failed(&e.to_string()),
    }
}

/// The gateway ends a download it stops early (the pad's value ran out) with
/// an `x-padnet-stopped` trailer; turn that into a body error, so the browser
/// sees an aborted transfer, never a complete-looking short one. The error
/// waits a moment first: hyper flushes its write buffer while the body is
/// pending, so every byte that arrived (and was paid for) reaches the browser
/// before the connection is cut.
struct StopAware(
    Incoming,
    Option<(String, std::pin::Pin<Box<tokio::time::Sleep>>)>,
);

impl http_body::Body for StopAware {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some((why, sleep)) = &mut self.1 {
            std::task::ready!(sleep.as_mut().poll(cx));
            return std::task::Poll::Ready(Some(Err(format!(
                "the gateway stopped this download: {why}"
            )
            .into())));
        }
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.0).poll_frame(cx));
        match frame {
            Some(Ok(f)) => match f
                .trailers_ref()
                .and_then(|t| t.get(proto::headers::STOPPED))
            {
                Some(why) => {
                    let why = why.to_str().unwrap_or("?").to_string();
                    tracing::warn!("a download was stopped by the gateway: {why}");
                    let mut sleep =
                        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(200)));
                    let _ = sleep.as_mut().poll(cx); // registers the wakeup
                    self.1 = Some((why, sleep));
                    std::task::Poll::Pending
                }
                None => std::task::Poll::Ready(Some(Ok(f))),
            },
            Some(Err(e)) => std::task::Poll::Ready(Some(Err(e.into()))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

async fn connect(link: &Link, mut req: Request<Incoming>) -> Response<Body> {
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
    let mut h2req = Request::new(Empty::new().map_err(|never| match never {}).boxed());
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
    let mut resp = match sender.send_request(h2req).await {
        Ok(r) => r,
        Err(e) => return pages::tunnel_failed(&e.to_string()),
    };
    if !resp.status().is_success() {
        // The gateway's page (403, 502...) goes to the browser as it is.
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, body.map_err(Into::into).boxed());
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let browser = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match tokio::try_join!(browser, upstream) {
            Ok((b, u)) => {
                let mut b = TokioIo::new(b);
                let mut u = TokioIo::new(u);
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut b, &mut u, 64 * 1024, 64 * 1024)
                        .await;
            }
            Err(e) => tracing::debug!("CONNECT upgrade failed: {e}"),
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn strips_connection_specific_headers_for_h2() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
