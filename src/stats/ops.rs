//! [`Stats`]: configuration, `track` / `assert` / `values`, the flush lane, and the blocking
//! facade.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Weekday;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::buffer::{Buffer, Pending, PendingKey};
use super::driver::{BatchId, Driver, FieldOp, RowUpdate, WriteBatch};
use super::error::{ConfigError, StatsError};
use super::keys::{RowId, SYSTEM_KEY, UNTRACKED_KEY};
use super::packer::{Leaves, PathCodec, encode_segment, pack, unpack};
use super::value::{Number, Value, Values};
use crate::time::{Calendar, Granularity};

/// Longest metric key accepted, in bytes: joined Full keys (`key::granularity::unix`) then fit
/// the `VARCHAR(255)` key columns of the SQL drivers.
pub const MAX_KEY_LEN: usize = 200;

/// Default limit of buckets one `values` call may read.
const DEFAULT_MAX_BUCKETS: usize = 100_000;

/// Configures a [`Stats`]. Created by [`Stats::builder`]; checked by [`build`](Self::build).
///
/// Defaults (spec §3): time zone `GMT`, weeks start on Monday, granularities
/// `1m 1h 1d 1w 1mo 1q 1y`, buffer on (size 256 calls, flushed every second by a background
/// task, aggregating), system tracking on, [`PathCodec::V1`].
#[must_use = "a builder does nothing until `build()`"]
pub struct StatsBuilder {
    driver: Arc<dyn Driver>,
    zone: String,
    week_start: Weekday,
    granularities: Result<Vec<Granularity>, ConfigError>,
    buffer: bool,
    buffer_size: usize,
    buffer_duration: Duration,
    buffer_aggregate: bool,
    buffer_async: bool,
    system_tracking: bool,
    codec: PathCodec,
    max_buckets: usize,
    writer: Option<String>,
}

impl StatsBuilder {
    /// IANA time zone the buckets are computed in (default `GMT`). Unknown names fail `build`.
    pub fn time_zone(mut self, name: impl Into<String>) -> Self {
        self.zone = name.into();
        self
    }

    /// First day of the week for `w` granularities (default Monday).
    pub fn week_start(mut self, day: Weekday) -> Self {
        self.week_start = day;
        self
    }

