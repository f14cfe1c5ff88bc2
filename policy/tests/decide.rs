//! Behaviour of `Policy::decide` and the accessors through the public API:
//! host matching, decision order, categories, ports, hours, summaries and
//! the sample policies in data/policies.

use std::path::{Path, PathBuf};

use policy::{CategoryLookup, Decision, Denial, NoCategories, Policy, RequestFacts};

/// 2024-01-01 00:00 UTC, a Monday.
const MON: i64 = 1_704_067_200;

fn at(day: i64, h: i64, m: i64) -> i64 {
    MON + day * 86_400 + h * 3600 + m * 60
}

fn policy(src: &str) -> Policy {
    Policy::parse(src, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn with_sites(sites: &str) -> Policy {
    policy(&format!("name = \"t\"\n[sites]\n{sites}\n"))
}

fn req(host: &str) -> RequestFacts<'_> {
    RequestFacts {
        host,
        port: 443,
        path: None,
        now_unix: at(0, 12, 0),
    }
}

fn decide(p: &Policy, host: &str) -> Decision {
    p.decide(&req(host), &NoCategories)
}

fn allowed(p: &Policy, host: &str) -> bool {
    decide(p, host).is_allowed()
}

fn denial(d: Decision) -> Denial {
    match d {
        Decision::Deny(d) => d,
        Decision::Allow => panic!("expected a denial"),
    }
}

#[test]
fn wildcard_and_exact_matching() {
    let p = with_sites(r#"allow = ["*.example.com", "docs.rs"]"#);
    assert!(allowed(&p, "a.example.com"));
    assert!(allowed(&p, "a.b.example.com"));
    assert!(
        !allowed(&p, "example.com"),
        "a wildcard does not match its suffix itself"
    );
    assert!(!allowed(&p, "badexample.com"));
    assert!(!allowed(&p, "example.com.evil.net"));
    assert!(allowed(&p, "docs.rs"));
    assert!(!allowed(&p, "www.docs.rs"));
    assert!(!allowed(&p, "docs.rs.evil.net"));
}

#[test]
fn normalisation_before_matching() {
    let p = with_sites(r#"allow = ["docs.rs", "*.Acme.Example."]"#);
    for host in [
        "DOCS.RS",
        "docs.rs.",
        "Docs.Rs.",
        "WWW.ACME.EXAMPLE",
        "x.acme.example.",
    ] {
        assert!(allowed(&p, host), "{host}");
    }
    assert!(
        !allowed(&p, "docs.rs.."),
        "only one trailing dot is dropped"
    );
    assert!(!allowed(&p, "ACME.EXAMPLE"));

    for rule in ["xn--bcher-kva.example", "bücher.example", "BÜCHER.EXAMPLE."] {
        let p = with_sites(&format!("allow = [{rule:?}]"));
        for host in [
            "BÜCHER.example",
            "bücher.example",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.EXAMPLE",
        ] {
            assert!(allowed(&p, host), "rule {rule} host {host}");
        }
        assert!(!allowed(&p, "bucher.example"));
    }
}

#[test]
fn ip_literals() {
    let p = with_sites(r#"allow = ["10.0.0.1", "::1", "[2001:db8::5]", "192.168.0.0/16"]"#);
    for host in [
        "10.0.0.1",
        "[::1]",
        "::1",
        "0:0::1",
        "0000:0000::0001",
        "2001:db8::5",
        "[2001:DB8:0::5]",
        "192.168.200.1",
    ] {
        assert!(allowed(&p, host), "{host}");
    }
    for host in ["10.0.0.2", "::2", "[::2]", "192.169.0.1", "10.0.0.1.5"] {
        assert!(!allowed(&p, host), "{host}");
    }
    let p = with_sites(r#"deny = ["127.0.0.1"]"#);
    assert!(!allowed(&p, "127.0.0.1"));
    assert!(
        !allowed(&p, "127.1"),
        "alternative IPv4 spellings are the same address"
    );
    assert!(
        !allowed(&p, "[::ffff:127.0.0.1]"),
        "IPv4-mapped IPv6 is the same address"
    );
    assert!(allowed(&p, "127.0.0.2"));
}

#[test]
fn deny_beats_allow() {
    let p = with_sites(
        r#"allow = ["*.acme.example", "docs.rs"]
deny = ["ads.acme.example", "*.tracking.acme.example"]"#,
    );
    assert!(allowed(&p, "www.acme.example"));
    let d = denial(decide(&p, "ADS.acme.example"));
    assert_eq!(d.rule, r#"sites.deny "ads.acme.example""#);
    assert_eq!(d.message, "ads.acme.example is on this policy's deny list");
    let d = denial(decide(&p, "x.tracking.acme.example"));
    assert_eq!(d.rule, r#"sites.deny "*.tracking.acme.example""#);
    assert_eq!(
        d.message,
        r#"x.tracking.acme.example is on this policy's deny list (matches "*.tracking.acme.example")"#
    );
    let d = denial(decide(&p, "elsewhere.example"));
    assert_eq!(d.rule, "sites.allow (default deny)");
    assert!(
        d.message
            .starts_with("elsewhere.example is not on this policy's allow list"),
        "{}",
        d.message
    );
}

#[test]
fn deny_only_policy_allows_the_rest() {
    let p = with_sites(r#"deny = ["*.ads.example"]"#);
    assert!(allowed(&p, "anything.example"));
    assert!(!allowed(&p, "x.ads.example"));
    assert!(allowed(&p, "ads.example"));
    let everything = with_sites(r#"deny = ["*"]"#);
    assert!(!allowed(&everything, "docs.rs"));
    assert!(!allowed(&everything, "10.0.0.1"));
}

#[test]
fn open_policy_allows_everything_valid() {
    let p = policy("name = \"open\"");
    for host in [
        "docs.rs",
        "a.b.c.d.example",
        "10.1.2.3",
        "[::1]",
        "BÜCHER.example",
    ] {
        assert_eq!(decide(&p, host), Decision::Allow, "{host}");
    }
    for host in ["", ".", "a..b", "bad host", "a*b.example", "[::1"] {
        let d = denial(decide(&p, host));
        assert_eq!(d.rule, "host", "{host:?}");
    }
}

struct Registry;

impl CategoryLookup for Registry {
    fn category(&self, normalised_host: &str) -> Option<&str> {
        match normalised_host {
            "en.wikipedia.org" | "xn--bcher-kva.example" => Some("reference"),
            "news.example" => Some("News"),
            "games.example" | "ads.news.example" => Some("games"),
            _ => None,
        }
    }
}

#[test]
fn categories() {
    let p = with_sites(
        r#"categories = ["reference", "news"]
deny = ["ads.news.example"]"#,
    );
    let d = |host| p.decide(&req(host), &Registry);
    assert!(d("en.wikipedia.org").is_allowed());
    assert!(
        d("EN.Wikipedia.org.").is_allowed(),
        "the lookup gets the normalised host"
    );
    assert!(d("BÜCHER.example").is_allowed());
    assert!(
        d("news.example").is_allowed(),
        "category names compare case-insensitively"
    );
    let games = denial(d("games.example"));
    assert_eq!(games.rule, "sites.allow (default deny)");
    assert!(games.message.contains("\"games\""), "{}", games.message);
    let unknown = denial(d("unknown.example"));
    assert!(
        unknown.message.contains("\"uncategorised\""),
        "{}",
        unknown.message
    );
    assert_eq!(
        denial(d("ads.news.example")).rule,
        r#"sites.deny "ads.news.example""#
    );
    assert!(!p
        .decide(&req("en.wikipedia.org"), &NoCategories)
        .is_allowed());

    let p = with_sites(
        r#"allow = ["docs.rs"]
categories = ["uncategorised"]"#,
    );
    assert!(p.decide(&req("unknown.example"), &Registry).is_allowed());
    assert!(!p.decide(&req("games.example"), &Registry).is_allowed());
    assert!(p.decide(&req("docs.rs"), &Registry).is_allowed());

    // An empty allow list is fine when categories allow something.
    let p = with_sites(
        r#"allow = []
categories = ["reference"]"#,
    );
    assert!(p.decide(&req("en.wikipedia.org"), &Registry).is_allowed());
    assert!(!p.decide(&req("docs.rs"), &Registry).is_allowed());
}

#[test]
fn ports() {
    let p = policy("name = \"t\"");
    assert_eq!(p.ports(), &[80, 443]);
    let on = |p: &Policy, port| {
        p.decide(
            &RequestFacts {
                port,
                ..req("docs.rs")
            },
            &NoCategories,
        )
    };
    assert!(on(&p, 80).is_allowed() && on(&p, 443).is_allowed());
    let d = denial(on(&p, 8080));
    assert_eq!(d.rule, "sites.ports [80, 443]");
    assert_eq!(
        d.message,
        "port 8080 is not allowed by this policy (allowed: 80, 443)"
    );

    let p = with_sites("ports = [8443, 443, 443, 22]");
    assert_eq!(p.ports(), &[22, 443, 8443]);
    assert!(on(&p, 22).is_allowed() && on(&p, 8443).is_allowed());
    assert!(!on(&p, 80).is_allowed());
    assert_eq!(denial(on(&p, 80)).rule, "sites.ports [22, 443, 8443]");

    // The port is checked first, even for hosts the deny list names.
    let p = with_sites(
        r#"deny = ["docs.rs"]
ports = [443]"#,
    );
    assert_eq!(denial(on(&p, 80)).rule, "sites.ports [443]");
}

#[test]
fn hours_in_decide() {
    let p = policy(
        r#"name = "t"
[hours]
days = "mon-fri"
from = "08:00"
to = "18:00"
utc_offset = "+01:00"
[sites]
deny = ["ads.example"]"#,
    );
    let when = |now_unix| {
        p.decide(
            &RequestFacts {
                now_unix,
                ..req("docs.rs")
            },
            &NoCategories,
        )
    };
    assert!(when(at(0, 7, 0)).is_allowed(), "08:00 local");
    assert!(when(at(4, 16, 59)).is_allowed(), "friday 17:59 local");
    let d = denial(when(at(0, 17, 0)));
    assert_eq!(d.rule, "hours mon-fri 08:00-18:00 +01:00");
    assert_eq!(
        d.message,
        "outside this policy's hours (mon-fri 08:00-18:00 +01:00); it is mon 18:00 there now"
    );
    assert!(denial(when(at(5, 10, 0)))
        .message
        .ends_with("it is sat 11:00 there now"));
    // Hours are checked before the deny list.
    let d = p.decide(
        &RequestFacts {
            now_unix: at(6, 12, 0),
            ..req("ads.example")
        },
        &NoCategories,
    );
    assert!(denial(d).rule.starts_with("hours "));
}

#[test]
fn hours_across_midnight_and_offsets() {
    let night =
        policy("name = \"t\"\n[hours]\nfrom = \"22:00\"\nto = \"06:00\"\ndays = \"mon-fri\"");
    let ok = |p: &Policy, t| {
        p.decide(
            &RequestFacts {
                now_unix: t,
                ..req("docs.rs")
            },
            &NoCategories,
        )
        .is_allowed()
    };
    assert!(ok(&night, at(0, 23, 0)), "mon 23:00");
    assert!(
        ok(&night, at(1, 5, 0)),
        "tue 05:00 belongs to monday's window"
    );
    assert!(!ok(&night, at(1, 12, 0)), "tue 12:00");
    assert!(
        !ok(&night, at(0, 5, 0)),
        "mon 05:00 belongs to sunday's window"
    );
    assert!(
        ok(&night, at(5, 5, 0)),
        "sat 05:00 belongs to friday's window"
    );
    assert!(!ok(&night, at(5, 23, 0)), "sat 23:00");

    // -05:30: 03:00 UTC on Tuesday is still Monday 21:30 there.
    let west = policy("name = \"t\"\n[hours]\ndays = \"mon\"\nutc_offset = \"-05:30\"");
    assert!(ok(&west, at(1, 3, 0)));
    assert!(!ok(&west, at(1, 6, 0)), "tuesday 00:30 local");
    assert!(!ok(&west, at(0, 3, 0)), "sunday 21:30 local");

    let weekend = policy("name = \"t\"\n[hours]\ndays = \"fri-mon\"");
    let days: Vec<bool> = (0..7).map(|d| ok(&weekend, at(d, 12, 0))).collect();
    assert_eq!(days, [true, false, false, false, true, true, true]);
    let list = policy("name = \"t\"\n[hours]\ndays = \"mon-wed,sat\"");
    let days: Vec<bool> = (0..7).map(|d| ok(&list, at(d, 12, 0))).collect();
    assert_eq!(days, [true, true, true, false, false, true, false]);
}

#[test]
fn path_is_accepted_but_not_yet_used() {
    let p = with_sites(r#"allow = ["docs.rs"]"#);
    let r = RequestFacts {
        path: Some("/anything?x=1"),
        ..req("docs.rs")
    };
    assert!(p.decide(&r, &NoCategories).is_allowed());
}

#[test]
fn id_and_accessors() {
    let src = "name = \"Acme staff\"\n[limits]\nspend_per_day = \"5.00\"\nrequests_per_minute = 600\nmib_per_day = 500\n";
    let p = policy(src);
    assert_eq!(p.name(), "Acme staff");
    // sha256 of the exact bytes; one changed byte changes the id.
    assert_eq!(p.id_hex().len(), 64);
    assert_eq!(hex::encode(p.id()), p.id_hex());
    assert_ne!(policy(&src.replace("600", "601")).id(), p.id());
    assert_eq!(policy(src).id_hex(), p.id_hex());
    let empty = policy("name = \"x\"");
    // echo -n 'name = "x"' | sha256sum
    assert_eq!(
        empty.id_hex(),
        "6cd7d1c8ee3acd79214d0b88cab5d050866f55a5e578f1fe6dcac789e5213ac8"
    );
    let l = p.limits();
    assert_eq!(l.spend_per_day, Some(5_000_000));
    assert_eq!(l.requests_per_minute, Some(600));
    assert_eq!(l.mib_per_day, Some(500));
    assert_eq!(*empty.limits(), policy::Limits::default());
    let clone = p.clone();
    assert_eq!(clone.id(), p.id());
    assert!(format!("{p:?}").contains("Acme staff"));
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/policies")
}

#[test]
fn sample_policies_parse() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(samples_dir()).expect("data/policies exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.summary().is_empty());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names, ["kiosk.toml", "open.toml", "staff.toml"]);

    let open = Policy::load(&samples_dir().join("open.toml")).unwrap();
    assert!(decide(&open, "anything.example").is_allowed());
    assert_eq!(open.ports(), &[80, 443]);

    let staff = Policy::load(&samples_dir().join("staff.toml")).unwrap();
    assert_eq!(staff.name(), "Acme staff");
    assert_eq!(staff.limits().spend_per_day, Some(5_000_000));
    let tue_10 = at(1, 9, 0); // 10:00 at +01:00
    let ask = |host, now_unix| {
        staff.decide(
            &RequestFacts {
                now_unix,
                ..req(host)
            },
            &NoCategories,
        )
    };
    assert!(ask("intranet.acme.example", tue_10).is_allowed());
    assert!(!ask("ads.acme.example", tue_10).is_allowed());
    assert!(!ask("docs.rs", at(5, 9, 0)).is_allowed(), "saturday");
    assert!(!ask("unlisted.example", tue_10).is_allowed());

    let kiosk = Policy::load(&samples_dir().join("kiosk.toml")).unwrap();
    assert_eq!(kiosk.ports(), &[443]);
    assert_eq!(
        *kiosk.limits(),
        policy::Limits {
            spend_per_day: Some(500_000),
            requests_per_minute: Some(30),
            mib_per_day: Some(50)
        }
    );
    assert!(decide(&kiosk, "help.padnet.example").is_allowed());
    assert!(!decide(&kiosk, "padnet.example").is_allowed());
    assert!(!decide(&kiosk, "github.com").is_allowed());
}

#[test]
fn summary_mentions_everything() {
    let staff = Policy::load(&samples_dir().join("staff.toml")).unwrap();
    let s = staff.summary();
    for want in [
        "\"Acme staff\"",
        staff.id_hex(),
        "allow 9 patterns (4 wildcard)",
        "categories reference;",
        "deny 1 pattern;",
        "80, 443 (default)",
        "mon-fri 08:00-18:00 +01:00",
        "spend 5.00/day",
        "600 requests/minute",
        "500 MiB/day",
    ] {
        assert!(s.contains(want), "{want:?} missing from:\n{s}");
    }
    let open = policy("name = \"o\"").summary();
    for want in ["any site", "any time", "limits:   none"] {
        assert!(open.contains(want), "{want:?} missing from:\n{open}");
    }
}

#[test]
fn load_errors_name_the_path() {
    let missing = samples_dir().join("no-such-policy.toml");
    let e = Policy::load(&missing).unwrap_err();
    assert_eq!((e.line(), e.column(), e.field()), (None, None, ""));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: cannot read policy file:", missing.display())),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("padnet-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[hours]\nfrom = \"25:00\"\nto = \"18:00\"\n",
    )
    .unwrap();
    let e = Policy::load(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:8: hours.from: \"25:00\" is not a time; expected HH:MM between 00:00 and 23:59",
            bad.display()
        )
    );
    std::fs::write(&bad, b"name = \"x\xff\"\n").unwrap();
    let e = Policy::load(&bad).unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(1), Some(10)));
    assert!(e.to_string().contains("not UTF-8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "prints the sample summaries; run with --ignored --nocapture"]
fn print_summaries() {
    for f in ["open.toml", "staff.toml", "kiosk.toml"] {
        println!(
            "{}",
            Policy::load(&samples_dir().join(f)).unwrap().summary()
        );
    }
}
