//! No log line carries an API key. The whole process logs at `trace` — accrue, axum,
//! tower-http's request traces, hyper — into a buffer while keys are created, used (valid,
//! wrong scope, revoked, malformed), sent on WebSocket and SSE handshakes, and revoked; then
//! the buffer is searched for every token, its secret part, and the admin key.
//!
//! Its own test binary: the subscriber is process-global. The server runs in this process, so
//! this is the server's log (the binary's is checked in `auth_cli.rs`).

#![cfg(feature = "server")]

mod auth_support;

use auth_support::collector_support::LogCapture;
use auth_support::{ADMIN, call, create_key, secured, subscribe, ws_connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_the_logs() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    // Everything at trace, except the *test's own* WebSocket client: tungstenite's client
    // handshake traces its request headers, Authorization included (a client-side concern;
    // accrue's client library follows feeds over SSE with reqwest, which does not).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,tungstenite::handshake::client=off",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let s = secured().await;
    let (id, read) = create_key(s.addr, &["read"], None).await;
    let (_, write) = create_key(s.addr, &["write"], Some("w/")).await;
    for (token, method, path, body) in [
        (Some(read.as_str()), "GET", "/view", ""),
        (Some(read.as_str()), "POST", "/events", r#"[{"key":"x"}]"#),
        (
            Some(write.as_str()),
            "POST",
            "/events",
            r#"[{"key":"w/1"}]"#,
        ),
        (
            Some(write.as_str()),
            "POST",
            "/events",
            r#"[{"key":"elsewhere"}]"#,
        ),
        (Some(ADMIN), "GET", "/v1/keys", ""),
        (Some(ADMIN), "GET", "/metrics", ""),
        (
            Some("accrue_0000000000000000_not-a-real-secret"),
            "GET",
            "/view",
            "",
        ),
    ] {
        call(s.addr, method, path, token, body.to_owned()).await;
    }
    let mut ws = ws_connect(s.addr, Some(&read)).await.unwrap();
    subscribe(&mut ws, "1", "events", "").await;
    call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(ADMIN), "").await;
    call(s.addr, "GET", "/view", Some(&read), "").await;
    assert!(ws_connect(s.addr, Some(&read)).await.is_err());
    drop(ws);
    s.stop().await;

    let log = capture.text();
    assert!(log.len() > 10_000, "the capture saw the requests:\n{log}");
    assert!(log.contains("API key created") && log.contains("API key revoked"));
    assert!(
        log.contains("/v1/keys"),
        "request traces are in the capture"
    );
    for token in [&read, &write] {
        let secret = token.rsplit('_').next().unwrap();
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(token.as_str())).collect();
        assert!(leaks.is_empty(), "a token is in the log: {leaks:#?}");
        assert!(!log.contains(secret), "a token's secret is in the log");
    }
    assert!(!log.contains(ADMIN), "the admin key is in the log");
    let headers: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("authorization: bearer "))
        .collect();
    assert!(
        headers.is_empty(),
        "an Authorization header is in the log: {headers:#?}"
    );
}
