//! Pads as money, end to end, the way a user drives them: through the
//! agent's JSON API with curl. A lost pad cancelled mid-download from
//! another pad's agent loses nothing; a handed-over file moves its value
//! once and is then worthless everywhere; wrong PINs lock an account
//! durably; web pages cannot drive the API; bad input is named and changes
//! nothing; `kill -9` during money moves conserves value; one pad copied
//! onto two devices works on both with one balance and no key byte reused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use padnet_tests::*;
use serde_json::Value;

/// 0.01 per MiB and 0.001 per request.
const TARIFF: &str = "currency = \"EUR\"\nper_mib = \"0.01\"\nper_request = \"0.001\"\n";
const PIN: &str = "246810";

/// A stage with a tariff and a serving gateway.
struct World {
    st: Stage,
    gateway: Gateway,
    args: Vec<String>,
}

impl World {
    fn new() -> World {
        World::with(&[])
    }

    /// A world whose gateway also takes `extra` arguments.
    fn with(extra: &[&str]) -> World {
        let st = stage("<p>money</p>");
        let tariff = st.dir.path().join("tariff.toml");
        std::fs::write(&tariff, TARIFF).unwrap();
        let args: Vec<String> = [
            "--allow-private-upstreams",
            "--probe-hold-ms",
            "300",
            "--tariff",
            &tariff.to_string_lossy(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let gateway = serve(&st, "127.0.0.1:0", &args);
        World { st, gateway, args }
    }

    fn state(&self) -> &Path {
        &self.st.state
    }

    fn work(&self) -> &Path {
        self.st.dir.path()
    }

    fn page(&self) -> String {
        format!("http://{}/", self.st.origin.http)
    }

    fn mint(&self, value: &str, size: &str) -> PathBuf {
        mint(self.state(), value, size, &self.work().join("pads"))
    }

    fn agent(&self, pad: &Path) -> Agent {
        start_agent(pad, self.gateway.addr, &["--timeout", "1"], self.work())
    }

    /// Stop the gateway (`kill -9` if `hard`) and start it again on its address.
    fn restart(&mut self, hard: bool) {
        if hard {
            self.gateway.proc.kill9();
        } else {
            self.gateway.proc.terminate();
        }
        let addr = self.gateway.addr.to_string();
        self.gateway = serve(&self.st, &addr, &self.args);
    }

    /// A pad's balance once nothing is reserved from it (no agent on it).
    fn settled(&self, serial: &str) -> i64 {
        let v = wait_settled(self.state(), serial);
        assert_eq!(v["reserved"], "0.00", "{v}");
        field(&v, "balance")
    }

    /// A pad's whole value: its balance and what its tunnels hold.
    fn value(&self, serial: &str) -> i64 {
        let v = pad_show(self.state(), serial);
        field(&v, "balance") + field(&v, "reserved")
    }

    fn revenue(&self) -> i64 {
        micros(self.ledger()["revenue"].as_str().unwrap())
    }

    fn ledger(&self) -> Value {
        let s = self.state().to_string_lossy().to_string();
        let o = gateway_cmd(&["ledger", "--state", &s, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("ledger prints JSON")
    }

    fn assert_audit(&self, when: &str) {
        let (ok, out) = audit(self.state());
        assert!(ok, "audit failed {when}: {out}");
    }
}

fn serve(st: &Stage, listen: &str, args: &[String]) -> Gateway {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_gateway(&st.state, listen, &args, st.dir.path())
}

/// Value users hold: pads, accounts and open reservations (micro-units).
fn held(ledger: &Value) -> i64 {
    micros(ledger["pads"]["balance"].as_str().unwrap())
        + micros(ledger["users"]["balance"].as_str().unwrap())
        + micros(ledger["reserved"]["amount"].as_str().unwrap())
}

fn field(v: &Value, name: &str) -> i64 {
    micros(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {v}")),
    )
}

/// Split curl's `-w "\n%{http_code}"` output.
fn answer(out: &std::process::Output) -> (u16, Value) {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())),
    )
}

/// `POST /api/account/OP` on the agent with a JSON body, and extra curl arguments.
fn api_with(agent: SocketAddr, op: &str, body: &str, extra: &[&str]) -> (u16, Value) {
    let url = format!("http://{agent}/api/account/{op}");
    let mut args = vec!["-s", "-X", "POST", "-w", "\n%{http_code}"];
    if !extra.iter().any(|a| a.starts_with("Content-Type")) {
        args.extend(["-H", "Content-Type: application/json"]);
    }
    args.extend(["--data-binary", body]);
    args.extend_from_slice(extra);
    args.push(&url);
    answer(&curl(&args))
}

fn api(agent: SocketAddr, op: &str, body: &str) -> (u16, Value) {
    api_with(agent, op, body, &[])
}

/// An operation that must succeed.
fn ok(agent: SocketAddr, op: &str, body: &str) -> Value {
    let (code, v) = api(agent, op, body);
    assert_eq!(code, 200, "{op} {body}: {v}");
    v
}

/// `POST /api/pad/receive` with a file.
fn receive(agent: SocketAddr, file: &Path) -> (u16, Value) {
    let url = format!("http://{agent}/api/pad/receive");
    let data = format!("@{}", file.display());
    answer(&curl(&[
        "-s",
        "-X",
        "POST",
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        &url,
    ]))
}

fn creds(account: &str) -> String {
    format!(r#""account": "{account}", "pin": "{PIN}""#)
}

fn open_account(agent: SocketAddr) -> String {
    let v = ok(agent, "open", &format!(r#"{{"pin": "{PIN}"}}"#));
    v["account"]
        .as_str()
        .expect("an account number")
        .to_string()
}

fn show(agent: SocketAddr, account: &str) -> Value {
    ok(agent, "show", &format!("{{{}}}", creds(account)))
}

fn status(agent: SocketAddr) -> Value {
    let out = curl(&[&format!("http://{agent}/status")]);
    serde_json::from_slice(&out.stdout).expect("/status is JSON")
}

/// Wait until the agent's tunnel is in state `word`.
fn wait_tunnel(agent: SocketAddr, word: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(agent);
        if s["tunnel"] == word || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_lost_pad_cancelled_mid_download_loses_nothing_and_its_value_tops_up_another() {
    let w = World::new();
    let (a, b) = (w.mint("5.00", "8MiB"), w.mint("5.00", "96MiB"));
    let (sa, sb) = (serial_of(&a), serial_of(&b));
    let agent_a = w.agent(&a);
    let agent_b = w.agent(&b);
    let revenue_start = w.revenue();

    let account = open_account(agent_a.addr);
    assert_eq!(account.len(), 19, "{account}");
    let v = ok(
        agent_b.addr,
        "register",
        &format!("{{{}}}", creds(&account)),
    );
    assert_eq!(v["serial"], sb);
    let v = show(agent_a.addr, &account);
    let mut listed: Vec<&str> = v["pads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["serial"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut both = vec![sa.as_str(), sb.as_str()];
    both.sort();
    assert_eq!(listed, both, "{v}");
    assert_eq!(v["balance"], "0.00");
    w.assert_audit("after open and register");

    // B browses, then a slow download runs on B when A's agent cancels it.
    let (code, _) = get_via(agent_b.addr, &w.page(), &[]);
    assert_eq!(code, 200);
    let total: u64 = 64 << 20;
    let url = format!("http://{}/__origin/bytes/{total}", w.st.origin.http);
    let download = slow_download(agent_b.addr, &url, "2M");
    std::thread::sleep(Duration::from_millis(1500));
    let cancelled = ok(
        agent_a.addr,
        "cancel",
        &format!(r#"{{{}, "serial": "{sb}"}}"#, creds(&account)),
    );
    assert_eq!(cancelled["serial"], sb);
    let started = Instant::now();
    let out = download.wait_with_output().unwrap();
    let got: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        got < total && started.elapsed() < Duration::from_secs(15),
        "the download went on after the cancel: {got} of {total} bytes in {:?}",
        started.elapsed()
    );
    let s = wait_tunnel(agent_b.addr, "finished");
    assert_eq!(s["tunnel"], "finished", "{s}");
    let (code, page) = get_via(agent_b.addr, &w.page(), &[]);
    let page = String::from_utf8_lossy(&page);
    assert_eq!(code, 402, "{page}");
    assert!(page.contains("cancelled"), "{page}");
    w.assert_audit("after the cancel");

    // The account holds exactly what B had left: its value less B's charges.
    assert_eq!(w.settled(&sb), 0);
    let spent = w.revenue() - revenue_start;
    assert!(spent > 0, "B's browsing was charged");
    let v = show(agent_a.addr, &account);
    let in_account = field(&v, "balance");
    assert_eq!(in_account, 5_000_000 - spent, "{v}");
    assert!(v["pads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["serial"] == sb && p["status"] == "cancelled" && p["balance"] == "0.00"));

    // Top-up moves all of it into A.
    let before_a = w.value(&sa);
    let amount = v["balance"].as_str().unwrap();
    let v = ok(
        agent_a.addr,
        "topup",
        &format!(r#"{{{}, "amount": "{amount}"}}"#, creds(&account)),
    );
    assert_eq!(v["account_balance"], "0.00", "{v}");
    assert_eq!(w.value(&sa), before_a + in_account);
    w.assert_audit("after the top-up");
}

#[test]
fn a_handed_over_pad_moves_its_value_once_and_every_copy_is_then_worthless() {
    let w = World::new();
    let (a, c) = (w.mint("5.00", "8MiB"), w.mint("3.00", "8MiB"));
    let (sa, sc) = (serial_of(&a), serial_of(&c));
    let agent_a = w.agent(&a);
    {
        let mut agent_c = w.agent(&c);
        let (code, _) = get_via(agent_c.addr, &w.page(), &[]);
        assert_eq!(code, 200);
        agent_c.proc.terminate();
    }
    let c_value = w.settled(&sc);
    assert!(c_value < 3_000_000, "C's browsing was charged");
    let copy = w.work().join("handed-over.pad");
    std::fs::copy(&c, &copy).unwrap();
    let a_before = w.value(&sa);

    let (code, v) = receive(agent_a.addr, &copy);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["serial"], sc);
    assert_eq!(field(&v, "moved"), c_value, "{v}");
    assert_eq!(w.settled(&sc), 0);
    let a_after = w.value(&sa);
    assert_eq!(a_after, a_before + c_value);
    w.assert_audit("after the hand-over");

    // The original and the copy are refused: their next hello is on the
    // slot the proof burned, which gets no answer, so each agent gives that
    // slot up after its resend wait and is told on the next one.
    for file in [&c, &copy] {
        let agent = w.agent(file);
        // The agent waits 30 s before giving a slot up, then twice as long
        // for each further slot given up in a row: the copy finds the slot
        // after the burned one used by the original too.
        let deadline = Instant::now() + Duration::from_secs(120);
        let (code, page) = loop {
            let (code, page) = get_via(agent.addr, &w.page(), &[]);
            if code != 502 || Instant::now() > deadline {
                break (code, page);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let page = String::from_utf8_lossy(&page);
        assert_eq!(code, 402, "{}: {page}", file.display());
        assert!(page.contains("cancelled"), "{page}");
    }

    // Receiving again is refused and changes nothing.
    let ledger_before = w.ledger();
    let (code, v) = receive(agent_a.addr, &copy);
    assert!((400..500).contains(&code), "{code} {v}");
    assert!(v["error"].as_str().is_some(), "{v}");
    // Not a pad, or a pad of another gateway: named, nothing changed.
    let junk = w.work().join("holiday.jpg");
    std::fs::write(&junk, vec![0x5a; 70_000]).unwrap();
    let (code, v) = receive(agent_a.addr, &junk);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["field"], "file", "{v}");
    let elsewhere = w.work().join("elsewhere");
    gateway_init(&elsewhere);
    let foreign = mint(&elsewhere, "9.00", "2MiB", &w.work().join("foreign"));
    let (code, v) = receive(agent_a.addr, &foreign);
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not one of this gateway's"),
        "{v}"
    );
    // The pad in use cannot be received into itself.
    let (code, v) = receive(agent_a.addr, &a);
    assert_eq!(code, 400, "{v}");
    assert_eq!(w.value(&sa), a_after);
    let ledger_after = w.ledger();
    assert_eq!(held(&ledger_before), held(&ledger_after));
    assert_eq!(ledger_before["revenue"], ledger_after["revenue"]);
    w.assert_audit("after the refusals");
}

#[test]
fn five_wrong_pins_lock_the_account_even_for_the_right_pin_and_across_a_restart() {
    let mut w = World::new();
    let a = w.mint("5.00", "8MiB");
    let agent = w.agent(&a);
    let account = open_account(agent.addr);
    let wrong = format!(r#"{{"account": "{account}", "pin": "135791"}}"#);
    for left in (1..=4).rev() {
        let (code, v) = api(agent.addr, "show", &wrong);
        assert_eq!(code, 403, "{v}");
        assert_eq!(v["field"], "pin", "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(&format!("{left} more wrong")), "{msg}");
    }
    let (code, v) = api(agent.addr, "show", &wrong);
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("locked for 15 minutes"),
        "{v}"
    );
    let right = format!("{{{}}}", creds(&account));
    let (code, v) = api(agent.addr, "show", &right);
    assert_eq!(code, 429, "{v}");
    assert!(v["error"].as_str().unwrap().contains("locked"), "{v}");
    let (code, v) = api(
        agent.addr,
        "withdraw",
        &format!(r#"{{{}, "amount": "1.00"}}"#, creds(&account)),
    );
    assert_eq!(code, 429, "{v}");

    // The lock is on disk: a restarted gateway keeps it.
    w.restart(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, v) = loop {
        let (code, v) = api(agent.addr, "show", &right);
        if code != 503 && code != 502 || Instant::now() > deadline {
            break (code, v);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 429, "{v}");
    assert_eq!(w.value(&serial_of(&a)), 5_000_000);
    w.assert_audit("after the lock");
}

#[test]
fn web_pages_cannot_move_money_and_bad_input_is_named_and_changes_nothing() {
    let w = World::new();
    let a = w.mint("5.00", "8MiB");
    let sa = serial_of(&a);
    let agent = w.agent(&a);
    let account = open_account(agent.addr);
    ok(
        agent.addr,
        "withdraw",
        &format!(r#"{{{}, "amount": "1.00"}}"#, creds(&account)),
    );
    let before = w.ledger();
    let pad_before = w.value(&sa);
    let withdraw = format!(r#"{{{}, "amount": "0.50"}}"#, creds(&account));

    // Cross-site: a foreign Origin, a foreign Host (DNS rebinding), a form
    // without the page's token, the reserved authority through the proxy,
    // a body a form could send.
    let (code, v) = api_with(
        agent.addr,
        "withdraw",
        &withdraw,
        &["-H", "Origin: http://evil.example"],
    );
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("evil.example"),
        "{v}"
    );
    let (code, v) = api_with(
        agent.addr,
        "withdraw",
        &withdraw,
        &["-H", "Host: evil.example"],
    );
    assert_eq!(code, 403, "{v}");
    let form = format!("op=withdraw&account={account}&pin={PIN}&amount=0.50");
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "--data",
        &form,
        &format!("http://{}/account", agent.addr),
    ]);
    assert_eq!(answer(&out).0, 403, "a form without the token");
    let proxy = format!("http://{}", agent.addr);
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "-x",
        &proxy,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &withdraw,
        "http://account.padnet.invalid/v1/withdraw",
    ]);
    assert_eq!(
        answer(&out).0,
        403,
        "the reserved authority through the proxy"
    );
    let (code, v) = api_with(
        agent.addr,
        "withdraw",
        &withdraw,
        &["-H", "Content-Type: text/plain"],
    );
    assert_eq!(code, 415, "{v}");
    let (code, v) = api_with(
        agent.addr,
        "withdraw",
        &withdraw,
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Type: text/plain",
        ],
    );
    assert_eq!(code, 415, "two Content-Types: {v}");

    // Bad input: each names its field.
    let c = creds(&account);
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("open", r#"{"pin": "12a456"}"#.into(), 400, "pin", "digits"),
        (
            "open",
            r#"{"pin": "123"}"#.into(),
            400,
            "pin",
            "6 to 20 digits",
        ),
        (
            "withdraw",
            format!(r#"{{{c}, "amount": "0.1234567"}}"#),
            400,
            "amount",
            "decimal",
        ),
        (
            "withdraw",
            format!(r#"{{{c}, "amount": "0"}}"#),
            400,
            "amount",
            "more than zero",
        ),
        (
            "topup",
            format!(r#"{{{c}, "amount": "-1.00"}}"#),
            400,
            "amount",
            "",
        ),
        (
            "withdraw",
            format!(r#"{{{c}, "amount": "900.00"}}"#),
            409,
            "",
            "less than",
        ),
        (
            "topup",
            format!(r#"{{{c}, "amount": "2.00"}}"#),
            409,
            "",
            "less than",
        ),
        (
            "show",
            format!(r#"{{"account": "1111-2222-3333-4444", "pin": "{PIN}"}}"#),
            404,
            "",
            "no account 1111-2222-3333-4444",
        ),
        (
            "show",
            format!(r#"{{"account": "12345", "pin": "{PIN}"}}"#),
            400,
            "account",
            "16 digits",
        ),
        (
            "cancel",
            format!(r#"{{{c}, "serial": "xyz"}}"#),
            400,
            "serial",
            "not a pad serial",
        ),
        (
            "cancel",
            format!(r#"{{{c}, "serial": "0000-0000-0000-0000"}}"#),
            409,
            "",
            "not registered",
        ),
        (
            "cancel",
            format!(r#"{{{c}, "serial": "{sa}"}}"#),
            409,
            "",
            "in use",
        ),
        (
            "show",
            format!(r#"{{{c}, "colour": "red"}}"#),
            400,
            "colour",
            "unknown field",
        ),
        ("show", "[1, 2]".into(), 400, "body", "object"),
        ("launch", format!("{{{c}}}"), 404, "", "not an operation"),
    ];
    for (op, body, want, field_name, words) in cases {
        let (code, v) = api(agent.addr, op, &body);
        assert_eq!(code, want, "{op} {body}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{op} {body}: no error message in {v}");
        assert!(msg.contains(words), "{op} {body}: {msg:?} lacks {words:?}");
        if !field_name.is_empty() {
            assert_eq!(v["field"], field_name, "{op} {body}: {v}");
        }
    }
    let after = w.ledger();
    assert_eq!(held(&before), held(&after));
    assert_eq!(before["users"], after["users"]);
    assert_eq!(w.value(&sa), pad_before);
    assert_eq!(show(agent.addr, &account)["balance"], "1.00");
    w.assert_audit("after the refusals");
}

#[test]
fn kill_9_during_money_moves_conserves_value() {
    let mut w = World::new();
    let a = w.mint("50.00", "8MiB");
    let agent = w.agent(&a);
    let account = open_account(agent.addr);
    let c = creds(&account);
    let first = w.ledger();
    let revenue = first["revenue"].clone();
    let mut minted = 0i64;
    let seed = std::process::id() as u64;
    for round in 0..10u64 {
        // A pad to hand over and one registered to the account to cancel.
        let given = w.mint("1.00", "2MiB");
        let lost = w.mint("2.00", "2MiB");
        minted += 3_000_000;
        {
            let lost_agent = w.agent(&lost);
            ok(lost_agent.addr, "register", &format!("{{{c}}}"));
        }
        let lost_serial = serial_of(&lost);
        let ops = std::thread::spawn({
            let (agent, c, given) = (agent.addr, c.clone(), given.clone());
            move || {
                let mut codes = Vec::new();
                for _ in 0..3 {
                    codes.push(api(agent, "topup", &format!(r#"{{{c}, "amount": "0.01"}}"#)).0);
                    codes.push(api(agent, "withdraw", &format!(r#"{{{c}, "amount": "0.02"}}"#)).0);
                }
                codes.push(receive(agent, &given).0);
                codes.push(
                    api(
                        agent,
                        "cancel",
                        &format!(r#"{{{c}, "serial": "{lost_serial}"}}"#),
                    )
                    .0,
                );
                codes
            }
        });
        // A different moment each round, within the operations' run.
        let ms = (seed.wrapping_mul(2654435761).wrapping_add(round * 7919)) % 400;
        std::thread::sleep(Duration::from_millis(20 + ms));
        w.restart(true);
        let codes = ops.join().unwrap();
        assert!(
            codes.iter().all(|c| *c < 500 || *c == 502 || *c == 503),
            "round {round}: {codes:?}"
        );
        w.assert_audit(&format!("after kill -9 number {}", round + 1));
        let now = w.ledger();
        assert_eq!(
            held(&now),
            held(&first) + minted,
            "round {round}: value held is what it was plus what was minted: {now}"
        );
        assert_eq!(now["revenue"], revenue, "account operations are free");
    }
    // The account still works after ten crashes.
    let v = show(agent.addr, &account);
    assert!(v["pads"].as_array().unwrap().len() >= 2, "{v}");
}

#[test]
fn one_pad_copied_onto_two_devices_works_on_both_with_one_balance() {
    let journals = tempfile::tempdir().unwrap();
    let journal = |n: &str| journals.path().join(format!("{n}.journal"));
    let gj = journal("gateway").to_string_lossy().to_string();
    let w = World::with(&["--lease-journal", &gj]);
    let pad = w.mint("5.00", "32MiB");
    let serial = serial_of(&pad);
    let revenue_start = w.revenue();
    let run = |file: &Path, name: &str| {
        let j = journal(name).to_string_lossy().to_string();
        start_agent(
            file,
            w.gateway.addr,
            &["--timeout", "1", "--lease-journal", &j],
            w.work(),
        )
    };
    let laptop = run(&pad, "laptop");
    let (code, _) = get_via(laptop.addr, &w.page(), &[]);
    assert_eq!(code, 200);
    let phone_copy = w.work().join("phone.pad");
    std::fs::copy(&pad, &phone_copy).unwrap();
    let phone = run(&phone_copy, "phone");
    let url = format!("http://{}/__origin/bytes/{}", w.st.origin.http, 1 << 20);
    let mut devices = Vec::new();
    for agent in [laptop.addr, phone.addr] {
        let url = url.clone();
        devices.push(std::thread::spawn(move || {
            (0..5)
                .map(|_| get_via(agent, &url, &[]))
                .map(|(code, body)| (code, body.len()))
                .collect::<Vec<_>>()
        }));
    }
    for d in devices {
        for (code, len) in d.join().unwrap() {
            assert_eq!((code, len), (200, 1 << 20));
        }
    }
    // One balance: once both devices stop and settle, the pad paid once
    // for each of the ten downloads and the first page.
    drop((laptop, phone));
    let spent = 5_000_000 - w.settled(&serial);
    assert_eq!(
        w.revenue() - revenue_start,
        spent,
        "one balance paid for both"
    );
    let one = expected_charge(1 << 20, 10_000, 1_000);
    assert!(
        spent >= 10 * one && spent < 11 * one,
        "spent {spent} for ten downloads of {one} each"
    );
    // No key byte or ticket slot used twice, across both devices.
    let both = journal("devices");
    let mut text = std::fs::read_to_string(journal("laptop")).unwrap();
    text.push_str(&std::fs::read_to_string(journal("phone")).unwrap());
    std::fs::write(&both, text).unwrap();
    let (gateway_leases, agent_leases) = assert_no_reuse(&journal("gateway"), &both);
    assert!(gateway_leases > 0 && agent_leases > 0);
    w.assert_audit("after two devices");
}
