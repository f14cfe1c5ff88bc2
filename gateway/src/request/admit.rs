//! The admission layer, before anything is reserved or fetched: the pad's
//! employer policy (sites, ports, hours → 403 naming the rule), its rate
//! limit (governor, per pad → 429 with Retry-After) and its daily limits
//! (spend and MiB → 402 naming the limit). Denied requests cost nothing.
//! The layer sees the pad through [`PadView`], so it is tested without a
//! pad file, a ledger or a tunnel.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use http::{Method, Request, Response};
use policy::{Decision, NoCategories, Policy, RequestFacts};

use crate::metering::context::Services;

use crate::destination::destination;
use crate::error::{BoxFuture, GatewayError};
use crate::ledger::{DayUsage, Micros};
use crate::metering::clock::{now_unix, today};
use crate::metering::context::PadContext;
use crate::metering::rate_limit::RateLimiters;
use crate::Body;

/// What admission needs to know of the pad a request is for.
pub trait PadView: Send + Sync + 'static {
    /// Its serial (the rate limiter's key).
    fn serial(&self) -> &str;
    /// The policy id the pad was minted with (all zero: unrestricted).
    fn policy_id(&self) -> [u8; 32];
    /// The policy that applies now for that id, if this gateway has it.
    fn policy(&self, id: &[u8; 32]) -> Option<Policy>;
    /// The per-pad rate limiters.
    fn limiters(&self) -> &RateLimiters;
    /// What the pad spent and carried today (settled).
    fn usage_today(&self) -> DayUsage;
    /// Value held right now for requests in flight.
    fn held(&self) -> Micros;
    /// The ledger's currency, for messages.
    fn currency(&self) -> &str;
    /// The policy's decision for a request, with whatever categories this
    /// view knows (none by default).
    fn decide(&self, policy: &Policy, facts: &RequestFacts) -> Decision {
        policy.decide(facts, &NoCategories)
    }
}

impl PadView for PadContext {
    fn serial(&self) -> &str {
        &self.serial
    }
    fn policy_id(&self) -> [u8; 32] {
        self.policy_id
    }
    fn policy(&self, id: &[u8; 32]) -> Option<Policy> {
        self.services.policies.effective(id)
    }
    fn limiters(&self) -> &RateLimiters {
        &self.services.limiters
    }
    fn usage_today(&self) -> DayUsage {
        self.services
            .ledger
            .read(|b| b.usage(&self.serial, today()))
    }
    fn held(&self) -> Micros {
        self.float.assigned()
    }
    fn currency(&self) -> &str {
        &self.services.tariff.currency
    }
    fn decide(&self, policy: &Policy, facts: &RequestFacts) -> Decision {
        Services::decide(&self.services, policy, facts)
    }
}

/// Check a request against the pad's policy and limits.
pub fn admit<B>(ctx: &dyn PadView, req: &Request<B>) -> Result<(), GatewayError> {
    let id = ctx.policy_id();
    if id == [0; 32] {
        return Ok(());
    }
    let Some(policy) = ctx.policy(&id) else {
        // Fail closed: a restricted pad whose policy is missing gets nothing.
        return Err(GatewayError::PolicyDenied {
            policy: format!("id {}", hex::encode(&id[..8])),
            rule: "policy".into(),
            message: "this pad's policy is not on this gateway; ask the operator".into(),
        });
    };
    check_policy(ctx, &policy, req)?;
    check_rate(ctx, &policy)?;
    check_daily(ctx, &policy)
}

fn check_policy<B>(
    ctx: &dyn PadView,
    policy: &Policy,
    req: &Request<B>,
) -> Result<(), GatewayError> {
    let (host, port) = destination(req)?;
    let now = now_unix();
    let facts = RequestFacts {
        host: &host,
        port,
        path: (req.method() != Method::CONNECT).then(|| req.uri().path()),
        now_unix: now,
    };
    match ctx.decide(policy, &facts) {
        Decision::Allow => Ok(()),
        Decision::Deny(d) => Err(GatewayError::PolicyDenied {
            policy: policy.name().to_string(),
            rule: d.rule,
            message: d.message,
        }),
    }
}

