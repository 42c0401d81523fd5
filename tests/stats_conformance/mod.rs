//! The driver conformance suite: one generic set of cases every metrics-store driver runs
//! (vectors of the operations, driver and buffer sections, identifier modes, idempotent
//! batches, concurrent writers with exact totals).
//!
//! A driver test file provides an async factory `fn(IdentifierMode) -> Arc<dyn Driver>` (a
//! fresh, set-up, isolated store per call) and expands the cases:
//!
//! ```ignore
//! mod stats_conformance;
//! stats_conformance::conformance_tests!(|mode| async move { my_driver(mode).await });
//! ```

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use accrue::metrics::{
    BatchId, Driver, FieldOp, MetricsStore, MetricsStoreBuilder, Number, RowId, RowUpdate, Value,
    Values, WriteBatch,
};
use accrue::metrics::{BufferMerge, Buffering, FlushTask};
use accrue::time::{Blanks, Granularity, Unit};
use jiff::Timestamp;
use serde_json::json;

pub fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn map(v: serde_json::Value) -> Values {
    match Value::from(v) {
        Value::Map(m) => m,
        other => panic!("not a map: {other}"),
    }
}

pub fn tree(values: &Values) -> serde_json::Value {
    Value::Map(values.clone()).to_json()
}

/// A store over `driver`: UTC, buffer off unless the case turns it on.
pub fn stats(driver: Arc<dyn Driver>, grans: &[&str]) -> MetricsStoreBuilder {
    MetricsStore::builder(driver)
        .time_zone("UTC")
        .granularities(grans.iter().copied())
        .buffer(Buffering::Off)
}

async fn read_one(stats: &MetricsStore, key: &str, at: &str, gran: &str) -> serde_json::Value {
    let s = stats
        .values(key, t(at), t(at), gran.parse().unwrap(), Blanks::Keep)
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    tree(&s.values[0])
}

fn row(key: &str, gran: &str, at: &str) -> RowId {
    RowId::new(key, gran.parse().unwrap(), t(at))
}

fn batch(writer: &str, seq: u64, rows: Vec<RowUpdate>) -> WriteBatch {
    WriteBatch {
        id: BatchId {
            writer: writer.into(),
            seq,
        },
        rows,
    }
}

fn update(r: RowId, fields: Vec<(&str, FieldOp)>) -> RowUpdate {
    RowUpdate {
        row: r,
        fields: fields
            .into_iter()
            .map(|(n, op)| (n.to_owned(), op))
            .collect(),
    }
}

fn inc(i: i64) -> FieldOp {
    FieldOp::Inc(Number::Int(i))
}

fn set(v: serde_json::Value) -> FieldOp {
    FieldOp::Set(Value::from(v))
}

