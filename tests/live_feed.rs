//! Live feeds: every committed event in order to fast subscribers, an explicit
//! `lagged` notice (never a silent drop, never unbounded memory) to a slow one, resumes without
//! gaps, flushes, SSE, bad requests answered on an open connection, shutdown.

#![cfg(feature = "server")]

mod auth_support;

use accrue::collector::MetricsPipeline;
use std::time::Duration;

use auth_support::{TestServer, Ws, call, metric, subscribe, ws_connect, ws_json, ws_send};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Events in the slow-subscriber test, and the padding that makes them outgrow socket buffers.
const N: usize = 20_000;
const PAD: usize = 1000;
/// Events per request: one commit's worth fits an outbox.
const BATCH: usize = 100;

fn batch(start: usize, n: usize, prefix: &str) -> String {
    let pad = "x".repeat(PAD);
    let items: Vec<String> = (start..start + n)
        .map(|i| {
            format!(
                r#"{{"key":"{prefix}{}","data":{{"seq":{i},"pad":"{pad}"}}}}"#,
                i % 10
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Reads until `n` events arrived, publishing its progress; returns their `data.seq` and ids.
async fn read_events(
    ws: &mut Ws,
    n: usize,
    progress: tokio::sync::watch::Sender<usize>,
) -> (Vec<u64>, Vec<i64>) {
    let (mut seqs, mut ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while seqs.len() < n {
        let m = ws_json(ws).await;
        assert_eq!(m["type"], "event", "a fast subscriber got {m}");
        seqs.push(m["event"]["data"]["seq"].as_u64().unwrap());
        ids.push(m["event"]["id"].as_i64().unwrap());
        progress.send_replace(seqs.len());
    }
    (seqs, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subscribers_one_slow_fast_ones_get_everything_the_slow_one_is_told() {
    let buffer_bytes = 256 * 1024;
    let s = TestServer::start_with(|b| {
        b.live_buffer_messages(128)
            .live_buffer_bytes(buffer_bytes)
            .metrics_pipeline(MetricsPipeline::Off)
    })
    .await;
    let mut fast1 = ws_connect(s.addr, None).await.unwrap();
    let mut fast2 = ws_connect(s.addr, None).await.unwrap();
    let mut slow = ws_connect(s.addr, None).await.unwrap();
    for ws in [&mut fast1, &mut fast2, &mut slow] {
        subscribe(ws, "sub", "events", "load/").await;
    }
    // "Fast" means reading as the events come: the writer below never gets more than one
    // request (which fits an outbox) ahead of them.
    let (tx1, rx1) = tokio::sync::watch::channel(0);
    let (tx2, rx2) = tokio::sync::watch::channel(0);
    let readers = [(fast1, tx1), (fast2, tx2)]
        .map(|(mut ws, tx)| tokio::spawn(async move { read_events(&mut ws, N, tx).await }));
    // Events outside the prefix are not delivered.
    let client = s.client();
    for start in (0..N).step_by(BATCH) {
        let r = client.post("/events", batch(start, BATCH, "load/")).await;
        assert_eq!(r.status, 200);
        let r = client.post("/events", batch(start, 5, "elsewhere/")).await;
        assert_eq!(r.status, 200);
        for rx in [&rx1, &rx2] {
            let mut rx = rx.clone();
            tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|n| *n >= start + BATCH),
            )
            .await
            .expect("a fast subscriber keeps up")
            .unwrap();
        }
    }
    let expected: Vec<u64> = (0..N as u64).collect();
    for r in readers {
        let (seqs, ids) = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seqs, expected, "every event, in commit order");
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
    // The slow subscriber reads now: what it got plus what it was told it missed is everything.
    let mut got = Vec::new();
    let mut missed = 0u64;
    let mut notices = 0;
    while got.len() as u64 + missed < N as u64 {
        let m = ws_json(&mut slow).await;
        match m["type"].as_str().unwrap() {
            "event" => got.push(m["event"]["data"]["seq"].as_u64().unwrap()),
            "lagged" => {
                notices += 1;
                missed += m["missed"].as_u64().unwrap();
            }
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert_eq!(got.len() as u64 + missed, N as u64);
    assert!(
        notices >= 1 && missed > 0,
        "the slow subscriber was told it lagged"
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "what it got is in order"
    );
    // The server's memory for the feeds stayed within the outboxes' bounds (3 connections).
    let high = metric(s.addr, None, "accrue_live_queued_bytes_max").await;
    assert!(
        high <= 3.0 * buffer_bytes as f64,
        "{high} bytes queued at most"
    );
    assert_eq!(
        metric(s.addr, None, "accrue_live_missed_total").await,
        missed as f64
    );
    // Still connected, still answering.
    ws_send(&mut slow, json!({"id": 9, "type": "ping"})).await;
    let pong = ws_json(&mut slow).await;
    assert_eq!(pong, json!({"id": 9, "type": "pong"}));
}

#[tokio::test]
async fn bad_requests_get_an_error_reply_and_the_connection_stays_open() {
    let s = TestServer::start().await;
    let mut ws = ws_connect(s.addr, None).await.unwrap();
    for (frame, id) in [
        (Message::Text("not json".into()), Value::Null),
        (Message::Text("[1,2]".into()), Value::Null),
        (Message::Text(r#"{"type":"ping"}"#.into()), Value::Null),
        (Message::Text(r#"{"id":"a"}"#.into()), json!("a")),
        (
            Message::Text(r#"{"id":"b","type":"launch"}"#.into()),
            json!("b"),
        ),
        (
            Message::Text(r#"{"id":3,"type":"subscribe","stream":"all"}"#.into()),
            json!(3),
        ),
        (
            Message::Text(r#"{"id":4,"type":"subscribe","prefix":7}"#.into()),
            json!(4),
        ),
        (
            Message::Text(r#"{"id":5,"type":"subscribe","stream":"flushes","after":1}"#.into()),
            json!(5),
        ),
        (
            Message::Text(r#"{"id":6,"type":"subscribe","colour":"red"}"#.into()),
            json!(6),
        ),
        (
            Message::Text(r#"{"id":7,"type":"unsubscribe","subscription":"s999"}"#.into()),
            json!(7),
        ),
        (
            Message::Text(r#"{"id":8,"type":"unsubscribe"}"#.into()),
            json!(8),
        ),
        (Message::Binary(vec![1, 2, 3].into()), Value::Null),
    ] {
        ws.send(frame.clone()).await.unwrap();
        let r = ws_json(&mut ws).await;
        assert_eq!(r["type"], "error", "{frame:?}: {r}");
        assert_eq!(r["id"], id, "{frame:?}: {r}");
        assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
    }
    // Subscribing and unsubscribing still work on the same connection.
    let label = subscribe(&mut ws, "s", "events", "").await;
    ws_send(
        &mut ws,
        json!({"id": "u", "type": "unsubscribe", "subscription": label}),
    )
    .await;
    let r = ws_json(&mut ws).await;
    assert_eq!(
        r,
        json!({"id": "u", "type": "unsubscribed", "subscription": label})
    );
    s.post("/events", r#"[{"key":"after-unsubscribe"}]"#).await;
    ws_send(&mut ws, json!({"id": "p", "type": "ping"})).await;
    assert_eq!(
        ws_json(&mut ws).await["type"],
        "pong",
        "no event after unsubscribing"
    );
    // A live connection without an upgrade is a plain 400, with a key server a 401 first.
    assert_eq!(s.get("/v1/live").await.status / 100, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_subscription_has_no_gap_and_no_duplicate() {
    let s = TestServer::start_with(|b| b.metrics_pipeline(MetricsPipeline::Off)).await;
    let r = s
        .post("/events", auth_support::events_json("r/k", 0, 1500))
        .await;
    assert_eq!(r.status, 200);
    let all = call(s.addr, "GET", "/v1/events?key=r/k&limit=10000", None, "")
        .await
        .json();
    let after = all["events"][99]["id"].as_i64().unwrap();
    // Keep writing while the subscription resumes from the store and turns live.
    let client = s.client();
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            let r = client
                .post(
                    "/events",
                    auth_support::events_json("r/k", 1500 + i * 50, 50),
                )
                .await;
            assert_eq!(r.status, 200);
        }
    });
    let mut ws = ws_connect(s.addr, None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"id": 1, "type": "subscribe", "prefix": "r/", "after": after}),
    )
    .await;
    assert_eq!(ws_json(&mut ws).await["type"], "subscribed");
    let total = 1500 + 20 * 50;
    let mut seqs = Vec::new();
    let mut last_id = after;
    while seqs.len() < total - 100 {
        let m = ws_json(&mut ws).await;
        assert_eq!(m["type"], "event", "{m}");
        let id = m["event"]["id"].as_i64().unwrap();
        assert!(id > last_id, "ids increase: {id} after {last_id}");
        last_id = id;
        seqs.push(m["event"]["data"]["seq"].as_u64().unwrap());
    }
    writer.await.unwrap();
    assert_eq!(seqs, (100..total as u64).collect::<Vec<_>>());
    ws_send(&mut ws, json!({"id": 2, "type": "ping"})).await;
    assert_eq!(
        ws_json(&mut ws).await["type"],
        "pong",
        "nothing more, nothing twice"
    );
}

#[tokio::test]
async fn the_flush_feed_carries_aggregated_metrics_once_stored() {
    let s = TestServer::start_with(|b| b.flush_interval(Duration::from_millis(100))).await;
    let mut ws = ws_connect(s.addr, None).await.unwrap();
    subscribe(&mut ws, "f", "flushes", "m/").await;
    let r = s
        .post(
            "/events",
            r#"[{"key":"m/a","timestamp":"2025-08-25T10:00:01Z","data":{"ms":40}},
                {"key":"m/a","timestamp":"2025-08-25T10:00:02Z","data":{"ms":2}},
                {"key":"other","timestamp":"2025-08-25T10:00:03Z","data":{"ms":9}}]"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let m = ws_json(&mut ws).await;
    assert_eq!(m["type"], "flush", "{m}");
    let samples = m["flush"]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1, "only keys under the prefix: {m}");
    assert_eq!(samples[0]["key"], "m/a");
    assert_eq!(
        samples[0]["values"],
        json!({"count": 2, "data": {"ms": 42}})
    );
    assert!(m["flush"]["watermark"].as_i64().unwrap() >= 2);
    // What the feed reported is in the metrics store.
    let v = s
        .get("/v1/values?key=m/a&granularity=1m&from=2025-08-25T10:00:00Z&to=2025-08-25T10:00:00Z")
        .await
        .json();
    assert_eq!(v["values"][0]["count"], 2);
}

/// Reads SSE frames until `n` `event:` blocks arrived.
async fn sse_events(
    body: &mut hyper::body::Incoming,
    buf: &mut String,
    n: usize,
) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut ev, mut id, mut data) = (String::new(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !ev.is_empty() {
                out.push((ev, id, data));
            }
        }
        if out.len() >= n {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an SSE frame within 10 s")
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    out
}

async fn sse_open(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn sse_delivers_events_with_ids_and_resumes_from_last_event_id() {
    let s = TestServer::start().await;
    let res = sse_open(s.addr, "/v1/live/sse?prefix=s/", &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut buf = String::new();
    s.post("/events", auth_support::events_json("s/k", 0, 3))
        .await;
    s.post("/events", r#"[{"key":"not-s"}]"#).await;
    let evs = sse_events(&mut body, &mut buf, 3).await;
    let ids: Vec<i64> = evs
        .iter()
        .map(|(_, id, _)| id.as_ref().unwrap().parse().unwrap())
        .collect();
    for (i, (ev, _, data)) in evs.iter().enumerate() {
        assert_eq!(ev, "event");
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["data"]["seq"], i as u64);
    }
    drop(body);
    // Reconnect with the browser's Last-Event-ID: the events after it, then live.
    s.post("/events", auth_support::events_json("s/k", 3, 2))
        .await;
    let last = ids[0].to_string();
    let res = sse_open(
        s.addr,
        "/v1/live/sse?prefix=s/",
        &[("last-event-id", &last)],
    )
    .await;
    let mut body = res.into_body();
    let mut buf = String::new();
    let evs = sse_events(&mut body, &mut buf, 4).await;
    let seqs: Vec<u64> = evs
        .iter()
        .map(|(_, _, d)| {
            serde_json::from_str::<Value>(d).unwrap()["data"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(
        sse_open(s.addr, "/v1/live/sse?stream=nope", &[])
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn shutdown_closes_live_connections_at_once() {
    let s = TestServer::start_with(|b| b.shutdown_timeout(Duration::from_secs(20))).await;
    let mut ws = ws_connect(s.addr, None).await.unwrap();
    subscribe(&mut ws, "1", "events", "").await;
    let res = sse_open(s.addr, "/v1/live/sse", &[]).await;
    let mut sse = res.into_body();
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(s.stop());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1001);
    // The SSE stream ends too, so the shutdown does not wait for its deadline.
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), sse.frame())
        .await
        .unwrap()
    {}
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
