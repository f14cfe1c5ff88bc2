//! What the request stack knows: the gateway-wide services (ledger, tariff,
//! policies, rate limiters) and, per tunnel, which pad it serves and how to
//! tell the agent its balance.

use std::sync::Arc;

use crate::error::GatewayError;
use crate::ledger::{Ledger, Micros};
use crate::metering::float::{Float, Floats};
use crate::metering::rate_limit::RateLimiters;
use crate::metrics::Metrics;
use crate::policies::PolicyStore;
use crate::pricing::Price;
use crate::sites::categories::CategoryList;
use crate::sites::Categories;
use crate::tariff::Tariff;
use crate::units::format_amount;

/// Shared by every tunnel.
pub struct Services {
    pub ledger: Arc<Ledger>,
    pub tariff: Tariff,
    pub policies: Arc<PolicyStore>,
    pub limiters: RateLimiters,
    /// Live tunnels' floats, for `pad show`.
    pub floats: Arc<Floats>,
    /// Background work that moves value (float refills, captures): a
    /// shutdown closes it and waits for it before the ledger's last flush.
    pub tasks: tokio_util::task::TaskTracker,
    /// The operator's categories for sites not registered (`--categories`).
    pub categories: Arc<CategoryList>,
    /// Aggregate counters for `--metrics-listen`.
    pub metrics: Arc<Metrics>,
}

impl Services {
    /// A policy's decision, with the registry's and the operator's categories.
    pub fn decide(
        &self,
        policy: &policy::Policy,
        facts: &policy::RequestFacts,
    ) -> policy::Decision {
        let decision = self.ledger.read(|book| {
            policy.decide(
                facts,
                &Categories {
                    book,
                    listed: &self.categories,
                },
            )
        });
        self.metrics.policy_decided(decision.is_allowed());
        decision
    }

    /// The price of a request to `host` (`path`: `None` for CONNECT):
    /// transport, plus the site's rate when it is registered and verified.
    pub fn price_for(&self, host: &str, path: Option<&str>) -> Price {
        let rate = self.ledger.read(|b| crate::sites::rate_for(b, host, path));
        Price::with_site(&self.tariff, rate)
    }

    /// What one float refill asks for: enough for several requests and a
    /// few full extensions, so most requests never wait for a flush.
    pub fn float_refill(&self) -> Micros {
        let t = &self.tariff;
        let per_extension = t
            .per_request
            .saturating_add(t.bytes_cost(crate::metering::rules::CHUNK));
        per_extension
            .saturating_mul(8)
            .saturating_add(t.per_request.saturating_mul(64))
    }
}

/// How a tunnel tells its agent the pad's balance (a NOTICE record).
/// (spendable, held by open requests).
pub type TellAgent = Box<dyn Fn(Micros, Micros) + Send + Sync>;
/// How a tunnel reports a finished request's charge (in its next NOTICE).
pub type ReportCharge = Box<dyn Fn(tunnel::stream::ChargeNote) + Send + Sync>;

/// One tunnel's pad, as the request path sees it: facts from its header,
/// its float, and a way to tell the agent its balance. No pad file is
/// needed to build one, so the layers are tested in memory.
pub struct PadContext {
    pub serial: String,
    /// The policy id the pad was minted with (all zero: unrestricted).
    pub policy_id: [u8; 32],
    /// The value the pad was issued with.
    pub issued: Micros,
    pub tell_agent: TellAgent,
    pub report_charge: ReportCharge,
    pub services: Arc<Services>,
    /// The tunnel's durable reservation its requests draw from.
    pub float: Arc<Float>,
    /// Whether the balance changed since the agent was last told.
    pub balance_dirty: std::sync::atomic::AtomicBool,
    /// Sites whose negative hit price paid this tunnel, and when.
    pub ads_paid: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// A site's negative hit price pays a tunnel at most once per this window.
pub const AD_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// NOTICE records go out at most this often per tunnel: a browser loading a
/// page makes dozens of requests, and one NOTICE each would cost more pad
/// bytes than small responses do.
pub const NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl PadContext {
    /// The 402 for a pad whose value cannot cover a request at `price`
    /// (which it names when a site's prices are part of it).
    pub fn value_exhausted(&self, balance: Micros, price: &Price) -> GatewayError {
        let currency = &self.services.tariff.currency;
        let site_price = price.site.as_ref().map(|s| {
            format!(
                "{} costs {} {currency} per page and {} {currency} per MiB, on top of transport",
                s.site,
                format_amount(s.hit),
                format_amount(s.per_mib)
            )
        });
        GatewayError::ValueExhausted {
            balance,
            spent: (self.issued - balance).max(0),
            currency: currency.clone(),
            site_price,
        }
    }

    /// Whether a negative hit price from `site` may pay this tunnel now:
    /// once per site per [`AD_WINDOW`] (kept in memory only).
    pub fn ad_due(&self, site: &str) -> bool {
        let mut seen = self.ads_paid.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        seen.retain(|_, at| now.duration_since(*at) < AD_WINDOW);
        if seen.contains_key(site) {
            return false;
        }
        seen.insert(site.to_string(), now);
        true
    }

    /// The daily limits of the pad's current policy, if it has one.
    pub fn limits(&self) -> Option<policy::Limits> {
        if !self.restricted() {
            return None;
        }
        self.services
            .policies
            .effective(&self.policy_id)
            .map(|p| *p.limits())
    }

    /// Whether the pad is bound to an employer policy.
    pub fn restricted(&self) -> bool {
        self.policy_id != [0; 32]
    }

    /// Tell the agent the pad's balance (a NOTICE record).
    pub fn notify_balance(&self, balance: Micros) {
        (self.tell_agent)(balance, self.float.assigned());
    }

    /// The balance changed: the agent hears within [`NOTICE_INTERVAL`].
    pub fn balance_changed(&self) {
        self.balance_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Send a NOTICE every [`NOTICE_INTERVAL`] while the balance changes
    /// (or the value held for open requests does, as they settle), until
    /// the tunnel's last user of this context is gone.
    pub fn spawn_notices(ctx: &Arc<PadContext>) {
        let weak = Arc::downgrade(ctx);
        tokio::spawn(async move {
            let mut told_held = 0;
            loop {
                tokio::time::sleep(NOTICE_INTERVAL).await;
                let Some(ctx) = weak.upgrade() else { return };
                let held = ctx.float.assigned();
                let dirty = ctx
                    .balance_dirty
                    .swap(false, std::sync::atomic::Ordering::Relaxed);
                if dirty || held != told_held {
                    told_held = held;
                    ctx.notify_balance(ctx.float.spendable());
                }
            }
        });
    }
}
