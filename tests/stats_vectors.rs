//! Metrics-store behaviour vectors (those of the stores we replace, and our fixes) that are not
//! driver conformance cases: packer (H), keys (G), buffer (K), typing (L), configuration (A10/A11),
//! and the retry/hand-back behaviour of a failing driver.
//!
//! Rows with no test because this design has nothing they could check:
//! * K7 (a driver without count-aware writes disables aggregation): every `Driver` takes
//!   aggregated batches; there is no such driver kind.
//! * K9 (Ruby's `run_pending!` hand-off): the buffer flushes from its own task; K8/K10 test it.
//! * K13 (resizing the buffer of a live configuration): a `MetricsStore` is built once from its
//!   builder; a new size is a new `MetricsStore`, and `shutdown` of the old one loses nothing.
//! * Partial/Separated identity without `at`: `RowId` always has its bucket time.
//! * Mutating a returned map does not change the store: reads return owned values.
//! * One Mongo command with the system and `__untracked__` rows: the MongoDB driver
//!   writes a whole flush — data and system rows — in one `bulkWrite`; the conformance case
//!   `ops_system_rows` checks the `__untracked__` system rows on MongoDB too; the number of
//!   commands is not observed.
#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accrue::metrics::{BufferMerge, Buffering, FlushTask, SystemTracking};
use accrue::metrics::{
    ConfigError, Driver, DriverError, DriverFuture, FieldOp, IdentifierMode, Identity,
    MemoryDriver, MetricsError, MetricsStore, Number, RowId, Value, Values, WriteBatch,
};
use accrue::time::{Blanks, Granularity, Unit};
use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::json;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Records every batch, then applies it to an inner memory driver; can be made to fail.
#[derive(Debug)]
struct Recording {
    inner: MemoryDriver,
    batches: Mutex<Vec<WriteBatch>>,
    fail: AtomicBool,
}

impl Recording {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryDriver::new(IdentifierMode::Full),
            batches: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
        })
    }

    /// Data rows (system rows excluded) of every batch written so far.
    fn data_rows(&self) -> Vec<Vec<(String, FieldOp)>> {
        self.batches
            .lock()
            .iter()
            .flat_map(|b| b.rows.iter())
            .filter(|r| r.row.key != accrue::metrics::SYSTEM_KEY)
            .map(|r| r.fields.clone())
            .collect()
    }
}

impl Driver for Recording {
    fn description(&self) -> String {
        "Recording(J)".into()
    }
    fn mode(&self) -> IdentifierMode {
        IdentifierMode::Full
    }
    fn setup(&self) -> DriverFuture<'_, ()> {
        self.inner.setup()
    }
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err(DriverError::connection("simulated outage"));
            }
            self.batches.lock().push(batch.clone());
            self.inner.write(batch).await
        })
    }
    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        self.inner.read(rows)
    }
    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        self.inner.applied(writer)
    }
}

fn inc(i: i64) -> FieldOp {
    FieldOp::Inc(Number::Int(i))
}

fn fields(v: &[(&str, FieldOp)]) -> Vec<(String, FieldOp)> {
    v.iter()
        .map(|(n, op)| (n.to_string(), op.clone()))
        .collect()
}

fn buffered(driver: Arc<Recording>, size: usize, aggregate: bool) -> MetricsStore {
    MetricsStore::builder(driver)
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer_size(size)
        .buffer_aggregate(if aggregate {
            BufferMerge::Merged
        } else {
            BufferMerge::Separate
        })
        .buffer_async(FlushTask::None)
        .build()
        .unwrap()
}

const AT: &str = "2025-02-01T11:35:00Z";

// ---------------------------------------------------------------- K. buffer

#[tokio::test]
async fn k1_size_trigger_without_aggregation_writes_each_call() {
    let d = Recording::new();
    let s = buffered(d.clone(), 2, false);
    s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    assert!(d.batches.lock().is_empty());
    s.track("k", t(AT), json!({"count": 2})).await.unwrap();
    assert_eq!(
        d.data_rows(),
        [fields(&[("count", inc(1))]), fields(&[("count", inc(2))])]
    );
}