    /// The granularities every write lands in. Strict: an invalid entry fails `build` with an
    /// error naming it; duplicates are removed keeping the first. An empty list makes writes
    /// no-ops.
    pub fn granularities<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Granularity> = Vec::new();
        let mut result = Ok(());
        for item in items {
            match item.as_ref().parse::<Granularity>() {
                Ok(g) if !list.contains(&g) => list.push(g),
                Ok(_) => {}
                Err(e) => {
                    result = Err(ConfigError::Granularity(e));
                    break;
                }
            }
        }
        self.granularities = result.map(|()| list);
        self
    }

    /// Upstream's lenient list handling ([`Granularity::parse_list_lenient`]): invalid entries
    /// are dropped (each logged with `tracing::warn!`).
    pub fn granularities_lenient<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (list, dropped) = Granularity::parse_list_lenient(items);
        for e in dropped {
            tracing::warn!("ignoring configured granularity: {e}");
        }
        self.granularities = Ok(list);
        self
    }

    /// Buffer writes (default on). Off: every call is one driver write, acknowledged when the
    /// driver has written it.
    pub fn buffer(mut self, enabled: bool) -> Self {
        self.buffer = enabled;
        self
    }

    /// Flush when this many calls are pending (default 256; must be at least 1). The call
    /// that reaches it flushes before returning.
    pub fn buffer_size(mut self, calls: usize) -> Self {
        self.buffer_size = calls;
        self
    }

    /// Period of the background flush (default 1 s). Zero: no timer.
    pub fn buffer_duration(mut self, period: Duration) -> Self {
        self.buffer_duration = period;
        self
    }

    /// Merge pending writes to the same bucket (default on): numbers add up, asserted fields
    /// keep the latest value, field by field.
    pub fn buffer_aggregate(mut self, aggregate: bool) -> Self {
        self.buffer_aggregate = aggregate;
        self
    }

    /// Run the periodic flush as a tokio task (default on; needs a runtime at `build`).
    pub fn buffer_async(mut self, enabled: bool) -> Self {
        self.buffer_async = enabled;
        self
    }

    /// Count writes per key in the `__system__key__` rows (default on).
    pub fn system_tracking(mut self, enabled: bool) -> Self {
        self.system_tracking = enabled;
        self
    }

    /// How map keys become stored field names (default [`PathCodec::V1`]).
    pub fn path_codec(mut self, codec: PathCodec) -> Self {
        self.codec = codec;
        self
    }

    /// Most buckets one `values` call may read (default 100 000).
    pub fn max_buckets(mut self, limit: usize) -> Self {
        self.max_buckets = limit;
        self
    }

    /// The writer id in batch ids (default: random per instance). Set a stable id only if
    /// exactly one live instance uses it.
    pub fn writer_id(mut self, id: impl Into<String>) -> Self {
        self.writer = Some(id.into());
        self
    }

    /// Checks the settings and creates the store. With the asynchronous buffer it starts the
    /// flush task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad setting.
    pub fn build(self) -> Result<Stats, ConfigError> {
        let calendar = Calendar::from_name(&self.zone)
            .map_err(ConfigError::TimeZone)?
            .with_week_start(self.week_start);
        let granularities = self.granularities?;
        if self.buffer && self.buffer_size == 0 {
            return Err(ConfigError::BufferSize);
        }
        if self.max_buckets == 0 {
            return Err(ConfigError::MaxBuckets);
        }
        let spawn = self.buffer && self.buffer_async && !self.buffer_duration.is_zero();
        let runtime = tokio::runtime::Handle::try_current().ok();
        if spawn && runtime.is_none() {
            return Err(ConfigError::NoRuntime);
        }
        let inner = Arc::new(Inner {
            driver: self.driver,
            calendar,
            granularities,
            buffer: self
                .buffer
                .then(|| Buffer::new(self.buffer_size, self.buffer_aggregate)),
            system_tracking: self.system_tracking,
            codec: self.codec,
            max_buckets: self.max_buckets,
            gate: RwLock::new(false),
            lane: tokio::sync::Mutex::new(Lane {
                writer: self.writer.unwrap_or_else(random_writer_id),
                next_seq: 1,
                stalled: None,
            }),
            stop: CancellationToken::new(),
            flush_errors: AtomicU64::new(0),
        });
        if spawn {
            let weak = Arc::downgrade(&inner);
            let period = self.buffer_duration;
            if let Some(rt) = runtime {
                rt.spawn(flush_loop(weak, period, inner.stop.clone()));
            }
        }
        Ok(Stats {
            inner,
            untracked: false,
        })
    }

    /// Builds a [`BlockingStats`] on its own one-worker tokio runtime, for callers without
    /// async code.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad setting.
    pub fn build_blocking(self) -> Result<BlockingStats, ConfigError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("accrue-stats")
            .enable_time()
            .build()
            .map_err(|_| ConfigError::NoRuntime)?;
        let stats = {
            let _guard = rt.enter();
            self.build()?
        };
        Ok(BlockingStats { stats, rt })
    }
}

fn random_writer_id() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(std::process::id().into());
    let mut b = state.build_hasher();
    b.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// Serialises driver writes of one instance: batch ids are assigned here, in write order.
struct Lane {
    writer: String,
    next_seq: u64,
    /// A batch whose write failed; retried before anything else.
    stalled: Option<WriteBatch>,
}

struct Inner {
    driver: Arc<dyn Driver>,
    calendar: Calendar,
    granularities: Vec<Granularity>,
    buffer: Option<Buffer>,
    system_tracking: bool,
    codec: PathCodec,
    max_buckets: usize,
    /// `true` once shut down. Writers hold the read side while they enqueue, so shutdown
    /// never sees half a call.
    gate: RwLock<bool>,
    lane: tokio::sync::Mutex<Lane>,
    stop: CancellationToken,
    flush_errors: AtomicU64,
}

