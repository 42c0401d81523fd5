//! The conformance suite on MongoDB (`ACCRUE_MONGO_URL`; SecantusDB in CI), each case in its
//! own collection inside a database of this test process, plus the MongoDB vectors
//! nested documents, field-name safety, path collisions, expiry, two nodes on
//! separate clients, and URL opening.
#![cfg(feature = "mongodb")]

mod drivers_common;
mod stats_conformance;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use accrue::metrics::Buffering;
use accrue::metrics::{
    BatchId, Driver, DriverErrorKind, FieldOp, IdentifierMode, MongoDriver, Number, PathCodec,
    RowId, RowUpdate, Value, WriteBatch,
};
use accrue::time::{Blanks, Granularity, Unit};
use drivers_common::{is_stale, once, service_url, unique};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::json;

const VAR: &str = "ACCRUE_MONGO_URL";

fn database() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| unique("accrue_t"))
}

async fn client(url: &str) -> mongodb::Client {
    static CLEANED: AtomicBool = AtomicBool::new(false);
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    if once(&CLEANED) {
        for name in client.list_database_names().await.unwrap() {
            if is_stale("accrue_t", &name) {
                let _ = client.database(&name).drop().await;
            }
        }
    }
    client
}

async fn coll_driver(
    url: &str,
    coll: &str,
    mode: IdentifierMode,
    ttl: Option<Duration>,
) -> MongoDriver {
    let mut b = MongoDriver::builder()
        .database(database())
        .collection(coll)
        .mode(mode);
    if let Some(ttl) = ttl {
        b = b.expire_after(ttl);
    }
    let d = b.connect(url).await.unwrap();
    d.setup().await.unwrap();
    d.setup().await.unwrap(); // idempotent
    d
}

async fn mongo(mode: IdentifierMode) -> Option<Arc<dyn Driver>> {
    let url = service_url(VAR)?;
    let _ = client(&url).await;
    Some(Arc::new(coll_driver(&url, &unique("c"), mode, None).await))
}

conformance_tests!(optional: mongo);

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

