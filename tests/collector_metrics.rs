//! The metrics pipeline through a real socket: every stored event is counted per key and
//! bucket, the numeric fields of its `data` summed, and `/v1/values` serves the timelines —
//! exactly once, across graceful restarts and crashes.

#![cfg(feature = "server")]

mod collector_support;

use accrue::collector::MetricsPipeline;
use std::time::Duration;

use collector_support::{TestServer, metric_value};
use serde_json::json;

fn fast(b: accrue::collector::CollectorBuilder) -> accrue::collector::CollectorBuilder {
    b.flush_interval(Duration::from_millis(100))
        .granularities(["1h", "1d"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_count_events_and_sum_numeric_data_per_bucket() {
    let s = TestServer::start_with(fast).await;
    let r = s
        .post(
            "/events",
            r#"[{"key":"req","timestamp":"2025-08-25T10:05:00Z","data":{"ms":10,"db":{"rows":2},"path":"/a"}},
                {"key":"req","timestamp":"2025-08-25T10:59:59.9Z","data":{"ms":2.5}},
                {"key":"req","timestamp":"2025-08-25T13:30:00+02:00","data":{"ms":1,"db":{"rows":3}}},
                {"key":"req","timestamp":"2025-08-25T12:00:00Z"},
                {"key":"other","timestamp":"2025-08-25T10:30:00Z","data":{"ms":100}}]"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let expected = json!({
        "at": ["2025-08-25T10:00:00Z", "2025-08-25T11:00:00Z", "2025-08-25T12:00:00Z"],
        "values": [
            {"count": 2, "data": {"ms": 12.5, "db": {"rows": 2}}},
            {"count": 1, "data": {"ms": 1, "db": {"rows": 3}}},
            {"count": 1}
        ]
    });
    s.wait_values(
        "key=req&from=2025-08-25T10:00:00Z&to=2025-08-25T12:00:00Z&granularity=1h",
        &expected,
    )
    .await;
    let day = s
        .values("key=req&from=2025-08-25T00:00:00Z&to=2025-08-25T23:59:59Z&granularity=1d")
        .await;
    assert_eq!(
        day["values"],
        json!([{"count": 4, "data": {"ms": 13.5, "db": {"rows": 5}}}])
    );
    let blanks = s.values(
        "key=other&from=2025-08-25T09:00:00Z&to=2025-08-25T11:00:00Z&granularity=1h&skip_blanks=true",
    )
    .await;
    assert_eq!(
        blanks,
        json!({"at": ["2025-08-25T10:00:00Z"], "values": [{"count": 1, "data": {"ms": 100}}]})
    );
    let m = s.get("/metrics").await.text();
    assert!(metric_value(&m, "accrue_metrics_flushes_total") >= 1.0);
    assert_eq!(metric_value(&m, "accrue_aggregator_adds_total"), 5.0);
    assert_eq!(metric_value(&m, "accrue_metrics_watermark"), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_totals_equal_what_was_posted_under_concurrency() {
    let s = TestServer::start_with(fast).await;
    let client = s.client();
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            tokio::spawn(async move {
                for r in 0..20 {
                    let events: Vec<String> = (0..50)
                        .map(|i| {
                            format!(
                                r#"{{"key":"k{}","timestamp":"2025-01-01T{:02}:00:00Z","data":{{"n":{}}}}}"#,
                                i % 3,
                                (c + r + i) % 24,
                                i
                            )
                        })
                        .collect();
                    let resp = client.post("/events", format!("[{}]", events.join(","))).await;
                    assert_eq!(resp.status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // 8 × 20 × 50 = 8000 events; per key: i % 3 over i in 0..50 gives 17, 17, 16 per request.
    for (key, per_request, n_sum) in [("k0", 17, 408), ("k1", 17, 425), ("k2", 16, 392)] {
        let expected = json!({"at": ["2025-01-01T00:00:00Z"], "values": [{"count": per_request * 160, "data": {"n": n_sum * 160}}]});
        s.wait_values(
            &format!("key={key}&from=2025-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&granularity=1d"),
            &expected,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_flushes_and_crash_free_restart_replays_nothing() {
    // A long flush interval: only the final flush of the graceful stop writes the metrics.
    let s = TestServer::start_with(|b| {
        b.flush_interval(Duration::from_secs(3600))
            .granularities(["1d"])
    })
    .await;
    s.post("/events", r#"[{"key":"a","timestamp":"2025-03-01T10:00:00Z","data":{"v":1}},{"key":"a","timestamp":"2025-03-01T11:00:00Z","data":{"v":2}}]"#).await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |b| {
        b.flush_interval(Duration::from_secs(3600))
            .granularities(["1d"])
    })
    .await;
    let m = s.get("/metrics").await.text();
    assert_eq!(
        metric_value(&m, "accrue_metrics_replayed_events_total"),
        0.0
    );
    assert_eq!(metric_value(&m, "accrue_metrics_watermark"), 2.0);
    assert_eq!(
        s.values("key=a&from=2025-03-01T00:00:00Z&to=2025-03-01T00:00:00Z&granularity=1d")
            .await["values"],
        json!([{"count": 2, "data": {"v": 3}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_metrics_store_is_rebuilt_from_the_events_on_restart() {
    let opts = |b: accrue::collector::CollectorBuilder| fast(b).stats_driver("memory:");
    let s = TestServer::start_with(opts).await;
    s.post(
        "/events",
        r#"[{"key":"m","timestamp":"2025-05-05T05:05:05Z","data":{"x":7}}]"#,
    )
    .await;
    let q = "key=m&from=2025-05-05T00:00:00Z&to=2025-05-05T00:00:00Z&granularity=1d";
    let expected =
        json!({"at": ["2025-05-05T00:00:00Z"], "values": [{"count": 1, "data": {"x": 7}}]});
    s.wait_values(q, &expected).await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, opts).await;
    let m = s.get("/metrics").await.text();
    assert_eq!(
        metric_value(&m, "accrue_metrics_replayed_events_total"),
        1.0
    );
    s.wait_values(q, &expected).await;
}

#[tokio::test]
async fn keys_the_metrics_store_refuses_are_rejected_at_ingest() {
    let s = TestServer::start_with(fast).await;
    for (body, why) in [
        (r#"[{"key":"ok"},{"key":"__system__key__"}]"#, "reserved"),
        (
            r#"[{"key":"ok"},{"key":"__accrue_watermark__1"}]"#,
            "reserved",
        ),
        (r#"[{"key":"ok"},{"key":"tab\there"}]"#, "control character"),
    ] {
        let r = s.post("/events", body).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(
            (v["error"].clone(), v["index"].clone()),
            (json!("Invalid event key"), json!(1))
        );
        assert!(v["detail"].as_str().unwrap().contains(why), "{v}");
    }
    assert_eq!(s.total().await, 0, "nothing of a refused request is stored");
}

#[tokio::test]
async fn values_query_errors() {
    let s = TestServer::start_with(fast).await;
    for (q, status) in [
        ("", 400),
        ("key=a&from=yesterday", 400),
        ("key=a&granularity=1x", 400),
        (
            "key=a&from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            400,
        ),
        (
            "key=a&from=1970-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&granularity=1m",
            400,
        ),
        ("key=a", 200),
    ] {
        let r = s.get(&format!("/v1/values?{q}")).await;
        assert_eq!(r.status, status, "{q}: {}", r.text());
        if status == 400 {
            assert_eq!(r.json()["error"], "Invalid query", "{q}");
        }
    }
    let off = TestServer::start_with(|b| b.metrics_pipeline(MetricsPipeline::Off)).await;
    let r = off.get("/v1/values?key=a").await;
    assert_eq!(r.status, 404);
    assert!(
        off.post("/events", r#"[{"key":"__system__key__"}]"#)
            .await
            .status
            == 200
    );
}

#[tokio::test]
async fn bucket_starts_are_printed_in_the_configured_zone() {
    let s =
        TestServer::start_with(|b| fast(b).time_zone("Asia/Kolkata").granularities(["1d"])).await;
    s.post(
        "/events",
        r#"[{"key":"z","timestamp":"2025-06-01T20:00:00Z"}]"#,
    )
    .await;
    // 20:00Z is 01:30 on June 2nd in Kolkata.
    let expected = json!({"at": ["2025-06-02T00:00:00+05:30"], "values": [{"count": 1}]});
    s.wait_values(
        "key=z&from=2025-06-01T20:00:00Z&to=2025-06-01T20:00:00Z&granularity=1d",
        &expected,
    )
    .await;
}