/// Set, set (other fields kept), inc (integers stay integers).
pub async fn driver_set_inc_get(driver: Arc<dyn Driver>) {
    let r = row("event::logs", "1h", "2025-01-15T10:00:00Z");
    driver
        .write(&batch(
            "w",
            1,
            vec![update(
                r.clone(),
                vec![("count", set(json!(1))), ("meta.duration", set(json!(2)))],
            )],
        ))
        .await
        .unwrap();
    driver
        .write(&batch(
            "w",
            2,
            vec![update(r.clone(), vec![("count", set(json!(5)))])],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(tree(&got[0]), json!({"count": 5, "meta.duration": 2}));
    driver
        .write(&batch(
            "w",
            3,
            vec![update(r.clone(), vec![("count", inc(2))])],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        got[0].get("count"),
        Some(&Value::Int(7)),
        "integers stay integers"
    );
    assert_eq!(tree(&got[0]), json!({"count": 7, "meta.duration": 2}));
}

/// A dotted field name is one flat field (quoted JSON paths), incremented in place.
pub async fn driver_dotted_names_stay_flat(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    for seq in 1..=2 {
        driver
            .write(&batch(
                "w",
                seq,
                vec![update(
                    r.clone(),
                    vec![("count", inc(1)), ("meta.duration", inc(2))],
                )],
            ))
            .await
            .unwrap();
    }
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(tree(&got[0]), json!({"count": 2, "meta.duration": 4}));
}

/// Increments on existing rows, several rows in one batch, floats and ints.
pub async fn driver_increments(driver: Arc<dyn Driver>) {
    let a = row("a", "1d", "2025-01-15T00:00:00Z");
    let b = row("b", "1d", "2025-01-15T00:00:00Z");
    let fields = || vec![("count", inc(5)), ("duration", inc(100))];
    driver
        .write(&batch(
            "w",
            1,
            vec![update(a.clone(), fields()), update(b.clone(), fields())],
        ))
        .await
        .unwrap();
    driver
        .write(&batch(
            "w",
            2,
            vec![update(
                a.clone(),
                vec![("count", inc(10)), ("ms", FieldOp::Inc(Number::Float(0.5)))],
            )],
        ))
        .await
        .unwrap();
    driver
        .write(&batch(
            "w",
            3,
            vec![update(
                a.clone(),
                vec![("ms", FieldOp::Inc(Number::Float(0.25)))],
            )],
        ))
        .await
        .unwrap();
    let got = driver.read(&[a, b]).await.unwrap();
    assert_eq!(
        tree(&got[0]),
        json!({"count": 15, "duration": 100, "ms": 0.75})
    );
    assert_eq!(tree(&got[1]), json!({"count": 5, "duration": 100}));
}

/// Assert stores any scalar type and arrays, keeping other fields.
pub async fn driver_set_types(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    driver
        .write(&batch(
            "w",
            1,
            vec![update(
                r.clone(),
                vec![
                    ("config.enabled", set(json!(true))),
                    ("config.limit", set(json!(50))),
                    ("name", set(json!("x\"y"))),
                    ("none", set(json!(null))),
                    ("tags", set(json!([1, "two", {"three": 3}]))),
                ],
            )],
        ))
        .await
        .unwrap();
    driver
        .write(&batch(
            "w",
            2,
            vec![update(
                r.clone(),
                vec![("count", set(json!(10))), ("status", set(json!("ok")))],
            )],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        tree(&got[0]),
        json!({"config.enabled": true, "config.limit": 50, "name": "x\"y", "none": null,
               "tags": [1, "two", {"three": 3}], "count": 10, "status": "ok"})
    );
}

/// Missing rows read as `{}`, in request order.
pub async fn driver_missing_rows(driver: Arc<dyn Driver>) {
    let present = row("k", "1h", "2025-01-15T10:00:00Z");
    driver
        .write(&batch(
            "w",
            1,
            vec![update(present.clone(), vec![("count", inc(5))])],
        ))
        .await
        .unwrap();
    let missing = row("k", "1h", "2025-01-15T11:00:00Z");
    let other = row("other", "1h", "2025-01-15T10:00:00Z");
    let got = driver.read(&[missing, present, other]).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got[0].is_empty() && got[2].is_empty());
    assert_eq!(tree(&got[1]), json!({"count": 5}));
}

/// Inc on a field holding a non-number counts it as 0 (never an error that would poison a
/// batch).
pub async fn driver_inc_over_non_number(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    driver
        .write(&batch(
            "w",
            1,
            vec![update(r.clone(), vec![("status", set(json!("running")))])],
        ))
        .await
        .unwrap();
    driver
        .write(&batch(
            "w",
            2,
            vec![update(r.clone(), vec![("status", inc(3))])],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(tree(&got[0]), json!({"status": 3}));
}

/// A batch id applied once: retrying the same (writer, seq) — or an older one — changes
/// nothing; another writer is independent.
pub async fn driver_batches_are_idempotent(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    let b1 = batch("w1", 1, vec![update(r.clone(), vec![("count", inc(1))])]);
    let b2 = batch("w1", 2, vec![update(r.clone(), vec![("count", inc(10))])]);
    driver.write(&b1).await.unwrap();
    driver.write(&b1).await.unwrap();
    driver.write(&b2).await.unwrap();
    driver.write(&b1).await.unwrap();
    driver.write(&b2).await.unwrap();
    driver
        .write(&batch(
            "w2",
            1,
            vec![update(r.clone(), vec![("count", inc(100))])],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(tree(&got[0]), json!({"count": 111}));
}

/// A writer's mark reads back: nothing for an unknown writer, then the highest seq applied;
/// a skipped (older or repeated) batch leaves it, other writers have their own, and a seq of
/// the size the store numbers automatic batches with (Unix microseconds) round-trips.
pub async fn driver_applied_reads_the_mark(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    let one = |n| vec![update(r.clone(), vec![("count", inc(n))])];
    assert_eq!(driver.applied("w1").await.unwrap(), None);
    driver.write(&batch("w1", 3, one(1))).await.unwrap();
    assert_eq!(driver.applied("w1").await.unwrap(), Some(3));
    driver.write(&batch("w1", 7, one(10))).await.unwrap();
    assert_eq!(driver.applied("w1").await.unwrap(), Some(7));
    driver.write(&batch("w1", 5, one(100))).await.unwrap();
    driver.write(&batch("w1", 7, one(1000))).await.unwrap();
    assert_eq!(driver.applied("w1").await.unwrap(), Some(7));
    assert_eq!(driver.applied("w2").await.unwrap(), None);
    let micros = 1_765_000_000_123_456;
    driver
        .write(&batch("w2", micros, one(10_000)))
        .await
        .unwrap();
    assert_eq!(driver.applied("w2").await.unwrap(), Some(micros));
    assert_eq!(driver.applied("w1").await.unwrap(), Some(7));
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(tree(&got[0]), json!({"count": 10_011}));
}

/// Large integers stay exact; an overflowing sum becomes a float rather than wrapping.
pub async fn driver_exact_integers(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    let big = 9_007_199_254_740_993; // 2^53 + 1: not representable as f64
    driver
        .write(&batch(
            "w",
            1,
            vec![update(r.clone(), vec![("n", inc(big))])],
        ))
        .await
        .unwrap();
    driver
        .write(&batch("w", 2, vec![update(r.clone(), vec![("n", inc(1))])]))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(got[0].get("n"), Some(&Value::Int(big + 1)));
}

/// An increment whose sum would leave the range of `f64` (either way) keeps the stored value:
/// JSON has no infinity. The other fields of its row, the other rows of the batch and the later
/// batches are written as usual.
pub async fn driver_inc_beyond_f64_keeps_stored(driver: Arc<dyn Driver>) {
    let r = row("k", "1h", "2025-01-15T10:00:00Z");
    let other = row("other", "1h", "2025-01-15T10:00:00Z");
    let float = |f: f64| FieldOp::Inc(Number::Float(f));
    for seq in 1..=2 {
        driver
            .write(&batch(
                "w",
                seq,
                vec![
                    update(
                        r.clone(),
                        vec![
                            ("max", float(f64::MAX)),
                            ("n", inc(1)),
                            ("neg", float(-1e308)),
                            ("pos", float(1e308)),
                        ],
                    ),
                    update(other.clone(), vec![("n", inc(1))]),
                ],
            ))
            .await
            .unwrap();
    }
    let got = driver.read(&[r.clone(), other.clone()]).await.unwrap();
    assert_eq!(
        tree(&got[0]),
        json!({"max": f64::MAX, "n": 2, "neg": -1e308, "pos": 1e308})
    );
    assert_eq!(got[0]["pos"], Value::Float(1e308));
    assert_eq!(tree(&got[1]), json!({"n": 2}));
    driver
        .write(&batch(
            "w",
            3,
            vec![update(
                r.clone(),
                vec![
                    ("m", float(0.5)),
                    ("n", inc(1)),
                    ("pos", float(1e308)),
                    ("status", set(json!("ok"))),
                ],
            )],
        ))
        .await
        .unwrap();
    let got = driver.read(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(
        tree(&got[0]),
        json!({"m": 0.5, "max": f64::MAX, "n": 3, "neg": -1e308, "pos": 1e308, "status": "ok"})
    );
}

/// Tracking `{"x": 1e308, "y": 1}` (and `-1e308`) into one bucket in two flushes: `x` keeps
/// its value instead of overflowing, `y` and the system rows count both calls, and a third
/// flush incrementing another field of the row succeeds.
pub async fn ops_track_beyond_f64_keeps_stored(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"])
        .buffer(Buffering::On)
        .buffer_size(1000)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap();
    let at = t("2025-02-01T11:35:00Z");
    let hour = "2025-02-01T11:00:00Z";
    for _ in 0..2 {
        s.track("pos", at, json!({"x": 1e308, "y": 1}))
            .await
            .unwrap();
        s.track("neg", at, json!({"x": -1e308, "y": 1}))
            .await
            .unwrap();
        let flushed = s.flush().await.unwrap();
        assert_eq!(flushed.batches, 1);
    }
    assert_eq!(
        read_one(&s, "pos", hour, "1h").await,
        json!({"x": 1e308, "y": 2})
    );
    assert_eq!(
        read_one(&s, "neg", hour, "1h").await,
        json!({"x": -1e308, "y": 2})
    );
    assert_eq!(
        read_one(&s, accrue::metrics::SYSTEM_KEY, hour, "1h").await,
        json!({"count": 4, "keys": {"pos": 2, "neg": 2}})
    );
    s.track("pos", at, json!({"z": 1})).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        read_one(&s, "pos", hour, "1h").await,
        json!({"x": 1e308, "y": 2, "z": 1})
    );
    assert_eq!(
        read_one(&s, accrue::metrics::SYSTEM_KEY, hour, "1h").await,
        json!({"count": 5, "keys": {"pos": 3, "neg": 2}})
    );
    s.shutdown().await.unwrap();
}

/// Track then assert, read back per day.
pub async fn ops_track_then_assert(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1d"]).build().unwrap();
    s.track("events", t("2025-01-15T10:00:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    s.assert("events", t("2025-01-15T10:00:00Z"), json!({"count": 5}))
        .await
        .unwrap();
    let v = s
        .values(
            "events",
            t("2025-01-15T00:00:00Z"),
            t("2025-01-15T23:59:00Z"),
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(v.at, [t("2025-01-15T00:00:00Z")]);
    assert_eq!(tree(&v.values[0]), json!({"count": 5}));
}

/// Only configured granularities are written.
pub async fn ops_configured_granularities(driver: Arc<dyn Driver>) {
    let s = stats(driver, &[])
        .granularities_lenient(["1h", "1d", "invalid", "1h"])
        .build()
        .unwrap();
    s.track("events", t("2025-02-01T11:35:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:00:00Z", "1h").await,
        json!({"count": 1})
    );
    assert_eq!(
        read_one(&s, "events", "2025-02-01T00:00:00Z", "1d").await,
        json!({"count": 1})
    );
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:35:00Z", "1m").await,
        json!({})
    );
}

/// System rows count calls per key, untracked under `__untracked__`.
pub async fn ops_system_rows(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h", "1d"]).build().unwrap();
    s.track(
        "events",
        t("2025-02-01T11:35:00Z"),
        json!({"count": 1, "meta": {"ms": 2.5}}),
    )
    .await
    .unwrap();
    s.track("events", t("2025-02-01T11:50:00Z"), json!({"count": 2}))
        .await
        .unwrap();
    s.untracked()
        .track("events", t("2025-02-01T13:05:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    s.assert("events", t("2025-02-01T11:10:00Z"), json!({"status": "ok"}))
        .await
        .unwrap();
    let v = s
        .values(
            "events",
            t("2025-02-01T10:00:00Z"),
            t("2025-02-01T13:59:00Z"),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    let got: Vec<_> = v.values.iter().map(tree).collect();
    assert_eq!(
        got,
        [
            json!({}),
            json!({"count": 3, "meta": {"ms": 2.5}, "status": "ok"}),
            json!({}),
            json!({"count": 1})
        ]
    );
    let skip = s
        .values(
            "events",
            t("2025-02-01T10:00:00Z"),
            t("2025-02-01T13:59:00Z"),
            Granularity::one(Unit::Hour),
            Blanks::Skip,
        )
        .await
        .unwrap();
    assert_eq!(
        skip.at,
        [t("2025-02-01T11:00:00Z"), t("2025-02-01T13:00:00Z")]
    );
    assert_eq!(
        read_one(&s, "events", "2025-02-01T00:00:00Z", "1d").await,
        json!({"count": 4, "meta": {"ms": 2.5}, "status": "ok"})
    );
    let sys = |at: &'static str, g: &'static str| read_one(&s, accrue::metrics::SYSTEM_KEY, at, g);
    assert_eq!(
        sys("2025-02-01T11:00:00Z", "1h").await,
        json!({"count": 3, "keys": {"events": 3}})
    );
    assert_eq!(
        sys("2025-02-01T13:00:00Z", "1h").await,
        json!({"count": 1, "keys": {"__untracked__": 1}})
    );
    assert_eq!(
        sys("2025-02-01T00:00:00Z", "1d").await,
        json!({"count": 4, "keys": {"events": 3, "__untracked__": 1}})
    );
}

/// Every identifier mode gives the same results (the factory is called per mode).
pub async fn ops_track_and_assert_merge(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"]).build().unwrap();
    s.track("events", t("2025-02-01T11:35:00Z"), json!({"count": 2}))
        .await
        .unwrap();
    s.assert("events", t("2025-02-01T11:35:00Z"), json!({"status": "ok"}))
        .await
        .unwrap();
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:00:00Z", "1h").await,
        json!({"count": 2, "status": "ok"})
    );
}

/// Skip_blanks (a gap in the middle; an all-empty timeline) and an invalid
/// granularity.
pub async fn ops_values_skip_blanks(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"]).build().unwrap();
    s.track("events", t("2025-02-01T11:35:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    let from = t("2025-02-01T10:00:00Z");
    let to = t("2025-02-01T11:00:00Z");
    let all = s
        .values(
            "events",
            from,
            to,
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(
        all.values.iter().map(tree).collect::<Vec<_>>(),
        [json!({}), json!({"count": 1})]
    );
    let some = s
        .values(
            "events",
            from,
            to,
            Granularity::one(Unit::Hour),
            Blanks::Skip,
        )
        .await
        .unwrap();
    assert_eq!(some.at, [t("2025-02-01T11:00:00Z")]);
    // 10:00 and 12:00 hold data, 11:00 is blank; a key with no data at all.
    s.track("j7", t("2025-02-01T10:10:00Z"), json!({"count": 10}))
        .await
        .unwrap();
    s.track("j7", t("2025-02-01T12:10:00Z"), json!({"count": 15}))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let to = t("2025-02-01T12:00:00Z");
    let full = s
        .values("j7", from, to, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    assert_eq!(
        full.values.iter().map(tree).collect::<Vec<_>>(),
        [json!({"count": 10}), json!({}), json!({"count": 15})]
    );
    let skipped = s
        .values("j7", from, to, Granularity::one(Unit::Hour), Blanks::Skip)
        .await
        .unwrap();
    assert_eq!(skipped.at, [from, to]);
    assert_eq!(
        skipped.values.iter().map(tree).collect::<Vec<_>>(),
        [json!({"count": 10}), json!({"count": 15})]
    );
    let none = s
        .values(
            "nothing",
            from,
            to,
            Granularity::one(Unit::Hour),
            Blanks::Skip,
        )
        .await
        .unwrap();
    assert!(none.at.is_empty() && none.values.is_empty(), "{none:?}");
}

/// The input's offset does not matter, only the instant.
pub async fn ops_input_offset_irrelevant(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1d"]).build().unwrap();
    let at: Timestamp = "2026-02-25T00:30:00+04:00".parse().unwrap(); // 2026-02-24T20:30Z
    s.track("events", at, json!({"count": 1})).await.unwrap();
    let v = s
        .values(
            "events",
            t("2026-02-24T00:00:00Z"),
            t("2026-02-25T00:00:00Z"),
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(
        v.values.iter().map(tree).collect::<Vec<_>>(),
        [json!({"count": 1}), json!({})]
    );
}

/// Nested keys, dotted keys (V1 codec) and metric keys with dots all round-trip.
pub async fn ops_codec_round_trip(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"]).build().unwrap();
    let at = t("2025-02-01T11:35:00Z");
    // Map keys are public paths: `.` nests, `\.` is a literal dot.
    s.track(
        "jobs.v2",
        at,
        json!({"jobs": {r"test\.rb": 2, "$cost": 1, "x.y": 3}, r"a\.b": 1}),
    )
    .await
    .unwrap();
    s.assert("jobs.v2", at, json!({"status": {"quoted\"name": "ok"}}))
        .await
        .unwrap();
    assert_eq!(
        read_one(&s, "jobs.v2", "2025-02-01T11:00:00Z", "1h").await,
        json!({"jobs": {"test.rb": 2, "$cost": 1, "x": {"y": 3}}, "a.b": 1, "status": {"quoted\"name": "ok"}})
    );
    assert_eq!(
        read_one(
            &s,
            accrue::metrics::SYSTEM_KEY,
            "2025-02-01T11:00:00Z",
            "1h"
        )
        .await,
        json!({"count": 2, "keys": {"jobs.v2": 2}})
    );
}

/// Bad input changes nothing (validated before any I/O).
pub async fn ops_bad_input_changes_nothing(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"]).build().unwrap();
    let at = t("2025-02-01T11:35:00Z");
    for bad in [
        json!({"count": 1, "status": "5"}),
        json!({"count": "5"}),
        json!(5),
        json!({"a": {"": 1}}),
        json!({"a..b": 1}),
    ] {
        assert!(
            matches!(
                s.track("events", at, bad.clone()).await,
                Err(accrue::metrics::MetricsError::InvalidValue(_))
            ),
            "{bad}"
        );
    }
    let nan = Value::Map(
        [("x".to_string(), Value::Float(f64::NAN))]
            .into_iter()
            .collect(),
    );
    assert!(s.assert("events", at, nan).await.is_err());
    for key in ["", accrue::metrics::SYSTEM_KEY, "a\nb", &"x".repeat(201)] {
        assert!(
            matches!(
                s.track(key, at, json!({"count": 1})).await,
                Err(accrue::metrics::MetricsError::InvalidKey { .. })
            ),
            "{key:?}"
        );
    }
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:00:00Z", "1h").await,
        json!({})
    );
    assert_eq!(
        read_one(
            &s,
            accrue::metrics::SYSTEM_KEY,
            "2025-02-01T11:00:00Z",
            "1h"
        )
        .await,
        json!({})
    );
}

/// Buffered writes are invisible until the size trigger flushes them.
pub async fn buffer_size_trigger(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"])
        .buffer(Buffering::On)
        .buffer_size(2)
        .buffer_aggregate(BufferMerge::Separate)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap();
    s.track("events", t("2025-02-01T11:35:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:00:00Z", "1h").await,
        json!({})
    );
    s.track("events", t("2025-02-01T11:45:00Z"), json!({"count": 1}))
        .await
        .unwrap();
    assert_eq!(
        read_one(&s, "events", "2025-02-01T11:00:00Z", "1h").await,
        json!({"count": 2})
    );
    assert_eq!(
        read_one(
            &s,
            accrue::metrics::SYSTEM_KEY,
            "2025-02-01T11:00:00Z",
            "1h"
        )
        .await,
        json!({"count": 2, "keys": {"events": 2}})
    );
}

/// K10 / K12 / K14 through a real driver: aggregated flush equals the unbuffered result.
pub async fn buffer_aggregation(driver: Arc<dyn Driver>) {
    let s = stats(driver, &["1h"])
        .buffer(Buffering::On)
        .buffer_size(1000)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap();
    let at = t("2025-02-01T11:35:00Z");
    s.track("k", at, json!({"count": 1, "nested": {"requests": 1}}))
        .await
        .unwrap();
    s.track("k", at, json!({"count": 2, "nested": {"requests": 3}}))
        .await
        .unwrap();
    s.assert("k", at, json!({"state": "processing", "a": 1}))
        .await
        .unwrap();
    s.assert("k", at, json!({"state": "done", "b": 2}))
        .await
        .unwrap();
    s.track("k", at, json!({"count": 1.5})).await.unwrap();
    s.track("k", at, json!({"ratio": 1.5})).await.unwrap();
    s.track("k", at, json!({"ratio": 1.5})).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        read_one(&s, "k", "2025-02-01T11:00:00Z", "1h").await,
        json!({"count": 4.5, "nested": {"requests": 4}, "state": "done", "a": 1, "b": 2, "ratio": 3.0})
    );
    assert_eq!(
        read_one(
            &s,
            accrue::metrics::SYSTEM_KEY,
            "2025-02-01T11:00:00Z",
            "1h"
        )
        .await,
        json!({"count": 7, "keys": {"k": 7}})
    );
}

/// Concurrent writers (tasks of one store, and two stores = two nodes) with exact totals.
pub async fn concurrent_writers_exact_totals(driver: Arc<dyn Driver>) {
    let node = |size| {
        stats(driver.clone(), &["1m", "1h", "1d"])
            .buffer(Buffering::On)
            .buffer_size(size)
            .buffer_async(FlushTask::None)
            .build()
            .unwrap()
    };
    let nodes = [node(64), node(97)];
    let mut tasks = Vec::new();
    for (n, s) in nodes.iter().enumerate() {
        for w in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500u32 {
                    let at = t("2025-02-01T11:00:00Z")
                        + jiff::SignedDuration::from_secs(i64::from(i % 7) * 60);
                    let key = format!("key{}", (i + w + n as u32) % 5);
                    s.track(&key, at, json!({"count": 1, "sum": i}))
                        .await
                        .unwrap();
                    if i % 50 == 0 {
                        s.assert(&key, at, json!({"last": w})).await.unwrap();
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for s in &nodes {
        s.shutdown().await.unwrap();
    }
    let reader = &nodes[0];
    let mut count = 0;
    let mut sum = 0;
    for k in 0..5 {
        let v = reader
            .values(
                &format!("key{k}"),
                t("2025-02-01T11:00:00Z"),
                t("2025-02-01T11:00:00Z"),
                Granularity::one(Unit::Hour),
                Blanks::Keep,
            )
            .await
            .unwrap();
        count += v.values[0]["count"].as_number().unwrap().as_f64() as i64;
        sum += v.values[0]["sum"].as_number().unwrap().as_f64() as i64;
    }
    assert_eq!(count, 2 * 4 * 500);
    assert_eq!(sum, 2 * 4 * (0..500).sum::<i64>());
    let day = reader
        .values(
            accrue::metrics::SYSTEM_KEY,
            t("2025-02-01T00:00:00Z"),
            t("2025-02-01T00:00:00Z"),
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(day.values[0]["count"], Value::Int(2 * 4 * (500 + 10)));
}

/// Two nodes: two stores over two *separate* driver instances (own connections) on the same
/// database, writing the same buckets concurrently; totals must be exact.
pub async fn two_nodes_exact_totals(a: Arc<dyn Driver>, b: Arc<dyn Driver>) {
    let node = |driver: Arc<dyn Driver>, size| {
        stats(driver, &["1m", "1h", "1d"])
            .buffer(Buffering::On)
            .buffer_size(size)
            .buffer_async(FlushTask::None)
            .build()
            .unwrap()
    };
    let nodes = [node(a, 50), node(b, 73)];
    let mut tasks = Vec::new();
    for (n, s) in nodes.iter().enumerate() {
        for w in 0..3u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..400u32 {
                    let at = t("2025-02-01T11:00:00Z")
                        + jiff::SignedDuration::from_secs(i64::from(i % 5) * 60);
                    let key = format!("node{}", (i + w + n as u32) % 3);
                    let ms = f64::from(i % 4) * 0.25;
                    s.track(&key, at, json!({"count": 1, "sum": i, "ms": ms}))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for s in &nodes {
        s.shutdown().await.unwrap();
    }
    let (mut count, mut sum, mut ms) = (0i64, 0i64, 0f64);
    for k in 0..3 {
        let v = nodes[1]
            .values(
                &format!("node{k}"),
                t("2025-02-01T00:00:00Z"),
                t("2025-02-01T00:00:00Z"),
                Granularity::one(Unit::Day),
                Blanks::Keep,
            )
            .await
            .unwrap();
        count += v.values[0]["count"].as_number().unwrap().as_f64() as i64;
        sum += v.values[0]["sum"].as_number().unwrap().as_f64() as i64;
        ms += v.values[0]["ms"].as_number().unwrap().as_f64();
    }
    assert_eq!(count, 2 * 3 * 400);
    assert_eq!(sum, 2 * 3 * (0..400).sum::<i64>());
    assert!((ms - 2.0 * 3.0 * 150.0).abs() < 1e-6, "{ms}");
    let day = nodes[0]
        .values(
            accrue::metrics::SYSTEM_KEY,
            t("2025-02-01T00:00:00Z"),
            t("2025-02-01T00:00:00Z"),
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(day.values[0]["count"], Value::Int(2 * 3 * 400));
}

/// Expands one `#[tokio::test]` per case and identifier mode for a driver factory.
///
/// `conformance_tests!(optional: factory)` takes a factory returning
/// `Option<Arc<dyn Driver>>`: `None` (a server that is not available, reported loudly by the
/// factory) ends the case without running it.
#[macro_export]
macro_rules! conformance_tests {
    (optional: $factory:expr) => {
        $crate::conformance_tests!(@optional $factory;
            driver_set_inc_get driver_dotted_names_stay_flat driver_increments driver_set_types
            driver_missing_rows driver_inc_over_non_number driver_batches_are_idempotent
            driver_applied_reads_the_mark
            driver_exact_integers driver_inc_beyond_f64_keeps_stored
            ops_track_beyond_f64_keeps_stored ops_track_then_assert ops_configured_granularities
            ops_system_rows ops_track_and_assert_merge ops_values_skip_blanks
            ops_input_offset_irrelevant ops_codec_round_trip ops_bad_input_changes_nothing
            buffer_size_trigger buffer_aggregation concurrent_writers_exact_totals);
    };
    (@optional $factory:expr; $($case:ident)*) => {
        mod conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    for mode in accrue::metrics::IdentifierMode::ALL {
                        let driver: Option<std::sync::Arc<dyn accrue::metrics::Driver>> =
                            ($factory)(mode).await;
                        let Some(driver) = driver else { return };
                        stats_conformance::$case(driver).await;
                    }
                }
            )*
        }
    };
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            driver_set_inc_get driver_dotted_names_stay_flat driver_increments driver_set_types
            driver_missing_rows driver_inc_over_non_number driver_batches_are_idempotent
            driver_applied_reads_the_mark
            driver_exact_integers driver_inc_beyond_f64_keeps_stored
            ops_track_beyond_f64_keeps_stored ops_track_then_assert ops_configured_granularities
            ops_system_rows ops_track_and_assert_merge ops_values_skip_blanks
            ops_input_offset_irrelevant ops_codec_round_trip ops_bad_input_changes_nothing
            buffer_size_trigger buffer_aggregation concurrent_writers_exact_totals);
    };
    (@cases $factory:expr; $($case:ident)*) => {
        mod conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    for mode in accrue::metrics::IdentifierMode::ALL {
                        let driver: std::sync::Arc<dyn accrue::metrics::Driver> = ($factory)(mode).await;
                        stats_conformance::$case(driver).await;
                    }
                }
            )*
        }
    };
}
