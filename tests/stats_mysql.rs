//! The conformance suite on MySQL / MariaDB (`ACCRUE_MYSQL_URL`), each case in its own table
//! inside a database of this test process, plus the MySQL cases, the
//! stored layout, two nodes on separate pools, and URL opening.
#![cfg(feature = "mysql")]

mod drivers_common;
mod stats_conformance;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use accrue::metrics::{
    BatchId, Driver, DriverErrorKind, FieldOp, IdentifierMode, MysqlDriver, Number, RowId,
    RowUpdate, Value, WriteBatch,
};
use accrue::metrics::{Buffering, SystemTracking};
use accrue::time::{Blanks, Granularity, Unit};
use drivers_common::{is_stale, once, service_url, unique};
use serde_json::json;
use sqlx::Row;

const VAR: &str = "ACCRUE_MYSQL_URL";

fn database() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| unique("accrue_t"))
}

/// A pool with this process's database created (and stale ones dropped).
async fn admin(url: &str) -> sqlx::MySqlPool {
    static CLEANED: AtomicBool = AtomicBool::new(false);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    if once(&CLEANED) {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'accrue\\_t\\_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for name in names.iter().filter(|n| is_stale("accrue_t", n)) {
            let sql = format!("DROP DATABASE IF EXISTS `{name}`");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        }
    }
    let sql = format!("CREATE DATABASE IF NOT EXISTS `{}`", database());
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn table_driver(url: &str, table: &str, mode: IdentifierMode) -> MysqlDriver {
    let driver = MysqlDriver::connect(url, table, mode).await.unwrap();
    driver.setup().await.unwrap();
    driver.setup().await.unwrap(); // idempotent
    driver
}

async fn mysql(mode: IdentifierMode) -> Option<Arc<dyn Driver>> {
    let url = service_url(VAR)?;
    admin(&url).await.close().await;
    let table = format!("{}.{}", database(), unique("t"));
    Some(Arc::new(table_driver(&url, &table, mode).await))
}

conformance_tests!(optional: mysql);

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

