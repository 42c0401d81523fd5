//! The client against a real collector on loopback: delivery, flush, close, overflow, limits,
//! the bearer token.

#![cfg(all(feature = "client", feature = "server"))]

mod client_support;
mod collector_support;

use std::time::Duration;

use accrue::client::{Client, EmitError, Event, Overflow};
use client_support::{FaultProxy, Mode, seq_report};
use collector_support::TestServer;

fn url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_its_time_and_data() {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .batch_size(300)
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let at: jiff::Timestamp = "2025-08-25T10:00:00.25Z".parse().unwrap();
    const N: u64 = 5_000;
    let emitters: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in (t..N).step_by(4) {
                    let mut e = Event::new("page_view").with("seq", i).with("page", "home");
                    if i == 7 {
                        e = e.at(at);
                    }
                    client.emit(e).unwrap();
                }
            })
        })
        .collect();
    for e in emitters {
        e.join().unwrap();
    }
    let report = client.close().await.unwrap();
    assert_eq!(report.delivered, N);
    assert_eq!(report.undelivered, 0);
    let events = server.all_events().await;
    assert_eq!(events.len() as u64, N);
    let (missing, dup) = seq_report(&events, N);
    assert!(missing.is_empty() && dup.is_empty(), "{missing:?} {dup:?}");
    let seven = events.iter().find(|e| e["data"]["seq"] == 7).unwrap();
    assert_eq!(seven["timestamp"], "2025-08-25T10:00:00.25Z");
    assert_eq!(seven["data"]["page"], "home");
    let stats = client.stats();
    assert_eq!((stats.emitted, stats.delivered, stats.dropped), (N, N, 0));
    assert!(stats.requests >= N / 300, "{stats:?}");
}

#[tokio::test]
async fn flush_returns_once_the_events_are_stored() {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..10 {
        client.emit(Event::new("f").with("seq", i)).unwrap();
    }
    client.flush().await.unwrap();
    // Durable acknowledgement: stored when flush returns, without waiting for the period.
    assert_eq!(server.total().await, 10);
    client.emit(Event::new("f").with("seq", 10)).unwrap();
    client.flush().await.unwrap();
    assert_eq!(server.total().await, 11);
    client.close().await.unwrap();
}

#[tokio::test]
async fn close_delivers_everything_queued_and_is_idempotent() {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .flush_interval(Duration::from_secs(3600))
        .batch_size(10_000)
        .build()
        .unwrap();
    for i in 0..2_500 {
        client.emit(Event::new("c").with("seq", i)).unwrap();
    }
    assert_eq!(
        server.total().await,
        0,
        "nothing is sent before the period or a flush"
    );
    let other = client.clone();
    let (a, b) = tokio::join!(client.close(), other.close());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.delivered, 2_500);
    assert_eq!(client.close().await.unwrap(), a);
    let events = server.all_events().await;
    let (missing, dup) = seq_report(&events, 2_500);
    assert!(missing.is_empty() && dup.is_empty());
    // After close: refused, handed back, not counted as dropped.
    let err = client.emit(Event::new("late")).unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_event().key(), "late");
    assert!(client.flush().await.is_err());
    assert_eq!(client.stats().dropped, 0);
}

#[tokio::test]
async fn queue_overflow_can_drop_oldest_instead() {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .queue_capacity(100)
        .overflow(Overflow::DropOldest)
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..250u64 {
        client.emit(Event::new("o").with("seq", i)).unwrap();
    }
    let stats = client.stats();
    assert_eq!(
        (stats.dropped, stats.queued, stats.emitted),
        (150, 100, 250)
    );
    client.close().await.unwrap();
    let mut seqs: Vec<u64> = server
        .all_events()
        .await
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (150..250).collect::<Vec<_>>());
}

#[tokio::test]
async fn invalid_events_are_refused_before_anything_is_sent() {
    let server = TestServer::start().await;
    let client = Client::builder(url(&server))
        .max_data_bytes(100)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    assert!(matches!(
        client.emit(Event::new("")),
        Err(EmitError::Invalid { .. })
    ));
    assert!(matches!(
        client.emit(Event::new("k".repeat(257))),
        Err(EmitError::Invalid { .. })
    ));
    // Too much data: dropped from its batch (counted as rejected) instead of failing the batch.
    client
        .emit(Event::new("big").with("blob", "x".repeat(500)))
        .unwrap();
    client.emit(Event::new("small").with("seq", 0)).unwrap();
    let report = client.close().await.unwrap();
    assert_eq!((report.delivered, report.rejected), (1, 1));
    let events = server.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["key"], "small");
}

#[tokio::test]
async fn send_waits_for_the_server_and_reports_refusals() {
    let server = TestServer::start().await;
    let client = Client::new(url(&server)).unwrap();
    let events = (0..1_500).map(|i| Event::new("s").with("seq", i)).collect();
    let report = client.send(events).await.unwrap();
    assert_eq!(report.delivered, 1_500);
    assert_eq!(server.total().await, 1_500);
    assert!(client.send(vec![Event::new("")]).await.is_err());
    client.close().await.unwrap();
    assert!(matches!(
        client.send(vec![Event::new("x")]).await,
        Err(accrue::client::ClientError::Closed)
    ));
}

#[tokio::test]
async fn a_permanent_refusal_drops_the_batch_and_one_bad_event_only_itself() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(Some(server.addr), Mode::Status(403, None)).await;
    // The client's key limit is set above the server's, so the server finds the bad key.
    let client = Client::builder(proxy.url())
        .max_key_bytes(1_000)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..5 {
        client.emit(Event::new("r").with("seq", i)).unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(proxy.requests(), 1, "a 403 is not retried");
    assert_eq!(client.stats().rejected, 5);
    proxy.set(Mode::Forward);
    // The collector names the bad event of a batch (index); the client drops it alone.
    client.emit(Event::new("r").with("seq", 5)).unwrap();
    client
        .emit(Event::new("r".repeat(300)).with("seq", 6))
        .unwrap();
    client.emit(Event::new("r").with("seq", 7)).unwrap();
    client.flush().await.unwrap();
    let stats = client.stats();
    let events = server.all_events().await;
    let stored: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((stats.delivered, stats.rejected), (2, 6), "{stats:?}");
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&5) && stored.contains(&7), "{stored:?}");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn close_towards_an_unreachable_server_keeps_its_deadline() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder(format!("http://127.0.0.1:{port}"))
        .close_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    client.emit(Event::new("lost")).unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .expect("close keeps its deadline")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.report().undelivered, 1);
    assert_eq!(err.events()[0].key(), "lost");
}
