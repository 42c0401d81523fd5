//! The conformance suite on SQLite (a fresh in-memory database per case and mode), plus the
//! SQLite-specific cases (invalid JSON, system tracking off, descriptions), table-name
//! validation before any I/O, and two connections on one WAL file.
#![cfg(feature = "sqlite")]

mod stats_conformance;

use std::sync::Arc;

use accrue::metrics::{Buffering, SystemTracking};
use accrue::metrics::{Driver, IdentifierMode, SqliteDriver};
use accrue::time::{Blanks, Granularity, Unit};

async fn sqlite(mode: IdentifierMode) -> Arc<dyn Driver> {
    let driver = SqliteDriver::in_memory("trifle_stats", mode).unwrap();
    driver.setup().await.unwrap();
    driver.setup().await.unwrap(); // idempotent
    Arc::new(driver)
}

conformance_tests!(sqlite);

// ------------------------------------------------- SQLite-specific vectors and properties

use accrue::metrics::{DriverErrorKind, MetricsStore, Value};
use jiff::Timestamp;
use serde_json::json;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A `MetricsStore` over a SQLite file, unbuffered, hourly buckets.
async fn file_stats(path: &std::path::Path, mode: IdentifierMode, tz: &str) -> MetricsStore {
    let d = SqliteDriver::open(path, "trifle_stats", mode).unwrap();
    d.setup().await.unwrap();
    MetricsStore::builder(Arc::new(d))
        .time_zone(tz)
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .build()
        .unwrap()
}

async fn get(stats: &MetricsStore, key: &str, at: Timestamp) -> serde_json::Value {
    let v = stats
        .values(key, at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    Value::Map(v.values[0].clone()).to_json()
}

/// The Separated `at` column is the bucket start as RFC 3339 UTC text, whole seconds.
#[tokio::test]
async fn g9_separated_rows_store_utc_at_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let stats = file_stats(&path, IdentifierMode::Separated, "Europe/Bratislava").await;
    stats
        .track("event", t("2025-01-15T10:00:00+02:00"), json!({"count": 1}))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (granularity, at): (String, String) = conn
        .query_row(
            "SELECT granularity, at FROM trifle_stats WHERE key = 'event'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (granularity.as_str(), at.as_str()),
        ("1h", "2025-01-15T08:00:00Z")
    );
}

/// Rows that older clients stored with `at = "….000000Z"` are read.
#[tokio::test]
async fn g10_legacy_microsecond_at_rows_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let stats = file_stats(&path, IdentifierMode::Separated, "UTC").await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO trifle_stats (key, granularity, at, data)
         VALUES ('event', '1h', '2025-01-15T10:00:00.000000Z', '{\"count\":1}')",
        [],
    )
    .unwrap();
    assert_eq!(
        get(&stats, "event", t("2025-01-15T10:00:00Z")).await,
        json!({"count": 1})
    );
    assert_eq!(
        get(&stats, "event", t("2025-01-15T11:00:00Z")).await,
        json!({})
    );
}

/// A missing row and a row whose data is not JSON both read as `{}`.
#[tokio::test]
async fn i5_invalid_json_reads_as_empty() {
    for mode in IdentifierMode::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let stats = file_stats(&path, mode, "UTC").await;
        let at = t("2025-02-01T11:35:00Z");
        stats.track("event", at, json!({"count": 1})).await.unwrap();
        assert_eq!(
            get(&stats, "event", at).await,
            json!({"count": 1}),
            "{mode:?}"
        );
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n = conn
            .execute("UPDATE trifle_stats SET data = 'invalid_json'", [])
            .unwrap();
        assert!(n >= 1);
        assert_eq!(get(&stats, "event", at).await, json!({}), "{mode:?}");
        assert_eq!(get(&stats, "missing", at).await, json!({}), "{mode:?}");
    }
}

/// On SQLite, system rows count calls per key; with system tracking off there are none.
#[tokio::test]
async fn i13_system_rows_and_tracking_off() {
    for mode in IdentifierMode::ALL {
        for tracking in [true, false] {
            let d = SqliteDriver::in_memory("trifle_stats", mode).unwrap();
            d.setup().await.unwrap();
            let stats = MetricsStore::builder(Arc::new(d))
                .time_zone("UTC")
                .granularities(["1h"])
                .buffer(Buffering::Off)
                .system_tracking(if tracking {
                    SystemTracking::On
                } else {
                    SystemTracking::Off
                })
                .build()
                .unwrap();
            let at = t("2025-02-01T11:35:00Z");
            for _ in 0..3 {
                stats
                    .track("manual", at, json!({"count": 2}))
                    .await
                    .unwrap();
            }
            assert_eq!(get(&stats, "manual", at).await, json!({"count": 6}));
            let sys = get(&stats, accrue::metrics::SYSTEM_KEY, at).await;
            if tracking {
                assert_eq!(sys, json!({"count": 3, "keys": {"manual": 3}}), "{mode:?}");
            } else {
                assert_eq!(sys, json!({}), "{mode:?}");
            }
        }
    }
}

