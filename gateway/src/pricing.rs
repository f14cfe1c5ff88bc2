//! What one request costs: transport (the tariff) plus, for a verified site,
//! its hit price (or a premium prefix's) and its per-MiB price; and how each
//! site charge splits between the owner and the gateway. Pure arithmetic.

use crate::ledger::{AdCredit, Capture, Micros, Site, SiteCharge};
use crate::tariff::Tariff;

pub use policy::units::mib_cost;

const MIB: u128 = 1 << 20;

/// A verified site's prices as they apply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRate {
    pub owner: String,
    /// The site's name in the registry (host, lower case, no port).
    pub site: String,
    /// This request's hit price: the longest matching premium prefix's, else
    /// the site's. Negative: the owner pays the user.
    pub hit: Micros,
    pub per_mib: Micros,
    /// The site's base hit price (for the user's display).
    pub per_hit: Micros,
}

impl SiteRate {
    /// The rate for a request to `site` (named `name`) with `path` (`None`
    /// for CONNECT: premium prefixes cannot apply inside TLS).
    pub fn of(name: &str, site: &Site, path: Option<&str>) -> SiteRate {
        let premium = path.and_then(|p| {
            site.prices
                .premium
                .iter()
                .filter(|m| p.starts_with(&m.prefix))
                .max_by_key(|m| m.prefix.len())
        });
        SiteRate {
            owner: site.owner.clone(),
            site: name.to_string(),
            hit: premium.map_or(site.prices.per_hit, |m| m.per_hit),
            per_mib: site.prices.per_mib,
            per_hit: site.prices.per_hit,
        }
    }
}

/// The price of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub per_request: Micros,
    pub per_mib: Micros,
    /// In millionths of each site charge.
    pub commission: Micros,
    pub site: Option<SiteRate>,
}

/// What a request owes after carrying some bytes, split by payee; each part
/// only grows with the bytes, so captures take differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub transport: Micros,
    /// Owed to the site (hit and per-MiB), before commission.
    pub site: Micros,
    /// The owner's share of `site`.
    pub credit: Micros,
}

impl Parts {
    pub fn total(&self) -> Micros {
        self.transport.saturating_add(self.site)
    }
}

impl Price {
    /// Transport only (no registered site, or an unverified one).
    pub fn transport(t: &Tariff) -> Price {
        Price {
            per_request: t.per_request,
            per_mib: t.per_mib,
            commission: t.commission,
            site: None,
        }
    }

    /// Transport plus a site's rate.
    pub fn with_site(t: &Tariff, site: Option<SiteRate>) -> Price {
        Price {
            site,
            ..Price::transport(t)
        }
    }

    fn site_hit(&self) -> Micros {
        self.site.as_ref().map_or(0, |s| s.hit.max(0))
    }

    fn site_per_mib(&self) -> Micros {
        self.site.as_ref().map_or(0, |s| s.per_mib)
    }

    /// What must be paid before a byte moves: the request charge and the hit.
    pub fn up_front(&self) -> Micros {
        self.per_request.saturating_add(self.site_hit())
    }

    /// Is carrying bytes free (no per-MiB price of either kind)?
    pub fn bytes_free(&self) -> bool {
        self.per_mib == 0 && self.site_per_mib() == 0
    }

    /// What `bytes` cost, transport and site per-MiB prices each rounded up.
    pub fn bytes_cost(&self, bytes: u64) -> Micros {
        mib_cost(bytes, self.per_mib).saturating_add(mib_cost(bytes, self.site_per_mib()))
    }

    /// How many bytes `value` pays for: the most n with bytes_cost(n) ≤ value
    /// (with two per-MiB prices, up to one micro-unit's worth fewer).
    pub fn bytes_for(&self, value: Micros) -> u64 {
        let (a, b) = (self.per_mib.max(0), self.site_per_mib().max(0));
        let v = value.max(0) as u128;
        let n = match (a, b) {
            (0, 0) => return u64::MAX,
            (p, 0) | (0, p) => (v * MIB) / p as u128,
            // Each rounded part is below its exact share plus one: the sum
            // of two stays within `value` when the exact sum is value − 1.
            (a, b) => (v.saturating_sub(1) * MIB) / (a as u128 + b as u128),
        };
        n.min(u128::from(u64::MAX)) as u64
    }

    /// The whole charge for a served request that carried `bytes`.
    #[cfg(test)]
    #[allow(dead_code)]
    pub fn charge(&self, bytes: u64) -> Micros {
        self.parts(bytes, true).total()
    }

    /// What is owed after `bytes`: the request and hit charges only when
    /// the origin answered (`served`); site charges only then too.
    pub fn parts(&self, bytes: u64, served: bool) -> Parts {
        let transport =
            mib_cost(bytes, self.per_mib).saturating_add(if served { self.per_request } else { 0 });
        let Some(s) = self.site.as_ref().filter(|_| served) else {
            return Parts {
                transport,
                ..Parts::default()
            };
        };
        let hit = s.hit.max(0);
        let mib = mib_cost(bytes, s.per_mib);
        Parts {
            transport,
            site: hit.saturating_add(mib),
            credit: self.share(hit).saturating_add(self.share(mib)),
        }
    }

    /// An owner's share of a site charge: floor(charge × (1 − commission)).
    pub fn share(&self, charge: Micros) -> Micros {
        let keep =
            i128::from(crate::units::MICROS - self.commission.clamp(0, crate::units::MICROS));
        (i128::from(charge.max(0)) * keep / i128::from(crate::units::MICROS)) as Micros
    }

