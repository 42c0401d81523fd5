//! Checkpointed writes on the in-memory driver: commit and resume, refused commits that change
//! nothing, a failed commit retried under the same seq written once, what shutdown and flush
//! do on such a store; and a stable automatic writer id numbering above its stored mark.
#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use accrue::metrics::{Buffering, FlushTask};
use accrue::metrics::{
    ConfigError, Driver, DriverError, DriverFuture, IdentifierMode, MemoryDriver, MetricsError,
    MetricsStore, RowId, Value, Values, WriteBatch,
};
use accrue::time::{Blanks, Granularity, Unit};
use jiff::Timestamp;
use serde_json::json;

fn at() -> Timestamp {
    "2025-03-01T12:34:00Z".parse().unwrap()
}

fn checkpointed(driver: Arc<dyn Driver>, writer: &str) -> MetricsStore {
    MetricsStore::builder(driver)
        .time_zone("UTC")
        .granularities(["1h"])
        .checkpointed(writer)
        .build()
        .unwrap()
}

async fn total(stats: &MetricsStore, key: &str) -> serde_json::Value {
    let series = stats
        .values(key, at(), at(), Granularity::one(Unit::Hour), Blanks::Keep)
        .await
        .unwrap();
    Value::Map(series.values[0].clone()).to_json()
}

/// Fails the next `fail` writes; with `after_applying`, only after the inner driver applied
/// them (an acknowledgement lost on the way back).
#[derive(Debug)]
struct Flaky {
    inner: MemoryDriver,
    fail: AtomicU32,
    after_applying: bool,
}

impl Flaky {
    fn new(after_applying: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryDriver::new(IdentifierMode::Full),
            fail: AtomicU32::new(0),
            after_applying,
        })
    }

    fn fail_next(&self, n: u32) {
        self.fail.store(n, Ordering::SeqCst);
    }
}

impl Driver for Flaky {
    fn description(&self) -> String {
        "Flaky".into()
    }
    fn mode(&self) -> IdentifierMode {
        self.inner.mode()
    }
    fn setup(&self) -> DriverFuture<'_, ()> {
        self.inner.setup()
    }
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let failing = self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing && !self.after_applying {
                return Err(DriverError::connection("write refused"));
            }
            self.inner.write(batch).await?;
            if failing {
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

#[tokio::test]
async fn commit_writes_one_batch_and_resume_reads_it_back() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let stats = checkpointed(driver.clone(), "source-a");
    assert_eq!(stats.resume().await.unwrap(), None);
    for i in 0..10 {
        stats.track("k", at(), json!({"n": i})).await.unwrap();
    }
    assert_eq!(
        driver.batches_applied(),
        0,
        "nothing is written before a commit"
    );
    let outcome = stats.commit(10).await.unwrap();
    assert_eq!((outcome.batches, outcome.rows), (1, 2));
    assert_eq!(driver.batches_applied(), 1);
    assert_eq!(stats.resume().await.unwrap(), Some(10));
    assert_eq!(total(&stats, "k").await, json!({"n": 45}));

    // A commit with nothing tracked writes nothing and leaves the destination's position.
    assert_eq!(stats.commit(12).await.unwrap().batches, 0);
    assert_eq!(stats.resume().await.unwrap(), Some(10));
    stats.shutdown().await.unwrap();

    // A new instance under the same id resumes at 10, refuses anything at or below it.
    let again = checkpointed(driver.clone(), "source-a");
    assert_eq!(again.resume().await.unwrap(), Some(10));
    again.track("k", at(), json!({"n": 100})).await.unwrap();
    assert!(matches!(
        again.commit(10).await,
        Err(MetricsError::CommitOrder { seq: 10, last: 10 })
    ));
    again.commit(11).await.unwrap();
    assert_eq!(total(&again, "k").await, json!({"n": 145}));
    // Another id reads this one's position.
    let other = checkpointed(driver.clone(), "source-b");
    assert_eq!(other.applied("source-a").await.unwrap(), Some(11));
    assert_eq!(other.resume().await.unwrap(), None);
}

#[tokio::test]
async fn a_commit_not_above_the_last_is_refused_and_changes_nothing() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let stats = checkpointed(driver.clone(), "w");
    stats.track("k", at(), json!({"n": 1})).await.unwrap();
    let err = stats.commit(0).await.unwrap_err();
    assert!(
        matches!(err, MetricsError::CommitOrder { seq: 0, last: 0 }),
        "{err}"
    );
    stats.commit(5).await.unwrap();
    stats.track("k", at(), json!({"n": 2})).await.unwrap();
    for seq in [5, 4, 1] {
        let err = stats.commit(seq).await.unwrap_err();
        assert!(
            matches!(err, MetricsError::CommitOrder { seq: s, last: 5 } if s == seq),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was written"), "{err}");
    }
    assert_eq!(driver.batches_applied(), 1);
    assert_eq!(stats.pending(), 1, "the refused data is still pending");
    assert_eq!(driver.applied("w").await.unwrap(), Some(5));
    stats.commit(6).await.unwrap();
    assert_eq!(total(&stats, "k").await, json!({"n": 3}));
}

