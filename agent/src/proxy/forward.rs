//! Plain requests: an absolute-form browser request becomes an h2 request
//! through the tunnel, and its response comes back with the origin's length
//! restored and a gateway stop turned into an aborted transfer; each carries
//! the agent's request id, and its body bytes are counted both ways.

use std::future::Future;

use http::{header, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::strip_hop_by_hop;
use crate::link::Link;
use crate::pages;
use crate::spend::Tracked;
use crate::Body;

pub(super) async fn forward(link: &Link, req: Request<Incoming>) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut resp = send(link, req).await;
    super::note_refusal(link, &host, &mut resp);
    resp
}

async fn send(link: &Link, req: Request<Incoming>) -> Response<Body> {
    let mut sender = match link.sender().await {
        Ok(s) => s,
        Err(state) => return pages::link_error(&state, link),
    };
    let (mut parts, body) = req.into_parts();
    let tracked = link
        .spending
        .begin(parts.uri.authority().map_or("", |a| a.as_str()));
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(proto::headers::REQUEST, tracked.id.into());
    // The authority travels as :authority; a Host header would only repeat it.
    parts.headers.remove(header::HOST);
    parts.version = Version::HTTP_2;
    if let Some(refused) =
        super::too_large_for_the_tunnel(&parts.method, &parts.uri, &parts.headers)
    {
        return refused;
    }
    let sent = tracked.counter();
    let body = body.map_frame(move |f| {
        if let Some(d) = f.data_ref() {
            sent.fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        f
    });
    let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    match sender.send_request(req).await {
        Ok(resp) => {
            if let Some(code) = resp.headers().get(proto::headers::ERROR) {
                // The gateway refused: its words on the agent's page.
                tracked.refused();
                let code = code.to_str().unwrap_or("refused").to_string();
                let reason = resp
                    .headers()
                    .get(proto::headers::REASON)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(&code)
                    .to_string();
                let mut page = pages::refused(resp.status(), &code, &reason);
                if let Some(after) = resp.headers().get(header::RETRY_AFTER) {
                    page.headers_mut()
                        .insert(header::RETRY_AFTER, after.clone());
                }
                page.headers_mut().insert(
                    proto::headers::REASON,
                    proto::headers::reason_value(&reason),
                );
                return page;
            }
            let (mut parts, body) = resp.into_parts();
            // The site's price is for the agent's pages, not the browser.
            tracked.priced(link.sites.take(&mut parts.headers));
            strip_hop_by_hop(&mut parts.headers);
            // The gateway carries the origin's length beside the h2 stream
            // (so a metered download can end early in order); restore it.
            if let Some(len) = parts.headers.remove(proto::headers::CONTENT_LENGTH) {
                parts.headers.insert(header::CONTENT_LENGTH, len);
            }
            parts.version = Version::HTTP_11;
            Response::from_parts(parts, Body::new(StopAware(body, None, tracked)))
        }
        Err(e) => pages::tunnel_failed(&e.to_string()),
    }
}

/// The gateway ends a download it stops early (the pad's value ran out) with
/// an `x-padnet-stopped` trailer; turn that into a body error, so the browser
/// sees an aborted transfer, never a complete-looking short one. The error
/// waits a moment first: hyper flushes its write buffer while the body is
/// pending, so every byte that arrived (and was paid for) reaches the browser
/// before the connection is cut. The bytes that arrive count for the
/// request's charge check (see `spend`).
struct StopAware(
    Incoming,
    Option<(String, std::pin::Pin<Box<tokio::time::Sleep>>)>,
    Tracked,
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
                None => {
                    if let Some(d) = f.data_ref() {
                        self.2.count(d.len());
                    }
                    std::task::Poll::Ready(Some(Ok(f)))
                }
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
