//! The conformance suite on PostgreSQL (`ACCRUE_PG_URL`), each case in its own table inside a
//! schema of this test process, plus the PostgreSQL cases, the stored layout, two
//! nodes on separate pools, and URL opening.
#![cfg(feature = "postgres")]

mod drivers_common;
mod stats_conformance;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use accrue::metrics::Buffering;
use accrue::metrics::{
    BatchId, Driver, DriverErrorKind, FieldOp, IdentifierMode, Number, PostgresDriver, RowId,
    RowUpdate, Value, WriteBatch,
};
use drivers_common::{is_stale, once, service_url, unique};
use serde_json::json;
use sqlx::Row;

const VAR: &str = "ACCRUE_PG_URL";

fn schema() -> &'static str {
    static SCHEMA: OnceLock<String> = OnceLock::new();
    SCHEMA.get_or_init(|| unique("accrue_t"))
}

/// A pool on the test database with this process's schema created (and stale ones dropped).
async fn admin(url: &str) -> sqlx::PgPool {
    static CLEANED: AtomicBool = AtomicBool::new(false);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    if once(&CLEANED) {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'accrue\\_t\\_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for name in names.iter().filter(|n| is_stale("accrue_t", n)) {
            let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        }
    }
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema());
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
        // Concurrent creation from parallel tests: fine if it exists now.
        assert!(
            e.to_string().contains("already exists") || e.to_string().contains("duplicate key"),
            "{e}"
        );
    }
    pool
}

async fn table_driver(url: &str, table: &str, mode: IdentifierMode) -> PostgresDriver {
    let driver = PostgresDriver::connect(url, table, mode).await.unwrap();
    driver.setup().await.unwrap();
    driver.setup().await.unwrap(); // idempotent
    driver
}

async fn postgres(mode: IdentifierMode) -> Option<Arc<dyn Driver>> {
    let url = service_url(VAR)?;
    admin(&url).await.close().await;
    let table = format!("{}.{}", schema(), unique("t"));
    Some(Arc::new(table_driver(&url, &table, mode).await))
}

conformance_tests!(optional: postgres);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn row(key: &str) -> RowId {
    RowId::new(key, "1h".parse().unwrap(), t("2025-01-15T10:00:00Z"))
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

/// A stored number beyond the range of `f64` (`numeric` holds any; another writer or an older
/// build could store one) reads as `null` instead of emptying its row; an increment keeps it,
/// and the other fields go on counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_number_beyond_f64_reads_as_null() {
    let Some(url) = service_url(VAR) else { return };
    let pool = admin(&url).await;
    let name = unique("huge");
    let d = table_driver(&url, &format!("{}.{name}", schema()), IdentifierMode::Full).await;
    let r = row("k");
    d.write(&batch(
        1,
        vec![(r.clone(), vec![("x", inc(1)), ("y", inc(1))])],
    ))
    .await
    .unwrap();
    let sql = format!(
        r#"UPDATE "{}"."{name}" SET data = '{{"x": 2e308, "y": 1}}'"#,
        schema()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"x": null, "y": 1})
    );
    d.write(&batch(
        2,
        vec![(
            r.clone(),
            vec![("x", FieldOp::Inc(Number::Float(-1.5))), ("y", inc(1))],
        )],
    ))
    .await
    .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"x": null, "y": 2})
    );
    let sql = format!(
        r#"SELECT (data -> 'x')::numeric = 2e308 FROM "{}"."{name}""#,
        schema()
    );
    let kept: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(kept);
}

/// Two separate pools (two nodes) on one table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_separate_pools() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    for mode in IdentifierMode::ALL {
        let table = format!("{}.{}", schema(), unique("nodes"));
        let a = table_driver(&url, &table, mode).await;
        let b = table_driver(&url, &table, mode).await;
        stats_conformance::two_nodes_exact_totals(Arc::new(a), Arc::new(b)).await;
    }
}

