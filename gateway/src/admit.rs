//! The admission layer, before anything is reserved or fetched: the pad's
//! employer policy (sites, ports, hours → 403 naming the rule), its rate
//! limit (governor, per pad → 429 with Retry-After) and its daily limits
//! (spend and MiB → 402 naming the limit). Denied requests cost nothing.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use policy::{Decision, NoCategories, Policy, RequestFacts};

use crate::clock::{now_unix, today};
use crate::context::PadContext;
use crate::destination::destination;
use crate::error::{BoxFuture, GatewayError};
use crate::Body;

/// Check a request against the pad's policy and limits.
pub fn admit(ctx: &PadContext, req: &Request<Incoming>) -> Result<(), GatewayError> {
    let id = ctx.pad.header().policy_id;
    if id == [0; 32] {
        return Ok(());
    }
    let Some(policy) = ctx.services.policies.effective(&id) else {
        // Fail closed: a restricted pad whose policy is missing gets nothing.
        return Err(GatewayError::PolicyDenied {
            policy: format!("id {}", hex::encode(&id[..8])),
            rule: "policy".into(),
            message: "this pad's policy is not on this gateway; ask the operator".into(),
        });
    };
    check_policy(&policy, req)?;
    check_rate(ctx, &policy)?;
    check_daily(ctx, &policy)
}

fn check_policy(policy: &Policy, req: &Request<Incoming>) -> Result<(), GatewayError> {
    let (host, port) = destination(req)?;
    let now = now_unix();
    let facts = RequestFacts {
        host: &host,
        port,
        path: (req.method() != Method::CONNECT).then(|| req.uri().path()),
        now_unix: now,
    };
    match policy.decide(&facts, &NoCategories) {
        Decision::Allow => Ok(()),
        Decision::Deny(d) => Err(GatewayError::PolicyDenied {
            policy: policy.name().to_string(),
            rule: d.rule,
            message: d.message,
        }),
    }
}

fn check_rate(ctx: &PadContext, policy: &Policy) -> Result<(), GatewayError> {
    let Some(per_minute) = policy
        .limits()
        .requests_per_minute
        .and_then(NonZeroU32::new)
    else {
        return Ok(());
    };
    let limiter = ctx.services.limiters.get(&ctx.serial, per_minute);
    match limiter.check() {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(GatewayError::RateLimited {
                per_minute: per_minute.get(),
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
        }
    }
}

fn check_daily(ctx: &PadContext, policy: &Policy) -> Result<(), GatewayError> {
    let limits = policy.limits();
    if limits.spend_per_day.is_none() && limits.mib_per_day.is_none() {
        return Ok(());
    }
    let usage = ctx.services.ledger.read(|b| b.usage(&ctx.serial, today()));
    let held = ctx.float.assigned();
    if let Some(limit) = limits.spend_per_day {
        if usage.spent.saturating_add(held) >= limit {
            return Err(GatewayError::DailyLimit {
                limit: "spend_per_day",
                detail: format!(
                    "{} {} of {} spent today",
                    crate::units::format_amount(usage.spent),
                    ctx.services.tariff.currency,
                    crate::units::format_amount(limit)
                ),
            });
        }
    }
    if let Some(mib) = limits.mib_per_day {
        if usage.bytes >= mib.saturating_mul(1 << 20) {
            return Err(GatewayError::DailyLimit {
                limit: "mib_per_day",
                detail: format!("{} MiB of {mib} MiB carried today", usage.bytes >> 20),
            });
        }
    }
    Ok(())
}

/// The admission layer as a tower service.
#[derive(Clone)]
pub struct Admit<S> {
    pub inner: S,
    pub ctx: Arc<PadContext>,
}

impl<S> tower::Service<Request<Incoming>> for Admit<S>
where
    S: tower::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = GatewayError,
        Future = BoxFuture,
    >,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> BoxFuture {
        match admit(&self.ctx, &req) {
            Ok(()) => self.inner.call(req),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}
