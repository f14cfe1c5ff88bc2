//! The per-request tower stack, built in one place, outermost first. Each
//! h2 stream of a tunnel is one request through it.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceExt};

use crate::accounts::AccountService;
use crate::error::GatewayError;
use crate::metering::context::PadContext;
use crate::metrics::Outcome;
use crate::request::admit::Admit;
use crate::request::charge::Charge;
use crate::request::fetch::Fetch;
use crate::Body;

/// Build the stack for one tunnel.
///
/// 0. the account service (`proto::account::AUTHORITY`), steered aside
///    before anything else: it is the gateway's own, not a site.
/// 1. error pages (`map_result`) — outermost, so every failure below
///    becomes a page the user can read, never a reset stream; each answer
///    is counted here (`padnet_requests_total`). (The error
///    type stays the layers' own only because `map_result` converts
///    readiness errors with `From`; no layer has any.)
/// 2. `Admit` — the pad's policy (403), rate limit (429), daily limits (402).
/// 3. `Charge` — reserve value (402 if it cannot), meter both bodies, settle.
/// 4. `Fetch` — innermost: the guarded upstream fetch or CONNECT splice.
pub fn build(
    fetch: Fetch,
    accounts: Arc<AccountService>,
    ctx: Arc<PadContext>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = GatewayError,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let ctx_for_accounts = ctx.clone();
    let metrics = ctx.services.metrics.clone();
    let admit: Admit<Charge<Fetch>> = Admit {
        inner: Charge {
            inner: fetch,
            ctx: ctx.clone(),
        },
        ctx,
    };
    let pages = ServiceExt::<Request<Incoming>>::map_result(
        admit,
        move |r: Result<Response<Body>, GatewayError>| {
            // Counted once, here, where the final status is known.
            metrics.request(
                r.as_ref()
                    .map_or_else(GatewayError::outcome, |ok| Outcome::of_status(ok.status())),
            );
            Ok(r.unwrap_or_else(GatewayError::into_response))
        },
    );
    // 0. The account service's reserved authority, answered here: never
    //    admitted as a site, charged, or fetched.
    tower::steer::Steer::new(
        vec![
            pages.boxed_clone(),
            account_service(accounts, ctx_for_accounts),
        ],
        |req: &Request<Incoming>, _: &[_]| usize::from(is_account_service(req)),
    )
}

/// Whether a request is for the account service (its authority, any case,
/// with or without a trailing dot).
pub fn is_account_service<B>(req: &Request<B>) -> bool {
    req.uri().host().is_some_and(|h| {
        h.trim_end_matches('.')
            .eq_ignore_ascii_case(proto::account::AUTHORITY)
    })
}

type Boxed = tower::util::BoxCloneService<Request<Incoming>, Response<Body>, GatewayError>;

fn account_service(accounts: Arc<AccountService>, ctx: Arc<PadContext>) -> Boxed {
    tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<Incoming>| {
        let (accounts, ctx) = (accounts.clone(), ctx.clone());
        async move {
            let resp = accounts.handle(ctx.clone(), req).await;
            ctx.services
                .metrics
                .request(Outcome::of_status(resp.status()));
            Ok::<_, GatewayError>(resp)
        }
    }))
}