/// The stored layout: `data` is the packed flat object, integers stay
/// integers, fractional sums are exact decimals, a row whose data is `{}` reads as `{}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_layout_and_vectors() {
    let Some(url) = service_url(VAR) else { return };
    let pool = admin(&url).await;
    let name = unique("layout");
    let table = format!("{}.{name}", schema());
    let d = table_driver(&url, &table, IdentifierMode::Full).await;
    let r = row("event::logs");
    // Stored {count:2,"meta.duration":1} + inc {count:3,"meta.duration":2}.
    d.write(&batch(
        1,
        vec![(
            r.clone(),
            vec![("count", inc(2)), ("meta.duration", inc(1))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        2,
        vec![(
            r.clone(),
            vec![("count", inc(3)), ("meta.duration", inc(2))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        3,
        vec![(r.clone(), vec![("status", FieldOp::Set("ok".into()))])],
    ))
    .await
    .unwrap();
    d.write(&batch(
        4,
        vec![(
            r.clone(),
            vec![
                ("a", FieldOp::Inc(Number::Float(0.1))),
                ("b", FieldOp::Inc(Number::Float(1.5))),
            ],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        5,
        vec![(
            r.clone(),
            vec![
                ("a", FieldOp::Inc(Number::Float(0.2))),
                ("b", FieldOp::Inc(Number::Float(1.5))),
            ],
        )],
    ))
    .await
    .unwrap();
    let sql = format!("SELECT key, data::text FROM \"{}\".\"{name}\"", schema());
    let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get::<String, _>(0), "event::logs::1h::1736935200");
    let data: serde_json::Value = serde_json::from_str(&stored[0].get::<String, _>(1)).unwrap();
    // 0.1 + 0.2 is exactly 0.3 in numeric (a float sum would give 0.30000000000000004).
    assert_eq!(
        data,
        json!({"count": 5, "meta.duration": 3, "status": "ok", "a": 0.3, "b": 3.0})
    );
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(got[0]["count"], Value::Int(5));
    assert_eq!(got[0]["b"], Value::Float(3.0));
    // A row whose data is `{}` (or not an object) reads as `{}`; a write repairs it.
    let sql = format!(
        "INSERT INTO \"{}\".\"{name}\" (key, data) VALUES ('empty::1h::1', '{{}}'), ('arr::1h::1', '[1]')",
        schema()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    let odd = |k: &str| {
        RowId::new(
            k,
            "1h".parse().unwrap(),
            jiff::Timestamp::from_second(1).unwrap(),
        )
    };
    let got = d.read(&[odd("empty"), odd("arr")]).await.unwrap();
    assert!(got[0].is_empty() && got[1].is_empty());
    d.write(&batch(6, vec![(odd("arr"), vec![("count", inc(1))])]))
        .await
        .unwrap();
    assert_eq!(
        d.read(&[odd("arr")]).await.unwrap()[0]["count"],
        Value::Int(1)
    );
    pool.close().await;
}

/// Separated layout (key, granularity, at TIMESTAMPTZ) and system rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separated_layout() {
    let Some(url) = service_url(VAR) else { return };
    let pool = admin(&url).await;
    let name = unique("sep");
    let d = table_driver(
        &url,
        &format!("{}.{name}", schema()),
        IdentifierMode::Separated,
    )
    .await;
    let stats = accrue::metrics::MetricsStore::builder(Arc::new(d) as Arc<dyn Driver>)
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    for _ in 0..2 {
        stats
            .untracked()
            .track("events", t("2025-02-01T11:35:00Z"), json!({"count": 2}))
            .await
            .unwrap();
    }
    let sql = format!(
        "SELECT key, granularity, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), data::text \
         FROM \"{}\".\"{name}\" ORDER BY key",
        schema()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&pool)
        .await
        .unwrap();
    let got: Vec<(String, String, String, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                serde_json::from_str(&r.get::<String, _>(3)).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "__system__key__".to_owned(),
                "1h".to_owned(),
                "2025-02-01T11:00:00Z".to_owned(),
                json!({"count": 2, "keys.__untracked__": 2})
            ),
            (
                "events".to_owned(),
                "1h".to_owned(),
                "2025-02-01T11:00:00Z".to_owned(),
                json!({"count": 4})
            ),
        ]
    );
    pool.close().await;
}

/// Bad table names are refused before any I/O; an unreachable server is a connection error.
#[tokio::test]
async fn validation_and_connection_errors() {
    for bad in [
        "",
        "1abc",
        "a-b",
        "a;drop",
        "a.b.c",
        "\"x\"",
        &"x".repeat(55),
    ] {
        let e = PostgresDriver::connect(
            "postgres://nobody@127.0.0.1:1/none",
            bad,
            IdentifierMode::Full,
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), DriverErrorKind::Rejected, "{bad:?}: {e}");
    }
    let e = PostgresDriver::connect(
        "postgres://nobody:hunter2@127.0.0.1:1/none",
        "trifle_stats",
        IdentifierMode::Full,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Connection, "{e}");
    let text = drivers_common::chain(&e);
    assert!(!text.contains("hunter2"), "{text}");
}

/// `connect_driver` with options in the query string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_driver_from_url() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let table = format!("{}.{}", schema(), unique("url"));
    let d = accrue::metrics::connect_driver(&format!("{url}{sep}table={table}&mode=partial"))
        .await
        .unwrap();
    assert_eq!(d.description(), "PostgresDriver(P)");
    d.write(&batch(1, vec![(row("k"), vec![("count", inc(1))])]))
        .await
        .unwrap();
    assert_eq!(
        d.read(&[row("k")]).await.unwrap()[0]["count"],
        Value::Int(1)
    );
    let e = accrue::metrics::connect_driver(&format!("{url}{sep}table=bad-name"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Rejected);
}