/// The metrics store: Track / Assert / Values over time buckets, through a [`Driver`].
///
/// Cheap to clone (an `Arc` inside) and `Send + Sync`: share one per process.
///
/// # Writes and acknowledgement
///
/// [`track`](Self::track) adds numbers to every configured granularity's bucket of `at`;
/// [`assert`](Self::assert) overwrites fields there. Both validate the whole input first: a
/// bad key or value returns a typed error and changes nothing.
///
/// * **Buffered** (default): a call is acknowledged when it returns `Ok`: it is in the buffer,
///   merged with other pending calls to the same bucket. A flush (every `buffer_duration`,
///   when `buffer_size` calls are pending, on [`flush`](Self::flush) and on
///   [`shutdown`](Self::shutdown)) writes everything pending as one [`WriteBatch`]. If the
///   driver fails, the batch is kept and retried first by every later flush — unchanged, with
///   the same id, so a retry is applied at most once — and the error is reported by
///   `flush`/`shutdown` (and logged by the background flush). What `shutdown` still cannot
///   write is handed back in [`StatsError::Unflushed`]. A crash of the process loses what was
///   acknowledged but not yet flushed.
/// * **Unbuffered**: a call returns `Ok` once the driver wrote it.
///
/// Reads ([`values`](Self::values)) go to the driver: buffered writes become visible after
/// the next flush. Call `flush().await` first for read-your-writes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use accrue::{IdentifierMode, MemoryDriver, Stats};
/// use serde_json::json;
///
/// let stats = Stats::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
///     .time_zone("UTC")
///     .granularities(["1h", "1d"])
///     .build()
///     .unwrap();
/// let at = "2025-02-01T11:35:00Z".parse().unwrap();
/// stats.track("events", at, json!({"count": 1, "meta": {"ms": 2.5}})).await.unwrap();
/// stats.track("events", at, json!({"count": 2})).await.unwrap();
/// stats.assert("events", at, json!({"status": "ok"})).await.unwrap();
/// stats.flush().await.unwrap();
///
/// let from = "2025-02-01T10:00:00Z".parse().unwrap();
/// let to = "2025-02-01T11:59:00Z".parse().unwrap();
/// let series = stats.values("events", from, to, "1h", false).await.unwrap();
/// assert!(series.values[0].is_empty());
/// assert_eq!(accrue::Value::Map(series.values[1].clone()).to_json(),
///            json!({"count": 3, "meta": {"ms": 2.5}, "status": "ok"}));
/// stats.shutdown().await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Inner>,
    untracked: bool,
}

/// What [`Stats::values`] returns: bucket starts and the values stored in each, in order,
/// equal lengths.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Bucket starts.
    pub at: Vec<Timestamp>,
    /// The unpacked values of each bucket (`{}` when nothing was stored).
    pub values: Vec<Values>,
}

impl Series {
    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether there are no buckets.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushOutcome {
    /// Batches written (a retried one and the new one: at most 2).
    pub batches: usize,
    /// Row updates written, system rows included.
    pub rows: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Track,
    Assert,
}

impl Stats {
    /// Starts configuring a store writing through `driver` (see [`StatsBuilder`] for the
    /// defaults). Call the driver's `setup` once to create its schema.
    pub fn builder(driver: Arc<dyn Driver>) -> StatsBuilder {
        StatsBuilder {
            driver,
            zone: "GMT".into(),
            week_start: Weekday::Monday,
            granularities: Ok(Granularity::DEFAULTS.to_vec()),
            buffer: true,
            buffer_size: 256,
            buffer_duration: Duration::from_secs(1),
            buffer_aggregate: true,
            buffer_async: true,
            system_tracking: true,
            codec: PathCodec::V1,
            max_buckets: DEFAULT_MAX_BUCKETS,
            writer: None,
        }
    }

    /// A handle whose writes are counted under `__untracked__` in the system rows instead of
    /// their metric key (for high-cardinality or throwaway keys). They still count in `count`.
    pub fn untracked(&self) -> Stats {
        Stats {
            inner: self.inner.clone(),
            untracked: true,
        }
    }

    /// The calendar buckets are computed in.
    pub fn calendar(&self) -> &Calendar {
        &self.inner.calendar
    }

    /// The effective granularities.
    pub fn granularities(&self) -> &[Granularity] {
        &self.inner.granularities
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }

