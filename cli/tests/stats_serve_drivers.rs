//! `accrue serve --stats-driver <url>` on every server driver: the real binary starts, takes
//! events over HTTP, and its metrics land in the named database (read back here through a
//! driver of our own, after a graceful stop).
#![cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "mongodb",
    unix
))]

#[path = "../../tests/collector_support/mod.rs"]
mod collector_support;
#[path = "../../tests/drivers_common/mod.rs"]
mod drivers_common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use accrue::metrics::Buffering;
use accrue::metrics::{Driver, MetricsStore, Value};
use accrue::time::{Blanks, Granularity, Unit};
use collector_support::Client;
use drivers_common::{service_url, unique};

/// Starts `accrue serve` with `--stats-driver url`; returns it with its address.
fn spawn_server(db: &std::path::Path, url: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args([
            "serve", "--port", "0", "--log", "info", "--flush", "100ms", "--db",
        ])
        .arg(db)
        .args(["--stats-driver", url, "--granularities", "1h,1d"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start accrue serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            assert!(!line.contains("hunter2"), "a password was logged: {line}");
            if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                let _ = tx.send(Ok(addr));
                sent = true;
            } else if !sent && line.to_lowercase().contains("error") {
                let _ = tx.send(Err(line));
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not log its address")
        .unwrap_or_else(|e| panic!("the server failed to start: {e}"));
    (child, addr.parse().unwrap())
}

/// Posts events, stops the server gracefully, and checks the metrics through `reader`.
async fn serve_writes_metrics(url: &str, reader: Arc<dyn Driver>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server(&dir.path().join("events.db"), url);
    let client = Client { addr };
    let mut posted = 0;
    for batch in 0..5 {
        let body = format!(
            "[{}]",
            (0..20)
                .map(|i| format!(
                    r#"{{"key":"serve","timestamp":"2025-04-01T10:{:02}:00Z","data":{{"ms":{i}}}}}"#,
                    (batch * 7 + i) % 60
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let r = client
            .try_request("POST", "/events", body.into(), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        posted += 20;
    }
    // SIGTERM: a graceful stop flushes the metrics pipeline into the driver.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "accrue serve exited with {exit}");
    let stats = MetricsStore::builder(reader)
        .time_zone("UTC")
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    let at: jiff::Timestamp = "2025-04-01T10:00:00Z".parse().unwrap();
    let v = stats
        .values("serve", at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    let got = Value::Map(v.values[0].clone()).to_json();
    assert_eq!(got["count"], serde_json::json!(posted), "{got}");
    assert_eq!(
        got["data"]["ms"],
        serde_json::json!(5 * (0..20).sum::<i64>()),
        "{got}"
    );
}

fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres() {
    let Some(url) = service_url("ACCRUE_PG_URL") else {
        return;
    };
    let table = unique("accrue_serve");
    let url = with_option(&url, &format!("table={table}&mode=separated"));
    let reader = accrue::metrics::connect_driver(&url).await.unwrap();
    serve_writes_metrics(&url, reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_mysql() {
    let Some(url) = service_url("ACCRUE_MYSQL_URL") else {
        return;
    };
    let table = unique("accrue_serve");
    let url = with_option(&url, &format!("table={table}"));
    let reader = accrue::metrics::connect_driver(&url).await.unwrap();
    serve_writes_metrics(&url, reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_redis() {
    let Some(url) = service_url("ACCRUE_REDIS_URL") else {
        return;
    };
    let prefix = unique("accrue_t");
    let url = with_option(&url, &format!("prefix={prefix}"));
    let reader = accrue::metrics::connect_driver(&url).await.unwrap();
    serve_writes_metrics(&url, reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_mongodb() {
    let Some(url) = service_url("ACCRUE_MONGO_URL") else {
        return;
    };
    let base = url.split('?').next().unwrap().trim_end_matches('/');
    let db = unique("accrue_t");
    let url = format!("{base}/{db}?collection=serve&mode=partial");
    let reader = accrue::metrics::connect_driver(&url).await.unwrap();
    serve_writes_metrics(&url, reader).await;
    let client = mongodb::Client::with_uri_str(base).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

/// An unreachable server fails start-up with exit code 1 and does not print the password.
#[test]
fn an_unreachable_metrics_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args(["serve", "--port", "0", "--db"])
        .arg(dir.path().join("e.db"))
        .args(["--stats-driver", "postgres://user:hunter2@127.0.0.1:1/test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics store"), "{err}");
    assert!(!err.contains("hunter2"), "a password was printed: {err}");
}