/// Descriptions and table names checked before the file is touched.
#[tokio::test]
async fn descriptions_and_table_names() {
    let d = |mode| SqliteDriver::in_memory("t", mode).unwrap().description();
    assert_eq!(d(IdentifierMode::Full), "SQLiteDriver(J)");
    assert_eq!(d(IdentifierMode::Partial), "SQLiteDriver(P)");
    assert_eq!(d(IdentifierMode::Separated), "SQLiteDriver(S)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.db");
    for bad in [
        "",
        "1abc",
        "a-b",
        "a\"b",
        "t; DROP TABLE x",
        &"x".repeat(55),
    ] {
        let e = SqliteDriver::open(&path, bad, IdentifierMode::Full)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert_eq!(e.kind(), DriverErrorKind::Rejected, "{bad:?}: {e}");
    }
    assert!(!path.exists(), "a rejected table name created the file");
}

/// Two drivers (two connections, as two processes would have) on one WAL file, writing the
/// same buckets concurrently through buffered `MetricsStore`: exact totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_on_one_wal_file_keep_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let node = |id: &'static str| {
        let d = SqliteDriver::open(&path, "trifle_stats", IdentifierMode::Full).unwrap();
        async move {
            d.setup().await.unwrap();
            MetricsStore::builder(Arc::new(d))
                .time_zone("UTC")
                .granularities(["1m", "1h", "1d"])
                .buffer_size(97)
                .writer_id(id)
                .build()
                .unwrap()
        }
    };
    let (a, b) = (node("a").await, node("b").await);
    let at = t("2025-02-01T11:35:00Z");
    let run = |s: MetricsStore| {
        tokio::spawn(async move {
            for i in 0..2_000u64 {
                let key = format!("k{}", i % 10);
                s.track(&key, at, json!({"count": 1, "n": i}))
                    .await
                    .unwrap();
            }
            s.shutdown().await.unwrap();
        })
    };
    let (ra, rb) = (run(a.clone()), run(b.clone()));
    ra.await.unwrap();
    rb.await.unwrap();
    let reader = file_stats(&path, IdentifierMode::Full, "UTC").await;
    let mut count = 0;
    let mut n = 0;
    for k in 0..10 {
        for g in ["1m", "1h", "1d"] {
            let v = reader
                .values(&format!("k{k}"), at, at, g.parse().unwrap(), Blanks::Keep)
                .await
                .unwrap();
            let v = Value::Map(v.values[0].clone()).to_json();
            if g == "1h" {
                count += v["count"].as_u64().unwrap();
                n += v["n"].as_u64().unwrap();
            }
            assert_eq!(v["count"], 400, "k{k} {g}");
        }
    }
    assert_eq!(count, 4_000);
    assert_eq!(n, 2 * (0..2_000u64).sum::<u64>());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A stored number beyond the range of `f64` (`9e999`, valid JSON an older build could write)
/// reads as `null` instead of emptying its row; an increment of it keeps it, and the other
/// fields go on counting.
#[tokio::test]
async fn a_stored_number_beyond_f64_reads_as_null() {
    for mode in IdentifierMode::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let stats = file_stats(&path, mode, "UTC").await;
        let at = t("2025-02-01T11:35:00Z");
        stats
            .track("event", at, json!({"x": 1, "y": 1}))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n = conn
            .execute(
                r#"UPDATE trifle_stats SET data = '{"x":9e999,"y":1}' WHERE key LIKE 'event%'"#,
                [],
            )
            .unwrap();
        assert!(n >= 1);
        assert_eq!(
            get(&stats, "event", at).await,
            json!({"x": null, "y": 1}),
            "{mode:?}"
        );
        stats
            .track("event", at, json!({"x": 1, "y": 1}))
            .await
            .unwrap();
        assert_eq!(
            get(&stats, "event", at).await,
            json!({"x": null, "y": 2}),
            "{mode:?}"
        );
    }
}
