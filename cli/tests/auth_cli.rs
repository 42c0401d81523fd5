//! `accrue keys` and the admin key of `accrue serve` through the real binary: the key
//! comes from the environment or a file, never an argument; keys are created, listed and
//! revoked at runtime; an open server says so loudly; no log line carries a key.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

const ADMIN: &str = "cli-admin-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `accrue serve` on a free port with `env`, logging at `trace`, and collects its log.
fn serve(db: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accrue"));
    cmd.args(["serve", "--port", "0", "--log", "trace", "--db"])
        .arg(db)
        .args(args)
        .env_remove("ACCRUE_ADMIN_KEY")
        .env_remove("ACCRUE_ADMIN_KEY_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start accrue serve");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_owned());
                sent = true;
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not log its address");
    Server {
        child,
        addr: addr.parse().unwrap(),
        log,
    }
}

fn keys(server: &Server, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accrue"));
    cmd.arg("keys")
        .args(args)
        .args(["--server", &format!("http://{}", server.addr)])
        .env_remove("ACCRUE_ADMIN_KEY")
        .env_remove("ACCRUE_ADMIN_KEY_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `GET path` with a bearer token; returns the status.
fn status(addr: SocketAddr, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out[9..12].parse().unwrap()
}

#[test]
fn keys_are_managed_at_runtime_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ACCRUE_ADMIN_KEY", ADMIN)];
    let server = serve(&dir.path().join("e.db"), &env, &[]);
    assert!(
        !server.log.lock().unwrap().contains("NO API KEYS"),
        "a server with an admin key does not warn"
    );

    let created = json(&keys(
        &server,
        &env,
        &[
            "create",
            "--scope",
            "read,write",
            "--prefix",
            "app/",
            "--label",
            "ci",
        ],
    ));
    let token = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], serde_json::json!(["read", "write"]));
    assert_eq!(status(server.addr, "/view", &token), 200);
    assert_eq!(status(server.addr, "/v1/keys", &token), 403);

    let listed = json(&keys(&server, &env, &["list"]));
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&token));

    let out = keys(&server, &env, &["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(server.addr, "/view", &token), 401, "refused at once");
    let out = keys(&server, &env, &["revoke", &id]);
    assert!(!out.status.success(), "a second revoke is a 404");

    // The admin key from a file works the same; a wrong admin key is refused by the server.
    let file = dir.path().join("admin.key");
    std::fs::write(&file, format!("{ADMIN}\n")).unwrap();
    let file_env = [("ACCRUE_ADMIN_KEY_FILE", file.to_str().unwrap())];
    assert!(keys(&server, &file_env, &["list"]).status.success());
    let wrong = [(
        "ACCRUE_ADMIN_KEY",
        "wrong-admin-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    )];
    let out = keys(&server, &wrong, &["list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // Without any admin key the CLI says what it needs.
    let out = keys(&server, &[], &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACCRUE_ADMIN_KEY"));

    // Nothing the server logged — at trace level — carries a key.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("API key created") && log.contains("API key revoked"),
        "{log}"
    );
    for secret in [ADMIN, &token, token.rsplit('_').next().unwrap()] {
        assert!(!log.contains(secret), "a key is in the log:\n{log}");
    }
}

#[test]
fn the_admin_key_is_never_an_argument_and_must_be_strong() {
    let out = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["serve", "--admin-key", ADMIN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "there is no --admin-key flag");
    let help = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--admin-key-file") && help.contains("ACCRUE_ADMIN_KEY"));

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["serve", "--port", "0", "--db"])
        .arg(dir.path().join("e.db"))
        .env("ACCRUE_ADMIN_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
    assert!(
        !err.contains("short\""),
        "the key itself is not echoed: {err}"
    );
    // Both sources at once are ambiguous.
    let file = dir.path().join("k");
    std::fs::write(&file, ADMIN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["serve", "--port", "0", "--db"])
        .arg(dir.path().join("e.db"))
        .arg("--admin-key-file")
        .arg(&file)
        .env("ACCRUE_ADMIN_KEY", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let generated = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["keys", "generate"])
        .output()
        .unwrap();
    let key = String::from_utf8(generated.stdout).unwrap();
    assert!(
        key.trim().len() >= 64 && key.starts_with("accrue_admin_"),
        "{key}"
    );
}

#[test]
fn an_open_server_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("e.db"), &[], &[]);
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("WARN") && log.contains("NO API KEYS CONFIGURED"),
        "{log}"
    );
}
