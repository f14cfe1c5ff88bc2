//! A pad split among three gateways on one PostgreSQL ledger: minted with a
//! share per gateway (`mint --twins-out`, `pad install` on each), no key
//! byte of one share in another gateway's twin, an agent failing over from
//! a killed gateway to the next with its balance exact, two devices with
//! copies of one pad spending it on two gateways at once down to zero, and
//! an employer's policy, stored and updated on one gateway, applied by another.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use padnet_tests::cluster::*;
use padnet_tests::*;
use serde_json::Value;
use tunnel::pad::{PadHeader, HEADER_LEN};

/// Three gateways on one ledger, serving.
struct Three {
    c: Cluster,
    states: Vec<PathBuf>,
    gateways: Vec<Gateway>,
}

impl Three {
    fn start() -> Three {
        let c = Cluster::new();
        let states: Vec<PathBuf> = ["gw-a", "gw-b", "gw-c"].iter().map(|n| c.init(n)).collect();
        let gateways = states.iter().map(|s| c.serve(s, "127.0.0.1:0")).collect();
        Three {
            c,
            states,
            gateways,
        }
    }

    fn addrs(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.addr.to_string()).collect()
    }

    /// Mint a pad split among the three (on gateway A, while all serve) and
    /// install each twin on its gateway: the user's copy.
    fn mint_split(&self, value: &str, size: &str) -> PathBuf {
        self.mint_split_with(value, size, &[])
    }

    fn mint_split_with(&self, value: &str, size: &str, extra: &[&str]) -> PathBuf {
        let work = self.c.work();
        let (out, twins) = (work.join("pads"), work.join("twins"));
        let st = self.states[0].to_string_lossy().to_string();
        let (o, t) = (out.to_string_lossy(), twins.to_string_lossy());
        let mut args = vec![
            "mint",
            "--state",
            &st,
            "--value",
            value,
            "--size",
            size,
            "--out",
            &o,
            "--twins-out",
            &t,
        ];
        let addrs = self.addrs();
        for a in &addrs {
            args.extend(["--gateway", a.as_str()]);
        }
        args.extend(extra);
        let m = gateway_cmd(&args);
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
        let user = PathBuf::from(String::from_utf8_lossy(&m.stdout).trim().to_string());
        let serial = serial_of(&user);
        for (k, state) in self.states.iter().enumerate() {
            let twin = twins.join(format!("{serial}.{k}.pad"));
            let s = state.to_string_lossy().to_string();
            let o = gateway_cmd(&["pad", "install", "--state", &s, &twin.to_string_lossy()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(
                !twin.exists(),
                "install moves the twin: no second copy is left"
            );
        }
        user
    }

    fn twin(&self, k: usize, serial: &str) -> PathBuf {
        self.states[k].join("pads").join(format!("{serial}.pad"))
    }
}

/// An agent on `pad`, its gateways from the pad or from `gateways`.
fn agent(pad: &Path, gateways: &[String], work: &Path) -> Agent {
    let mut cmd = Command::new(bin("padnet-agent"));
    cmd.arg("--pad")
        .arg(pad)
        .args(["--listen", "127.0.0.1:0", "--timeout", "1"]);
    for g in gateways {
        cmd.args(["--gateway", g]);
    }
    start_agent_cmd(cmd, work)
}

fn status(agent: SocketAddr) -> Value {
    let out = curl(&[&format!("http://{agent}/status")]);
    serde_json::from_slice(&out.stdout).expect("/status is JSON")
}

/// Every byte of share `j` in each other gateway's twin is zero, and each
/// twin's own share is the user's copy's (while neither has used any).
fn assert_shares_apart(user: &Path, twins: &[PathBuf]) {
    let u = std::fs::read(user).unwrap();
    let h = PadHeader::decode(&u).unwrap();
    let files: Vec<Vec<u8>> = twins.iter().map(|t| std::fs::read(t).unwrap()).collect();
    for (k, twin) in files.iter().enumerate() {
        assert_eq!(twin.len(), u.len(), "twin {k} has the pad's length");
        for j in 0..h.share_count() {
            for r in h.share(j).unwrap().file_ranges(&h) {
                let (a, b) = (r.start as usize, r.end as usize);
                if j == k {
                    assert!(twin[a..b] == u[a..b], "twin {k} holds its own share");
                } else {
                    let stray = twin[a..b].iter().position(|&x| x != 0);
                    assert!(
                        stray.is_none(),
                        "twin {k} holds a byte of share {j} at {stray:?}"
                    );
                }
            }
        }
        // The rest past the header is the shares: nothing else holds keys.
        assert!(h.share_count() == 3 && HEADER_LEN < h.data_offset());
    }
}

#[test]
fn an_agent_fails_over_from_a_killed_gateway_and_its_balance_stays_exact() {
    let mut three = Three::start();
    let user = three.mint_split("5.00", "24MiB");
    let serial = serial_of(&user);
    let twins: Vec<PathBuf> = (0..3).map(|k| three.twin(k, &serial)).collect();
    assert_shares_apart(&user, &twins);
    let shown: Vec<Value> = three.states.iter().map(|s| pad_show(s, &serial)).collect();
    for (k, v) in shown.iter().enumerate() {
        assert_eq!(v["share"], format!("{} of 3", k + 1), "{v}");
        assert_eq!(v["key_bytes_total"], 8 << 20, "{v}");
        assert_eq!(v["balance"], "5.00");
    }
    let tickets_b = shown[1]["tickets_left"].as_u64().unwrap();

    // The pad names the three; the agent takes the first.
    let a = agent(&user, &[], three.c.work());
    let page = three.c.page();
    const N: usize = 5;
    for _ in 0..N {
        assert_eq!(get_via(a.addr, &page, &[]).0, 200);
    }
    let before = wait_settled(&three.states[1], &serial);
    let paid_1 = revenue(&three.states[1]);
    // Seen from B: A's tunnel's float is a reservation in the one book.
    let in_book = field(&before, "balance") + field(&before, "reserved");
    assert!(paid_1 > 0 && in_book + paid_1 == 5_000_000, "{before}");
    let on_a = pad_show(&three.states[0], &serial);
    assert!(
        on_a["key_bytes_left"].as_u64() < Some(8 << 20),
        "A served: {on_a}"
    );
    assert_eq!(
        pad_show(&three.states[1], &serial)["tickets_left"],
        tickets_b
    );

    // A dies; the agent goes on through B, with B's share.
    three.gateways[0].proc.kill9();
    let killed = Instant::now();
    let mut served_on_b = 0;
    while served_on_b == 0 {
        if get_via(a.addr, &page, &[]).0 == 200 {
            served_on_b += 1;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "no failover to B"
        );
    }
    eprintln!(
        "failed over to gateway B {:?} after A was killed",
        killed.elapsed()
    );
    for _ in 1..N {
        assert_eq!(get_via(a.addr, &page, &[]).0, 200);
        served_on_b += 1;
    }
    let on_b = pad_show(&three.states[1], &serial);
    assert!(
        on_b["tickets_left"].as_u64() < Some(tickets_b),
        "B opened the tunnel: {on_b}"
    );
    assert!(on_b["key_bytes_left"].as_u64() < Some(8 << 20));
    assert_eq!(
        pad_show(&three.states[2], &serial)["key_bytes_left"],
        8 << 20,
        "C unused"
    );

    // Once A's lease runs out its float is back; every charge is exact:
    // each page cost on B what it cost on A.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let v = wait_settled(&three.states[1], &serial);
        if v["reserved"] == "0.00" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "A's float was never released: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (balance_2, paid_2) = (field(&after, "balance"), revenue(&three.states[1]));
    assert_eq!(balance_2 + paid_2, 5_000_000, "no value created or lost");
    let per_page = paid_1 / N as i64;
    assert_eq!(paid_1, per_page * N as i64);
    assert_eq!(
        paid_2 - paid_1,
        per_page * served_on_b,
        "B charged exactly the pages it served, at A's price"
    );
    // The agent's balance is the book's: one more page, then compare.
    assert_eq!(get_via(a.addr, &page, &[]).0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let book = field(&wait_settled(&three.states[1], &serial), "balance");
        let s = status(a.addr);
        if field(&s, "balance") == book {
            assert_eq!(book, balance_2 - per_page);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent shows {s}, the book {book}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_audit(&three.states[1], "after the failover");
}

#[test]
fn two_devices_spend_one_pad_on_two_gateways_down_to_zero() {
    let three = Three::start();
    // Each tunnel's float is about 39 MiB's worth (0.39): a pad worth three
    // floats is spent by both devices at once, and its shares (96 MiB each)
    // outlast its value.
    let user = three.mint_split("1.20", "288MiB");
    let serial = serial_of(&user);
    // The second device holds a copy of the pad as bought (before any use).
    let second = three.c.work().join("device-2.pad");
    std::fs::copy(&user, &second).unwrap();
    let addrs = three.addrs();
    let one = agent(&user, &addrs[0..1], three.c.work());
    let two = agent(&second, &addrs[1..2], three.c.work());

    let url = three.c.bytes_url(2 << 20);
    let spend = |proxy: SocketAddr| {
        let url = url.clone();
        std::thread::spawn(move || {
            let (mut ok, mut bytes) = (0u64, 0u64);
            for _ in 0..200 {
                let (code, body) = get_via(proxy, &url, &[]);
                match code {
                    402 => return (ok, bytes),
                    200 => {
                        ok += 1;
                        bytes += body.len() as u64;
                    }
                    other => panic!("{other}: {}", String::from_utf8_lossy(&body)),
                }
            }
            panic!("the pad never ran out");
        })
    };
    let (t1, t2) = (spend(one.addr), spend(two.addr));
    // While both spend, the balance never goes below zero.
    let mut lowest = i64::MAX;
    while !(t1.is_finished() && t2.is_finished()) {
        for state in &three.states[0..2] {
            let v = pad_show(state, &serial);
            let b = v["balance"].as_str().unwrap();
            assert!(!b.starts_with('-'), "balance below zero: {v}");
            lowest = lowest.min(micros(b));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ((ok1, bytes1), (ok2, bytes2)) = (t1.join().unwrap(), t2.join().unwrap());
    assert!(
        ok1 > 0 && ok2 > 0,
        "both devices were served: {ok1} and {ok2} downloads"
    );
    let end = wait_settled(&three.states[2], &serial);
    let (balance, paid) = (field(&end, "balance"), revenue(&three.states[2]));
    eprintln!(
        "device 1: {ok1} downloads ({bytes1} B) via A, device 2: {ok2} ({bytes2} B) via B; \
         paid {paid}, left {balance}, lowest seen {lowest}"
    );
    // Spent to zero: what is left buys no further download.
    assert!((0..21_000).contains(&balance), "left {balance}");
    assert_eq!(
        balance + paid,
        1_200_000,
        "the total charged is what the pad lost"
    );
    // What was served is at most what was paid for, and each device's
    // honest meter found no charge above what it counted.
    let served = (bytes1 + bytes2) as i64 * 10_000 / (1 << 20);
    assert!(paid >= served, "paid {paid} for {served} worth served");
    for agent in [&one, &two] {
        let m = &status(agent.addr)["meter"];
        assert!(m["checked"].as_u64() > Some(0), "{m}");
        assert_eq!(m["over"], 0, "a charge above what was served: {m}");
    }
    assert_audit(&three.states[2], "after two devices spent the pad");
    // Neither device used the other's share: each gateway's share was used
    // by its own device only, and the third is untouched.
    assert_eq!(
        pad_show(&three.states[2], &serial)["key_bytes_left"],
        96 << 20
    );
}

#[test]
fn a_policy_stored_and_updated_on_one_gateway_is_applied_by_another() {
    let three = Three::start();
    let work = three.c.work();
    let v1 = work.join("staff-v1.toml");
    let port = three.c.origin.http.port();
    let policy =
        |allow: &str| format!("name = \"Staff\"\n[sites]\nallow = [{allow}]\nports = [{port}]\n");
    std::fs::write(&v1, policy("\"127.0.0.1\", \"localhost\"")).unwrap();
    // Minted on A with the policy; the device is kept on C, which never saw the file.
    let user = three.mint_split_with("5.00", "24MiB", &["--policy", &v1.to_string_lossy()]);
    let addrs = three.addrs();
    let a = agent(&user, &addrs[2..3], work);
    let page = three.c.page();
    assert_eq!(
        get_via(a.addr, &page, &[]).0,
        200,
        "C applies the policy minted on A"
    );

    // The employer narrows it on A: C denies the site within moments.
    let v2 = work.join("staff-v2.toml");
    std::fs::write(&v2, policy("\"localhost\"")).unwrap();
    let st = three.states[0].to_string_lossy().to_string();
    let o = gateway_cmd(&["policy", "update", "--state", &st, &v2.to_string_lossy()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("every gateway"), "{said}");
    let updated = Instant::now();
    let denied_after = loop {
        let (code, body) = get_via(a.addr, &page, &["-i"]);
        if code == 403 {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("policy-denied"), "{text}");
            break updated.elapsed();
        }
        assert_eq!(code, 200);
        assert!(
            updated.elapsed() < Duration::from_secs(5),
            "C never applied the update"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("gateway C applied the policy updated on A {denied_after:?} later");
    // B, which served none of it, holds the update in its own store too
    // once it has caught up (every 250 ms).
    let st_b = three.states[1].to_string_lossy().to_string();
    loop {
        let o = gateway_cmd(&["policy", "show", "--state", &st_b, &serial_of(&user)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let shown = String::from_utf8_lossy(&o.stdout).to_string();
        if shown.contains("updated to") {
            break;
        }
        assert!(
            updated.elapsed() < Duration::from_secs(5),
            "B never adopted it: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