    /// The capture that takes a request from `before` to `now` owed (for
    /// `bytes` more carried; `hits` is 1 for the capture that first includes
    /// the hit).
    pub fn capture(&self, before: Parts, now: Parts, bytes: u64, hits: u64) -> Capture {
        let mut c = Capture::transport(now.transport.saturating_sub(before.transport), bytes);
        if let Some(s) = &self.site {
            let charged = now.site.saturating_sub(before.site);
            if charged > 0 || hits > 0 {
                c.sites.push(SiteCharge {
                    owner: s.owner.clone(),
                    site: s.site.clone(),
                    charged,
                    credits: now.credit.saturating_sub(before.credit).min(charged),
                    hits,
                    bytes,
                });
            }
        }
        c
    }

    /// A negative hit price, as the owner's payment to the user.
    pub fn ad(&self) -> Option<AdCredit> {
        let s = self.site.as_ref().filter(|s| s.hit < 0)?;
        let paid = s.hit.saturating_neg();
        Some(AdCredit {
            owner: s.owner.clone(),
            site: s.site.clone(),
            paid,
            credit: self.share(paid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Premium, Prices};
    use proptest::prelude::*;

    fn tariff() -> Tariff {
        Tariff::default_tariff()
    }

    fn site(per_hit: Micros, per_mib: Micros) -> Site {
        Site {
            owner: "o1".into(),
            host: "news.example".into(),
            prices: Prices {
                per_hit,
                per_mib,
                premium: vec![
                    Premium {
                        prefix: "/reports/".into(),
                        per_hit: 50_000,
                    },
                    Premium {
                        prefix: "/reports/annual/".into(),
                        per_hit: 90_000,
                    },
                ],
            },
            category: None,
            verified: true,
            token: "t".into(),
        }
    }

    #[test]
    fn the_longest_premium_prefix_sets_the_hit_and_connect_never_matches_one() {
        let s = site(2_000, 10_000);
        assert_eq!(SiteRate::of("news.example", &s, Some("/a")).hit, 2_000);
        assert_eq!(
            SiteRate::of("news.example", &s, Some("/reports/x")).hit,
            50_000
        );
        assert_eq!(
            SiteRate::of("news.example", &s, Some("/reports/annual/2026")).hit,
            90_000
        );
        assert_eq!(SiteRate::of("news.example", &s, None).hit, 2_000);
    }

    #[test]
    fn a_site_charge_splits_per_request_with_the_floor_to_the_owner() {
        let t = tariff();
        let p = Price::with_site(
            &t,
            Some(SiteRate::of(
                "news.example",
                &site(2_000, 10_000),
                Some("/"),
            )),
        );
        assert_eq!(p.up_front(), 100 + 2_000);
        let parts = p.parts(1 << 20, true);
        assert_eq!(parts.transport, 100 + 10_000);
        assert_eq!(parts.site, 2_000 + 10_000);
        assert_eq!(parts.credit, 1_800 + 9_000);
        let unserved = p.parts(1 << 20, false);
        assert_eq!((unserved.transport, unserved.site), (10_000, 0));
        let c = p.capture(Parts::default(), parts, 1 << 20, 1);
        assert_eq!(c.total().unwrap(), parts.total());
        assert_eq!(c.sites[0].credits, 10_800);
    }

    #[test]
    fn a_negative_hit_reserves_nothing_and_pays_the_user_less_commission() {
        let t = tariff();
        let p = Price::with_site(
            &t,
            Some(SiteRate::of("ads.example", &site(-10_000, 0), Some("/"))),
        );
        assert_eq!(p.up_front(), 100);
        assert_eq!(p.parts(0, true).site, 0);
        let ad = p.ad().unwrap();
        assert_eq!((ad.paid, ad.credit), (10_000, 9_000));
    }

    proptest! {
        #[test]
        fn bytes_for_never_buys_more_than_the_value(
            a in 0i64..2_000_000, b in 0i64..2_000_000, value in 0i64..10_000_000_000,
        ) {
            let t = Tariff { per_mib: a, ..tariff() };
            let p = Price::with_site(&t, Some(SiteRate {
                owner: "o".into(), site: "s".into(), hit: 0, per_mib: b, per_hit: 0,
            }));
            let n = p.bytes_for(value);
            if n != u64::MAX {
                prop_assert!(p.bytes_cost(n) <= value, "{} bytes cost {} > {value}", n, p.bytes_cost(n));
            }
        }

        #[test]
        fn captures_in_pieces_add_up_to_the_whole(
            hit in -100_000i64..100_000, per_mib in 0i64..100_000,
            cuts in proptest::collection::vec(0u64..50_000_000, 0..5),
        ) {
            let t = tariff();
            let p = Price::with_site(&t, Some(SiteRate {
                owner: "o".into(), site: "s".into(), hit, per_mib, per_hit: hit,
            }));
            let mut cuts = cuts;
            cuts.sort();
            let total = cuts.last().copied().unwrap_or(0);
            let mut before = Parts::default();
            let mut sum = Capture::default();
            let mut prev = 0;
            for (i, at) in cuts.iter().enumerate() {
                let now = p.parts(*at, true);
                sum.absorb(p.capture(before, now, at - prev, u64::from(i == 0)));
                before = now;
                prev = *at;
            }
            let whole = p.parts(total, true);
            if !cuts.is_empty() {
                prop_assert_eq!(sum.total().unwrap(), whole.total());
                let credited: Micros = sum.sites.iter().map(|s| s.credits).sum();
                prop_assert_eq!(credited, whole.credit);
                prop_assert!(credited <= whole.site);
            }
        }
    }
}