#[tokio::test]
async fn k2_aggregated_increments_sum_and_count_calls() {
    let d = Recording::new();
    let s = buffered(d.clone(), 10, true);
    s.track("k", t(AT), json!({"count": 1, "nested": {"requests": 1}}))
        .await
        .unwrap();
    s.track("k", t(AT), json!({"count": 2, "nested": {"requests": 3}}))
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        d.data_rows(),
        [fields(&[("count", inc(3)), ("nested.requests", inc(4))])]
    );
    let batches = d.batches.lock();
    let system = batches[0]
        .rows
        .iter()
        .find(|r| r.row.key == accrue::metrics::SYSTEM_KEY)
        .unwrap();
    assert_eq!(
        system.fields,
        fields(&[("count", inc(2)), ("keys.k", inc(2))])
    );
}

#[tokio::test]
async fn k3_k14_aggregated_sets_merge_field_by_field() {
    let d = Recording::new();
    let s = buffered(d.clone(), 10, true);
    s.assert("k", t(AT), json!({"state": "processing", "a": 1}))
        .await
        .unwrap();
    s.assert(
        "k",
        t(AT),
        json!({"state": "done", "detail": {"attempts": 3}, "b": 2}),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    let set = |v: serde_json::Value| FieldOp::Set(Value::from(v));
    assert_eq!(
        d.data_rows(),
        [fields(&[
            ("a", set(json!(1))),
            ("b", set(json!(2))),
            ("detail.attempts", set(json!(3))),
            ("state", set(json!("done")))
        ])]
    );
}

#[tokio::test]
async fn k4_size_two_aggregating_four_calls_gives_two_writes() {
    let d = Recording::new();
    let s = buffered(d.clone(), 2, true);
    for _ in 0..4 {
        s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    }
    s.shutdown().await.unwrap();
    assert_eq!(
        d.data_rows(),
        [fields(&[("count", inc(2))]), fields(&[("count", inc(2))])]
    );
}

#[tokio::test]
async fn k5_without_aggregation_calls_stay_separate() {
    let d = Recording::new();
    let s = buffered(d.clone(), 10, false);
    s.track("k", t(AT), json!({"count": 5})).await.unwrap();
    s.track("k", t(AT), json!({"count": 7})).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(
        d.data_rows(),
        [fields(&[("count", inc(5))]), fields(&[("count", inc(7))])]
    );
    assert_eq!(d.batches.lock().len(), 1, "one round trip for the flush");
}

#[tokio::test]
async fn k6_writes_after_shutdown_are_refused() {
    let d = Recording::new();
    let s = buffered(d.clone(), 10, true);
    s.shutdown().await.unwrap();
    assert!(matches!(
        s.track("k", t(AT), json!({"count": 1})).await,
        Err(MetricsError::Closed)
    ));
    s.shutdown().await.unwrap(); // idempotent
    assert!(d.batches.lock().is_empty());
}

#[tokio::test]
async fn k8_background_flush_runs_on_its_period() {
    let d = Recording::new();
    let s = MetricsStore::builder(d.clone())
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer_duration(Duration::from_millis(40))
        .build()
        .unwrap();
    s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(d.data_rows(), [fields(&[("count", inc(1))])]);
    s.shutdown().await.unwrap();
    assert_eq!(d.data_rows().len(), 1, "written exactly once");
}

#[tokio::test]
async fn k11_zero_buffer_size_is_a_config_error() {
    let err = MetricsStore::builder(Recording::new())
        .buffer_size(0)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::BufferSize);
}

#[tokio::test]
async fn k12_fractional_increments_are_not_truncated() {
    let d = Recording::new();
    let s = buffered(d.clone(), 10, true);
    s.track("k", t(AT), json!({"count": 1.5})).await.unwrap();
    s.track("k", t(AT), json!({"count": 1.5})).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        d.data_rows(),
        [fields(&[("count", FieldOp::Inc(Number::Float(3.0)))])]
    );
}

#[tokio::test]
async fn failed_flush_keeps_the_batch_and_retries_it_unchanged() {
    let d = Recording::new();
    let s = buffered(d.clone(), 100, true);
    s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    d.fail.store(true, Ordering::SeqCst);
    let err = s.flush().await.unwrap_err();
    assert!(
        matches!(&err, MetricsError::Driver(e) if e.is_retryable()),
        "{err}"
    );
    s.track("k", t(AT), json!({"count": 10})).await.unwrap();
    assert!(s.flush().await.is_err());
    d.fail.store(false, Ordering::SeqCst);
    let outcome = s.flush().await.unwrap();
    assert_eq!(
        outcome.batches, 2,
        "the kept batch first, then the new data"
    );
    let batches = d.batches.lock().clone();
    assert_eq!(batches[0].id.seq + 1, batches[1].id.seq);
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(v.values[0]["count"], Value::Int(11));
}

