//! The per-request tower stack, built in one place, outermost first. Each
//! h2 stream of a tunnel is one request through it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::admit::Admit;
use crate::context::PadContext;
use crate::error::GatewayError;
use crate::fetch::Fetch;
use crate::meter::Charge;
use crate::Body;

/// Build the stack for one tunnel.
///
/// 1. `ErrorPages` — outermost, so every failure below becomes a page the
///    user can read, never a reset stream.
/// 2. `Admit` — the pad's policy (403), rate limit (429), daily limits (402).
/// 3. `Charge` — reserve value (402 if it cannot), meter both bodies, settle.
/// 4. `Fetch` — innermost: the guarded upstream fetch or CONNECT splice.
pub fn build(fetch: Fetch, ctx: Arc<PadContext>) -> ErrorPages<Admit<Charge<Fetch>>> {
    ErrorPages {
        inner: Admit {
            inner: Charge {
                inner: fetch,
                ctx: ctx.clone(),
            },
            ctx,
        },
    }
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
