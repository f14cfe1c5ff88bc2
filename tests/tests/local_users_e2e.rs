//! End-to-end: other users of the same machine. Under a umask of 022 every
//! file holding keys or money is still its owner's alone, the agent warns
//! about a pad others can read, and `--proxy-auth` keeps them from spending
//! the pad through the agent. Real processes, real curl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use padnet_tests::*;

/// Run a padnet binary under `umask 022`.
fn under_umask_022(name: &str, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(bin(name))
        .args(args)
        .output()
        .expect("sh")
}

/// Every file and directory below `dir` that others may read or enter.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.permissions().mode() & 0o077 != 0 {
                found.push(format!(
                    "{:o} {}",
                    m.permissions().mode() & 0o777,
                    p.display()
                ));
            }
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    found
}

#[test]
fn files_holding_keys_or_money_are_their_owners_alone_under_umask_022() {
    let stage = stage("<html>local</html>\n");
    let state = stage.dir.path().join("state022");
    let s = state.to_str().unwrap();
    let out = under_umask_022(
        "padnet-gateway",
        &["init", "--state", s, "--listen", "127.0.0.1:7443"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = stage.dir.path().join("user");
    let out = under_umask_022(
        "padnet-gateway",
        &[
            "mint",
            "--state",
            s,
            "--value",
            "1.00",
            "--size",
            "1MiB",
            "--out",
            user.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pad = std::path::PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("the pad's path")
            .trim(),
    );
    let gateway = start_gateway(
        &state,
        "127.0.0.1:0",
        &["--allow-private-upstreams"],
        stage.dir.path(),
    );
    let agent = start_agent(&pad, gateway.addr, &[], stage.dir.path());
    let (code, _) = get_via(agent.addr, &format!("http://{}/", stage.origin.http), &[]);
    assert_eq!(code, 200);
    assert!(tunnel_state_exists(&pad), "the agent wrote its state");
    let open: Vec<String> = open_to_others(&state)
        .into_iter()
        .chain(open_to_others(&user))
        .collect();
    assert!(open.is_empty(), "readable by other users: {open:#?}");
    let mode = std::fs::metadata(&user).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the directory mint made for the user's pads");
}

fn tunnel_state_exists(pad: &Path) -> bool {
    let mut s = pad.as_os_str().to_owned();
    s.push(".state");
    Path::new(&s).exists()
}

#[test]
fn a_pad_others_can_read_is_named_at_start_with_the_fix() {
    let stage = stage("<html>local</html>\n");
    let pad = mint(&stage.state, "1.00", "1MiB", &stage.dir.path().join("user"));
    std::fs::set_permissions(&pad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let gateway = start_gateway(&stage.state, "127.0.0.1:0", &[], stage.dir.path());
    let agent = start_agent(&pad, gateway.addr, &[], stage.dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut log = agent.proc.log_tail();
    while !log.contains("chmod 600") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = agent.proc.log_tail();
    }
    assert!(
        log.contains("other users can read this file (mode 644)") && log.contains("chmod 600"),
        "{log}"
    );
}

#[test]
fn with_proxy_auth_only_the_files_credentials_spend_the_pad() {
    let stage = stage("<html>local</html>\n");
    let pad = mint(&stage.state, "1.00", "1MiB", &stage.dir.path().join("user"));
    let gateway = start_gateway(
        &stage.state,
        "127.0.0.1:0",
        &["--allow-private-upstreams"],
        stage.dir.path(),
    );
    let creds = stage.dir.path().join("proxy-auth");
    std::fs::write(&creds, "alice:correct horse\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(bin("padnet-agent"))
        .args([
            "--pad",
            pad.to_str().unwrap(),
            "--proxy-auth",
            creds.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = start_agent(
        &pad,
        gateway.addr,
        &["--proxy-auth", creds.to_str().unwrap()],
        stage.dir.path(),
    );
    let page = format!("http://{}/", stage.origin.http);
    let proxy = agent.addr.to_string();
    let code = |args: &[&str]| -> String {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&curl(&a).stdout).to_string()
    };
    assert_eq!(code(&["-x", &proxy, &page]), "407", "no credentials");
    assert_eq!(
        code(&["-x", &proxy, "--proxy-user", "alice:wrong", &page]),
        "407"
    );
    assert_eq!(
        code(&["-x", &proxy, "--proxy-user", "alice:correct horse", &page]),
        "200"
    );
    let status = format!("http://{proxy}/status");
    assert_eq!(code(&[&status]), "401", "the agent's own pages too");
    assert_eq!(code(&["-u", "alice:correct horse", &status]), "200");
    let out = curl(&["-sSI", "-x", &proxy, &page]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"padnet agent\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
