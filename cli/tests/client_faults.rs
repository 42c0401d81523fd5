//! The client under faults, against a real collector: a server that answers 503 for a while,
//! answers lost after the server stored the batch, and server restarts mid-stream (graceful,
//! and `kill -9` of the real binary). Totals must be exact, without duplicates.

#![cfg(unix)]

#[path = "../../tests/client_support/mod.rs"]
mod client_support;
#[path = "../../tests/collector_support/mod.rs"]
mod collector_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accrue::client::{Client, Event, Retry};
use client_support::{FaultProxy, Mode, seq_report};
use collector_support::TestServer;

/// Emits `n` events `{"seq": i}` at about `per_ms` events per millisecond from a thread.
fn emit_stream(client: Client, n: u64, per_ms: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 0..n {
            client.emit(Event::new("stream").with("seq", i)).unwrap();
            if i % per_ms == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_503_is_backed_off_then_everything_arrives() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(Some(server.addr), Mode::Status(503, Some(1))).await;
    let client = Client::builder(proxy.url())
        .batch_size(200)
        .max_in_flight(2)
        .flush_interval(Duration::from_millis(20))
        .retry(
            Retry::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    const N: u64 = 3_000;
    let started = Instant::now();
    emit_stream(client.clone(), N, 10).join().unwrap();
    // 503 for 3 s: with Retry-After 1 s and two requests in flight, at most ~2 per second
    // each (plus the first attempts) — a client without backoff would send thousands.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    let during = proxy.requests();
    assert!(
        (2..=12).contains(&during),
        "{during} requests during 3 s of 503s"
    );
    assert_eq!(server.total().await, 0);
    proxy.set(Mode::Forward);
    tokio::time::timeout(Duration::from_secs(20), client.flush())
        .await
        .expect("delivered after the server recovered")
        .unwrap();
    let events = server.all_events().await;
    let (missing, dup) = seq_report(&events, N);
    assert!(missing.is_empty() && dup.is_empty(), "{missing:?} {dup:?}");
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.dropped, stats.failed), (N, 0, 0));
    assert!(stats.retries >= 2, "{stats:?}");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_and_the_server_drops_the_duplicates() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(Some(server.addr), Mode::LoseAnswer).await;
    let client = Client::builder(proxy.url())
        .batch_size(500)
        .flush_interval(Duration::from_secs(3600))
        .retry(Retry::default().initial(Duration::from_millis(20)))
        .build()
        .unwrap();
    for i in 0..1_000u64 {
        client.emit(Event::new("dup").with("seq", i)).unwrap();
    }
    let flushing = tokio::spawn({
        let client = client.clone();
        async move { client.flush().await }
    });
    // Let the server store both batches without the client hearing about it, then heal.
    while proxy.requests() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.set(Mode::Forward);
    flushing.await.unwrap().unwrap();
    let events = server.all_events().await;
    let (missing, dup) = seq_report(&events, 1_000);
    assert!(missing.is_empty() && dup.is_empty(), "{missing:?} {dup:?}");
    let stats = client.stats();
    assert_eq!(stats.delivered + stats.duplicates, 1_000, "{stats:?}");
    assert!(
        stats.duplicates >= 500,
        "the retried batches were seen twice: {stats:?}"
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_across_a_graceful_server_restart_mid_stream() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let client = Client::builder(format!("http://{}", server.addr))
        .batch_size(100)
        .flush_interval(Duration::from_millis(10))
        .retry(
            Retry::default()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    const N: u64 = 20_000;
    let stream = emit_stream(client.clone(), N, 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = TestServer::start_in(dir, |b| b.port(port)).await;
    stream.join().unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), client.close())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.delivered, N, "{report:?}");
    let events = server.all_events().await;
    let (missing, dup) = seq_report(&events, N);
    assert!(missing.is_empty() && dup.is_empty(), "{missing:?} {dup:?}");
    assert!(client.stats().retries > 0, "the restart was noticed");
}

/// Starts `accrue serve` on `port` over `db`; waits until it listens.
fn spawn_server(db: &Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args([
            "serve",
            "--log",
            "info",
            "--port",
            &port.to_string(),
            "--db",
        ])
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start accrue serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on http://") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server did not start");
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_and_no_duplicates_when_the_server_binary_is_killed_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = spawn_server(&db, port);
    let client = Client::builder(format!("http://{addr}"))
        .batch_size(200)
        .flush_interval(Duration::from_millis(10))
        .retry(
            Retry::default()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(300)),
        )
        .build()
        .unwrap();
    const N: u64 = 30_000;
    let stream = emit_stream(client.clone(), N, 20);
    for _ in 0..2 {
        // Kill while batches are in flight: some were committed without their answer.
        let before = client.stats().delivered;
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.stats().delivered < before + 2_000 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        child = spawn_server(&db, port);
    }
    stream.join().unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), client.close())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.delivered + report.duplicates, N, "{report:?}");
    let view = collector_support::Client { addr };
    let mut events = Vec::new();
    for page in 1.. {
        let v = view
            .get(&format!("/view?page={page}&page_size=1000"))
            .await
            .json();
        let page_events = v["events"].as_array().unwrap().clone();
        if page_events.is_empty() {
            break;
        }
        events.extend(page_events);
    }
    let (missing, dup) = seq_report(&events, N);
    assert!(missing.is_empty(), "lost: {} events", missing.len());
    assert!(dup.is_empty(), "duplicated: {dup:?}");
    assert!(client.stats().retries > 0, "the kills were noticed");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reports_and_hands_back_what_it_could_not_deliver() {
    let proxy = FaultProxy::start(None, Mode::Status(503, Some(1))).await;
    let client = Client::builder(proxy.url())
        .close_timeout(Duration::from_millis(500))
        .batch_size(10)
        .max_in_flight(1)
        .build()
        .unwrap();
    for i in 0..35u64 {
        client.emit(Event::new("stuck").with("seq", i)).unwrap();
    }
    let started = Instant::now();
    let err = client.close().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline holds"
    );
    assert_eq!(err.report().undelivered, 35);
    let mut seqs: Vec<u64> = err
        .events()
        .iter()
        .map(|e| e.data().unwrap()["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..35).collect::<Vec<_>>());
    // Idempotent: the same counts again, the events only once.
    let again = client.close().await.unwrap_err();
    assert_eq!(again.report(), err.report());
    assert!(again.events().is_empty());
    let stats = client.stats();
    assert_eq!(stats.failed, 35);
}
