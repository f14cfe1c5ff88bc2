//! The per-request tower stack, built in one place, outermost first. Each
//! h2 stream of a tunnel is one request through it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::fetch::Fetch;
use crate::Body;

/// Build the stack for one tunnel.
///
/// 1. `ErrorPages` — outermost, so every failure below becomes a page the
///    user can read, never a reset stream.
/// 2. `Fetch` — innermost: the guarded upstream fetch or CONNECT splice.
///
/// Policy, rate limits and pricing slot in between, in request order, as the
/// policy and ledger issues land.
pub fn build(fetch: Fetch) -> ErrorPages<Fetch> {
    ErrorPages { inner: fetch }
}

/// Turns `GatewayError`s into status pages.
#[derive(Clone)]
pub struct ErrorPages<S> {
    inner: S,
}

impl<S> tower::Service<Request<Incoming>> for ErrorPages<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = GatewayError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            Ok(match fut.await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            })
        })
    }
}
