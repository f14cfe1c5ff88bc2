//! Every kind of malformed policy is rejected with an error that names the
//! file, the exact line and column of the offending key or value, and the
//! field, and says what was expected.

use policy::Policy;

const ORIGIN: &str = "data/policies/bad.toml";

/// Parse `src`, expect an error, check its location and field, and return
/// its full text.
fn err(src: &str, line: usize, column: usize, field: &str) -> String {
    let e = match Policy::parse(src, ORIGIN) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert_eq!(
        (e.line(), e.column(), e.field()),
        (Some(line), Some(column), field),
        "{text}"
    );
    assert!(
        text.starts_with(&format!("{ORIGIN}:{line}:{column}: {field}: ")),
        "{text}"
    );
    text
}

const GOOD: &str = r#"name = "Acme staff"

[sites]
allow = ["*.acme.example", "docs.rs"]
deny = ["ads.acme.example"]

[hours]
days = "mon-fri"
from = "08:00"
to = "18:00"
utc_offset = "+01:00"

[limits]
spend_per_day = "5.00"
requests_per_minute = 600
mib_per_day = 500
"#;

/// GOOD with one line replaced.
fn good_with(line: usize, text: &str) -> String {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[line - 1] = text;
    lines.join("\n")
}

#[test]
fn the_template_is_valid() {
    Policy::parse(GOOD, ORIGIN).unwrap();
}

