//! Pads sold at a till, end to end: blanks minted with a manifest, refused
//! ("not activated") until a shop's till activates them through the retail
//! API; activating twice, unknown serials, bad bodies and wrong tokens are
//! clear errors that change nothing; the shop's count and sum are right;
//! the operator activates by hand too. Real processes, sockets and curl.

use std::time::Duration;

use padnet_tests::*;

/// One till API call through curl: (status, JSON body or Null).
fn till(
    url: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let full = format!("{url}{path}");
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec![
        "-s",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "-H",
        auth.as_str(),
    ];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&full);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn blanks_serve_only_once_a_till_activates_them_and_the_shop_is_counted() {
    let st = stage("<p>sold at the till</p>");
    let s = st.state.to_string_lossy().to_string();
    let mut gw = start_gateway(
        &st.state,
        "127.0.0.1:0",
        &[
            "--allow-private-upstreams",
            "--retail-listen",
            "127.0.0.1:0",
        ],
        st.dir.path(),
    );
    let api = gw
        .proc
        .wait_line("padnet-gateway retail API on ", Duration::from_secs(30));
    let o = gateway_cmd(&["retailer", "add", "--state", &s, "corner-shop", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_string();

    // 20 blanks, with the shop's inventory beside them.
    let manifest = st.dir.path().join("shelf.csv");
    let m = manifest.to_string_lossy().to_string();
    let pads = mint_with(
        &st.state,
        "20.00",
        "2MiB",
        &st.dir.path().join("shelf"),
        &["--count", "20", "--inactive", "--manifest", &m],
    );
    assert_eq!(pads.len(), 20);
    let csv = std::fs::read_to_string(&manifest).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "serial,value,status");
    assert_eq!(rows.len(), 21, "{csv}");
    for (row, pad) in rows[1..].iter().zip(&pads) {
        assert_eq!(*row, format!("{},20.00,inactive", serial_of(pad)));
    }
    let serials: Vec<String> = pads.iter().map(|p| serial_of(p)).collect();

    // Before the till: the agent's page says so, and the pad holds nothing.
    let page = format!("http://{}/", st.origin.http);
    let agent = start_agent(&pads[0], gw.addr, &[], st.dir.path());
    let (code, body) = get_via(agent.addr, &page, &[]);
    assert_eq!(code, 402, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not been activated"));
    drop(agent);
    assert_eq!(pad_show(&st.state, &serials[0])["balance"], "0.00");

    // The till activates ten.
    for serial in &serials[..10] {
        let (status, v) = till(
            &api,
            "POST",
            "/api/activate",
            &token,
            Some(&format!(r#"{{"serial": "{serial}"}}"#)),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["serial"].as_str(), v["balance"].as_str()),
            (Some(serial.as_str()), Some("20.00"))
        );
    }
    // Twice, unknown, malformed, wrong token: each refused, nothing changed.
    let again = format!(r#"{{"serial": "{}"}}"#, serials[0]);
    let (status, v) = till(&api, "POST", "/api/activate", &token, Some(&again));
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("already active"),
        "{v}"
    );
    let (status, v) = till(
        &api,
        "POST",
        "/api/activate",
        &token,
        Some(r#"{"serial": "0000-0000-0000-0000"}"#),
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = till(
        &api,
        "POST",
        "/api/activate",
        &token,
        Some(r#"{"serial": "nope"}"#),
    );
    assert_eq!((status, v["field"].as_str()), (400, Some("serial")), "{v}");
    let bad_value = format!(r#"{{"serial": "{}", "value": "1.0000001"}}"#, serials[10]);
    let (status, v) = till(&api, "POST", "/api/activate", &token, Some(&bad_value));
    assert_eq!((status, v["field"].as_str()), (400, Some("value")), "{v}");
    let extra = format!(r#"{{"serial": "{}", "buyer": "x"}}"#, serials[10]);
    let (status, v) = till(&api, "POST", "/api/activate", &token, Some(&extra));
    assert_eq!((status, v["field"].as_str()), (400, Some("buyer")), "{v}");
    let wrong = format!("prt_corner-shop_{}", "0".repeat(64));
    let (status, _) = till(&api, "POST", "/api/activate", &wrong, Some(&extra));
    assert_eq!(status, 401);
    assert_eq!(pad_show(&st.state, &serials[10])["balance"], "0.00");

    // The shop's count and sum, to settle with it (and never which pads).
    let (status, v) = till(&api, "GET", "/api/retailer", &token, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["activated"].as_u64(), v["sum"].as_str()),
        (Some(10), Some("200.00"))
    );
    let o = gateway_cmd(&["retailer", "show", "--state", &s, "corner-shop", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["activated"], 10);

    // An activated pad browses; the operator activates one by hand, at a value of its own.
    let agent = start_agent(&pads[0], gw.addr, &[], st.dir.path());
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    drop(agent);
    let o = gateway_cmd(&["activate", "--state", &s, &serials[10], "--value", "5.00"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(wait_settled(&st.state, &serials[10])["balance"], "5.00");
    let o = gateway_cmd(&["activate", "--state", &s, &serials[10]]);
    assert!(!o.status.success(), "activating twice by hand is refused");

    // Across a restart the blanks stay blank and the activated stay active.
    gw.proc.terminate();
    let gw = start_gateway(
        &st.state,
        "127.0.0.1:0",
        &["--allow-private-upstreams"],
        st.dir.path(),
    );
    let agent = start_agent(&pads[10], gw.addr, &[], st.dir.path());
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    let agent = start_agent(&pads[11], gw.addr, &[], st.dir.path());
    assert_eq!(get_via(agent.addr, &page, &[]).0, 402);
    let (ok, out) = audit(&st.state);
    assert!(ok, "{out}");
}

#[test]
fn a_cancelled_pad_is_refused_and_its_value_lives_on_in_the_replacement() {
    let st = stage("<p>page</p>");
    let s = st.state.to_string_lossy().to_string();
    let gw = start_gateway(
        &st.state,
        "127.0.0.1:0",
        &["--allow-private-upstreams"],
        st.dir.path(),
    );
    let pad = mint(&st.state, "5.00", "2MiB", st.dir.path());
    let serial = serial_of(&pad);
    let page = format!("http://{}/", st.origin.http);
    let agent = start_agent(&pad, gw.addr, &[], st.dir.path());
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    drop(agent);
    let left = wait_settled(&st.state, &serial)["balance"]
        .as_str()
        .unwrap()
        .to_string();

    // Nowhere to put the value, or nothing to cancel: refused, nothing changed.
    let o = gateway_cmd(&["cancel", "--state", &s, &serial]);
    assert!(!o.status.success());
    let o = gateway_cmd(&["cancel", "--state", &s, &serial, "--to-account", "99999999"]);
    assert!(!o.status.success());
    let o2 = gateway_cmd(&[
        "cancel",
        "--state",
        &s,
        &serial,
        "--to-account",
        "1111-2222-3333-4444",
    ]);
    assert!(
        String::from_utf8_lossy(&o2.stderr).contains("no account 1111-2222-3333-4444"),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"99999999\" is not an account number"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = gateway_cmd(&[
        "cancel",
        "--state",
        &s,
        "0000-0000-0000-0000",
        "--replace",
        "--out",
        "/tmp",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no pad 0000-0000-0000-0000"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(pad_show(&st.state, &serial)["balance"], left.as_str());

    // Into a replacement: the old file is refused at its next hello, the new one holds its value.
    let out = st.dir.path().join("replacement");
    let o = gateway_cmd(&[
        "cancel",
        "--state",
        &s,
        &serial,
        "--replace",
        "--out",
        &out.to_string_lossy(),
        "--size",
        "2MiB",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new = std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert_eq!(
        pad_show(&st.state, &serial_of(&new))["balance"],
        left.as_str()
    );
    assert_eq!(pad_show(&st.state, &serial)["balance"], "0.00");
    let agent = start_agent(&pad, gw.addr, &[], st.dir.path());
    let (code, body) = get_via(agent.addr, &page, &[]);
    assert_eq!(code, 402, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let agent = start_agent(&new, gw.addr, &[], st.dir.path());
    assert_eq!(get_via(agent.addr, &page, &[]).0, 200);
    let o = gateway_cmd(&[
        "cancel",
        "--state",
        &s,
        &serial,
        "--replace",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(!o.status.success(), "cancelled twice");
    let (ok, out) = audit(&st.state);
    assert!(ok, "{out}");
}