#[tokio::test]
async fn a_failed_commit_retried_under_its_seq_is_written_once() {
    // Lost acknowledgement: the batch is stored, the commit fails, the retry is skipped.
    let driver = Flaky::new(true);
    let stats = checkpointed(driver.clone(), "w");
    stats.track("k", at(), json!({"n": 1})).await.unwrap();
    driver.fail_next(1);
    let err = stats.commit(3).await.unwrap_err();
    assert!(
        matches!(&err, MetricsError::Driver(e) if e.is_retryable()),
        "{err}"
    );
    stats.track("k", at(), json!({"n": 10})).await.unwrap();
    assert!(matches!(
        stats.commit(2).await,
        Err(MetricsError::CommitOrder { seq: 2, last: 3 })
    ));
    let outcome = stats.commit(3).await.unwrap();
    assert_eq!(outcome.batches, 1, "the kept batch alone is re-sent");
    assert_eq!(driver.inner.batches_applied(), 1);
    assert_eq!(total(&stats, "k").await, json!({"n": 1}));
    stats.commit(4).await.unwrap();
    assert_eq!(total(&stats, "k").await, json!({"n": 11}));

    // Refused outright: a later seq re-sends the kept batch first, then the rest.
    let driver = Flaky::new(false);
    let stats = checkpointed(driver.clone(), "w");
    stats.track("k", at(), json!({"n": 1})).await.unwrap();
    driver.fail_next(2);
    assert!(stats.commit(3).await.is_err());
    assert!(stats.commit(3).await.is_err());
    stats.track("k", at(), json!({"n": 10})).await.unwrap();
    let outcome = stats.commit(8).await.unwrap();
    assert_eq!(outcome.batches, 2);
    assert_eq!(driver.inner.batches_applied(), 2);
    assert_eq!(driver.applied("w").await.unwrap(), Some(8));
    assert_eq!(total(&stats, "k").await, json!({"n": 11}));
}

#[tokio::test]
async fn a_checkpointed_store_writes_only_on_commit() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let stats = MetricsStore::builder(driver.clone())
        .granularities(["1h"])
        .buffer_size(1)
        .buffer_duration(std::time::Duration::from_millis(1))
        .checkpointed("w")
        .build()
        .unwrap();
    for i in 0..5 {
        stats.track("k", at(), json!({"n": i})).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        driver.batches_applied(),
        0,
        "no size- or time-triggered flush"
    );
    assert!(matches!(
        stats.flush().await,
        Err(MetricsError::Checkpointed)
    ));
    // Shutdown drops what was not committed: the source replays it.
    stats.shutdown().await.unwrap();
    assert_eq!(driver.batches_applied(), 0);
    assert!(matches!(stats.commit(1).await, Err(MetricsError::Closed)));

    let automatic = MetricsStore::builder(driver.clone()).build().unwrap();
    assert!(matches!(
        automatic.commit(1).await,
        Err(MetricsError::NotCheckpointed)
    ));
    let unbuffered = MetricsStore::builder(driver)
        .buffer(Buffering::Off)
        .checkpointed("w")
        .build();
    assert!(matches!(
        unbuffered,
        Err(ConfigError::CheckpointedUnbuffered)
    ));
}

#[test]
fn blocking_commit_and_resume() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let stats = MetricsStore::builder(driver.clone())
        .granularities(["1h"])
        .checkpointed("w")
        .build_blocking()
        .unwrap();
    assert_eq!(stats.resume().unwrap(), None);
    stats.track("k", at(), json!({"n": 2})).unwrap();
    stats.commit(40).unwrap();
    assert_eq!(stats.resume().unwrap(), Some(40));
    assert_eq!(stats.applied("w").unwrap(), Some(40));
    stats.shutdown().unwrap();
}

/// A stable automatic id whose stored mark is above the store's clock-based start (the clock
/// went back since its predecessor wrote): the store numbers above the mark, so its batches
/// are not skipped as already applied.
#[tokio::test]
async fn a_stable_writer_id_numbers_above_its_stored_mark() {
    let driver = Arc::new(MemoryDriver::new(IdentifierMode::Full));
    let ahead = u64::MAX / 4;
    let first = MetricsStore::builder(driver.clone())
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .writer_id("ingest")
        .build()
        .unwrap();
    first.track("k", at(), json!({"n": 1})).await.unwrap();
    // Fake a predecessor whose mark is far ahead of the clock.
    driver
        .write(&WriteBatch {
            id: accrue::metrics::BatchId {
                writer: "ingest".into(),
                seq: ahead,
            },
            rows: Vec::new(),
        })
        .await
        .unwrap();
    let before = driver.applied("ingest").await.unwrap().unwrap();
    assert_eq!(before, ahead);
    for buffered in [true, false] {
        let stats = MetricsStore::builder(driver.clone())
            .granularities(["1h"])
            .buffer(if buffered {
                Buffering::On
            } else {
                Buffering::Off
            })
            .buffer_async(FlushTask::None)
            .writer_id("ingest")
            .build()
            .unwrap();
        stats.track("k", at(), json!({"n": 10})).await.unwrap();
        stats.shutdown().await.unwrap();
    }
    assert_eq!(total(&first, "k").await, json!({"n": 21}));
    assert!(driver.applied("ingest").await.unwrap().unwrap() > ahead);
}
