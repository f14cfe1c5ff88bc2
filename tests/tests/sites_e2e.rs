//! Site owners end to end: register through the portal, prove control
//! against the test origin, earn exactly per hit (less commission) while an
//! agent browses, change prices without a restart, cash out into a pad that
//! browses; bad input refused with the field named; no record joins a pad
//! to a site. Real processes, real sockets, real curl.

use padnet_tests::sites::*;
use padnet_tests::*;

/// floor(charge × 0.9): the owner's share at the sample tariff's 10 % commission.
fn share(charge: i64) -> i64 {
    charge * 900_000 / 1_000_000
}

#[test]
fn an_owner_registers_verifies_earns_per_hit_and_cashes_out() {
    let st = stage("<p>news</p>");
    let gw = start_with_portal(&st.state, &[], st.dir.path());
    let host = st.origin.http.to_string();
    let site = register(
        &gw.portal,
        &host,
        r#""per_hit": "0.002", "per_mib": "0", "premium": [{"prefix": "/reports/", "per_hit": "0.05"}]"#,
        None,
    );
    // Not yet served: the failure says what was fetched and what came back.
    let verify = format!("/api/sites/{host}/verify");
    let (status, v) = api(&gw.portal, "POST", &verify, Some(&site.secret), None);
    assert_eq!(status, 422, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(&site.token) && msg.contains("404"), "{msg}");
    // A wrong token is refused too, naming what came back.
    let wrong = serve_token(&st.dir.path().join("www"), &site.token);
    std::fs::write(&wrong, "not-the-token").unwrap();
    let (status, v) = api(&gw.portal, "POST", &verify, Some(&site.secret), None);
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not-the-token"),
        "{v}"
    );
    // A wrong secret is a 401 and changes nothing.
    let (status, _) = api(
        &gw.portal,
        "POST",
        &verify,
        Some("pno_0000000000000000_00"),
        None,
    );
    assert_eq!(status, 401);

    // Browsing before verification earns the owner nothing.
    let pad = mint(&st.state, "5.00", "4MiB", st.dir.path());
    let agent = start_agent(&pad, gw.gateway.addr, &[], st.dir.path());
    let page = format!("http://{host}/");
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    // (The origin caches what it served: a new registration of the
    // unverified name, by the same owner, gets a fresh token.)
    let site = register(
        &gw.portal,
        &host,
        r#""per_hit": "0.002", "per_mib": "0", "premium": [{"prefix": "/reports/", "per_hit": "0.05"}]"#,
        Some(&site.secret),
    );
    serve_token(&st.dir.path().join("www"), &site.token);
    let (status, v) = api(&gw.portal, "POST", &verify, Some(&site.secret), None);
    assert_eq!(status, 200, "{v}");
    wait_settled(&st.state, &serial_of(&pad));
    assert_eq!(
        owner_balance(&gw.portal, &site.secret),
        0,
        "unverified sites earn nothing"
    );

    // N pages and one premium page: exactly N × floor(per_hit × 0.9) + floor(0.05 × 0.9).
    std::fs::create_dir_all(st.dir.path().join("www/reports")).unwrap();
    std::fs::write(st.dir.path().join("www/reports/q4.html"), "<p>q4</p>").unwrap();
    let n = 5;
    for _ in 0..n {
        assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    }
    assert_eq!(
        get_via(agent.addr, &format!("http://{host}/reports/q4.html"), &[]).0,
        200
    );
    let expected = n * share(2_000) + share(50_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while owner_balance(&gw.portal, &site.secret) < expected && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(owner_balance(&gw.portal, &site.secret), expected);
    // The agent shows what the site costs.
    let status_json: serde_json::Value =
        serde_json::from_slice(&curl(&["-s", &format!("http://{}/status", agent.addr)]).stdout)
            .unwrap();
    assert_eq!(status_json["sites"][0]["per_hit"], "0.002", "{status_json}");

    // A price change applies to the next request, no restart.
    let (status, v) = api(
        &gw.portal,
        "PUT",
        &format!("/api/sites/{host}"),
        Some(&site.secret),
        Some(r#"{"per_hit": "0.01"}"#),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    let expected = expected + share(10_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while owner_balance(&gw.portal, &site.secret) < expected && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(owner_balance(&gw.portal, &site.secret), expected);
    // The owner's page, signed in with the form: today's credit in the chart.
    let form = format!("secret={}", site.secret);
    let out = curl(&["-s", "-f", "-d", &form, &format!("{}/owner", gw.portal)]);
    let html = String::from_utf8_lossy(&out.stdout);
    assert!(
        html.contains("id=earnings-chart") && html.contains("<svg"),
        "{html}"
    );
    let name = site_name(st.origin.http);
    let chart = &html[html.find("id=earnings-chart").unwrap()..html.find("</svg>").unwrap()];
    assert!(chart.contains(&name), "the chart names the site: {chart}");
    assert!(!chart.contains("no earnings"), "{chart}");
    wait_settled(&st.state, &serial_of(&pad));
    let (ok, out) = audit(&st.state);
    assert!(ok, "{out}");

    // Privacy: no record names both a pad and a site or an owner.
    let all = export(&st.state);
    let serial = serial_of(&pad);
    let name = site_name(st.origin.http);
    for (section, rows) in all.as_object().unwrap() {
        for row in rows.as_array().into_iter().flatten() {
            let text = row.to_string();
            assert!(
                !(text.contains(&serial) && (text.contains(&name) || text.contains(&site.owner))),
                "{section} joins a pad to a site: {text}"
            );
        }
    }
    assert!(
        !gw.gateway.proc.log_tail().contains(&host),
        "the log names the site"
    );

    // Cash-out: a pad holding the whole balance, which browses.
    let cash = st.dir.path().join("cash.pad");
    let out = curl(&[
        "-s",
        "-f",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {}", site.secret),
        "--data-binary",
        r#"{"size": "2MiB"}"#,
        "-o",
        cash.to_str().unwrap(),
        &format!("{}/api/owner/cashout", gw.portal),
    ]);
    assert!(
        out.status.success(),
        "cashout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(owner_balance(&gw.portal, &site.secret), 0);
    let second = start_agent(&cash, gw.gateway.addr, &[], st.dir.path());
    assert_eq!(get_via(second.addr, &page, &[]).0, 200);
    let (ok, out) = audit(&st.state);
    assert!(ok, "{out}");
}

#[test]
fn bad_registrations_name_the_field_and_store_nothing() {
    let st = stage("x");
    let gw = start_with_portal(&st.state, &[], st.dir.path());
    let cases = [
        (
            r#"{"host": "a.example", "per_hit": "1", "colour": "red"}"#,
            "colour",
        ),
        (r#"{"host": "a.example", "per_mib": "-0.01"}"#, "per_mib"),
        (
            r#"{"host": "a.example", "premium": [{"prefix": "reports", "per_hit": "1"}]}"#,
            "premium[0].prefix",
        ),
        (
            r#"{"host": "a.example", "per_hit": "0.0000001"}"#,
            "per_hit",
        ),
        (r#"{"host": "a.example", "per_hit": 1"#, "body"),
        (r#"{"per_hit": "1"}"#, "host"),
    ];
    for (body, field) in cases {
        let (status, v) = api(&gw.portal, "POST", "/api/sites", None, Some(body));
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    // A private address without --allow-private-upstreams.
    let strict = st.dir.path().join("strict");
    gateway_init(&strict);
    let mut g = start_gateway(
        &strict,
        "127.0.0.1:0",
        &["--owner-listen", "127.0.0.1:0"],
        st.dir.path(),
    );
    let portal = g.proc.wait_line(
        "padnet-gateway owner portal on ",
        std::time::Duration::from_secs(30),
    );
    let (status, v) = api(
        &portal,
        "POST",
        "/api/sites",
        None,
        Some(r#"{"host": "10.1.2.3:80"}"#),
    );
    assert_eq!((status, v["field"].as_str()), (400, Some("host")), "{v}");
    assert!(
        export(&st.state)["sites"].as_array().unwrap().is_empty(),
        "nothing stored"
    );
}
