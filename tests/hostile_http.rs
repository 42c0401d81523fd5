//! Hostile connections: clients that send a byte a second, connections that never send
//! anything, more connections than the server serves, oversized bodies on every body-reading
//! route, overload — none of them may starve a normal client, and overload must not flood the
//! log.
//!
//! Its own test binary: one test installs a process-wide log subscriber.

#![cfg(feature = "server")]

mod auth_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auth_support::collector_support::LogCapture;
use auth_support::{ADMIN, TestServer, call, secured};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `fast` at once, then `slow` one byte per `every`; returns what the server answered
/// and when it closed the connection.
async fn trickle(
    addr: SocketAddr,
    fast: &[u8],
    slow: &[u8],
    every: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(fast).await.unwrap();
    for b in slow {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        // A closed connection shows up as a read of 0 or an error.
        let mut probe = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(every, s.read(&mut probe)).await {
            let answer = match r {
                Ok(n) => String::from_utf8_lossy(&probe[..n]).into_owned(),
                Err(_) => String::new(),
            };
            return (answer, started.elapsed());
        }
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    (
        String::from_utf8_lossy(&rest).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_never_slow_down_a_normal_client() {
    let s = TestServer::start_with(|b| {
        b.header_timeout(Duration::from_secs(3))
            .body_timeout(Duration::from_secs(3))
    })
    .await;
    let addr = s.addr;
    let run_for = Duration::from_secs(30);
    let deadline = Instant::now() + run_for;
    let head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let post = b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n";
    let body = [b' '; 100];
    // 10 clients trickle their headers, 10 their body, one byte a second, reconnecting when
    // the server cuts them off, for the whole run.
    let mut slow = Vec::new();
    for i in 0..20 {
        slow.push(tokio::spawn(async move {
            let mut cut_after = Vec::new();
            while Instant::now() < deadline {
                let (answer, took) = if i % 2 == 0 {
                    trickle(addr, b"", head, Duration::from_secs(1)).await
                } else {
                    trickle(addr, post, &body, Duration::from_secs(1)).await
                };
                cut_after.push((answer, took));
            }
            cut_after
        }));
    }
    // A normal client: one request every 50 ms, each on a fresh connection.
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let r = s.get("/health").await;
        latencies.push(t.elapsed());
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        latencies.len() > 300,
        "only {} requests in {run_for:?}",
        latencies.len()
    );
    // Generous bounds for a loaded 2-core CI machine; unbounded slow clients made /health
    // time out altogether.
    assert!(p99 < Duration::from_millis(250), "p50 {p50:?}, p99 {p99:?}");
    for (i, h) in slow.into_iter().enumerate() {
        let attempts = h.await.unwrap();
        assert!(!attempts.is_empty());
        for (answer, took) in &attempts {
            // Cut off at the deadline (3 s, checked between one-second bytes), not at the end of
            // the headers or body (70+ or 100+ seconds away).
            assert!(
                *took < Duration::from_secs(6),
                "client {i} kept for {took:?}"
            );
            if i % 2 == 1 && !answer.is_empty() {
                assert!(answer.starts_with("HTTP/1.1 408"), "client {i}: {answer}");
                assert!(answer.contains("Request body timeout"), "{answer}");
            }
        }
    }
    let m = s.get("/metrics").await.text();
    assert!(m.contains("accrue_http_connections "), "{m}");
}

#[tokio::test]
async fn idle_and_kept_alive_connections_are_closed_at_the_header_timeout() {
    let s = TestServer::start_with(|b| b.header_timeout(Duration::from_secs(1))).await;
    // Never sends a byte.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // One request, then left idle with keep-alive.
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let t = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_and_the_rest_keep_working() {
    let s = TestServer::start_with(|b| b.max_connections(4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("connection limit"), "{text}");
    // A slot frees up: served again.
    held.pop();
    let start = Instant::now();
    loop {
        if let Ok(r) = s
            .client()
            .try_request("GET", "/metrics", Default::default(), &[])
            .await
            && r.status == 200
        {
            let m = r.text();
            assert!(m.contains("accrue_http_connections_refused_total 1"), "{m}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_body_reading_route_answers_413_as_json() {
    let s = secured().await;
    let big = vec![b'1'; 70 * 1024];
    for (method, path, limit) in [
        ("PUT", "/v1/kv/ns/k", "65536"),
        ("POST", "/v1/keys", "16384"),
    ] {
        let r = call(s.addr, method, path, Some(ADMIN), big.clone()).await;
        assert_eq!(r.status, 413, "{method} {path}");
        let v = r.json();
        assert_eq!(v["error"], "Request body is too large", "{v}");
        assert!(v["detail"].as_str().unwrap().contains(limit), "{v}");
    }
    // Beyond what the framework would have taken by default (2 MB) too.
    let huge = vec![b'1'; 3 * 1024 * 1024];
    let r = call(s.addr, "PUT", "/v1/kv/ns/k", Some(ADMIN), huge).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "Request body is too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_503_without_an_error_line_each() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    // A queue that holds one request of two events: concurrent requests overflow it.
    let s = TestServer::start_with(|b| b.queue_events(2).max_events_per_request(2)).await;
    let mut busy = 0;
    for _ in 0..20 {
        let mut burst = Vec::new();
        for _ in 0..32 {
            let c = s.client();
            burst.push(tokio::spawn(async move {
                c.post("/events", r#"[{"key":"a"},{"key":"b"}]"#)
                    .await
                    .status
            }));
        }
        for h in burst {
            if h.await.unwrap() == 503 {
                busy += 1;
            }
        }
        if busy >= 20 {
            break;
        }
    }
    assert!(busy >= 20, "the queue never filled: {busy} answers 503");
    let log = capture.text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "{} error lines: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
}
