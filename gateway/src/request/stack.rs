//! The per-request tower stack, built in one place, outermost first. Each
//! h2 stream of a tunnel is one request through it.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceExt};

use crate::error::GatewayError;
use crate::metering::context::PadContext;
use crate::request::admit::Admit;
use crate::request::charge::Charge;
use crate::request::fetch::Fetch;
use crate::Body;

/// Build the stack for one tunnel.
///
/// 1. error pages (`map_result`) — outermost, so every failure below
///    becomes a page the user can read, never a reset stream. (The error
///    type stays the layers' own only because `map_result` converts
///    readiness errors with `From`; no layer has any.)
/// 2. `Admit` — the pad's policy (403), rate limit (429), daily limits (402).
/// 3. `Charge` — reserve value (402 if it cannot), meter both bodies, settle.
/// 4. `Fetch` — innermost: the guarded upstream fetch or CONNECT splice.
pub fn build(
    fetch: Fetch,
    ctx: Arc<PadContext>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = GatewayError,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let admit: Admit<Charge<Fetch>> = Admit {
        inner: Charge {
            inner: fetch,
            ctx: ctx.clone(),
        },
        ctx,
    };
    ServiceExt::<Request<Incoming>>::map_result(admit, |r: Result<Response<Body>, GatewayError>| {
        Ok(r.unwrap_or_else(GatewayError::into_response))
    })
}