#[test]
fn example_from_the_docs() {
    let src = good_with(9, r#"from = "25:00""#);
    // 1-based: line 9, column 8 is the opening quote of the value.
    assert_eq!(
        err(&src, 9, 8, "hours.from"),
        r#"data/policies/bad.toml:9:8: hours.from: "25:00" is not a time; expected HH:MM between 00:00 and 23:59"#
    );
    let src = good_with(9, r#"    from   =   "25:00""#);
    err(&src, 9, 16, "hours.from");
}

#[test]
fn unknown_keys() {
    let t = err(&good_with(5, r#"dney = ["x.example"]"#), 5, 1, "sites.dney");
    assert!(
        t.ends_with("unknown key; expected one of: allow, deny, categories, ports"),
        "{t}"
    );
    let t = err(&good_with(1, r#"nmae = "x""#), 1, 1, "nmae");
    assert!(
        t.ends_with("unknown key; expected one of: name, sites, hours, limits"),
        "{t}"
    );
    err(
        &good_with(11, r#"timezone = "+01:00""#),
        11,
        1,
        "hours.timezone",
    );
    err(&good_with(16, "mb_per_day = 5"), 16, 1, "limits.mb_per_day");
    err(&good_with(13, "[limit]"), 13, 2, "limit");
    err(
        "name = \"x\"\n[sites.extra]\nallow = 1\n",
        2,
        8,
        "sites.extra",
    );
    err("name = \"x\"\nsites.alow = [\"a.b\"]\n", 2, 7, "sites.alow");
    err(
        "name = \"x\"\nhours = { from = \"08:00\", until = \"09:00\" }\n",
        2,
        27,
        "hours.until",
    );
}

#[test]
fn bad_patterns() {
    for (pattern, col) in [
        ("a*.b", 28),
        ("*a.b", 28),
        ("foo.*", 28),
        ("*.*.x", 28),
        ("", 28),
        (" a.b", 28),
    ] {
        let line = format!(r#"allow = ["docs.rs", "x.y", {pattern:?}]"#);
        let t = err(&good_with(4, &line), 4, col, "sites.allow");
        assert!(t.contains(&format!("{pattern:?} ")), "{t}");
        assert!(
            t.contains("expected a host name (docs.rs), a wildcard (*.example.com"),
            "{t}"
        );
    }
    let t = err(&good_with(4, r#"allow = ["a*.b"]"#), 4, 10, "sites.allow");
    assert!(t.contains("misplaced '*'"), "{t}");
    let t = err(
        &good_with(5, r#"deny = ["ok.example", "exa mple.com"]"#),
        5,
        23,
        "sites.deny",
    );
    assert!(t.contains(r#""exa mple.com" contains white space"#), "{t}");
    err(&good_with(5, r#"deny = ["a..b"]"#), 5, 9, "sites.deny");
    err(&good_with(5, r#"deny = ["host:80"]"#), 5, 9, "sites.deny");
    err(
        &good_with(5, r#"deny = ["10.0.0.1/8"]"#),
        5,
        9,
        "sites.deny",
    );
    err(&good_with(5, r#"deny = [17]"#), 5, 9, "sites.deny");
    // A multi-line list points at the right line.
    let src = "name = \"x\"\n[sites]\nallow = [\n  \"docs.rs\",\n  \"*.ok.example\",\n    \"bad*.example\",\n]\n";
    err(src, 6, 5, "sites.allow");
}

#[test]
fn empty_allow_list() {
    let t = err(&good_with(4, "allow = []"), 4, 9, "sites.allow");
    assert!(
        t.ends_with("empty allow list denies everything; remove it or list sites"),
        "{t}"
    );
    err(
        "name = \"x\"\n[sites]\ncategories = []\n",
        3,
        14,
        "sites.categories",
    );
    err(
        "name = \"x\"\n[sites]\nallow = []\ncategories = []\n",
        3,
        9,
        "sites.allow",
    );
}

#[test]
fn bad_hours() {
    let t = err(&good_with(10, r#"to = "8:0""#), 10, 6, "hours.to");
    assert!(
        t.ends_with(r#""8:0" is not a time; expected HH:MM between 00:00 and 23:59"#),
        "{t}"
    );
    err(&good_with(9, r#"from = "08:00am""#), 9, 8, "hours.from");
    err(&good_with(9, r#"from = 8"#), 9, 8, "hours.from");
    let t = err(&good_with(9, "from = 08:00:00"), 9, 8, "hours.from");
    assert!(
        t.ends_with(r#"expected a string, as in from = "08:00"; found a date/time"#),
        "{t}"
    );
    let t = err(&good_with(8, r#"days = "mon-fry""#), 8, 8, "hours.days");
    assert!(t.contains(r#"unknown day "fry""#), "{t}");
    err(&good_with(8, r#"days = "weekdays""#), 8, 8, "hours.days");
    err(&good_with(8, r#"days = "mon,,fri""#), 8, 8, "hours.days");
    let t = err(
        &good_with(11, r#"utc_offset = "+25:00""#),
        11,
        14,
        "hours.utc_offset",
    );
    assert!(
        t.contains(r#""+25:00" is not a UTC offset; expected +HH:MM or -HH:MM"#),
        "{t}"
    );
    err(
        &good_with(11, r#"utc_offset = "01:00""#),
        11,
        14,
        "hours.utc_offset",
    );
    err(
        &good_with(11, r#"utc_offset = 1"#),
        11,
        14,
        "hours.utc_offset",
    );
    // from without to, and an empty window.
    err(&good_with(10, ""), 9, 8, "hours.from");
    err(&good_with(9, ""), 10, 6, "hours.to");
    let t = err(&good_with(10, r#"to = "08:00""#), 10, 6, "hours.to");
    assert!(t.contains("window would be empty"), "{t}");
}

#[test]
fn bad_ports() {
    for (ports, col) in [
        ("[0]", 10),
        ("[80, 70000]", 14),
        ("[443, -1]", 15),
        ("[80, \"443\"]", 14),
    ] {
        let src = format!("name = \"x\"\n[sites]\nports = {ports}\n");
        err(&src, 3, col, "sites.ports");
    }
    let t = err("name = \"x\"\n[sites]\nports = [0]\n", 3, 10, "sites.ports");
    assert!(
        t.ends_with("0 is not a port; expected a number from 1 to 65535"),
        "{t}"
    );
    let t = err(
        "name = \"x\"\n[sites]\nports = \"80\"\n",
        3,
        9,
        "sites.ports",
    );
    assert!(
        t.ends_with("expected a list, as in ports = [80, 443]; found a string"),
        "{t}"
    );
    err("name = \"x\"\n[sites]\nports = []\n", 3, 9, "sites.ports");
}

#[test]
fn bad_limits() {
    let t = err(
        &good_with(14, r#"spend_per_day = "-1.00""#),
        14,
        17,
        "limits.spend_per_day",
    );
    assert!(t.contains("is negative"), "{t}");
    let t = err(
        &good_with(14, r#"spend_per_day = "five""#),
        14,
        17,
        "limits.spend_per_day",
    );
    assert!(t.contains(r#""five" is not an amount"#), "{t}");
    err(
        &good_with(14, r#"spend_per_day = "5.0000001""#),
        14,
        17,
        "limits.spend_per_day",
    );
    let t = err(
        &good_with(14, "spend_per_day = 5.00"),
        14,
        17,
        "limits.spend_per_day",
    );
    assert!(t.contains("found a float"), "{t}");
    let t = err(
        &good_with(15, "requests_per_minute = 0"),
        15,
        23,
        "limits.requests_per_minute",
    );
    assert!(t.contains("at least 1"), "{t}");
    err(
        &good_with(15, "requests_per_minute = -5"),
        15,
        23,
        "limits.requests_per_minute",
    );
    err(
        &good_with(15, "requests_per_minute = 4294967296"),
        15,
        23,
        "limits.requests_per_minute",
    );
    err(
        &good_with(15, "requests_per_minute = \"600\""),
        15,
        23,
        "limits.requests_per_minute",
    );
    err(
        &good_with(16, "mib_per_day = 0"),
        16,
        15,
        "limits.mib_per_day",
    );
    err(
        &good_with(16, "mib_per_day = 1.5"),
        16,
        15,
        "limits.mib_per_day",
    );
}

#[test]
fn name_missing_empty_or_wrong_type() {
    let t = err(&good_with(1, ""), 1, 1, "name");
    assert!(t.contains("missing; every policy needs a name"), "{t}");
    err("", 1, 1, "name");
    err(&good_with(1, r#"name = "  ""#), 1, 8, "name");
    err(&good_with(1, "name = 42"), 1, 8, "name");
}

#[test]
fn wrong_section_types() {
    err("name = \"x\"\nsites = 5\n", 2, 9, "sites");
    // Keys after a mistyped section header become top-level keys.
    err(&good_with(3, "sites = 5"), 4, 1, "allow");
    err("name = \"x\"\nhours = \"9-5\"\n", 2, 9, "hours");
    err(
        "name = \"x\"\n[[limits]]\nmib_per_day = 5\n",
        2,
        1,
        "limits",
    );
}

#[test]
fn toml_syntax_errors() {
    err(&good_with(7, "[hours"), 7, 7, "syntax");
    err(&good_with(9, "from = \"08:00"), 9, 14, "syntax");
    let t = err(&good_with(10, r#"from = "09:00""#), 10, 1, "syntax");
    assert!(t.contains("duplicate key"), "{t}");
    err("name = \"x\"\n[sites]\n[sites]\n", 3, 1, "syntax");
}