    /// Adds each numeric leaf of `values` to the stored value in every configured
    /// granularity's bucket of `at` (creating it at 0).
    ///
    /// # Errors
    ///
    /// Before any I/O, nothing changed: [`StatsError::InvalidKey`],
    /// [`StatsError::InvalidValue`] (a non-number leaf, a non-finite float, …),
    /// [`StatsError::Time`], [`StatsError::Closed`]. Unbuffered: [`StatsError::Driver`].
    pub async fn track(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), StatsError> {
        self.write(Op::Track, key, at, &values.into()).await
    }

    /// Overwrites each leaf of `values` in every configured granularity's bucket of `at`;
    /// fields not mentioned are left as they are. Leaves may be any scalar or an array.
    ///
    /// # Errors
    ///
    /// As [`track`](Self::track), except that any scalar leaf is accepted.
    pub async fn assert(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), StatsError> {
        self.write(Op::Assert, key, at, &values.into()).await
    }

    async fn write(
        &self,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<(), StatsError> {
        validate_key(key)?;
        let leaves = if op == Op::Track {
            Leaves::Numbers
        } else {
            Leaves::Any
        };
        let packed = pack(values, self.inner.codec, leaves)?;
        let mut buckets = Vec::with_capacity(self.inner.granularities.len());
        for &g in &self.inner.granularities {
            buckets.push((g, self.inner.calendar.floor(at, g)?.as_second()));
        }
        if packed.is_empty() || buckets.is_empty() {
            return Ok(());
        }
        let fields: Arc<[(String, FieldOp)]> = packed
            .into_iter()
            .map(|(name, v)| {
                let op = match (op, v.as_number()) {
                    (Op::Track, Some(n)) => FieldOp::Inc(n),
                    _ => FieldOp::Set(v),
                };
                (name, op)
            })
            .collect();
        let key: Arc<str> = Arc::from(key);
        match &self.inner.buffer {
            Some(buffer) => {
                let full = {
                    let closed = self.inner.gate.read();
                    if *closed {
                        return Err(StatsError::Closed);
                    }
                    buffer.add(&key, &buckets, fields, self.untracked)
                };
                if full && let Err(e) = self.flush().await {
                    self.inner.flush_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("size-triggered flush failed, data kept for retry: {e}");
                }
                Ok(())
            }
            None => {
                if *self.inner.gate.read() {
                    return Err(StatsError::Closed);
                }
                let items = buckets
                    .iter()
                    .map(|&(granularity, at)| {
                        let pk = PendingKey {
                            key: key.clone(),
                            granularity,
                            at,
                            op: 0,
                        };
                        let pending = Pending {
                            first: 0,
                            fields: super::buffer::Fields::Shared(fields.clone()),
                            tracked: u64::from(!self.untracked),
                            untracked: u64::from(self.untracked),
                        };
                        (pk, pending)
                    })
                    .collect();
                let rows = self.rows(items, true)?;
                let mut lane = self.inner.lane.lock().await;
                let batch = lane.next_batch(rows);
                self.inner.driver.write(&batch).await?;
                Ok(())
            }
        }
    }

    /// Turns pending bucket updates into row updates plus system rows.
    fn rows(
        &self,
        items: Vec<(PendingKey, Pending)>,
        merge_system: bool,
    ) -> Result<Vec<RowUpdate>, StatsError> {
        let mut rows = Vec::with_capacity(items.len() + 8);
        let mut system: Vec<RowUpdate> = Vec::new();
        let mut index: HashMap<(Granularity, i64), usize> = HashMap::new();
        for (pk, pending) in items {
            let at = Timestamp::from_second(pk.at).map_err(|_| {
                StatsError::Time(crate::time::TimeError::OutOfRange {
                    local_seconds: pk.at,
                })
            })?;
            if self.inner.system_tracking {
                let mut sys = Vec::with_capacity(3);
                let calls = pending.tracked + pending.untracked;
                sys.push(("count".to_owned(), FieldOp::Inc(count(calls))));
                if pending.tracked > 0 {
                    sys.push((
                        self.tracking_field(&pk.key),
                        FieldOp::Inc(count(pending.tracked)),
                    ));
                }
                if pending.untracked > 0 {
                    sys.push((
                        self.tracking_field(UNTRACKED_KEY),
                        FieldOp::Inc(count(pending.untracked)),
                    ));
                }
                let slot = merge_system
                    .then(|| index.get(&(pk.granularity, pk.at)).copied())
                    .flatten();
                match slot {
                    Some(i) => {
                        let fields = &mut system[i].fields;
                        for (name, op) in sys {
                            match fields.iter_mut().find(|(n, _)| *n == name) {
                                Some((_, existing)) => existing.merge(op),
                                None => fields.push((name, op)),
                            }
                        }
                    }
                    None => {
                        index.insert((pk.granularity, pk.at), system.len());
                        system.push(RowUpdate {
                            row: RowId::new(SYSTEM_KEY, pk.granularity, at),
                            fields: sys,
                        });
                    }
                }
            }
            let mut fields = pending.fields.into_vec();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            rows.push(RowUpdate {
                row: RowId::new(&*pk.key, pk.granularity, at),
                fields,
            });
        }
        for s in &mut system {
            s.fields.sort_by(|a, b| a.0.cmp(&b.0));
        }
        rows.extend(system);
        Ok(rows)
    }

    fn tracking_field(&self, key: &str) -> String {
        match self.inner.codec {
            PathCodec::V1 => format!("keys.{}", encode_segment(key)),
            PathCodec::Legacy => format!("keys.{key}"),
        }
    }

    /// Writes everything pending now (first a batch kept from a failed flush, then the
    /// buffer) and waits for the driver. A no-op without a buffer.
    ///
    /// # Errors
    ///
    /// [`StatsError::Driver`]: the batch is kept and retried by the next flush.
    pub async fn flush(&self) -> Result<FlushOutcome, StatsError> {
        let Some(buffer) = &self.inner.buffer else {
            return Ok(FlushOutcome::default());
        };
        let mut lane = self.inner.lane.lock().await;
        let mut outcome = FlushOutcome::default();
        if let Some(batch) = lane.stalled.take() {
            if let Err(e) = self.inner.driver.write(&batch).await {
                lane.stalled = Some(batch);
                return Err(e.into());
            }
            outcome.batches += 1;
            outcome.rows += batch.len();
        }
        let items = buffer.drain();
        if items.is_empty() {
            return Ok(outcome);
        }
        let rows = self.rows(items, buffer.aggregate)?;
        let batch = lane.next_batch(rows);
        match self.inner.driver.write(&batch).await {
            Ok(()) => {
                outcome.batches += 1;
                outcome.rows += batch.len();
                Ok(outcome)
            }
            Err(e) => {
                lane.stalled = Some(batch);
                Err(e.into())
            }
        }
    }

    /// Refuses further writes, stops the background flush, and writes everything pending.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// [`StatsError::Unflushed`] with the batches the driver could not take, so nothing is
    /// lost silently.
    pub async fn shutdown(&self) -> Result<(), StatsError> {
        *self.inner.gate.write() = true;
        self.inner.stop.cancel();
        match self.flush().await {
            Ok(_) => Ok(()),
            Err(StatsError::Driver(source)) => {
                let mut lane = self.inner.lane.lock().await;
                let mut batches: Vec<WriteBatch> = lane.stalled.take().into_iter().collect();
                if let Some(buffer) = &self.inner.buffer {
                    let items = buffer.drain();
                    if !items.is_empty() {
                        let rows = self.rows(items, buffer.aggregate)?;
                        batches.push(lane.next_batch(rows));
                    }
                }
                Err(StatsError::Unflushed { batches, source })
            }
            Err(e) => Err(e),
        }
    }

    /// Calls buffered since the last flush.
    pub fn pending(&self) -> usize {
        self.inner.buffer.as_ref().map_or(0, Buffer::pending_ops)
    }

    /// Background or size-triggered flushes that failed so far (their data was kept).
    pub fn failed_flushes(&self) -> u64 {
        self.inner.flush_errors.load(Ordering::Relaxed)
    }

    /// The values of `key` in every `granularity` bucket from `floor(from)` to `floor(to)`
    /// (inclusive), read from the driver. Buckets with nothing stored hold `{}`; with
    /// `skip_blanks` they are left out of both lists. The granularity need not be configured.
    ///
    /// # Errors
    ///
    /// [`StatsError::Granularity`] for an invalid string, [`StatsError::TooManyBuckets`] past
    /// `max_buckets`, [`StatsError::Driver`].
    pub async fn values(
        &self,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        granularity: &str,
        skip_blanks: bool,
    ) -> Result<Series, StatsError> {
        let g: Granularity = granularity.parse()?;
        let mut at = Vec::new();
        for t in self.inner.calendar.timeline(from, to, g)? {
            if at.len() == self.inner.max_buckets {
                return Err(StatsError::TooManyBuckets {
                    limit: self.inner.max_buckets,
                });
            }
            at.push(t);
        }
        let rows: Vec<RowId> = at.iter().map(|&t| RowId::new(key, g, t)).collect();
        let stored = if rows.is_empty() {
            Vec::new()
        } else {
            self.inner.driver.read(&rows).await?
        };
        let mut series = Series::default();
        for (t, flat) in at.into_iter().zip(stored) {
            let values = unpack(flat, self.inner.codec);
            if skip_blanks && values.is_empty() {
                continue;
            }
            series.at.push(t);
            series.values.push(values);
        }
        Ok(series)
    }
}

fn count(n: u64) -> Number {
    Number::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Lane {
    fn next_batch(&mut self, rows: Vec<RowUpdate>) -> WriteBatch {
        let seq = self.next_seq;
        self.next_seq += 1;
        WriteBatch {
            id: BatchId {
                writer: self.writer.clone(),
                seq,
            },
            rows,
        }
    }
}

fn validate_key(key: &str) -> Result<(), StatsError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 200 bytes"
    } else if key.chars().any(char::is_control) {
        "contains a control character"
    } else if key == SYSTEM_KEY {
        "reserved for the system rows"
    } else {
        return Ok(());
    };
    Err(StatsError::InvalidKey {
        key: key.chars().take(64).collect(),
        reason,
    })
}

async fn flush_loop(inner: Weak<Inner>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let stats = Stats {
            inner,
            untracked: false,
        };
        if let Err(e) = stats.flush().await {
            stats.inner.flush_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("metrics flush failed, data kept for retry: {e}");
        }
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("driver", &self.inner.driver.description())
            .field("calendar", &self.inner.calendar)
            .field("granularities", &self.inner.granularities)
            .field("buffered", &self.inner.buffer.is_some())
            .field("untracked", &self.untracked)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StatsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsBuilder")
            .field("driver", &self.driver.description())
            .field("time_zone", &self.zone)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// [`Stats`] for synchronous code: every method blocks on a private one-worker tokio runtime
/// (which also runs the background flush). Build with [`StatsBuilder::build_blocking`].
///
/// **Blocking:** do not call from inside an async runtime.
pub struct BlockingStats {
    stats: Stats,
    rt: tokio::runtime::Runtime,
}

impl BlockingStats {
    /// See [`Stats::track`].
    ///
    /// # Errors
    ///
    /// As [`Stats::track`].
    pub fn track(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), StatsError> {
        self.rt.block_on(self.stats.track(key, at, values))
    }

    /// See [`Stats::assert`].
    ///
    /// # Errors
    ///
    /// As [`Stats::assert`].
    pub fn assert(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), StatsError> {
        self.rt.block_on(self.stats.assert(key, at, values))
    }

    /// See [`Stats::values`].
    ///
    /// # Errors
    ///
    /// As [`Stats::values`].
    pub fn values(
        &self,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        granularity: &str,
        skip_blanks: bool,
    ) -> Result<Series, StatsError> {
        self.rt
            .block_on(self.stats.values(key, from, to, granularity, skip_blanks))
    }

    /// See [`Stats::flush`].
    ///
    /// # Errors
    ///
    /// As [`Stats::flush`].
    pub fn flush(&self) -> Result<FlushOutcome, StatsError> {
        self.rt.block_on(self.stats.flush())
    }

    /// See [`Stats::shutdown`].
    ///
    /// # Errors
    ///
    /// As [`Stats::shutdown`].
    pub fn shutdown(&self) -> Result<(), StatsError> {
        self.rt.block_on(self.stats.shutdown())
    }

    /// The async store inside.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl fmt::Debug for BlockingStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingStats")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
