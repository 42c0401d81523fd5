//! [`Pipeline`]: committed events → aggregator → metrics store, exactly once.
//!
//! One aggregator between ingest and the driver. The writer thread adds each committed event
//! to the aggregator under `upto`'s lock and records the highest id added. A flush takes that
//! lock, notes the id `w`, and swaps the aggregator's tables out, so the flushed samples are
//! exactly the events up to `w` not flushed before. Their rows (every granularity's bucket of
//! each sample) and an assert of the watermark `w` (on a per-event-store key) are assembled
//! into **one driver batch**, written straight to the driver: one transaction on SQLite, and
//! no second merge in the store's buffer. On start the watermark is read back and the events
//! after it are replayed from the event store, so a crash at any moment loses no metric and
//! counts none twice. A failed batch is kept and retried unchanged (the driver applies a batch
//! id at most once); nothing new is flushed until it went through.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;

use super::bucket::{BucketCache, Bucketer};
use super::sample::{Num, Sample, SampleMerge, segments};
use crate::aggregator::{Aggregator, BatchReceiver, Counters};
use crate::collector::error::{ApiError, CollectorError};
use crate::collector::event::Event;
use crate::collector::metrics::Metrics;
use crate::collector::store::EventStore;
use crate::collector::writer::{CommitObserver, WriterShared};
use crate::metrics::{
    Assembly, MAX_KEY_LEN, MetricsError, MetricsStore, Number, Op, SYSTEM_KEY, Value, Values,
    WriteBatch,
};
use crate::time::Blanks;

type Key = (Box<str>, i64);
type Agg = Aggregator<Key, Sample, ahash::RandomState, SampleMerge>;

/// Prefix of the metric key that holds an event store's watermark.
const WATERMARK_PREFIX: &str = "__accrue_watermark__";
/// Events read per replay query at start-up.
const REPLAY_CHUNK: usize = 10_000;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The instant the watermark is asserted at: a fixed bucket far from real data.
fn watermark_at() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

/// The metrics pipeline of one collector.
#[derive(Debug)]
pub(crate) struct Pipeline {
    agg: Agg,
    rx: BatchReceiver<Key, Sample>,
    /// Highest event id added to the aggregator; its lock orders adds against flushes.
    upto: Mutex<i64>,
    bucketer: Bucketer,
    cache: Mutex<BucketCache>,
    stats: MetricsStore,
    watermark_key: String,
    store_id: i64,
    /// Highest id whose metrics are in the metrics store.
    flushed: AtomicI64,
    /// Builds each flush's driver batch (behind a lock so the blocking pool can use it).
    assembly: Arc<Mutex<Assembly>>,
    /// A flush batch whose write failed, with its watermark: retried before anything else.
    stalled: Mutex<Option<(i64, Arc<WriteBatch>)>>,
    metrics: Arc<Metrics>,
    writer: Mutex<Option<Arc<WriterShared>>>,
    finished: AtomicBool,
    /// One flush at a time (deletes ask for one besides the timer), and the live
    /// feed of stored flushes.
    flush_lock: tokio::sync::Mutex<()>,
    live: std::sync::OnceLock<Arc<crate::collector::live::LiveHub>>,
}