#[tokio::test]
async fn the_size_trigger_keeps_firing_after_a_failed_retry() {
    let d = Recording::new();
    let s = buffered(d.clone(), 5, true);
    d.fail.store(true, Ordering::SeqCst);
    // Call 5 triggers a flush that fails (the batch is kept); call 10's retry of the kept
    // batch fails too, before the buffer is drained.
    for _ in 0..10 {
        s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    }
    assert_eq!(s.failed_flushes(), 2);
    assert!(d.batches.lock().is_empty());
    // The driver recovers: call 15 writes the kept batch and the buffer, with no manual flush.
    d.fail.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    }
    assert_eq!(d.batches.lock().len(), 2);
    assert_eq!(s.pending(), 0);
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(v.values[0]["count"], Value::Int(15));
    // And the count restarts from the drain: call 20 flushes again.
    for _ in 0..5 {
        s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    }
    assert_eq!(d.batches.lock().len(), 3);
}

#[tokio::test]
async fn shutdown_hands_back_what_it_cannot_write() {
    let d = Recording::new();
    let s = buffered(d.clone(), 100, true);
    s.track("k", t(AT), json!({"count": 1})).await.unwrap();
    d.fail.store(true, Ordering::SeqCst);
    let Err(MetricsError::Unflushed { batches, .. }) = s.shutdown().await else {
        panic!("expected the unflushed batches back");
    };
    assert_eq!(batches.len(), 1);
    // Writing them later (same ids) applies them exactly once.
    d.fail.store(false, Ordering::SeqCst);
    for b in &batches {
        d.write(b).await.unwrap();
        d.write(b).await.unwrap();
    }
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(v.values[0]["count"], Value::Int(1));
}

#[tokio::test]
async fn unbuffered_driver_errors_reach_the_caller() {
    let d = Recording::new();
    let s = MetricsStore::builder(d.clone())
        .time_zone("UTC")
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    d.fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        s.track("k", t(AT), json!({"count": 1})).await,
        Err(MetricsError::Driver(_))
    ));
}

// ---------------------------------------------------------------- A. configuration

#[tokio::test]
async fn a10_defaults() {
    let s = MetricsStore::builder(Recording::new()).build().unwrap();
    let names: Vec<String> = s.granularities().iter().map(ToString::to_string).collect();
    assert_eq!(names, ["1m", "1h", "1d", "1w", "1mo", "1q", "1y"]);
    assert_eq!(s.calendar().time_zone().iana_name(), Some("GMT"));
    assert_eq!(s.calendar().week_start(), jiff::civil::Weekday::Monday);
    s.shutdown().await.unwrap();
}

#[test]
fn a11_invalid_zone_and_granularity_fail_the_build() {
    let err = MetricsStore::builder(Recording::new())
        .time_zone("Invalid/Timezone")
        .buffer(Buffering::Off)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("Invalid/Timezone"), "{err}");
    let err = MetricsStore::builder(Recording::new())
        .granularities(["1h", "1hour"])
        .buffer(Buffering::Off)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("1hour"), "{err}");
    // The async buffer needs a runtime.
    assert_eq!(
        MetricsStore::builder(Recording::new()).build().unwrap_err(),
        ConfigError::NoRuntime
    );
}

#[test]
fn blocking_facade() {
    let s = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .time_zone("UTC")
        .granularities(["1h"])
        .build_blocking()
        .unwrap();
    s.track("k", t(AT), json!({"count": 2})).unwrap();
    s.flush().unwrap();
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .unwrap();
    assert_eq!(v.values[0]["count"], Value::Int(2));
    s.shutdown().unwrap();
}

// ---------------------------------------------------------------- G. keys

