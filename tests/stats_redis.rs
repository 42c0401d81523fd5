//! The conformance suite on Redis (`ACCRUE_REDIS_URL`), each case under its own key prefix,
//! plus the Redis cases, the stored strings, expiry, type conflicts,
//! two nodes on separate connections, and URL opening.
#![cfg(feature = "redis")]

mod drivers_common;
mod stats_conformance;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use accrue::metrics::Buffering;
use accrue::metrics::{
    BatchId, Driver, DriverErrorKind, FieldOp, IdentifierMode, Number, RedisDriver, RowId,
    RowUpdate, Value, WriteBatch,
};
use drivers_common::{is_stale, once, service_url, unique};
use redis::AsyncCommands;
use serde_json::json;

const VAR: &str = "ACCRUE_REDIS_URL";

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    static CLEANED: AtomicBool = AtomicBool::new(false);
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    if once(&CLEANED) {
        let keys: Vec<String> = conn.keys("accrue_t_*").await.unwrap();
        let stale: Vec<&String> = keys
            .iter()
            .filter(|k| is_stale("accrue_t", k.split("::").next().unwrap_or("")))
            .collect();
        for k in stale {
            let _: () = conn.del(k).await.unwrap();
        }
    }
    conn
}

async fn driver(url: &str, prefix: &str) -> RedisDriver {
    let d = RedisDriver::builder()
        .prefix(prefix)
        .connect(url)
        .await
        .unwrap();
    d.setup().await.unwrap();
    d
}

async fn redis_driver(_mode: IdentifierMode) -> Option<Arc<dyn Driver>> {
    // Redis stores Full identities only: every mode's run uses a Full driver.
    let url = service_url(VAR)?;
    let _ = raw(&url).await;
    Some(Arc::new(driver(&url, &unique("accrue_t")).await))
}

conformance_tests!(optional: redis_driver);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn batch(seq: u64, rows: Vec<(RowId, Vec<(&str, FieldOp)>)>) -> WriteBatch {
    WriteBatch {
        id: BatchId {
            writer: "w".into(),
            seq,
        },
        rows: rows
            .into_iter()
            .map(|(row, fields)| RowUpdate {
                row,
                fields: fields.into_iter().map(|(n, o)| (n.to_owned(), o)).collect(),
            })
            .collect(),
    }
}

fn inc(i: i64) -> FieldOp {
    FieldOp::Inc(Number::Int(i))
}

