//! Property tests: arbitrary hosts never panic, wildcard semantics hold for
//! generated names, and `decide` on random policies is deterministic and
//! agrees with a naive linear-scan model of the rules.

use std::borrow::Cow;

use policy::{normalise_host, CategoryLookup, Decision, NoCategories, Policy, RequestFacts};
use proptest::prelude::*;

struct Some3;

impl CategoryLookup for Some3 {
    fn category(&self, h: &str) -> Option<&str> {
        if h.starts_with('n') {
            Some("news")
        } else {
            None
        }
    }
}

fn busy_policy() -> Policy {
    Policy::parse(
        r#"name = "busy"
[sites]
allow = ["*.acme.example", "docs.rs", "10.0.0.0/8", "::1", "bücher.example"]
deny = ["ads.acme.example", "*.evil.example", "192.168.1.1"]
categories = ["news"]
ports = [80, 443, 8080]
[hours]
days = "mon-fri,sun"
from = "22:00"
to = "06:00"
utc_offset = "-05:30"
"#,
        "busy.toml",
    )
    .unwrap()
}

/// Strings that look more or less like hosts, to reach deep into the parser.
fn hostish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9.\\-_:\\[\\]%*ü]{0,30}",
        "([a-z0-9ü]{0,6}\\.){0,4}[a-z0-9]{0,6}\\.?",
        "\\[?[0-9a-fA-F:.]{0,40}\\]?",
        "[0-9x.]{0,20}",
    ]
}

proptest! {
    #[test]
    fn hosts_never_panic(host in hostish(), port in any::<u16>(), now in any::<i64>()) {
        let p = busy_policy();
        let _ = normalise_host(&host);
        let req = RequestFacts { host: &host, port, path: Some("/"), now_unix: now };
        let _ = p.decide(&req, &NoCategories);
        let _ = p.decide(&req, &Some3);
    }

    #[test]
    fn normalisation_is_idempotent(host in hostish()) {
        if let Ok(n) = normalise_host(&host) {
            let again = normalise_host(&n).expect("a normalised host is valid");
            prop_assert_eq!(again.as_ref(), n.as_ref());
            let is_ip = n.contains(':') || n.parse::<std::net::Ipv4Addr>().is_ok();
            if !is_ip {
                prop_assert!(matches!(again, Cow::Borrowed(_)), "normal names are borrowed: {n}");
            }
        }
    }

    #[test]
    fn wildcard_matches_iff_label_nonempty(
        label in "[a-zA-Z0-9]{0,10}",
        suffix in "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){0,2}",
    ) {
        let src = format!("name = \"w\"\n[sites]\nallow = [\"*.{suffix}\"]\n");
        let p = Policy::parse(&src, "w.toml").unwrap();
        let host = format!("{label}.{suffix}");
        let req = RequestFacts { host: &host, port: 443, path: None, now_unix: 0 };
        prop_assert_eq!(p.decide(&req, &NoCategories).is_allowed(), !label.is_empty(), "{}", host);
        let bare = RequestFacts { host: &suffix, ..req };
        prop_assert!(!p.decide(&bare, &NoCategories).is_allowed(), "suffix itself");
        let glued = format!("{label}{suffix}");
        let glued = RequestFacts { host: &glued, ..req };
        prop_assert!(!p.decide(&glued, &NoCategories).is_allowed(), "no label boundary");
    }

    #[test]
    fn random_policies_are_deterministic_and_match_the_model(
        allow in proptest::option::of(proptest::collection::vec(pattern(), 1..8)),
        deny in proptest::collection::vec(pattern(), 0..6),
        hosts in proptest::collection::vec(host(), 1..12),
    ) {
        let list = |v: &[String]| v.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        let mut src = format!("name = \"r\"\n[sites]\ndeny = [{}]\n", list(&deny));
        if let Some(a) = &allow {
            src.push_str(&format!("allow = [{}]\n", list(a)));
        }
        let p = Policy::parse(&src, "r.toml").unwrap();
        let copy = p.clone();
        for h in &hosts {
            let req = RequestFacts { host: h, port: 80, path: None, now_unix: 1_000 };
            let d = p.decide(&req, &NoCategories);
            prop_assert_eq!(&d, &p.decide(&req, &NoCategories));
            prop_assert_eq!(&d, &copy.decide(&req, &NoCategories));
            let n = h.trim_end_matches('.').to_ascii_lowercase();
            let want = if deny.iter().any(|pat| model_match(pat, &n)) {
                Some("sites.deny")
            } else if allow.as_ref().is_some_and(|a| !a.iter().any(|pat| model_match(pat, &n))) {
                Some("sites.allow (default deny)")
            } else {
                None
            };
            match (&d, want) {
                (Decision::Allow, None) => {}
                (Decision::Deny(den), Some(rule)) => prop_assert!(den.rule.starts_with(rule), "{:?} vs {}", den, rule),
                _ => prop_assert!(false, "host {} in\n{}\ngot {:?}, model says {:?}", h, src, d, want),
            }
        }
    }
}

const LABELS: &[&str] = &["a", "b", "c", "ab", "x1"];

fn label() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(LABELS)
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
        4 => proptest::collection::vec(label(), 1..3).prop_map(|l| format!("*.{}", l.join("."))),
        1 => Just("*".to_string()),
    ]
}

fn host() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(label(), 1..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(l, upper, dot)| {
            let mut h = l.join(".");
            if upper {
                h = h.to_ascii_uppercase();
            }
            if dot {
                h.push('.');
            }
            h
        })
}

/// The obvious, slow reading of the pattern rules.
fn model_match(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        host.ends_with(&format!(".{suffix}"))
    } else {
        host == pattern
    }
}
