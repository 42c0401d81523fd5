//! `MetricsSink`: aggregator batches into a metrics store (memory and SQLite drivers) with exact
//! totals; a failing driver is retried with the same batch id, so nothing is counted twice.

#![cfg(all(feature = "metrics", feature = "sqlite", feature = "client"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use accrue::sink::{Fields, MetricsSink, Runner, SinkValue};
use accrue::time::{Blanks, Granularity, Unit};
use accrue::{
    Aggregator,
    metrics::{
        Driver, DriverError, DriverFuture, IdentifierMode, MemoryDriver, MetricsStore, RowId,
        SqliteDriver, Value, Values, WriteBatch,
    },
};
use jiff::Timestamp;

/// A driver that applies a write and then reports failure, `fail` times: the worst case, an
/// acknowledgement lost after the data was stored.
#[derive(Debug)]
struct LosesAcks {
    inner: MemoryDriver,
    fail: AtomicU32,
    writes: AtomicU32,
}

impl Driver for LosesAcks {
    fn description(&self) -> String {
        "LosesAcks".into()
    }

    fn mode(&self) -> IdentifierMode {
        self.inner.mode()
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        self.inner.setup()
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.write(batch).await?;
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(DriverError::connection("acknowledgement lost"));
            }
            Ok(())
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        self.inner.read(rows)
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        self.inner.applied(writer)
    }
}

#[derive(Clone, Copy)]
struct Latency {
    count: u64,
    sum: f64,
    max: f64,
}

impl SinkValue for Latency {
    fn write_fields(&self, _default: &str, out: &mut Fields) {
        out.add("count", self.count);
        out.add("sum", self.sum);
        out.set("max", self.max);
    }
}

