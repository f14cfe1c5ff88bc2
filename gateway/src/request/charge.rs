//! The charging layer: reserve before serving, meter both bodies, hand the
//! meter to a CONNECT splice, and settle when the request's last byte
//! handle is dropped.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use proto::headers::CONTENT_LENGTH as LENGTH_HEADER;

use crate::error::{BoxFuture, GatewayError};
use crate::metering::context::PadContext;
use crate::metering::meter::{Dir, Meter};
use crate::metering::metered::metered;
use crate::Body;

/// The charging layer: reserve, meter both bodies, hand the meter to a
/// CONNECT splice, settle on drop. Nothing is reserved for a request that
/// fails before the origin answers (the reservation is released in full).
#[derive(Clone)]
pub struct Charge<S> {
    pub inner: S,
    pub ctx: Arc<PadContext>,
}

impl<S> tower::Service<Request<Incoming>> for Charge<S>
where
    S: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = GatewayError,
            Future = BoxFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let ctx = self.ctx.clone();
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let dest = if ctx.pad.header().policy_id != [0; 32] {
                crate::destination::destination(&req).ok()
            } else {
                None
            };
            let meter = Meter::start(ctx, dest).await?;
            let is_connect = req.method() == http::Method::CONNECT;
            let mut req: Request<Body> = req.map(|b| metered(b, meter.clone(), Dir::Up));
            if is_connect {
                req.extensions_mut().insert(meter.clone());
            }
            let mut resp = inner.call(req).await?;
            meter.mark_served();
            // A download the meter stops early must end in order (see
            // `MeteredBody`); h2 would turn a short body under Content-Length
            // into a stream error that discards bytes already paid for. The
            // length travels beside it and the agent restores it.
            if let Some(len) = resp.headers_mut().remove(http::header::CONTENT_LENGTH) {
                resp.headers_mut().insert(LENGTH_HEADER, len);
            }
            Ok(resp.map(|b| metered(b, meter, Dir::Down)))
        })
    }
}
