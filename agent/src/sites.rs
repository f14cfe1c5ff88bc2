//! The prices of the priced sites this agent has reached, as the gateway names
//! them in `x-padnet-site-price`: the latest per host, in memory only (never
//! written to disk), at most [`MAX_SITES`] hosts, the least recently seen dropped first.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use http::HeaderMap;
use proto::headers::{SitePrice, SITE_PRICE};

/// How many hosts the agent remembers prices for.
pub const MAX_SITES: usize = 256;

/// The latest price per host, and when it was last seen.
#[derive(Debug, Default)]
pub struct SitePrices {
    seen: Mutex<HashMap<String, (SitePrice, Instant)>>,
}

impl SitePrices {
    /// Take the gateway's price header out of a response's headers (the
    /// browser never sees it), and remember the price if it decodes. Call it
    /// on the gateway's headers before anything strips `x-padnet-*` from them.
    /// Returns the price (this request's).
    pub fn take(&self, headers: &mut HeaderMap) -> Option<SitePrice> {
        self.take_at(headers, Instant::now())
    }

    fn take_at(&self, headers: &mut HeaderMap, now: Instant) -> Option<SitePrice> {
        let mut values = headers.get_all(SITE_PRICE).iter();
        let price = match (values.next(), values.next()) {
            (None, _) => return None,
            // One price per response: two are a confused gateway, and neither is kept.
            (Some(v), None) => SitePrice::decode(v),
            (Some(_), Some(_)) => None,
        };
        headers.remove(SITE_PRICE);
        match &price {
            Some(p) => self.record(p.clone(), now),
            None => tracing::debug!("the gateway sent a site price that does not parse"),
        }
        price
    }

    /// Remember `price` as its host's latest, seen at `now`; when that makes
    /// one host too many, forget the one seen longest ago.
    pub fn record(&self, price: SitePrice, now: Instant) {
        let mut seen = self.lock();
        if !seen.contains_key(&price.host) && seen.len() >= MAX_SITES {
            let oldest = seen
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(host, _)| host.clone());
            if let Some(host) = oldest {
                seen.remove(&host);
            }
        }
        seen.insert(price.host.clone(), (price, now));
    }

    /// Every remembered price, sorted by host.
    pub fn list(&self) -> Vec<SitePrice> {
        let mut all: Vec<SitePrice> = self.lock().values().map(|(p, _)| p.clone()).collect();
        all.sort_by(|a, b| a.host.cmp(&b.host));
        all
    }

    /// The prices as the status JSON lists them (`last_hit`: what the last
    /// request to the site was charged for its hit).
    pub fn json(&self) -> serde_json::Value {
        self.list()
            .into_iter()
            .map(|p| {
                serde_json::json!({
                    "host": p.host,
                    "per_hit": p.per_hit,
                    "per_mib": p.per_mib,
                    "last_hit": p.hit,
                    "currency": p.currency,
                })
            })
            .collect()
    }

    /// A panic while the map was held leaves a usable map (every change is one insert or remove).
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (SitePrice, Instant)>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn price(host: &str, hit: &str) -> SitePrice {
        SitePrice {
            host: host.into(),
            per_hit: "0.002".into(),
            per_mib: "0.01".into(),
            hit: hit.into(),
            currency: "EUR".into(),
        }
    }

    fn headers_with(values: &[HeaderValue]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SITE_PRICE, v.clone());
        }
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html"),
        );
        h
    }

    mod take {
        use super::*;

        #[test]
        fn strips_the_header_and_keeps_the_price() {
            let sites = SitePrices::default();
            let mut h = headers_with(&[price("news.example", "0.05").encode()]);
            sites.take(&mut h);
            assert!(!h.contains_key(SITE_PRICE));
            assert!(h.contains_key(http::header::CONTENT_TYPE));
            assert_eq!(sites.list(), vec![price("news.example", "0.05")]);
        }

        #[test]
        fn strips_but_ignores_a_price_that_does_not_parse() {
            let sites = SitePrices::default();
            let mut h = headers_with(&[HeaderValue::from_static("host=<script>; per_hit=1")]);
            sites.take(&mut h);
            assert!(!h.contains_key(SITE_PRICE));
            assert!(sites.list().is_empty());
        }

        #[test]
        fn strips_but_ignores_two_prices() {
            let sites = SitePrices::default();
            let mut h = headers_with(&[
                price("a.example", "1").encode(),
                price("b.example", "1").encode(),
            ]);
            sites.take(&mut h);
            assert!(!h.contains_key(SITE_PRICE));
            assert!(sites.list().is_empty());
        }

        #[test]
        fn leaves_a_response_without_a_price_alone() {
            let sites = SitePrices::default();
            let mut h = headers_with(&[]);
            sites.take(&mut h);
            assert_eq!(h.len(), 1);
            assert!(sites.list().is_empty());
        }
    }

    mod record {
        use super::*;

        #[test]
        fn keeps_the_latest_price_per_host() {
            let sites = SitePrices::default();
            let t = Instant::now();
            sites.record(price("news.example", "0.05"), t);
            sites.record(price("news.example", "0.002"), t + Duration::from_secs(1));
            assert_eq!(sites.list(), vec![price("news.example", "0.002")]);
        }

        #[test]
        fn forgets_the_least_recently_seen_beyond_the_bound() {
            let sites = SitePrices::default();
            let t = Instant::now();
            let at = |i: usize| t + Duration::from_millis(i as u64);
            for i in 0..MAX_SITES {
                sites.record(price(&format!("h{i:03}.example"), "1"), at(i));
            }
            // Seeing h000 again makes h001 the oldest.
            sites.record(price("h000.example", "2"), at(MAX_SITES));
            sites.record(price("new.example", "1"), at(MAX_SITES + 1));
            let hosts: Vec<String> = sites.list().into_iter().map(|p| p.host).collect();
            assert_eq!(hosts.len(), MAX_SITES);
            assert!(hosts.contains(&"h000.example".to_string()));
            assert!(hosts.contains(&"new.example".to_string()));
            assert!(!hosts.contains(&"h001.example".to_string()));
        }
    }

    mod json {
        use super::*;

        #[test]
        fn lists_sites_sorted_by_host_with_the_last_hit() {
            let sites = SitePrices::default();
            let t = Instant::now();
            sites.record(price("zeta.example", "0"), t);
            sites.record(price("alpha.example", "0.05"), t);
            assert_eq!(
                sites.json(),
                serde_json::json!([
                    {"host": "alpha.example", "per_hit": "0.002", "per_mib": "0.01",
                     "last_hit": "0.05", "currency": "EUR"},
                    {"host": "zeta.example", "per_hit": "0.002", "per_mib": "0.01",
                     "last_hit": "0", "currency": "EUR"},
                ])
            );
        }
    }
}