#[test]
fn g1_to_g7_identities() {
    let row = RowId::new("event", "1d".parse().unwrap(), t("2025-01-15T10:00:00Z"));
    assert_eq!(
        row.identity(IdentifierMode::Full, Some("trfl")),
        Identity::Full {
            key: "trfl::event::1d::1736935200".into()
        }
    );
    assert_eq!(
        row.identity(IdentifierMode::Partial, Some("trfl")),
        Identity::Partial {
            key: "trfl::event::1d".into(),
            at: t("2025-01-15T10:00:00Z")
        }
    );
    assert_eq!(
        row.identity(IdentifierMode::Separated, Some("trfl")),
        Identity::Separated {
            key: "event".into(),
            granularity: "1d".into(),
            at: t("2025-01-15T10:00:00Z")
        }
    );
    let logs = RowId::new(
        "event::logs",
        "1h".parse().unwrap(),
        t("2025-01-15T10:00:00Z"),
    );
    assert_eq!(
        logs.identity(IdentifierMode::Full, None),
        Identity::Full {
            key: "event::logs::1h::1736935200".into()
        }
    );
    let custom = RowId::new("events", "1h".parse().unwrap(), t("2025-02-01T11:00:00Z"));
    assert_eq!(
        custom.identity_with(IdentifierMode::Full, Some("custom"), "--"),
        Identity::Full {
            key: "custom--events--1h--1738407600".into()
        }
    );
    let sys = RowId::new(
        accrue::metrics::SYSTEM_KEY,
        "1h".parse().unwrap(),
        t("2025-01-15T10:00:00Z"),
    );
    assert_eq!(
        sys.identity(IdentifierMode::Full, Some("trfl")),
        Identity::Full {
            key: "trfl::__system__key__::1h::1736935200".into()
        }
    );
}

#[test]
fn g9_at_text_is_utc_whole_seconds() {
    let at: Timestamp = "2025-01-15T10:00:00+02:00".parse().unwrap();
    assert_eq!(accrue::metrics::at_text(at), "2025-01-15T08:00:00Z");
}

#[test]
fn g11_g12_mode_parsing_is_strict() {
    for (s, m) in [
        ("full", IdentifierMode::Full),
        ("FULL", IdentifierMode::Full),
        ("partial", IdentifierMode::Partial),
        ("PARTIAL", IdentifierMode::Partial),
        ("separated", IdentifierMode::Separated),
        ("SEPARATED", IdentifierMode::Separated),
    ] {
        assert_eq!(s.parse::<IdentifierMode>().unwrap(), m);
    }
    for bad in ["", "unknown", "joined"] {
        assert!(bad.parse::<IdentifierMode>().is_err(), "{bad:?}");
    }
}

#[test]
fn g13_descriptions() {
    assert_eq!(
        MemoryDriver::new(IdentifierMode::Partial).description(),
        "MemoryDriver(P)"
    );
    assert_eq!(IdentifierMode::Separated.letter(), 'S');
}

// ---------------------------------------------------------------- H. packer

#[test]
fn h8_segment_codec() {
    for (raw, enc) in [
        ("test.rb", "test%2Erb"),
        ("%22", "%2522"),
        ("test%2Erb", "test%252Erb"),
        ("*", "%2A"),
        ("$count", "%24count"),
        ("a\\b", "a%5Cb"),
        ("quoted\"name", "quoted%22name"),
        ("任务.rb", "任务%2Erb"),
        ("plain_name", "plain_name"),
    ] {
        assert_eq!(accrue::metrics::encode_segment(raw), enc);
        assert_eq!(accrue::metrics::decode_segment(enc), raw);
    }
}

#[test]
fn h10_public_paths() {
    assert_eq!(
        accrue::metrics::parse_public_path(r"jobs.test\.rb"),
        ["jobs", "test.rb"]
    );
    assert_eq!(
        accrue::metrics::parse_public_path(".jobs..count."),
        ["", "jobs", "", "count", ""]
    );
    assert!(accrue::metrics::parse_public_path("").is_empty());
}

async fn stored(
    codec: accrue::metrics::PathCodec,
    op: &str,
    v: serde_json::Value,
) -> Result<Vec<(String, FieldOp)>, MetricsError> {
    let d = Recording::new();
    let s = MetricsStore::builder(d.clone())
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .system_tracking(SystemTracking::Off)
        .path_codec(codec)
        .build()
        .unwrap();
    match op {
        "track" => s.track("k", t(AT), v).await?,
        _ => s.assert("k", t(AT), v).await?,
    }
    Ok(d.data_rows().into_iter().next().unwrap_or_default())
}