async fn docs(d: &MongoDriver) -> Vec<Document> {
    d.collection()
        .find(doc! {})
        .projection(doc! {"_id": 0})
        .sort(doc! {"key": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// A stored number that is not a finite `f64` (an infinite double or a huge `Decimal128`, from
/// another writer or an older build) reads as `null`; an increment keeps it, and the other
/// fields go on counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_number_beyond_f64_reads_as_null() {
    let Some(url) = service_url(VAR) else { return };
    let d = coll_driver(&url, &unique("huge"), IdentifierMode::Full, None).await;
    let r = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    d.write(&batch(1, vec![(r.clone(), vec![("y", inc(1))])]))
        .await
        .unwrap();
    let huge: mongodb::bson::Decimal128 = "1E+400".parse().unwrap();
    d.collection()
        .update_one(
            doc! {},
            doc! {"$set": {"data.x": f64::INFINITY, "data.z": huge}},
        )
        .await
        .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        Value::Map(got[0].clone()).to_json(),
        json!({"x": null, "y": 1, "z": null})
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
        json!({"x": null, "y": 2, "z": null})
    );
    let stored = &docs(&d).await[0];
    let data = stored.get_document("data").unwrap();
    assert_eq!(data.get("x"), Some(&Bson::Double(f64::INFINITY)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_separate_clients() {
    let Some(url) = service_url(VAR) else { return };
    for mode in IdentifierMode::ALL {
        let coll = unique("nodes");
        let a = coll_driver(&url, &coll, mode, None).await;
        let b = coll_driver(&url, &coll, mode, None).await;
        stats_conformance::two_nodes_exact_totals(Arc::new(a), Arc::new(b)).await;
    }
}

/// Separated documents with nested `data`, the unique index, an increment on a
/// stored 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separated_documents_and_indexes() {
    let Some(url) = service_url(VAR) else { return };
    let d = coll_driver(&url, &unique("sep"), IdentifierMode::Separated, None).await;
    let r = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    d.write(&batch(
        1,
        vec![(
            r.clone(),
            vec![("stats.errors", inc(2)), ("stats.requests", inc(10))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(
        2,
        vec![(
            r.clone(),
            vec![
                ("config.enabled", FieldOp::Set(Value::Bool(true))),
                ("config.limit", FieldOp::Set(Value::Int(50))),
                ("count", FieldOp::Set(Value::Int(10))),
            ],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(3, vec![(r.clone(), vec![("count", inc(5))])]))
        .await
        .unwrap();
    let all = docs(&d).await;
    assert_eq!(all.len(), 1);
    let doc = &all[0];
    assert_eq!(doc.get_str("key").unwrap(), "events");
    assert_eq!(doc.get_str("granularity").unwrap(), "1h");
    assert_eq!(
        doc.get_datetime("at").unwrap().timestamp_millis(),
        t("2025-02-01T11:00:00Z").as_millisecond()
    );
    assert_eq!(
        doc.get_document("data").unwrap(),
        &doc! {"stats": {"errors": 2_i64, "requests": 10_i64},
        "config": {"enabled": true, "limit": 50_i64}, "count": 15_i64}
    );
    let indexes: Vec<Document> = d
        .collection()
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.keys)
        .collect();
    assert!(
        indexes.contains(&doc! {"key": 1, "granularity": 1, "at": -1}),
        "{indexes:?}"
    );
}

/// Names with `.` and `$` (V1 codec) are stored as safe paths and read back exactly;
/// `a` and `a.b` in one batch do not fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_names_and_collisions() {
    let Some(url) = service_url(VAR) else { return };
    let d = coll_driver(&url, &unique("names"), IdentifierMode::Full, None).await;
    let stats = accrue::metrics::MetricsStore::builder(Arc::new(
        coll_driver(&url, &unique("names"), IdentifierMode::Full, None).await,
    ) as Arc<dyn Driver>)
    .time_zone("UTC")
    .granularities(["1h"])
    .buffer(Buffering::Off)
    .build()
    .unwrap();
    let at = t("2025-02-01T11:35:00Z");
    stats
        .track("jobs", at, json!({"jobs": {r"test\.rb": 2, "$cost": 1}}))
        .await
        .unwrap();
    let v = stats
        .values("jobs", at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    assert_eq!(
        Value::Map(v.values[0].clone()).to_json(),
        json!({"jobs": {"test.rb": 2, "$cost": 1}})
    );
    // Legacy names Mongo cannot hold are stored percent-encoded instead of failing.
    let legacy = accrue::metrics::MetricsStore::builder(Arc::new(
        coll_driver(&url, &unique("legacy"), IdentifierMode::Full, None).await,
    ) as Arc<dyn Driver>)
    .time_zone("UTC")
    .granularities(["1h"])
    .buffer(Buffering::Off)
    .path_codec(PathCodec::Legacy)
    .build()
    .unwrap();
    legacy.track("k", at, json!({"$cost": 1})).await.unwrap();
    let v = legacy
        .values("k", at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    assert_eq!(
        Value::Map(v.values[0].clone()).to_json(),
        json!({"%24cost": 1})
    );
    // A scalar and a sub-field of it in one batch: applied in order, the batch succeeds.
    let r = RowId::new("c", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    d.write(&batch(
        1,
        vec![(
            r.clone(),
            vec![("a", inc(1)), ("a.b", inc(2)), ("z", inc(3))],
        )],
    ))
    .await
    .unwrap();
    d.write(&batch(2, vec![(r.clone(), vec![("a", inc(5))])]))
        .await
        .unwrap();
    let got = d.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(got[0]["z"], Value::Int(3));
    assert!(
        matches!(got[0].get("a"), Some(Value::Int(_))),
        "{:?}",
        got[0]
    );
}

/// `expire_at = bucket start + expire_after` with a TTL index; the server removes
/// expired buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_after_sets_expire_at_and_a_ttl_index() {
    let Some(url) = service_url(VAR) else { return };
    // Two hours: the current hour's bucket lives on, the one from five hours ago is expired.
    let d = coll_driver(
        &url,
        &unique("ttl"),
        IdentifierMode::Full,
        Some(Duration::from_secs(7200)),
    )
    .await;
    let now = jiff::Timestamp::now();
    let fresh_at = jiff::Timestamp::from_second(now.as_second() - now.as_second() % 3600).unwrap();
    let fresh = RowId::new("k", "1h".parse().unwrap(), fresh_at);
    let old = RowId::new(
        "k",
        "1h".parse().unwrap(),
        fresh_at - jiff::SignedDuration::from_hours(5),
    );
    d.write(&batch(
        1,
        vec![
            (fresh.clone(), vec![("count", inc(2))]),
            (old.clone(), vec![("count", inc(1))]),
        ],
    ))
    .await
    .unwrap();
    let all = docs(&d).await;
    let expire = all
        .iter()
        .map(|doc| doc.get_datetime("expire_at").unwrap().timestamp_millis())
        .collect::<Vec<_>>();
    assert!(
        expire.contains(&(fresh_at.as_millisecond() + 7_200_000)),
        "{all:?}"
    );
    let indexes: Vec<_> = d
        .collection()
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        indexes.iter().any(|i| i.keys == doc! {"expire_at": 1}
            && i.options.as_ref().and_then(|o| o.expire_after) == Some(Duration::ZERO)),
        "{indexes:?}"
    );
    // The server's TTL monitor removes the expired bucket (SecantusDB: within about a minute).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = d.read(&[fresh.clone(), old.clone()]).await.unwrap();
        assert_eq!(got[0]["count"], Value::Int(2));
        if got[1].is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired bucket was not removed"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn validation_and_connection_errors() {
    for bad in ["", "1abc", "a-b", "a.b", "a$b", &"x".repeat(55)] {
        let e = MongoDriver::builder()
            .collection(bad)
            .connect("mongodb://127.0.0.1:1/")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DriverErrorKind::Rejected, "{bad:?}: {e}");
    }
    let e = MongoDriver::builder()
        .connect("mongodb://u:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=300")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), DriverErrorKind::Connection, "{e}");
    let text = drivers_common::chain(&e);
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_driver_from_url() {
    let Some(url) = service_url(VAR) else { return };
    let base = url.split('?').next().unwrap().trim_end_matches('/');
    let coll = unique("url");
    let d = accrue::metrics::connect_driver(&format!(
        "{base}/{}?collection={coll}&mode=partial&ttl=86400",
        database()
    ))
    .await
    .unwrap();
    assert_eq!(d.description(), "MongoDriver(P)");
    let r = RowId::new("k", "1h".parse().unwrap(), t("2026-01-01T10:00:00Z"));
    d.write(&batch(1, vec![(r.clone(), vec![("count", inc(1))])]))
        .await
        .unwrap();
    assert_eq!(d.read(&[r]).await.unwrap()[0]["count"], Value::Int(1));
    let stored: Option<Document> = client(&url)
        .await
        .database(database())
        .collection::<Document>(&coll)
        .find_one(doc! {})
        .await
        .unwrap();
    let stored = stored.unwrap();
    assert_eq!(stored.get_str("key").unwrap(), "k::1h");
    assert!(matches!(stored.get("expire_at"), Some(Bson::DateTime(_))));
}