fn fl(f: f64) -> FieldOp {
    FieldOp::Inc(Number::Float(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_separate_connections() {
    let Some(url) = service_url(VAR) else { return };
    let prefix = unique("accrue_t");
    let a = driver(&url, &prefix).await;
    let b = driver(&url, &prefix).await;
    stats_conformance::two_nodes_exact_totals(Arc::new(a), Arc::new(b)).await;
}

/// The hash layout and its strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hashes_and_vectors() {
    let Some(url) = service_url(VAR) else { return };
    let mut conn = raw(&url).await;
    let prefix = unique("accrue_t");
    let d = driver(&url, &prefix).await;
    let r = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    let key = format!("{prefix}::events::1h::1738407600");
    assert_eq!(d.key_of(&r), key);
    // Integers are stored as integer strings; a float after an integer works.
    d.write(&batch(
        1,
        vec![(r.clone(), vec![("count", inc(5)), ("duration", inc(100))])],
    ))
    .await
    .unwrap();
    d.write(&batch(
        2,
        vec![(r.clone(), vec![("count", inc(10)), ("ms", fl(1.5))])],
    ))
    .await
    .unwrap();
    d.write(&batch(
        3,
        vec![(r.clone(), vec![("ms", inc(1)), ("duration", fl(0.5))])],
    ))
    .await
    .unwrap();
    d.write(&batch(4, vec![(r.clone(), vec![("half", fl(1.5))])]))
        .await
        .unwrap();
    d.write(&batch(5, vec![(r.clone(), vec![("half", fl(1.5))])]))
        .await
        .unwrap();
    // Sets keep their text; a string that looks like a number is quoted.
    d.write(&batch(
        6,
        vec![(
            r.clone(),
            vec![
                ("config.enabled", FieldOp::Set(Value::Bool(true))),
                ("config.limit", FieldOp::Set(Value::Int(50))),
                ("status", FieldOp::Set("active".into())),
                ("code", FieldOp::Set("123".into())),
            ],
        )],
    ))
    .await
    .unwrap();
    let mut stored: Vec<(String, String)> = conn.hgetall(&key).await.unwrap();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("code", "\"123\""),
            ("config.enabled", "true"),
            ("config.limit", "50"),
            ("count", "15"),
            ("duration", "100.5"),
            ("half", "3.0"),
            ("ms", "2.5"),
            ("status", "active"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"code": "123", "config.enabled": true, "config.limit": 50, "count": 15,
               "duration": 100.5, "half": 3.0, "ms": 2.5, "status": "active"})
    );
    // An integer sum past i64 becomes a float instead of failing (HINCRBY would overflow).
    d.write(&batch(7, vec![(r.clone(), vec![("count", inc(i64::MAX))])]))
        .await
        .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert!(
        matches!(got[0]["count"], Value::Float(f) if f > 9.2e18),
        "{:?}",
        got[0]["count"]
    );
    // Through MetricsStore: system rows under the prefix.
    let stats = accrue::metrics::MetricsStore::builder(
        Arc::new(driver(&url, &prefix).await) as Arc<dyn Driver>
    )
    .time_zone("UTC")
    .granularities(["1h"])
    .buffer(Buffering::Off)
    .build()
    .unwrap();
    stats
        .untracked()
        .track("other", t("2025-02-01T11:10:00Z"), json!({"count": 3}))
        .await
        .unwrap();
    let sys: Vec<(String, String)> = conn
        .hgetall(format!("{prefix}::__system__key__::1h::1738407600"))
        .await
        .unwrap();
    let mut sys = sys;
    sys.sort();
    assert_eq!(
        sys,
        [("count", "1"), ("keys.__untracked__", "1")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

/// Another separator.
/// A stored number beyond the range of `f64` (`2e+308`: an older build's `HINCRBYFLOAT`, which
/// sums in long double, could store it) reads as `null`; an increment keeps it, byte for byte,
/// as it keeps a stored `1e308` that a float increment would take beyond the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_number_beyond_f64_reads_as_null() {
    let Some(url) = service_url(VAR) else { return };
    let mut conn = raw(&url).await;
    let prefix = unique("accrue_t");
    let d = driver(&url, &prefix).await;
    let r = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    let key = d.key_of(&r);
    let _: () = conn
        .hset_multiple(&key, &[("x", "2e+308"), ("y", "1"), ("z", "1e308")])
        .await
        .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"x": null, "y": 1, "z": 1e308})
    );
    d.write(&batch(
        1,
        vec![(
            r.clone(),
            vec![("x", fl(1.5)), ("y", inc(1)), ("z", fl(1e308))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        2,
        vec![(r.clone(), vec![("x", inc(1)), ("z", inc(1))])],
    ))
    .await
    .unwrap();
    let stored: Vec<String> = conn.hmget(&key, &["x", "y"]).await.unwrap();
    assert_eq!(stored, ["2e+308", "2"]);
    // z kept 1e308 through the overflowing increment, then took the +1 (HINCRBYFLOAT writes
    // the long double sum out in full digits).
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(got[0]["x"], Value::Null);
    assert_eq!(got[0]["y"], Value::Int(2));
    assert!(
        matches!(got[0]["z"], Value::Float(z) if ((z - 1e308) / 1e308).abs() < 1e-12),
        "{:?}",
        got[0]["z"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_separator() {
    let Some(url) = service_url(VAR) else { return };
    let prefix = unique("accrue_t");
    let d = RedisDriver::builder()
        .prefix(&prefix)
        .separator("--")
        .connect(&url)
        .await
        .unwrap();
    let r = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    assert_eq!(d.key_of(&r), format!("{prefix}--events--1h--1738407600"));
}

/// `expire_after`: each bucket expires that long after its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_expire_after_their_start() {
    let Some(url) = service_url(VAR) else { return };
    let mut conn = raw(&url).await;
    let prefix = unique("accrue_t");
    let d = RedisDriver::builder()
        .prefix(&prefix)
        .expire_after(Duration::from_secs(3600))
        .connect(&url)
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let at = jiff::Timestamp::from_second(now.as_second() - now.as_second() % 60).unwrap();
    let fresh = RowId::new("k", "1m".parse().unwrap(), at);
    let old = RowId::new(
        "k",
        "1m".parse().unwrap(),
        at - jiff::SignedDuration::from_hours(2),
    );
    d.write(&batch(
        1,
        vec![
            (fresh.clone(), vec![("count", inc(1))]),
            (old.clone(), vec![("count", inc(1))]),
        ],
    ))
    .await
    .unwrap();
    let ttl: i64 = conn.ttl(d.key_of(&fresh)).await.unwrap();
    assert!((3500..=3600).contains(&ttl), "{ttl}");
    let exists: bool = conn.exists(d.key_of(&old)).await.unwrap();
    assert!(!exists, "a bucket past its expiry is gone");
}

/// A key of another type under the prefix fails the batch before anything is written; a
/// non-numeric increment cannot happen: `track` refuses it before any I/O.
/// A writer's mark never expires: a checkpointed writer idle for weeks still resumes from its
/// position instead of replaying its source from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_mark_does_not_expire() {
    let Some(url) = service_url(VAR) else { return };
    let mut conn = raw(&url).await;
    let prefix = unique("accrue_t");
    let d = driver(&url, &prefix).await;
    let row = RowId::new("k", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    d.write(&batch(41, vec![(row, vec![("count", inc(1))])]))
        .await
        .unwrap();
    assert_eq!(d.applied("w").await.unwrap(), Some(41));
    let marks: Vec<String> = conn.keys(format!("{prefix}*__batches__*")).await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    let ttl: i64 = conn.ttl(&marks[0]).await.unwrap();
    assert_eq!(ttl, -1, "the mark {} has no expiry", marks[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_fails_without_partial_writes() {
    let Some(url) = service_url(VAR) else { return };
    let mut conn = raw(&url).await;
    let prefix = unique("accrue_t");
    let d = driver(&url, &prefix).await;
    let a = RowId::new("a", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    let b = RowId::new("b", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    let _: () = conn.set(d.key_of(&b), "not a hash").await.unwrap();
    let e = d
        .write(&batch(
            1,
            vec![
                (a.clone(), vec![("count", inc(1))]),
                (b.clone(), vec![("count", inc(1))]),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Rejected, "{e}");
    assert!(d.read(std::slice::from_ref(&a)).await.unwrap()[0].is_empty());
    let _: () = conn.del(d.key_of(&b)).await.unwrap();
    d.write(&batch(
        1,
        vec![
            (a.clone(), vec![("count", inc(1))]),
            (b.clone(), vec![("count", inc(1))]),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(d.read(&[a, b]).await.unwrap()[1]["count"], Value::Int(1));
}

#[tokio::test]
async fn validation_and_connection_errors() {
    for bad in ["", "a b", "a\nb", "x{y}", &"p".repeat(65)] {
        let e = RedisDriver::builder()
            .prefix(bad)
            .connect("redis://127.0.0.1:1/")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DriverErrorKind::Rejected, "{bad:?}");
    }
    let e = RedisDriver::builder()
        .connect("redis://:hunter2@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Connection, "{e}");
    let text = drivers_common::chain(&e);
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_driver_from_url() {
    let Some(url) = service_url(VAR) else { return };
    let prefix = unique("accrue_t");
    let sep = if url.contains('?') { '&' } else { '?' };
    let d = accrue::metrics::connect_driver(&format!("{url}{sep}prefix={prefix}&ttl=86400"))
        .await
        .unwrap();
    assert_eq!(d.description(), "RedisDriver(J)");
    let e = accrue::metrics::connect_driver(&format!("{url}{sep}mode=separated"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Rejected);
}