fn names(f: &[(String, FieldOp)]) -> Vec<&str> {
    f.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn h1_h2_h5_h6_packing() {
    use accrue::metrics::PathCodec::*;
    for codec in [Legacy, V1] {
        assert_eq!(
            names(
                &stored(codec, "track", json!({"a": 1, "b": 2, "c": 3}))
                    .await
                    .unwrap()
            ),
            ["a", "b", "c"]
        );
        let f = stored(
            codec,
            "track",
            json!({"a": 1, "b": {"c": 22, "d": 33, "e": {"f": 444}, "g": 55}, "h": 6}),
        )
        .await
        .unwrap();
        assert_eq!(names(&f), ["a", "b.c", "b.d", "b.e.f", "b.g", "h"]);
        let f = stored(
            codec,
            "assert",
            json!({"count": 1, "meta": {"duration": 2, "nested": {"flag": true}}}),
        )
        .await
        .unwrap();
        assert_eq!(names(&f), ["count", "meta.duration", "meta.nested.flag"]);
        let f = stored(codec, "assert", json!({"tags": [1, 2], "m": {}}))
            .await
            .unwrap();
        assert_eq!(
            f,
            [("tags".to_string(), FieldOp::Set(Value::from(json!([1, 2]))))]
        );
    }
}

#[tokio::test]
async fn h3_colliding_spellings_are_an_error() {
    // Ruby keeps the later one, Go is order-dependent; we refuse the ambiguity.
    let err = stored(
        accrue::metrics::PathCodec::Legacy,
        "assert",
        json!({"a": 1, "b": {"c": 22}, "b.c": "err"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, MetricsError::InvalidValue(accrue::metrics::ValueError::DuplicatePath { ref path }) if path == "b.c"),
        "{err}"
    );
}

#[tokio::test]
async fn h9_h11_v1_paths() {
    let f = stored(
        accrue::metrics::PathCodec::V1,
        "track",
        json!({"jobs.test.rb": 1, r"jobs.test\.rb": 2, r"jobs.\*": 4, "jobs.$cost": 5}),
    )
    .await
    .unwrap();
    assert_eq!(
        names(&f),
        ["jobs.%24cost", "jobs.%2A", "jobs.test%2Erb", "jobs.test.rb"]
    );
    let f = stored(
        accrue::metrics::PathCodec::V1,
        "assert",
        json!({r"status\.items": [{"test%2Erb": "%2E"}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        f,
        [(
            "status%2Eitems".to_string(),
            FieldOp::Set(Value::from(json!([{"test%2Erb": "%2E"}])))
        )]
    );
}

#[tokio::test]
async fn h4_h7_unpacking_through_values() {
    let d = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let s = MetricsStore::builder(d.clone())
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .path_codec(accrue::metrics::PathCodec::Legacy)
        .build()
        .unwrap();
    s.assert("k", t(AT), json!({"a": {"b": 1}})).await.unwrap();
    // A stored scalar and a map at the same path: the map wins, in either order.
    s.assert("k", t(AT), json!({"a": 5})).await.unwrap();
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Map(v.values[0].clone()).to_json(),
        json!({"a": {"b": 1}})
    );
}

#[tokio::test]
async fn legacy_codec_refuses_unstorable_keys() {
    let err = stored(
        accrue::metrics::PathCodec::Legacy,
        "assert",
        json!({"quoted\"name": 1}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            MetricsError::InvalidValue(accrue::metrics::ValueError::Unrepresentable { .. })
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- L. numbers

#[tokio::test]
async fn l1_l2_integers_read_back_as_integers_l5_numeric_strings_refused() {
    let d = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let s = MetricsStore::builder(d)
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    s.track("k", t(AT), json!({"count": 7})).await.unwrap();
    let v = s
        .values(
            "k",
            t(AT),
            t(AT),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    assert_eq!(v.values[0]["count"], Value::Int(7));
    assert!(matches!(
        s.track("k", t(AT), json!({"count": "5"})).await,
        Err(MetricsError::InvalidValue(
            accrue::metrics::ValueError::NotANumber { .. }
        ))
    ));
}
