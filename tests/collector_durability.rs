//! Durability and bounds through a real socket: durable vs queued acknowledgement, the bounded
//! queue's 503, retried store writes, graceful shutdown, retention, and exact totals under
//! concurrent load.

#![cfg(feature = "server")]

mod collector_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use accrue::collector::AckMode;
use collector_support::{TestServer, events_json, metric_value};
use rusqlite::Connection;

/// Takes SQLite's write lock on the event store, as another process could.
fn lock_db(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_ack_waits_for_the_commit() {
    let s = TestServer::start().await;
    let lock = lock_db(&s.db_path());
    let client = s.client();
    let post = tokio::spawn(async move { client.post("/events", events_json("k", 0, 5)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !post.is_finished(),
        "answered before the events were committed"
    );
    drop(lock); // rolls back and releases the write lock
    let r = post.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.total().await, 5, "a 200 in durable mode means stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_and_a_failing_store_is_retried_not_dropped() {
    let s = TestServer::start_with(|b| b.max_events_per_request(10).queue_events(10)).await;
    let lock = lock_db(&s.db_path());
    let client = s.client();
    let first = tokio::spawn(async move { client.post("/events", events_json("k", 0, 10)).await });
    wait_for("the queue to fill", Duration::from_secs(5), async || {
        metric_value(
            &s.get("/metrics").await.text(),
            "accrue_ingest_queue_events",
        ) == 10.0
    })
    .await;
    let busy = s.post("/events", events_json("k", 10, 1)).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.json()["error"], "Server is busy, retry later");
    // The writer's first attempt gives up after SQLite's 5 s busy timeout; the store is then
    // reported unhealthy and the same group is retried.
    wait_for("a failed write", Duration::from_secs(10), async || {
        s.get("/ready").await.status == 503
    })
    .await;
    assert!(!first.is_finished());
    drop(lock);
    let r = first.await.unwrap();
    assert_eq!((r.status, r.json()["count"].as_u64()), (200, Some(10)));
    let m = s.get("/metrics").await.text();
    assert!(metric_value(&m, "accrue_store_errors_total") >= 1.0);
    assert_eq!(metric_value(&m, "accrue_events_stored_total"), 10.0);
    assert_eq!(s.get("/ready").await.status, 200);
    let seqs: HashSet<u64> = s
        .all_events()
        .await
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..10).collect(),
        "the retried group is stored exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_ack_answers_at_once_and_shutdown_writes_the_queue() {
    let s = TestServer::start_with(|b| b.ack(AckMode::Queued)).await;
    let path = s.db_path();
    let lock = lock_db(&path);
    let started = Instant::now();
    let r = s.post("/events", events_json("k", 0, 20)).await;
    assert_eq!(
        r.text(),
        r#"{"count":20,"message":"Successfully queued 20 events"}"#
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s.total().await, 0, "queued, not yet committed");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(lock);
    });
    let dir = s.stop().await; // waits for the writer to commit the queue
    release.join().unwrap();
    let s = TestServer::start_in(dir, |b| b).await;
    assert_eq!(s.total().await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_event() {
    let s = TestServer::start().await;
    let client = s.client();
    let mut posters = Vec::new();
    for c in 0..8 {
        posters.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for r in 0.. {
                let start = (c * 1_000_000) + r * 20;
                match client
                    .try_request("POST", "/events", events_json("k", start, 20).into(), &[])
                    .await
                {
                    Ok(resp) if resp.status == 200 => acked.extend(start..start + 20),
                    Ok(resp) => assert_eq!(resp.status, 503, "{}", resp.text()),
                    Err(_) => break, // the server has stopped accepting
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir = s.stop().await;
    let mut acked = Vec::new();
    for p in posters {
        acked.extend(p.await.unwrap());
    }
    assert!(acked.len() > 100, "the load did not run: {}", acked.len());
    let s = TestServer::start_in(dir, |b| b).await;
    let stored: Vec<u64> = s
        .all_events()
        .await
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    let unique: HashSet<u64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    for seq in &acked {
        assert!(
            unique.contains(&(*seq as u64)),
            "acknowledged event {seq} was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_have_exact_totals() {
    let s = TestServer::start().await;
    let client = s.client();
    let tasks: Vec<_> = (0..16)
        .map(|c| {
            tokio::spawn(async move {
                for r in 0..25 {
                    let body = events_json("load", (c * 25 + r) * 100, 100);
                    let resp = client.post("/events", body).await;
                    assert_eq!(resp.status, 200, "{}", resp.text());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.total().await, 40_000);
    let conn = Connection::open(s.db_path()).unwrap();
    let (rows, distinct, min, max): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT json_extract(data, '$.seq')),
                    MIN(json_extract(data, '$.seq')), MAX(json_extract(data, '$.seq'))
             FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct, min, max), (40_000, 40_000, 0, 39_999));
    let m = s.get("/metrics").await.text();
    assert_eq!(metric_value(&m, "accrue_events_stored_total"), 40_000.0);
    assert!(
        metric_value(&m, "accrue_store_commits_total") < 400.0,
        "400 concurrent requests should share commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_events_only() {
    // Retention keeps events until their metrics are flushed; flush quickly.
    let s = TestServer::start_with(|b| {
        b.retention(Some(Duration::from_secs(3600)))
            .flush_interval(Duration::from_millis(100))
    })
    .await;
    s.post(
        "/events",
        r#"[{"key":"old","timestamp":"2020-01-01T00:00:00Z"},
            {"key":"old","timestamp":"2021-06-01T00:00:00+02:00"},
            {"key":"new"}]"#,
    )
    .await;
    // The first retention pass runs a second after start.
    wait_for("retention", Duration::from_secs(5), async || {
        s.total().await == 1
    })
    .await;
    let events = s.all_events().await;
    assert_eq!(events[0]["key"], "new");
    let m = s.get("/metrics").await.text();
    assert_eq!(metric_value(&m, "accrue_retention_deleted_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_request_outlasting_the_commit_timeout_is_answered_503_and_not_stored() {
    let s = TestServer::start_with(|b| b.commit_timeout(Duration::from_secs(1))).await;
    let lock = lock_db(&s.db_path());
    let started = Instant::now();
    let body = r#"[{"key":"k","id":"a"},{"key":"k","id":"b"}]"#;
    let r = s.post("/events", body).await;
    // The first attempt waits out SQLite's 5 s lock timeout; then the request is past its
    // commit timeout and answered, not retried behind the client's back.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "Event store unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(lock);
    // Nothing of it was stored: sending it again stores both events, once.
    let r = s.post("/events", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("duplicates").is_none(), "{}", r.text());
    assert_eq!(s.total().await, 2);
}
