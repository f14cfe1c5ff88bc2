//! Several gateways sharing one ledger on a real PostgreSQL server (started
//! by the test itself): one book for all of them, an account cancel on one
//! gateway closing the pad's tunnel on another within a second, a site's
//! owner paid for hits on two gateways seeing one statement, a gateway
//! killed mid-download stranding nothing (its peers release its
//! reservations when its lease runs out), and the database server killed
//! and restarted losing no value.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use padnet_tests::cluster::*;
use padnet_tests::sites::{api, owner_view, register, serve_token};
use padnet_tests::*;
use serde_json::Value;

/// `POST /api/account/OP` on the agent; must succeed.
fn account_op(agent: SocketAddr, op: &str, body: &str) -> Value {
    let url = format!("http://{agent}/api/account/{op}");
    let out = curl(&[
        "-s",
        "-X",
        "POST",
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body_text, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    assert_eq!(code.trim(), "200", "{op} {body}: {body_text}");
    serde_json::from_str(body_text).expect("JSON answer")
}

fn creds(account: &str) -> String {
    format!(r#""account": "{account}", "pin": "{PIN}""#)
}

fn tunnel_state(agent: SocketAddr) -> String {
    let out = curl(&[&format!("http://{agent}/status")]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("/status is JSON");
    v["tunnel"].as_str().unwrap_or("").to_string()
}

#[test]
fn gateways_on_one_ledger_are_one_bank_and_a_cancel_reaches_every_tunnel() {
    let c = Cluster::new();
    let (state_a, state_b) = (c.init("gw-a"), c.init("gw-b"));
    let pad_a = c.mint(&state_a, "5.00", "8MiB");
    let pad_b = c.mint(&state_b, "5.00", "96MiB");
    let (sa, sb) = (serial_of(&pad_a), serial_of(&pad_b));
    let gw_a = c.serve(&state_a, "127.0.0.1:0");
    let gw_b = c.serve(&state_b, "127.0.0.1:0");
    let agent_a = start_agent(&pad_a, gw_a.addr, &["--timeout", "1"], c.work());
    let agent_b = start_agent(&pad_b, gw_b.addr, &["--timeout", "1"], c.work());

    // One book: each gateway knows the pad minted at the other.
    assert_eq!(pad_show(&state_a, &sb)["balance"], "5.00");
    assert_eq!(pad_show(&state_b, &sa)["balance"], "5.00");

    // An account opened through gateway A takes a pad through gateway B.
    let v = account_op(agent_a.addr, "open", &format!(r#"{{"pin": "{PIN}"}}"#));
    let account = v["account"].as_str().expect("an account").to_string();
    let v = account_op(
        agent_b.addr,
        "register",
        &format!("{{{}}}", creds(&account)),
    );
    assert_eq!(v["serial"], sb);
    let v = account_op(agent_a.addr, "show", &format!("{{{}}}", creds(&account)));
    assert_eq!(v["pads"].as_array().map(Vec::len), Some(2), "{v}");

    // B downloads slowly through gateway B; A's agent cancels B through A.
    let (code, _) = get_via(agent_b.addr, &c.page(), &[]);
    assert_eq!(code, 200);
    let total: u64 = 64 << 20;
    let download = slow_download(agent_b.addr, &c.bytes_url(total), "2M");
    std::thread::sleep(Duration::from_millis(1500));
    let v = account_op(
        agent_a.addr,
        "cancel",
        &format!(r#"{{{}, "serial": "{sb}"}}"#, creds(&account)),
    );
    assert_eq!(v["serial"], sb);
    let cancelled = Instant::now();
    while tunnel_state(agent_b.addr) != "finished" && cancelled.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let closed_after = cancelled.elapsed();
    let out = download.wait_with_output().unwrap();
    let got: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("cancel on gateway A closed the tunnel on gateway B in {closed_after:?}");
    assert!(got < total, "the download went on after the cancel");
    assert!(
        closed_after < Duration::from_secs(1),
        "the cancel reached gateway B's tunnel only after {closed_after:?}"
    );
    let (code, page) = get_via(agent_b.addr, &c.page(), &[]);
    assert_eq!(code, 402, "{}", String::from_utf8_lossy(&page));

    // Both gateways see the same, sound book.
    assert_audit(&state_a, "on gateway A");
    assert_audit(&state_b, "on gateway B");
    let (la, lb) = (ledger(&state_a), ledger(&state_b));
    assert_eq!(la, lb, "the gateways report different books");
    let v = account_op(agent_a.addr, "show", &format!("{{{}}}", creds(&account)));
    let in_account = field(&v, "balance");
    assert!(
        in_account > 0 && in_account < 5_000_000,
        "B's value less its charges moved into the account: {in_account}"
    );
}

#[test]
fn an_owner_paid_for_hits_on_two_gateways_sees_one_statement() {
    let c = Cluster::new();
    let (state_a, state_b) = (c.init("gw-a"), c.init("gw-b"));
    let pad_a = c.mint(&state_a, "5.00", "8MiB");
    let pad_b = c.mint(&state_b, "5.00", "8MiB");
    let (gw_a, portal_a) = c.serve_portal(&state_a);
    let (gw_b, portal_b) = c.serve_portal(&state_b);

    // Registered and verified through gateway A's portal.
    let host = c.origin.http.to_string();
    let site = register(&portal_a, &host, r#""per_hit": "0.002""#, None);
    serve_token(&c.work().join("www"), &site.token);
    let (status, v) = api(
        &portal_a,
        "POST",
        &format!("/api/sites/{host}/verify"),
        Some(&site.secret),
        None,
    );
    assert_eq!(status, 200, "verifying {host}: {v}");
    // Gateway B sees the verified site within its catch-up period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while owner_view(&portal_b, &site.secret)["sites"][0]["verified"] != true {
        assert!(
            Instant::now() < deadline,
            "gateway B never saw the site verified"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Three views through gateway A, two through gateway B.
    let agent_a = start_agent(&pad_a, gw_a.addr, &[], c.work());
    let agent_b = start_agent(&pad_b, gw_b.addr, &[], c.work());
    for (agent, views) in [(&agent_a, 3), (&agent_b, 2)] {
        for _ in 0..views {
            assert_eq!(get_via(agent.addr, &c.page(), &[]).0, 200);
        }
    }
    // 0.002 a view, 10 % commission: 0.0018 to the owner, five times.
    let want = 5 * 1_800;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (view_a, view_b) = loop {
        let (va, vb) = (
            owner_view(&portal_a, &site.secret),
            owner_view(&portal_b, &site.secret),
        );
        let done = va["balance_micros"] == want && va == vb;
        if done || Instant::now() > deadline {
            break (va, vb);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(view_a["balance_micros"], want, "{view_a}");
    assert_eq!(view_a, view_b, "the two portals show different statements");
    let hits: u64 = view_a["statement"]
        .as_array()
        .expect("statement")
        .iter()
        .map(|d| d["hits"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        hits, 5,
        "every view on either gateway is in the statement: {view_a}"
    );
    drop((agent_a, agent_b));
    assert_audit(&state_b, "after the views");
}

#[test]
fn a_gateway_killed_mid_download_strands_nothing() {
    let c = Cluster::new();
    let (state_a, state_b) = (c.init("gw-a"), c.init("gw-b"));
    let pad = c.mint(&state_a, "10.00", "96MiB");
    let serial = serial_of(&pad);
    let mut gw_a = c.serve(&state_a, "127.0.0.1:0");
    let _gw_b = c.serve(&state_b, "127.0.0.1:0");
    let agent = start_agent(&pad, gw_a.addr, &["--timeout", "1"], c.work());
    let (code, _) = get_via(agent.addr, &c.page(), &[]);
    assert_eq!(code, 200);

    let download = slow_download(agent.addr, &c.bytes_url(64 << 20), "4M");
    std::thread::sleep(Duration::from_millis(2000));
    let held = field(&pad_show(&state_b, &serial), "reserved");
    assert!(held > 0, "gateway A holds a float for the download");
    gw_a.proc.kill9();
    let killed = Instant::now();
    let _ = download.wait_with_output();

    // Gateway B releases A's float once A's lease runs out.
    let released_after = loop {
        let v = pad_show(&state_b, &serial);
        if v["reserved"] == "0.00" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "gateway A's float was never released: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("gateway B released dead gateway A's float {released_after:?} after the kill");
    assert_audit(&state_b, "after gateway A died");
    // No value created or lost: what the pad has plus what it paid is what it was given.
    let balance = field(&pad_show(&state_b, &serial), "balance");
    let paid = revenue(&state_b);
    assert!(paid > 0, "the download was charged");
    assert_eq!(
        balance + paid,
        10_000_000,
        "balance {balance} + paid {paid}"
    );

    // A comes back on the same address; the agent goes on through it.
    let addr = gw_a.addr.to_string();
    let _gw_a = c.serve(&state_a, &addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = get_via(agent.addr, &c.page(), &[]);
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no service after A restarted: {code}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_audit(&state_a, "after gateway A restarted");
}

#[test]
fn the_database_killed_and_restarted_loses_no_value() {
    let mut c = Cluster::new();
    let state = c.init("gw-a");
    let pad = c.mint(&state, "10.00", "256MiB");
    let serial = serial_of(&pad);
    let gw = c.serve(&state, "127.0.0.1:0");
    let agent = start_agent(&pad, gw.addr, &["--timeout", "1"], c.work());
    let (code, _) = get_via(agent.addr, &c.page(), &[]);
    assert_eq!(code, 200);

    // Priced downloads run while the database server is killed.
    let downloads: Vec<_> = (0..3)
        .map(|_| slow_download(agent.addr, &c.bytes_url(16 << 20), "4M"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    c.pg.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    c.pg.restart();
    for d in downloads {
        let _ = d.wait_with_output();
    }
    // The gateway reconnects; service comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, page) = get_via(agent.addr, &c.page(), &[]);
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no service after the restart: {code} {}\n{}",
            String::from_utf8_lossy(&page),
            gw.proc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
    let v = wait_settled(&state, &serial);
    assert_eq!(v["reserved"], "0.00", "{v}");
    assert_audit(&state, "after the database restarted");
    let balance = field(&v, "balance");
    let paid = revenue(&state);
    assert_eq!(
        balance + paid,
        10_000_000,
        "balance {balance} + paid {paid}"
    );
}
