//! Throughput of `Policy::decide` with 10 and with 10,000 site rules (exact
//! and wildcard, allow and deny) over a fixed mix of allowed and denied
//! hosts: median of 5 runs of ~0.3 s each. Run: cargo bench -p padnet-policy --bench decide

use std::hint::black_box;
use std::time::{Duration, Instant};

use policy::{NoCategories, Policy, RequestFacts};

/// A policy with `n` rules: 40% exact allow, 30% wildcard allow,
/// 20% exact deny, 10% wildcard deny.
fn policy_with(n: usize) -> Policy {
    let (exact, wild, deny_exact) = (n * 4 / 10, n * 3 / 10, n * 2 / 10);
    let deny_wild = n - exact - wild - deny_exact;
    let q = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(",\n  ")
    };
    let allow: Vec<String> = (0..exact)
        .map(|i| format!("site{i}.example.com"))
        .chain((0..wild).map(|i| format!("*.zone{i}.example.net")))
        .collect();
    let deny: Vec<String> = (0..deny_exact)
        .map(|i| format!("ads{i}.zone{i}.example.net"))
        .chain((0..deny_wild).map(|i| format!("*.track{i}.example.org")))
        .collect();
    let src = format!(
        "name = \"bench {n}\"\n[sites]\nallow = [\n  {}\n]\ndeny = [\n  {}\n]\n",
        q(allow),
        q(deny)
    );
    Policy::parse(&src, "bench.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Hosts that exist in both policies: 4 allowed, 4 denied.
fn mixed_hosts() -> Vec<String> {
    vec![
        "site1.example.com".into(),         // exact allow
        "www.zone2.example.net".into(),     // wildcard allow
        "a.b.c.zone0.example.net".into(),   // deep wildcard allow
        "site3.example.com".into(),         // exact allow
        "ads1.zone1.example.net".into(),    // exact deny beats wildcard allow
        "pixel.track0.example.org".into(),  // wildcard deny
        "unknown.example.com".into(),       // default deny
        "x.y.not-listed.example.io".into(), // default deny
    ]
}

fn allowed_hosts() -> Vec<String> {
    mixed_hosts().into_iter().take(4).collect()
}

/// Decisions per second: median of 5 runs of ~0.3 s.
fn rate(p: &Policy, hosts: &[String]) -> f64 {
    let reqs: Vec<RequestFacts<'_>> = hosts
        .iter()
        .map(|h| RequestFacts {
            host: h,
            port: 443,
            path: None,
            now_unix: 1_700_000_000,
        })
        .collect();
    let mut rates = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            for _ in 0..256 {
                for r in &reqs {
                    black_box(p.decide(black_box(r), &NoCategories));
                }
            }
            n += 256 * reqs.len() as u64;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn main() {
    let small = policy_with(10);
    let large = policy_with(10_000);
    let mixed = mixed_hosts();
    // Sanity: the mix really is half allowed, in both policies.
    for p in [&small, &large] {
        let allowed = mixed
            .iter()
            .filter(|h| {
                let r = RequestFacts {
                    host: h,
                    port: 443,
                    path: None,
                    now_unix: 0,
                };
                p.decide(&r, &NoCategories).is_allowed()
            })
            .count();
        assert_eq!(allowed, 4, "{p:?}");
    }
    let s = rate(&small, &mixed);
    let l = rate(&large, &mixed);
    println!("policy decide    10 rules: {:.1} M decisions/s", s / 1e6);
    println!(
        "policy decide 10000 rules: {:.1} M decisions/s ({:.2}x of 10 rules)",
        l / 1e6,
        l / s
    );
    // Allowed requests only: no denial message to format, no allocation.
    let allowed = allowed_hosts();
    let s = rate(&small, &allowed);
    let l = rate(&large, &allowed);
    println!(
        "policy decide    10 rules, allowed only: {:.1} M decisions/s",
        s / 1e6
    );
    println!(
        "policy decide 10000 rules, allowed only: {:.1} M decisions/s ({:.2}x of 10 rules)",
        l / 1e6,
        l / s
    );
}
