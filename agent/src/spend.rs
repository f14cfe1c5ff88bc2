//! Each request's charge, matched to what the agent saw: requests get an id
//! (`x-padnet-request`) and a byte counter; the gateway's NOTICE reports each
//! one's final charge under that id; the agent settles it for its history and
//! checks it against its own count at the tariff (the honest meter). Pure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use policy::units::{mib_cost, parse_amount};
use proto::headers::SitePrice;
use tunnel::stream::{ChargeNote, TariffNote};

/// Requests the agent keeps waiting for their charge at most (the oldest
/// are forgotten beyond it): a few seconds of the fastest request rate.
pub const MAX_OPEN: usize = 65_536;
/// A finished request whose charge has not come by then never will (the
/// gateway refused it before metering, or the tunnel went down).
pub const CHARGE_WAIT: Duration = Duration::from_secs(60);

/// One request in flight, as the agent counts it.
struct Open {
    site: String,
    bytes: Arc<AtomicU64>,
    /// When the agent's side ended (the body or splice is done).
    finished: Option<Instant>,
    /// The gateway answered with its own refusal (no request charge is due).
    refused: bool,
    /// The site's price for this request, as the gateway named it.
    price: Option<SitePrice>,
    /// The gateway's charge, once reported, while the agent's side goes on.
    charge: Option<ChargeNote>,
}

/// A request's charge, settled: what the history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub site: String,
    pub bytes: u64,
    pub amount: i64,
}

/// The honest meter's tally: charges checked against the agent's own count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MeterCheck {
    /// Charges compared with what the agent counted.
    pub checked: u64,
    /// Charges above what the agent's count costs at the tariff, how many
    /// and by how much in all (micro-units).
    pub over: u64,
    pub over_amount: i64,
    /// Bytes charged beyond those the agent received or sent.
    pub over_bytes: u64,
    /// Charges below it (the gateway counted fewer bytes).
    pub under: u64,
    pub under_amount: i64,
}

/// The agent's side of every request's charge.
#[derive(Default)]
pub struct Spending {
    next_id: AtomicU32,
    /// By id: ids are handed out in order, so the first is the oldest.
    open: Mutex<BTreeMap<u32, Open>>,
    check: Mutex<MeterCheck>,
}

/// A request's place in [`Spending`]: count its bytes with [`Tracked::count`];
/// dropping it says the agent's side is over.
pub struct Tracked {
    pub id: u32,
    bytes: Arc<AtomicU64>,
    spending: Arc<Spending>,
}