async fn one(stats: &MetricsStore, key: &str, at: Timestamp) -> serde_json::Value {
    let s = stats
        .values(key, at, at, Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    Value::Map(s.values[0].clone()).to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_from_many_threads_land_exactly_once_despite_lost_acknowledgements() {
    let driver = Arc::new(LosesAcks {
        inner: MemoryDriver::new(IdentifierMode::Full),
        fail: AtomicU32::new(3),
        writes: AtomicU32::new(0),
    });
    let stats = MetricsStore::builder(driver.clone())
        .granularities(["1h", "1d"])
        .build()
        .unwrap();
    let at: Timestamp = "2025-03-01T12:30:00Z".parse().unwrap();
    let (agg, rx) = Aggregator::<(String, Timestamp), u64>::builder()
        .flush_interval(Duration::from_millis(5))
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let sink = Runner::new(MetricsSink::new(stats.clone()).value_field("count"))
        .spawn_with_aggregator(&agg, rx);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let agg = agg.clone();
            std::thread::spawn(move || {
                for i in 0..25_000u64 {
                    agg.add((format!("m{}", (i + t) % 3), at), 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    sink.stop();
    let report = sink.join().await;
    assert!(report.is_complete(), "{report:?}");
    assert!(
        driver.writes.load(Ordering::SeqCst) > report.writes as u32,
        "retried"
    );
    let mut total = 0;
    for k in ["m0", "m1", "m2"] {
        let v = one(&stats, k, at).await;
        total += v["count"].as_u64().unwrap();
    }
    assert_eq!(
        total, 100_000,
        "each lost acknowledgement was retried without double counting"
    );
}

#[tokio::test]
async fn sums_add_up_and_set_fields_replace_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let driver =
        SqliteDriver::open(dir.path().join("m.db"), "metrics", IdentifierMode::Full).unwrap();
    driver.setup().await.unwrap();
    let stats = MetricsStore::builder(Arc::new(driver))
        .granularities(["1h"])
        .build()
        .unwrap();
    let (agg, rx) = Aggregator::<&'static str, Latency>::builder()
        .merge(|acc: &mut Latency, l: Latency| {
            acc.count += l.count;
            acc.sum += l.sum;
            acc.max = acc.max.max(l.max);
        })
        .build()
        .unwrap();
    let sink = Runner::new(MetricsSink::new(stats.clone())).spawn(rx);
    for ms in [3.0, 9.0] {
        agg.add(
            "GET /",
            Latency {
                count: 1,
                sum: ms,
                max: ms,
            },
        )
        .unwrap();
    }
    agg.flush();
    agg.add(
        "GET /",
        Latency {
            count: 1,
            sum: 4.0,
            max: 4.0,
        },
    )
    .unwrap();
    let agg2 = agg;
    tokio::task::spawn_blocking(move || agg2.shutdown().unwrap())
        .await
        .unwrap();
    let report = sink.join().await;
    assert_eq!((report.batches, report.items), (2, 2));
    let v = one(&stats, "GET /", Timestamp::now()).await;
    assert_eq!(v["count"], 3);
    assert_eq!(v["sum"], 16.0);
    assert_eq!(v["max"], 4.0, "set by the last flush");
}

#[tokio::test]
async fn items_the_store_refuses_are_counted_and_the_rest_written() {
    let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
        .granularities(["1h"])
        .build()
        .unwrap();
    let (agg, rx) = Aggregator::<String, f64>::builder().build().unwrap();
    let sink = Runner::new(MetricsSink::new(stats.clone()).value_field("total")).spawn(rx);
    agg.add("ok".into(), 1.5).unwrap();
    agg.add("".into(), 1.0).unwrap(); // an empty key is invalid for the store
    agg.add("nan".into(), f64::NAN).unwrap(); // not a finite number
    tokio::task::spawn_blocking(move || agg.shutdown().unwrap())
        .await
        .unwrap();
    let report = sink.join().await;
    assert_eq!((report.items, report.rejected), (1, 2));
    assert_eq!(one(&stats, "ok", Timestamp::now()).await["total"], 1.5);
}

/// A store that refuses every write (down for the whole run).
#[derive(Debug)]
struct Down(MemoryDriver);

impl Driver for Down {
    fn description(&self) -> String {
        "Down".into()
    }

    fn mode(&self) -> IdentifierMode {
        self.0.mode()
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        self.0.setup()
    }

    fn write<'a>(&'a self, _batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async { Err(DriverError::connection("the store is down")) })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        self.0.read(rows)
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        self.0.applied(writer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_stop_is_reported_and_everything_handed_back() {
    let stats = MetricsStore::builder(Arc::new(Down(MemoryDriver::new(IdentifierMode::Full))))
        .granularities(["1h"])
        .build()
        .unwrap();
    let (agg, rx) = Aggregator::<String, u64>::builder()
        .flush_interval(Duration::from_millis(10))
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let sink = Runner::new(MetricsSink::new(stats.clone()))
        .stop_timeout(Duration::from_millis(300))
        .spawn_with_aggregator(&agg, rx);
    let mut total = 0;
    for i in 0..1_500u64 {
        agg.add(format!("k{}", i % 7), i).unwrap();
        total += i;
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    sink.stop();
    let report = sink.join().await;
    assert!(!report.is_complete(), "{report:?}");
    assert_eq!(
        (report.writes, report.items),
        (0, 0),
        "nothing was acknowledged"
    );
    let handed_back: u64 = report
        .unsent
        .into_iter()
        .flat_map(|b| b.into_vec())
        .map(|(_, v)| v)
        .sum();
    assert_eq!(handed_back, total, "every value is in the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flush_of_64_shards_is_one_driver_write() {
    let driver = Arc::new(LosesAcks {
        inner: MemoryDriver::new(IdentifierMode::Full),
        fail: AtomicU32::new(0),
        writes: AtomicU32::new(0),
    });
    let stats = MetricsStore::builder(driver.clone())
        .granularities(["1h"])
        .build()
        .unwrap();
    let (agg, rx) = Aggregator::<String, u64>::builder()
        .shards(64)
        .channel_capacity(64)
        .build()
        .unwrap();
    let agg = Arc::new(agg);
    for i in 0..5_000u64 {
        agg.add(format!("key{i}"), 1).unwrap();
    }
    let task = Runner::new(MetricsSink::new(stats.clone())).spawn_with_aggregator(&agg, rx);
    task.stop();
    let report = task.join().await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.batches, 64, "every shard held keys");
    assert_eq!(report.items, 5_000);
    assert_eq!(report.writes, 1, "{report:?}");
    assert_eq!(driver.writes.load(Ordering::SeqCst), 1, "one driver write");
    let at = Timestamp::now();
    assert_eq!(one(&stats, "key4999", at).await["value"], 1);
}
