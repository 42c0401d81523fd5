//! What the client logs, checked with a captured global subscriber (one test per binary:
//! `tracing` caches per-callsite interest, which scoped subscribers in parallel tests race on):
//! overflow warnings are rate-limited, failures are logged, the bearer token never is.

#![cfg(all(feature = "client", feature = "server"))]

mod client_support;
mod collector_support;

use std::time::Duration;

use accrue::client::{Client, EmitError, Event, Retry};
use client_support::{FaultProxy, LogCapture, Mode, seq_report};
use collector_support::TestServer;

fn url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_warn_once_per_overflow_burst_report_failures_and_never_show_the_token() {
    let logs = LogCapture::default();
    logs.install_global();
    overflow(&logs).await;
    token(&logs).await;
}

async fn overflow(logs: &LogCapture) {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .queue_capacity(100)
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut refused = Vec::new();
    for i in 0..250u64 {
        match client.emit(Event::new("o").with("seq", i)) {
            Ok(()) => {}
            Err(EmitError::Full(e)) => refused.push(e.data().unwrap()["seq"].as_u64().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, (100..250).collect::<Vec<_>>());
    let stats = client.stats();
    assert_eq!(
        (stats.dropped, stats.queued, stats.emitted),
        (150, 100, 100)
    );
    let report = client.close().await.unwrap();
    assert_eq!((report.delivered, report.dropped), (100, 150));
    let events = server.all_events().await;
    let (missing, dup) = seq_report(&events, 100);
    assert!(missing.is_empty() && dup.is_empty());
    let text = logs.text();
    assert!(text.contains("queue is full"), "{text}");
    // Rate-limited: one warning for a burst, not one per drop.
    assert_eq!(text.matches("queue is full").count(), 1, "{text}");
}

async fn token(logs: &LogCapture) {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(Some(server.addr), Mode::Status(503, Some(0))).await;
    let client = Client::builder(proxy.url())
        .bearer_token("tok-8f3a9c")
        .flush_interval(Duration::from_millis(10))
        .retry(
            Retry::default()
                .initial(Duration::from_millis(5))
                .max(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    client.emit(Event::new("a")).unwrap();
    while proxy.requests() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.set(Mode::Status(401, None));
    client.emit(Event::new("b")).unwrap();
    let report = client.close().await.unwrap();
    assert!(report.rejected >= 1);
    let seen = proxy.auth_headers.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|h| h == "Bearer tok-8f3a9c"), "{seen:?}");
    let text = logs.text();
    assert!(text.contains("retrying"), "failures were logged: {text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains("tok-8f3a9c"),
        "the token leaked into the logs: {text}"
    );
    assert!(!format!("{client:?}").contains("tok-8f3a9c"));
}