impl Tracked {
    pub fn count(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The gateway refused this request itself (its page, not the origin's).
    pub fn refused(&self) {
        if let Some(o) = lock(&self.spending.open).get_mut(&self.id) {
            o.refused = true;
        }
    }

    /// The site's price for this request (from the gateway's answer).
    pub fn priced(&self, price: Option<SitePrice>) {
        if let Some(o) = lock(&self.spending.open).get_mut(&self.id) {
            o.price = price;
        }
    }

    /// The shared counter, for byte counts kept elsewhere (a splice).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.spending.finish(self.id, Instant::now());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A site's name for the history: the host, lower case, without its port.
pub fn site_of(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Spending {
    /// Start tracking a request to `authority`.
    pub fn begin(self: &Arc<Self>, authority: &str) -> Tracked {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        let mut open = lock(&self.open);
        if open.len() >= MAX_OPEN {
            open.pop_first();
        }
        open.insert(
            id,
            Open {
                site: site_of(authority),
                bytes: bytes.clone(),
                finished: None,
                refused: false,
                price: None,
                charge: None,
            },
        );
        Tracked {
            id,
            bytes,
            spending: self.clone(),
        }
    }

    fn finish(&self, id: u32, now: Instant) {
        if let Some(o) = lock(&self.open).get_mut(&id) {
            o.finished = Some(now);
        }
    }

    /// Settle the charges the gateway reported: each one is returned for the
    /// history (at once: its amount is final), and checked against the
    /// agent's own count at `tariff` when both sides are done.
    pub fn settle(&self, charges: Vec<ChargeNote>, tariff: Option<TariffNote>) -> Vec<Settled> {
        self.settle_at(charges, tariff, Instant::now())
    }

    fn settle_at(
        &self,
        charges: Vec<ChargeNote>,
        tariff: Option<TariffNote>,
        now: Instant,
    ) -> Vec<Settled> {
        let mut open = lock(&self.open);
        let mut settled = Vec::with_capacity(charges.len());
        for c in charges {
            let site = match open.get_mut(&c.request) {
                Some(o) => {
                    o.charge = Some(c);
                    o.site.clone()
                }
                None => "(unmatched)".to_string(),
            };
            settled.push(Settled {
                site,
                bytes: c.bytes,
                amount: c.amount,
            });
        }
        // Check what both sides have finished; forget what will never be charged.
        let mut check = lock(&self.check);
        open.retain(|_, o| match (o.charge, o.finished) {
            (Some(c), Some(_)) => {
                if let Some(t) = tariff {
                    let own = o.bytes.load(Ordering::Relaxed);
                    if let Some(expected) = expected(t, o.price.take(), own, o.refused) {
                        check.checked += 1;
                        let drift = c.amount.saturating_sub(expected);
                        if drift > 0 {
                            check.over += 1;
                            check.over_amount = check.over_amount.saturating_add(drift);
                            check.over_bytes += c.bytes.saturating_sub(own);
                        } else if drift < 0 {
                            check.under += 1;
                            check.under_amount = check.under_amount.saturating_sub(drift);
                        }
                    }
                }
                false
            }
            (None, Some(done)) => now.duration_since(done) < CHARGE_WAIT,
            _ => true,
        });
        settled
    }

    pub fn check(&self) -> MeterCheck {
        *lock(&self.check)
    }

    /// Requests still waiting for their charge.
    pub fn open(&self) -> usize {
        lock(&self.open).len()
    }
}

/// What a request that carried `bytes` costs at the tariff and the site's
/// price, the way the gateway rounds; `None` when it cannot be known (a site
/// paying the user: its credit comes at most once a window).
fn expected(t: TariffNote, site: Option<SitePrice>, bytes: u64, refused: bool) -> Option<i64> {
    let mut total = mib_cost(bytes, t.per_mib);
    if !refused {
        total = total.saturating_add(t.per_request);
    }
    if let Some(s) = site.filter(|_| !refused) {
        let hit = parse_amount(&s.hit).ok()?;
        let per_mib = parse_amount(&s.per_mib).ok()?;
        if hit < 0 || parse_amount(&s.per_hit).ok()? < 0 {
            return None;
        }
        total = total
            .saturating_add(hit)
            .saturating_add(mib_cost(bytes, per_mib));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARIFF: TariffNote = TariffNote {
        per_mib: 10_000,
        per_request: 100,
    };

    fn charge(request: u32, amount: i64, bytes: u64) -> ChargeNote {
        ChargeNote {
            request,
            amount,
            bytes,
        }
    }

    #[test]
    fn sites_are_hosts_without_ports() {
        assert_eq!(site_of("Shop.Example:443"), "shop.example");
        assert_eq!(site_of("shop.example."), "shop.example");
        assert_eq!(site_of("[::1]:8443"), "[::1]");
        assert_eq!(site_of("plain.example"), "plain.example");
    }

    #[test]
    fn an_exact_charge_is_settled_and_passes_the_check() {
        let s = Arc::new(Spending::default());
        let t = s.begin("a.example:80");
        t.count(3 << 20);
        let id = t.id;
        drop(t);
        let expected = 100 + 30_000;
        let got = s.settle(vec![charge(id, expected, 3 << 20)], Some(TARIFF));
        assert_eq!(
            got,
            vec![Settled {
                site: "a.example".into(),
                bytes: 3 << 20,
                amount: expected
            }]
        );
        assert_eq!(
            s.check(),
            MeterCheck {
                checked: 1,
                ..MeterCheck::default()
            }
        );
        assert_eq!(s.open(), 0);
    }

    #[test]
    fn a_charge_for_bytes_never_received_is_flagged() {
        let s = Arc::new(Spending::default());
        let t = s.begin("video.example:443");
        t.count(1 << 20);
        let id = t.id;
        // The charge comes before the agent's side ends: checked once it does.
        s.settle(vec![charge(id, 100 + 50_000, 5 << 20)], Some(TARIFF));
        assert_eq!(s.check().checked, 0);
        drop(t);
        s.settle(vec![], Some(TARIFF));
        let c = s.check();
        assert_eq!((c.checked, c.over, c.over_amount), (1, 1, 40_000));
        assert_eq!(c.over_bytes, 4 << 20);
    }

    #[test]
    fn site_prices_and_refusals_shape_what_is_expected() {
        let price = SitePrice {
            host: "shop.example".into(),
            per_hit: "0.002".into(),
            per_mib: "0.05".into(),
            hit: "0.002".into(),
            currency: "EUR".into(),
        };
        assert_eq!(
            expected(TARIFF, Some(price.clone()), 1 << 20, false),
            Some(100 + 10_000 + 2_000 + 50_000)
        );
        assert_eq!(
            expected(TARIFF, Some(price.clone()), 1 << 20, true),
            Some(10_000)
        );
        let ad = SitePrice {
            hit: "-0.01".into(),
            per_hit: "-0.01".into(),
            ..price
        };
        assert_eq!(expected(TARIFF, Some(ad), 0, false), None);
    }

    #[test]
    fn finished_requests_never_charged_are_forgotten_after_a_while() {
        let s = Arc::new(Spending::default());
        let t0 = Instant::now();
        let t = s.begin("refused.example:443");
        t.refused();
        s.finish(t.id, t0);
        std::mem::forget(t); // finished by hand at t0
        s.settle_at(vec![], Some(TARIFF), t0 + CHARGE_WAIT / 2);
        assert_eq!(s.open(), 1);
        s.settle_at(vec![], Some(TARIFF), t0 + CHARGE_WAIT);
        assert_eq!(s.open(), 0);
    }

    #[test]
    fn beyond_max_open_the_oldest_request_is_forgotten() {
        let s = Arc::new(Spending::default());
        let first = s.begin("first.example");
        let (first_id, rest): (u32, Vec<Tracked>) = (
            first.id,
            (1..MAX_OPEN).map(|_| s.begin("b.example")).collect(),
        );
        assert_eq!(s.open(), MAX_OPEN);
        let newest = s.begin("newest.example");
        assert_eq!(s.open(), MAX_OPEN);
        let got = s.settle(
            vec![charge(first_id, 1, 0), charge(newest.id, 2, 0)],
            Some(TARIFF),
        );
        assert_eq!(got[0].site, "(unmatched)", "the oldest was forgotten");
        assert_eq!(got[1].site, "newest.example");
        drop((first, rest));
    }

    #[test]
    fn an_unknown_id_is_still_settled() {
        let s = Arc::new(Spending::default());
        let got = s.settle(vec![charge(77, 5, 0)], Some(TARIFF));
        assert_eq!(got[0].site, "(unmatched)");
    }
}