fn check_rate(ctx: &dyn PadView, policy: &Policy) -> Result<(), GatewayError> {
    let Some(per_minute) = policy
        .limits()
        .requests_per_minute
        .and_then(NonZeroU32::new)
    else {
        return Ok(());
    };
    let limiter = ctx.limiters().get(ctx.serial(), per_minute);
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

fn check_daily(ctx: &dyn PadView, policy: &Policy) -> Result<(), GatewayError> {
    let limits = policy.limits();
    if limits.spend_per_day.is_none() && limits.mib_per_day.is_none() {
        return Ok(());
    }
    let usage = ctx.usage_today();
    let held = ctx.held();
    if let Some(limit) = limits.spend_per_day {
        if usage.spent.saturating_add(held) >= limit {
            return Err(GatewayError::DailyLimit {
                limit: "spend_per_day",
                detail: format!(
                    "{} {} of {} spent today",
                    crate::units::format_amount(usage.spent),
                    ctx.currency(),
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

/// The admission layer: a request the pad may not make is answered with
/// its refusal, and the inner service never sees it.
pub struct Admit<S, V: ?Sized = PadContext> {
    pub inner: S,
    pub ctx: Arc<V>,
}

impl<S: Clone, V: ?Sized> Clone for Admit<S, V> {
    fn clone(&self) -> Self {
        Admit {
            inner: self.inner.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

impl<S, B, V> tower::Service<Request<B>> for Admit<S, V>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = GatewayError>,
    S::Future: Send + 'static,
    V: PadView,
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

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        match admit(&*self.ctx, &req) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tower::{Service, ServiceExt};

    /// A pad as admission sees it, with usage set by the test.
    struct FakePad {
        policy: Option<Policy>,
        usage: Mutex<DayUsage>,
        held: Micros,
        limiters: RateLimiters,
    }

    impl PadView for FakePad {
        fn serial(&self) -> &str {
            "0000-0000-0000-0001"
        }
        fn policy_id(&self) -> [u8; 32] {
            self.policy.as_ref().map_or([0; 32], |p| p.id())
        }
        fn policy(&self, _id: &[u8; 32]) -> Option<Policy> {
            self.policy.clone()
        }
        fn limiters(&self) -> &RateLimiters {
            &self.limiters
        }
        fn usage_today(&self) -> DayUsage {
            *self.usage.lock().unwrap()
        }
        fn held(&self) -> Micros {
            self.held
        }
        fn currency(&self) -> &str {
            "EUR"
        }
    }

    const KIOSK: &str = r#"
name = "Lobby kiosk"
[sites]
allow = ["*.padnet.example", "docs.rs"]
deny = ["ads.padnet.example"]
ports = [443]
[limits]
spend_per_day = "0.50"
requests_per_minute = 3
mib_per_day = 50
"#;

    fn pad(policy: Option<&str>) -> Arc<FakePad> {
        Arc::new(FakePad {
            policy: policy.map(|src| Policy::parse(src, "kiosk.toml").unwrap()),
            usage: Mutex::new(DayUsage::default()),
            held: 0,
            limiters: RateLimiters::default(),
        })
    }

    fn connect(authority: &str) -> Request<()> {
        Request::builder()
            .method(Method::CONNECT)
            .uri(authority)
            .body(())
            .unwrap()
    }

    type MockError = Box<dyn std::error::Error + Send + Sync>;
    /// The stack below admission: a mock (its errors in the stack's type).
    type Inner = tower::util::MapErr<
        tower_test::mock::Mock<Request<()>, Response<Body>>,
        fn(MockError) -> GatewayError,
    >;
    type Handle = tower_test::mock::Handle<Request<()>, Response<Body>>;

    fn mock() -> (Inner, Handle) {
        let (inner, handle) = tower_test::mock::pair::<Request<()>, Response<Body>>();
        let to_gateway: fn(MockError) -> GatewayError = |e| GatewayError::BadRequest(e.to_string());
        (inner.map_err(to_gateway), handle)
    }

    fn layer<V: PadView>(pad: Arc<V>) -> (Admit<Inner, V>, Handle) {
        let (inner, handle) = mock();
        (Admit { inner, ctx: pad }, handle)
    }

    fn ok() -> Response<Body> {
        use http_body_util::BodyExt;
        Response::new(http_body_util::Empty::new().map_err(|n| match n {}).boxed())
    }

    /// Call the layer once; the mock answers 200 if the request reaches it.
    async fn call<V: PadView>(
        svc: &mut Admit<Inner, V>,
        handle: &mut Handle,
        req: Request<()>,
    ) -> (Result<Response<Body>, GatewayError>, bool) {
        handle.allow(1);
        let fut = svc.ready().await.unwrap().call(req);
        let answer = async {
            match handle.next_request().await {
                Some((_, send)) => {
                    send.send_response(ok());
                    true
                }
                None => false,
            }
        };
        let reached = tokio::select! {
            reached = answer => reached,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => false,
        };
        (fut.await, reached)
    }

    #[tokio::test]
    async fn an_unrestricted_pad_is_admitted() {
        let (mut svc, mut h) = layer(pad(None));
        let (r, reached) = call(&mut svc, &mut h, connect("anything.example:8443")).await;
        assert!(r.is_ok() && reached);
    }

    #[tokio::test]
    async fn a_denied_site_or_port_is_a_403_naming_the_rule_and_reaches_nothing() {
        let (mut svc, mut h) = layer(pad(Some(KIOSK)));
        for (dest, rule) in [
            ("evil.example:443", "sites.allow"),
            ("ads.padnet.example:443", "sites.deny"),
            ("docs.rs:80", "sites.ports"),
        ] {
            let (r, reached) = call(&mut svc, &mut h, connect(dest)).await;
            assert!(!reached, "{dest} reached the inner service");
            match r {
                Err(GatewayError::PolicyDenied { rule: got, .. }) => {
                    assert!(got.starts_with(rule), "{dest}: rule {got}, expected {rule}")
                }
                other => panic!("{dest}: expected a 403, got {other:?}"),
            }
        }
        let (r, reached) = call(&mut svc, &mut h, connect("help.padnet.example:443")).await;
        assert!(r.is_ok() && reached, "an allowed site passes");
    }

    #[tokio::test]
    async fn over_the_rate_is_a_429_with_a_retry_after() {
        let (mut svc, mut h) = layer(pad(Some(KIOSK)));
        for _ in 0..3 {
            let (r, _) = call(&mut svc, &mut h, connect("docs.rs:443")).await;
            assert!(r.is_ok());
        }
        let (r, reached) = call(&mut svc, &mut h, connect("docs.rs:443")).await;
        assert!(!reached);
        match r {
            Err(GatewayError::RateLimited {
                per_minute,
                retry_after_secs,
            }) => {
                assert_eq!(per_minute, 3);
                assert!(retry_after_secs >= 1);
            }
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn daily_limits_are_a_402_naming_the_limit_counting_what_is_held() {
        let p = pad(Some(KIOSK));
        let (mut svc, mut h) = layer(p.clone());
        p.usage.lock().unwrap().spent = 499_999;
        let (r, _) = call(&mut svc, &mut h, connect("docs.rs:443")).await;
        assert!(r.is_ok(), "one micro-unit left is still admitted");
        // Value held for requests in flight counts as spent.
        let held = Arc::new(FakePad {
            policy: p.policy.clone(),
            usage: Mutex::new(*p.usage.lock().unwrap()),
            held: 1,
            limiters: RateLimiters::default(),
        });
        let (mut svc2, mut h2) = layer(held);
        let (r, reached) = call(&mut svc2, &mut h2, connect("docs.rs:443")).await;
        assert!(!reached);
        assert!(
            matches!(
                r,
                Err(GatewayError::DailyLimit {
                    limit: "spend_per_day",
                    ..
                })
            ),
            "{r:?}"
        );
        {
            let mut u = p.usage.lock().unwrap();
            u.spent = 0;
            u.bytes = 50 << 20;
        }
        let (r, reached) = call(&mut svc, &mut h, connect("docs.rs:443")).await;
        assert!(!reached);
        assert!(
            matches!(
                r,
                Err(GatewayError::DailyLimit {
                    limit: "mib_per_day",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_pad_whose_policy_is_missing_gets_nothing() {
        // A pad minted with a policy this gateway does not have: fail closed.
        let fake = FakePadWithId {
            inner: pad(None),
            id: Policy::parse(KIOSK, "k").unwrap().id(),
        };
        let (mut svc, mut h) = layer(Arc::new(fake));
        let (r, reached) = call(&mut svc, &mut h, connect("docs.rs:443")).await;
        assert!(!reached);
        assert!(
            matches!(r, Err(GatewayError::PolicyDenied { ref rule, .. }) if rule == "policy"),
            "{r:?}"
        );
    }

    /// A pad bound to `id` whose policy the gateway lacks.
    struct FakePadWithId {
        inner: Arc<FakePad>,
        id: [u8; 32],
    }

    impl PadView for FakePadWithId {
        fn serial(&self) -> &str {
            self.inner.serial()
        }
        fn policy_id(&self) -> [u8; 32] {
            self.id
        }
        fn policy(&self, _id: &[u8; 32]) -> Option<Policy> {
            None
        }
        fn limiters(&self) -> &RateLimiters {
            self.inner.limiters()
        }
        fn usage_today(&self) -> DayUsage {
            self.inner.usage_today()
        }
        fn held(&self) -> Micros {
            0
        }
        fn currency(&self) -> &str {
            "EUR"
        }
    }
}
