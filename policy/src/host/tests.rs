//! Host normalisation and the compiled host sets.

use super::*;

fn norm(h: &str) -> Result<String, String> {
    normalise_host(h).map(Cow::into_owned)
}

fn set(patterns: &[&str]) -> HostSet {
    let mut s = HostSet::default();
    for p in patterns {
        s.insert(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    }
    s
}

fn matches(s: &HostSet, host: &str) -> Option<String> {
    s.find(&parse_host(host).unwrap()).map(str::to_string)
}

#[test]
fn normalisation() {
    assert_eq!(norm("docs.rs").as_deref(), Ok("docs.rs"));
    assert!(
        matches!(normalise_host("docs.rs"), Ok(Cow::Borrowed(_))),
        "fast path borrows"
    );
    assert!(matches!(
        normalise_host("docs.rs."),
        Ok(Cow::Borrowed("docs.rs"))
    ));
    assert_eq!(norm("").unwrap_err(), "\"\" is empty");
    assert_eq!(norm("Docs.RS.").as_deref(), Ok("docs.rs"));
    assert_eq!(
        norm("BÜCHER.example").as_deref(),
        Ok("xn--bcher-kva.example")
    );
    assert_eq!(
        norm("xn--bcher-kva.example").as_deref(),
        Ok("xn--bcher-kva.example")
    );
    assert_eq!(
        norm("_dmarc.example.com").as_deref(),
        Ok("_dmarc.example.com")
    );
    assert_eq!(norm("[::1]").as_deref(), Ok("::1"));
    assert_eq!(norm("0:0::1").as_deref(), Ok("::1"));
    assert_eq!(norm("::FFFF:10.0.0.1").as_deref(), Ok("10.0.0.1"));
    assert_eq!(norm("127.0.0.1").as_deref(), Ok("127.0.0.1"));
    assert_eq!(
        norm("127.1").as_deref(),
        Ok("127.0.0.1"),
        "as resolvers read it"
    );
    assert_eq!(norm("10.0.0.1.").as_deref(), Ok("10.0.0.1"));
    for bad in [
        "",
        ".",
        "..",
        "a..b",
        ".a",
        "a b",
        "a*b.com",
        "exa_mple.com:80",
        "[::1",
        "1.2.3.4.5",
        "xn--zz.example",
        "a/b",
    ] {
        assert!(norm(bad).is_err(), "{bad:?} -> {:?}", norm(bad));
    }
    assert!(norm(&"a".repeat(64)).is_err());
    assert!(norm(&["a"; 130].join(".")).is_err());
}

#[test]
fn fast_path_agrees_with_slow_path() {
    for h in [
        "docs.rs",
        "a-b.c_d.example",
        "1.2.3.4",
        "0x7f.1",
        "123",
        "a.123",
        "a.0xg",
        "xn--a.b",
        "axn--b.c",
        "a.b.",
        "A.b",
        "a",
        "a-",
        "-a",
        "x1",
    ] {
        if is_normal_name(h) {
            assert_eq!(
                parse_host_slow(h),
                Ok(Host::Name(Cow::Borrowed(h))),
                "{h:?}"
            );
        }
    }
    assert!(!is_normal_name("1.2.3.4") && !is_normal_name("a.0x1f") && !is_normal_name("a."));
    assert!(is_normal_name("a.b-c.example") && is_normal_name("x1"));
}

proptest::proptest! {
    #[test]
    fn fast_path_is_exact(
        s in "[a-z0-9._\\-]{0,20}|(xn--)?[a-z0-9\\-]{0,8}\\.(xn--)?[a-z0-9]{1,4}|[0-9xa-f.]{1,12}|.{0,12}|[a-zA-Z0-9.\\-_]{1,20}|(XN--|xn--)?[a-zA-Z]{1,5}\\.[a-zA-Z0-9]{1,4}\\.{0,2}"
    ) {
        if is_normal_name(&s) {
            proptest::prop_assert_eq!(parse_host_slow(&s), Ok(Host::Name(Cow::Borrowed(s.as_str()))));
        }
        proptest::prop_assert_eq!(parse_host(&s), parse_host_slow(&s));
    }
}

#[test]
fn wildcards() {
    let s = set(&["*.example.com"]);
    assert_eq!(
        matches(&s, "a.example.com").as_deref(),
        Some("\"*.example.com\"")
    );
    assert!(matches(&s, "a.b.example.com").is_some());
    assert!(matches(&s, "A.Example.COM.").is_some());
    assert!(
        matches(&s, "example.com").is_none(),
        "not the suffix itself"
    );
    assert!(matches(&s, "badexample.com").is_none());
    assert!(matches(&s, "example.com.evil").is_none());
    assert!(matches(&s, "com").is_none());

    let exact = set(&["docs.rs"]);
    assert!(matches(&exact, "docs.rs").is_some());
    assert!(matches(&exact, "www.docs.rs").is_none());
    assert!(matches(&exact, "docs.rs.evil").is_none());

    let all = set(&["*"]);
    assert!(matches(&all, "anything.example").is_some());
    assert!(matches(&all, "10.1.2.3").is_some());

    for bad in [
        "a*.b",
        "*a.b",
        "foo.*",
        "*.*.x",
        "**",
        "*.",
        "x.*.y",
        "*.10.0.0.1",
        "",
        " a.b",
        "a b",
    ] {
        assert!(HostSet::default().insert(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn idna_rules() {
    let s = set(&["bücher.example"]);
    assert!(matches(&s, "BÜCHER.example").is_some());
    assert!(matches(&s, "xn--bcher-kva.example").is_some());
    let s = set(&["xn--bcher-kva.example"]);
    assert!(matches(&s, "BÜCHER.example").is_some());
    let s = set(&["*.Bücher.Example."]);
    assert!(matches(&s, "www.xn--bcher-kva.example").is_some());
}

#[test]
fn ip_rules() {
    let s = set(&["[::1]", "10.0.0.1", "192.168.0.0/16", "fd00::/8"]);
    for hit in [
        "::1",
        "[::1]",
        "0:0::1",
        "[0000::0001]",
        "10.0.0.1",
        "192.168.4.5",
        "fd12::1",
        "::ffff:192.168.1.1",
    ] {
        assert!(matches(&s, hit).is_some(), "{hit}");
    }
    for miss in ["::2", "10.0.0.2", "192.169.0.1", "fe80::1", "localhost"] {
        assert!(matches(&s, miss).is_none(), "{miss}");
    }
    assert_eq!(matches(&s, "[::1]").as_deref(), Some("\"[::1]\""));
    let all_v4 = set(&["0.0.0.0/0"]);
    assert!(matches(&all_v4, "8.8.8.8").is_some());
    assert!(matches(&all_v4, "::8").is_none());
    for bad in [
        "10.0.0.1/8",
        "10.0.0.0/33",
        "10.0.0.0/x",
        "nope/8",
        "fd00::/129",
    ] {
        assert!(HostSet::default().insert(bad).is_err(), "{bad:?}");
    }
    assert!(HostSet::default()
        .insert("10.0.0.1/8")
        .unwrap_err()
        .contains("10.0.0.0/8"));
}