/// A stored number beyond the range of `f64` (MariaDB's JSON text holds `9e999`; another
/// writer could store one) reads as `null` instead of emptying its row; an increment keeps it
/// (casting it would fail the whole batch), and the other fields count as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_number_beyond_f64_reads_as_null() {
    let Some(url) = service_url(VAR) else { return };
    let pool = admin(&url).await;
    let name = unique("huge");
    let d = table_driver(
        &url,
        &format!("{}.{name}", database()),
        IdentifierMode::Full,
    )
    .await;
    let r = RowId::new("k", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    d.write(&batch(
        1,
        vec![(r.clone(), vec![("x", inc(1)), ("y", inc(1))])],
    ))
    .await
    .unwrap();
    let sql = format!(
        r#"UPDATE `{}`.`{name}` SET data = '{{"x": 9e999, "y": 1}}'"#,
        database()
    );
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
        // MySQL's JSON type refuses such a number: nothing to read back.
        eprintln!("the server does not store 9e999 in JSON: {e}");
        return;
    }
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"x": null, "y": 1})
    );
    d.write(&batch(
        2,
        vec![(
            r.clone(),
            vec![("x", FieldOp::Inc(Number::Float(1.5))), ("y", inc(1))],
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
        "SELECT CAST(JSON_EXTRACT(data, '$.x') AS CHAR) FROM `{}`.`{name}`",
        database()
    );
    let kept: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, "9e999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_separate_pools() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    for mode in IdentifierMode::ALL {
        let table = format!("{}.{}", database(), unique("nodes"));
        let a = table_driver(&url, &table, mode).await;
        let b = table_driver(&url, &table, mode).await;
        stats_conformance::two_nodes_exact_totals(Arc::new(a), Arc::new(b)).await;
    }
}

/// The stored layout: flat packed JSON, integer sums stay integers,
/// fractional sums are exact decimals with trailing zeros trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_layout_and_vectors() {
    let Some(url) = service_url(VAR) else { return };
    let pool = admin(&url).await;
    let name = unique("layout");
    let d = table_driver(
        &url,
        &format!("{}.{name}", database()),
        IdentifierMode::Partial,
    )
    .await;
    let r = RowId::new("metric", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    let r2 = RowId::new("other", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    let fields = || vec![("count", inc(2)), ("nested.requests", inc(3))];
    d.write(&batch(
        1,
        vec![(r.clone(), fields()), (r2.clone(), fields())],
    ))
    .await
    .unwrap();
    d.write(&batch(2, vec![(r.clone(), vec![("count", inc(1))])]))
        .await
        .unwrap();
    let f = |x| FieldOp::Inc(Number::Float(x));
    d.write(&batch(
        3,
        vec![(
            r.clone(),
            vec![("a", f(0.1)), ("b", f(1.5)), ("c", f(1e-7))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        4,
        vec![(
            r.clone(),
            vec![("a", f(0.2)), ("b", f(1.5)), ("c", f(2.5e-7))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        5,
        vec![(
            r.clone(),
            vec![("big", f(1e300)), ("status", FieldOp::Set("ok".into()))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        6,
        vec![(
            r.clone(),
            vec![("big", f(1e300)), ("none", FieldOp::Set(Value::Null))],
        )],
    ))
    .await
    .unwrap();
    let sql = format!(
        "SELECT `key`, DATE_FORMAT(`at`, '%Y-%m-%d %H:%i:%s.%f'), CAST(data AS CHAR) FROM `{}`.`{name}` WHERE `key` = 'metric::1h'",
        database()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "metric::1h");
    assert_eq!(row.get::<String, _>(1), "2026-01-01 10:00:00.000000");
    let data: serde_json::Value = serde_json::from_str(&row.get::<String, _>(2)).unwrap();
    assert_eq!(
        data,
        json!({"count": 3, "nested.requests": 3, "a": 0.3, "b": 3.0, "c": 3.5e-7,
               "big": 2e300, "status": "ok", "none": null})
    );
    let got = d.read(&[r.clone(), r2.clone()]).await.unwrap();
    assert_eq!(got[0]["count"], Value::Int(3));
    assert_eq!(got[0]["b"], Value::Float(3.0));
    assert_eq!(
        Value::Map(got[1].clone()).to_json(),
        json!({"count": 2, "nested.requests": 3})
    );
    pool.close().await;
}

/// Keys are compared exactly (utf8mb4_bin): `Events` and `events` are two series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_case_sensitive() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    let d = table_driver(
        &url,
        &format!("{}.{}", database(), unique("case")),
        IdentifierMode::Full,
    )
    .await;
    let a = RowId::new("Events", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    let b = RowId::new("events", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    d.write(&batch(
        1,
        vec![
            (a.clone(), vec![("count", inc(1))]),
            (b.clone(), vec![("count", inc(5))]),
        ],
    ))
    .await
    .unwrap();
    let got = d.read(&[a, b]).await.unwrap();
    assert_eq!(
        (got[0]["count"].clone(), got[1]["count"].clone()),
        (Value::Int(1), Value::Int(5))
    );
}

/// System rows through `MetricsStore` in every mode; tracking off writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_rows_and_tracking_off() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    for mode in IdentifierMode::ALL {
        for tracking in [true, false] {
            let d = table_driver(&url, &format!("{}.{}", database(), unique("sys")), mode).await;
            let stats = accrue::metrics::MetricsStore::builder(Arc::new(d) as Arc<dyn Driver>)
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
            stats
                .assert("manual", at, json!({"count": 1, "meta": {"duration": 2}}))
                .await
                .unwrap();
            for _ in 0..3 {
                stats
                    .track("manual", at, json!({"count": 2}))
                    .await
                    .unwrap();
            }
            let get = |key: &'static str| {
                let stats = stats.clone();
                async move {
                    let v = stats
                        .values(key, at, at, Granularity::one(Unit::Hour), Blanks::Keep)
                        .await
                        .unwrap();
                    Value::Map(v.values[0].clone()).to_json()
                }
            };
            assert_eq!(
                get("manual").await,
                json!({"count": 7, "meta": {"duration": 2}})
            );
            let sys = get(accrue::metrics::SYSTEM_KEY).await;
            if tracking {
                assert_eq!(sys, json!({"count": 4, "keys": {"manual": 4}}), "{mode:?}");
            } else {
                assert_eq!(sys, json!({}));
            }
        }
    }
}

#[tokio::test]
async fn validation_and_connection_errors() {
    for bad in ["", "1abc", "a-b", "a`b", "a.b.c", &"x".repeat(55)] {
        let e = MysqlDriver::connect("mysql://nobody@127.0.0.1:1/none", bad, IdentifierMode::Full)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DriverErrorKind::Rejected, "{bad:?}: {e}");
    }
    let e = MysqlDriver::connect(
        "mysql://nobody:hunter2@127.0.0.1:1/none",
        "trifle_stats",
        IdentifierMode::Full,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Connection, "{e}");
    let text = drivers_common::chain(&e);
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_driver_from_url() {
    let Some(url) = service_url(VAR) else { return };
    admin(&url).await.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let table = format!("{}.{}", database(), unique("url"));
    let mariadb = url.replacen("mysql:", "mariadb:", 1);
    let d = accrue::metrics::connect_driver(&format!("{mariadb}{sep}table={table}&mode=separated"))
        .await
        .unwrap();
    assert_eq!(d.description(), "MySQLDriver(S)");
    let r = RowId::new("k", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    d.write(&batch(1, vec![(r.clone(), vec![("count", inc(1))])]))
        .await
        .unwrap();
    assert_eq!(d.read(&[r]).await.unwrap()[0]["count"], Value::Int(1));
}