impl Pipeline {
    /// Builds the pipeline on an opened metrics store and reads the watermark of the event
    /// store `store_id` back from it.
    pub(crate) async fn new(
        stats: MetricsStore,
        store_id: i64,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, CollectorError> {
        let shards = 64;
        let (agg, rx) = Aggregator::<Key, Sample>::builder()
            .merge(SampleMerge)
            .shards(shards)
            // A flush sends at most one batch per shard and is drained at once, so it is never
            // cut short by a full channel (which would break the watermark's exactness).
            .channel_capacity(shards)
            .build()
            .map_err(|e| {
                CollectorError::Config(format!("metrics aggregator: {}", crate::report::Chain(&e)))
            })?;
        let bucketer = Bucketer::new(stats.calendar().clone(), stats.granularities().to_vec());
        let pipeline = Arc::new(Self {
            agg,
            rx,
            upto: Mutex::new(0),
            bucketer,
            cache: Mutex::new(BucketCache::default()),
            stats,
            watermark_key: format!("{WATERMARK_PREFIX}{store_id}"),
            store_id,
            flushed: AtomicI64::new(0),
            assembly: Arc::new(Mutex::new(Assembly::new())),
            stalled: Mutex::new(None),
            metrics,
            writer: Mutex::new(None),
            finished: AtomicBool::new(false),
            flush_lock: tokio::sync::Mutex::new(()),
            live: std::sync::OnceLock::new(),
        });
        let w = pipeline.read_watermark().await?;
        pipeline.flushed.store(w, Ordering::Release);
        *pipeline.upto.lock() = w;
        Ok(pipeline)
    }

    /// Adds the stored events after the watermark to the aggregator (blocking: run it before
    /// the writer starts, off the async workers). Returns how many it replayed.
    pub(crate) fn replay(&self, store: &EventStore) -> Result<usize, CollectorError> {
        let w = self.flushed();
        let mut after = w;
        let mut replayed = 0usize;
        let mut cache = BucketCache::default();
        loop {
            let mut last = after;
            let n = store.events_after(after, REPLAY_CHUNK, |id, key, time, data| {
                last = id;
                match self.bucketer.bucket(time.unix_ns, &mut cache) {
                    Ok(bucket) if key_ok(key).is_ok() => {
                        let _ = self.agg.add((key.into(), bucket), Sample::of_event(data));
                    }
                    _ => {
                        self.metrics.metrics_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
            *self.upto.lock() = last;
            after = last;
            replayed += n;
            if n < REPLAY_CHUNK {
                break;
            }
        }
        self.metrics
            .metrics_replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                after_id = w,
                "replayed events not yet in the metrics store"
            );
        }
        Ok(replayed)
    }

    /// Publishes every stored flush to the live feeds' `flushes` subscribers.
    pub(crate) fn set_live(&self, hub: Arc<crate::collector::live::LiveHub>) {
        let _ = self.live.set(hub);
    }

    /// Lets retention know how far the metrics store is.
    pub(crate) fn attach(&self, writer: Arc<WriterShared>) {
        writer
            .watermark
            .store(self.flushed.load(Ordering::Acquire), Ordering::Release);
        *self.writer.lock() = Some(writer);
    }

    async fn read_watermark(&self) -> Result<i64, CollectorError> {
        let Some(g) = self.stats.granularities().first() else {
            return Ok(i64::MAX);
        };
        let at = watermark_at();
        let series = self
            .stats
            .values(&self.watermark_key, at, at, *g, Blanks::Keep)
            .await
            .map_err(|e| CollectorError::metrics("read the metrics watermark", e))?;
        let id = series
            .values
            .first()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_number)
            .map_or(0, |n| match n {
                Number::Int(i) => i,
                Number::Float(f) => f as i64,
            });
        Ok(id)
    }

    /// Checks the events of a request against the metrics store's key rules and computes
    /// their buckets and samples (on the request's thread, not the writer's).
    ///
    /// # Errors
    ///
    /// `400 Invalid event key` naming the rule, before anything is queued.
    pub(crate) fn prepare(&self, events: &mut [Event]) -> Result<(), ApiError> {
        let mut cache = *self.cache.lock();
        for (i, e) in events.iter_mut().enumerate() {
            key_ok(&e.key).map_err(|why| ApiError::invalid_key(i, why))?;
            let bucket = self
                .bucketer
                .bucket(e.time.unix_ns, &mut cache)
                .map_err(|err| {
                    ApiError::invalid_key(i, format!("the event time has no bucket: {err}"))
                })?;
            e.metric = Some((bucket, Sample::of_event(e.data.as_deref())));
        }
        *self.cache.lock() = cache;
        Ok(())
    }

    /// The store, for `/v1/values`.
    pub(crate) fn stats(&self) -> &MetricsStore {
        &self.stats
    }

    pub(crate) fn counters(&self) -> Counters {
        self.agg.counters()
    }

    /// Highest id whose metrics are in the metrics store.
    pub(crate) fn flushed(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// The observer the writer calls after each commit.
    pub(crate) fn observer(self: &Arc<Self>) -> Box<dyn CommitObserver> {
        Box::new(Feed(Arc::clone(self)))
    }

    /// Writes what the aggregator holds into the metrics store (one batch, with the watermark).
    ///
    /// # Errors
    ///
    /// The store's error; the batch is kept and retried by the next call.
    pub(crate) async fn flush(&self) -> Result<(), MetricsError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let started = std::time::Instant::now();
        let stalled = self.stalled.lock().clone();
        if let Some((w, batch)) = stalled {
            self.write(&batch).await?;
            *self.stalled.lock() = None;
            self.advance(w);
        }
        let (w, items) = {
            let upto = self.upto.lock();
            let report = self.agg.flush_once();
            debug_assert!(
                !report.deferred,
                "the drained channel has room for every shard"
            );
            let items: Vec<(Key, Sample)> = self.rx.try_iter().flatten().collect();
            (*upto, items)
        };
        if items.is_empty() && w <= self.flushed() {
            return Ok(());
        }
        let live = self.live.get().filter(|l| l.wants_flushes());
        // Turning samples into rows costs CPU linear in the keys of the window: off the async
        // workers, so requests and health checks keep being answered meanwhile.
        let (batch, published) = {
            let watermark = Watermark {
                key: self.watermark_key.clone(),
                store: self.store_id,
                id: w,
            };
            let (stats, assembly) = (self.stats.untracked(), Arc::clone(&self.assembly));
            let metrics = Arc::clone(&self.metrics);
            let publish = live.is_some();
            match tokio::task::spawn_blocking(move || {
                let mut assembly = assembly.lock();
                assemble(&stats, &mut assembly, items, &watermark, publish, &metrics)
            })
            .await
            {
                Ok(assembled) => assembled?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down; the events are replayed on the next start.
                Err(_) => return Err(MetricsError::Closed),
            }
        };
        let batch = Arc::new(batch);
        if let Err(e) = self.write(&batch).await {
            *self.stalled.lock() = Some((w, batch));
            return Err(e);
        }
        self.advance(w);
        if let Some(live) = live {
            live.publish_flush(w, &published);
        }
        self.metrics.metrics_flushes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .metrics_flush_latency
            .observe(started.elapsed());
        Ok(())
    }

    /// One driver write of a flush batch, counted when it fails.
    async fn write(&self, batch: &WriteBatch) -> Result<(), MetricsError> {
        self.stats.driver().write(batch).await.map_err(|e| {
            self.metrics
                .metrics_flush_errors
                .fetch_add(1, Ordering::Relaxed);
            MetricsError::from(e)
        })
    }

    fn advance(&self, w: i64) {
        self.flushed.fetch_max(w, Ordering::AcqRel);
        if let Some(writer) = &*self.writer.lock() {
            writer.watermark.fetch_max(w, Ordering::AcqRel);
        }
    }

    /// Flushes every `every` until `stop`, retrying failures with backoff.
    pub(crate) async fn run(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut delay = RETRY_MIN;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            loop {
                match self.flush().await {
                    Ok(()) => {
                        delay = RETRY_MIN;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = &e as &dyn std::error::Error, retry_in = ?delay,
                            "metrics flush failed; the batch is kept and retried");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stop.cancelled() => return,
                        }
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }

    /// The final flush after the writer stopped, retried until `deadline`; then closes the
    /// store. What cannot be written is rebuilt from the event store on the next start.
    pub(crate) async fn finish(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(), CollectorError> {
        if self.finished.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut delay = RETRY_MIN;
        let result = loop {
            match self.flush().await {
                Ok(()) => break Ok(()),
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "final metrics flush failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(e) => break Err(e),
            }
        };
        let closed = self.stats.shutdown().await;
        if let Err(e) = result.and(closed) {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                watermark = self.flushed(),
                "the metrics store did not take the last flush; the events after the watermark \
                 are replayed into it on the next start"
            );
            return Err(CollectorError::metrics("final flush", e));
        }
        Ok(())
    }
}

/// What one flush hands the live feed: each sample's event key, bucket start and values.
type Published = Vec<(Box<str>, Timestamp, Values)>;

/// Where a flush's batch records how far it got: the event store's watermark row.
struct Watermark {
    key: String,
    store: i64,
    id: i64,
}

/// Assembles every sample of a flush, then the watermark, into one driver batch (blocking:
/// run it on the blocking pool). Event keys are tracked *untracked*: the system rows count them
/// without listing each key, so a bucket's system row has two fields however many keys it saw
/// (the event store already lists keys, through `/v1/latest`).
fn assemble(
    stats: &MetricsStore,
    assembly: &mut Assembly,
    items: Vec<(Key, Sample)>,
    watermark: &Watermark,
    publish: bool,
    metrics: &Metrics,
) -> Result<(WriteBatch, Published), MetricsError> {
    let mut published = Vec::new();
    let mut overflowed = 0;
    let mut overflowed_key = None;
    for ((key, bucket), sample) in items {
        let at = Timestamp::from_second(bucket).expect("bucket starts of event times are in range");
        let (values, lost) = sample_values(sample);
        if lost > 0 {
            overflowed += lost;
            overflowed_key.get_or_insert_with(|| key.clone());
        }
        let values = Value::Map(values);
        if let Err(e) = stats.assemble_call(assembly, Op::Track, &metric_key(&key), at, &values) {
            if matches!(e, MetricsError::Closed) {
                return Err(e);
            }
            // Keys and numbers are checked at ingest, so only a rule this build does not know
            // gets here.
            metrics
                .metrics_skipped
                .fetch_add(sample_count(&values), Ordering::Relaxed);
            tracing::error!(key = %key, error = &e as &dyn std::error::Error, "metrics store refused a sample");
            continue;
        }
        if publish && let Value::Map(values) = values {
            published.push((key, at, values));
        }
    }
    if let Some(key) = overflowed_key {
        metrics
            .metrics_overflowed_fields
            .fetch_add(overflowed, Ordering::Relaxed);
        tracing::warn!(
            fields = overflowed,
            example_key = %key,
            "data fields whose sum left the range of a 64-bit float in this flush window are \
             left out of its metrics (their counts and other fields are written)"
        );
    }
    let mut mark = Values::new();
    mark.insert("store".into(), Value::Int(watermark.store));
    mark.insert("id".into(), Value::Int(watermark.id));
    stats.assemble_call(
        assembly,
        Op::Assert,
        &watermark.key,
        watermark_at(),
        &Value::Map(mark),
    )?;
    let batch = stats
        .assemble(assembly)?
        .expect("the watermark is always in the batch");
    Ok((batch, published))
}

fn sample_count(values: &Value) -> u64 {
    match values {
        Value::Map(m) => match m.get("count") {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

/// Bytes of an event key kept in front of the digest in a long key's metric key.
const LONG_KEY_PREFIX: usize = MAX_KEY_LEN - 1 - LONG_KEY_DIGEST_HEX;
/// Hex digits of SHA-256 in a long key's metric key (64 bits).
const LONG_KEY_DIGEST_HEX: usize = 16;

/// The metric key of an event key: the key itself when the metrics store can hold it (at most
/// [`MAX_KEY_LEN`] bytes, so that the SQL drivers' key columns fit it with its granularity and
/// bucket), otherwise its first bytes, `~` and 16 hex digits of its SHA-256 — so every event key
/// the server accepts has metrics, and `/v1/values` finds them under the event key.
pub(crate) fn metric_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_LEN {
        return Cow::Borrowed(key);
    }
    let mut cut = LONG_KEY_PREFIX;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = crate::collector::auth::hash_token(key);
    let hex = crate::collector::auth::hex(&digest[..LONG_KEY_DIGEST_HEX / 2]);
    Cow::Owned(format!("{}~{hex}", &key[..cut]))
}

/// The metrics store's key rules that the event key limits do not already imply, plus the
/// pipeline's own reserved prefix (length is not one: long keys get a digest, see
/// [`metric_key`]).
fn key_ok(key: &str) -> Result<(), String> {
    if key.chars().any(char::is_control) {
        Err("the key contains a control character".into())
    } else if key == SYSTEM_KEY || key.starts_with(WATERMARK_PREFIX) {
        Err(format!("{key:?} is reserved"))
    } else {
        Ok(())
    }
}

/// `{"count": n, "data": {...numeric leaves...}}`, and how many fields overflowed (left out).
fn sample_values(sample: Sample) -> (Values, u64) {
    let mut out = Values::new();
    out.insert(
        "count".into(),
        Value::Int(i64::try_from(sample.count).unwrap_or(i64::MAX)),
    );
    let mut overflowed = 0;
    let mut data = Values::new();
    for (path, num) in sample.fields {
        let value = match num {
            Num::Int(i) => Value::Int(i),
            Num::Float(f) => Value::Float(f),
            Num::Overflow => {
                overflowed += 1;
                continue;
            }
        };
        let segments: Vec<&str> = segments(&path).collect();
        insert_path(&mut data, &segments, value);
    }
    if !data.is_empty() {
        out.insert("data".into(), Value::Map(data));
    }
    (out, overflowed)
}

fn insert_path(map: &mut Values, path: &[&str], value: Value) {
    let (first, rest) = path.split_first().expect("paths are never empty");
    if rest.is_empty() {
        map.insert(first.to_string(), value);
        return;
    }
    let child = map
        .entry(first.to_string())
        .or_insert_with(|| Value::Map(Values::new()));
    if let Value::Map(inner) = child {
        insert_path(inner, rest, value);
    }
}

/// The writer's hook: adds committed events to the aggregator.
struct Feed(Arc<Pipeline>);

impl CommitObserver for Feed {
    fn committed(&mut self, events: &mut [(i64, &mut Event)]) {
        let p = &self.0;
        let mut upto = p.upto.lock();
        for (id, e) in events.iter_mut() {
            if let Some((bucket, sample)) = e.metric.take() {
                // The aggregator is caller-flushed and only shut down after the writer.
                let _ = p.agg.add((e.key.clone(), bucket), sample);
            }
            *upto = (*upto).max(*id);
        }
    }
}
