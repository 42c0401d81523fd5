//! [`MetricsStore`]: `track` / `assert` / `values` and the flush lane. Its builder and the
//! blocking facade are the submodules `builder` and `blocking`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hashbrown::HashTable;
use jiff::Timestamp;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::buffer::{Buffer, Pending, PendingKey};
use super::driver::{BatchId, Driver, FieldOp, RowUpdate, WriteBatch};
use super::error::MetricsError;
use super::keys::{RowId, SYSTEM_KEY, UNTRACKED_KEY};
use super::packer::{Leaves, PathCodec, encode_segment_into, pack, unpack};
use super::value::{Number, Value, Values};
use crate::time::{Blanks, Calendar, Granularity};

mod assembly;
mod blocking;
mod builder;
mod checkpoint;

pub(crate) use self::assembly::Assembly;
pub use self::blocking::BlockingMetricsStore;
pub use self::builder::{BufferMerge, Buffering, FlushTask, MetricsStoreBuilder, SystemTracking};

/// Longest metric key accepted, in bytes: joined Full keys (`key::granularity::unix`) then fit
/// the `VARCHAR(255)` key columns of the SQL drivers.
pub const MAX_KEY_LEN: usize = 200;

/// Default limit of buckets one `values` call may read.
const DEFAULT_MAX_BUCKETS: usize = 100_000;

/// Bucket updates (calls pending × granularities) from which a flush drains the buffer and
/// builds its rows on tokio's blocking pool instead of the calling task. That work costs about
/// a microsecond per update (cloning its fields, merging the system rows), so below this it
/// stays within a couple of milliseconds, where the hop to another thread (tens of
/// microseconds, more when the pool is busy) does not pay; above it, inline work would hold an
/// async worker long enough to stall every task queued behind it.
const BLOCKING_ROWS_FROM: usize = 2048;

/// System-row fields merged by a linear scan; a row with more gets an index by name.
const SCAN_FIELDS: usize = 8;

/// Who chooses the batch sequence numbers of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbering {
    /// The store: flushes number their batches one after the other.
    Automatic,
    /// The caller, through [`MetricsStore::commit`]; nothing is written under a number of the store's.
    Checkpointed,
}

/// The first batch sequence number of a writer: the microseconds since the Unix epoch, so a
/// writer that reuses an id after a restart numbers its batches above its predecessor's.
pub(crate) fn first_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
        .max(1)
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
    /// Whether `next_seq` is above the writer's mark in the destination (read back before the
    /// first automatic batch of a stable writer id).
    numbered_above_mark: bool,
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
    numbering: Numbering,
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
///   write is handed back in [`MetricsError::Unflushed`]. A crash of the process loses what was
///   acknowledged but not yet flushed.
/// * **Unbuffered**: a call returns `Ok` once the driver wrote it.
///
/// Reads ([`values`](Self::values)) go to the driver: buffered writes become visible after
/// the next flush. Call `flush().await` first for read-your-writes.
///
/// # Writer identity: what a retry and a crash leave
///
/// Every batch carries a writer id and a sequence number, and the drivers apply each
/// (writer, seq) at most once. What that gives depends on the identity:
///
/// * **Random id** (the default): retries within the process are exactly-once (a batch whose
///   acknowledgement was lost is re-sent with its id and skipped if it was stored). A batch
///   in flight when the process crashes is stored or not, and the process cannot tell;
///   what was acknowledged but not flushed is lost.
/// * **Stable id, automatic numbering** ([`MetricsStoreBuilder::writer_id`]): the same, plus a
///   restarted instance reads the id's mark back from the destination and numbers its
///   batches above it, so none of its batches is skipped as already applied. Still, a batch
///   in flight at a crash is stored or not.
/// * **Checkpointed** ([`MetricsStoreBuilder::checkpointed`]): exactly-once across crashes for a
///   writer fed by a replayable source (a log file, a queue partition). The caller numbers
///   each batch with its source position ([`commit`](Self::commit)); after a restart,
///   [`resume`](Self::resume) returns the position the destination holds, and the source
///   replays from there: a batch that was stored is never written again, one that was not is
///   written by the replay. A process that takes over under another id reads the old one's
///   position with [`applied`](Self::applied). On MongoDB, which has no transaction spanning
///   the data and the mark, see [`Driver::applied`] for the one case where the same batch must
///   be re-sent under the same id.
///
/// One live instance per stable or checkpointed id at a time: two would skip each other's
/// batches.
///
/// # System tracking and its cost
///
/// With [`system_tracking`](MetricsStoreBuilder::system_tracking) on (the default), every write also
/// counts itself in the `__system__key__` row of each of its buckets: `count`, plus
/// `keys.<metric key>` (`keys.__untracked__` for writes through [`untracked`](Self::untracked)).
/// That row holds **one field per distinct tracked key** written to the bucket, and every
/// flush that touches the bucket rewrites the fields it changed, so 100 000 distinct keys in
/// an hour make a 100 000-field row for that hour (and larger ones for the day, week, …).
/// Track high-cardinality keys (ids, URLs, user agents) through `untracked()`, or build with
/// `system_tracking(SystemTracking::Off)`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # use std::sync::Arc;
/// # use accrue::{metrics::{IdentifierMode, MemoryDriver, MetricsStore}, time::{Blanks, Granularity, Unit}};
/// # use serde_json::json;
/// let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
///     .time_zone("UTC")
///     .granularities(["1h"])
///     .build()
///     .unwrap();
/// let at = "2025-02-01T11:35:00Z".parse().unwrap();
/// stats.track("signups", at, json!({"count": 1})).await.unwrap();
/// for user in 0..1000 {
///     let key = format!("user::{user}");
///     stats.untracked().track(&key, at, json!({"count": 1})).await.unwrap();
/// }
/// stats.flush().await.unwrap();
///
/// let system = stats.values("__system__key__", at, at, Granularity::one(Unit::Hour), Blanks::Skip).await.unwrap();
/// assert_eq!(accrue::metrics::Value::Map(system.values[0].clone()).to_json(),
///            json!({"count": 1001, "keys": {"signups": 1, "__untracked__": 1000}}));
/// # }
/// ```
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use accrue::{metrics::{IdentifierMode, MemoryDriver, MetricsStore}, time::{Blanks, Granularity, Unit}};
/// use serde_json::json;
///
/// let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
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
/// let series = stats.values("events", from, to, Granularity::one(Unit::Hour), Blanks::Keep).await.unwrap();
/// assert!(series.values[0].is_empty());
/// assert_eq!(accrue::metrics::Value::Map(series.values[1].clone()).to_json(),
///            json!({"count": 3, "meta": {"ms": 2.5}, "status": "ok"}));
/// stats.shutdown().await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct MetricsStore {
    inner: Arc<Inner>,
    untracked: bool,
}

/// What [`MetricsStore::values`] returns: bucket starts and the values stored in each, in order,
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

/// The two writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Add numbers ([`MetricsStore::track`]).
    Track,
    /// Overwrite fields ([`MetricsStore::assert`]).
    Assert,
}

/// One validated call, ready for the buffer or the driver.
struct Call {
    key: Arc<str>,
    /// Granularity and Unix bucket start of each configured granularity.
    buckets: Vec<(Granularity, i64)>,
    fields: Arc<[(String, FieldOp)]>,
}

impl MetricsStore {
    /// A handle whose writes are counted under `__untracked__` in the system rows instead of
    /// their metric key (for high-cardinality or throwaway keys). They still count in `count`.
    pub fn untracked(&self) -> MetricsStore {
        MetricsStore {
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
    /// granularity's bucket of `at` (creating it at 0). A sum that would leave the range of
    /// `f64` leaves the stored value as it was; the other fields and rows are written as usual.
    ///
    /// # Errors
    ///
    /// Before any I/O, nothing changed: [`MetricsError::InvalidKey`],
    /// [`MetricsError::InvalidValue`] (a non-number leaf, a non-finite float, …),
    /// [`MetricsError::Time`], [`MetricsError::Closed`]. Unbuffered: [`MetricsError::Driver`].
    pub async fn track(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), MetricsError> {
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
    ) -> Result<(), MetricsError> {
        self.write(Op::Assert, key, at, &values.into()).await
    }

    async fn write(
        &self,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<(), MetricsError> {
        if self.inner.buffer.is_some() {
            if self.enqueue(op, key, at, values)?
                && self.inner.numbering == Numbering::Automatic
                && let Err(e) = self.flush().await
            {
                self.inner.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "size-triggered flush failed, data kept for retry"
                );
            }
            return Ok(());
        }
        let Some(call) = self.prepare(op, key, at, values)? else {
            return Ok(());
        };
        if *self.inner.gate.read() {
            return Err(MetricsError::Closed);
        }
        let items = call
            .buckets
            .iter()
            .map(|&(granularity, at)| {
                let pk = PendingKey {
                    key: call.key.clone(),
                    granularity,
                    at,
                    op: 0,
                };
                let pending = Pending {
                    first: 0,
                    fields: super::buffer::Fields::Shared(call.fields.clone()),
                    tracked: u64::from(!self.untracked),
                    untracked: u64::from(self.untracked),
                };
                (pk, pending)
            })
            .collect();
        let rows = self.rows(items, true)?;
        let mut lane = self.inner.lane.lock().await;
        self.number_above_mark(&mut lane).await?;
        let batch = lane.next_batch(rows);
        self.inner.driver.write(&batch).await?;
        Ok(())
    }

    /// Validates a call and turns it into its buckets and stored fields; `None` when it
    /// writes nothing (no fields, or no granularities configured).
    fn prepare(
        &self,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<Option<Call>, MetricsError> {
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
            return Ok(None);
        }
        let fields = packed
            .into_iter()
            .map(|(name, v)| {
                let op = match (op, v.as_number()) {
                    (Op::Track, Some(n)) => FieldOp::Inc(n),
                    _ => FieldOp::Set(v),
                };
                (name, op)
            })
            .collect();
        Ok(Some(Call {
            key: Arc::from(key),
            buckets,
            fields,
        }))
    }

    /// The buffered half of [`track`](Self::track) / [`assert`](Self::assert), synchronous:
    /// validates the call and adds it to the buffer. Returns whether the buffer reached
    /// `buffer_size` with this call; flushing then is the caller's job.
    ///
    /// **Blocking:** only briefly, on the buffer's shard locks; callable from any thread.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Unbuffered`] on a store built with `buffer(Buffering::Off)` (checked first), then
    /// as [`track`](Self::track): nothing was added.
    pub(crate) fn enqueue(
        &self,
        op: Op,
        key: &str,
        at: Timestamp,
        values: &Value,
    ) -> Result<bool, MetricsError> {
        let Some(buffer) = &self.inner.buffer else {
            return Err(MetricsError::Unbuffered);
        };
        let Some(call) = self.prepare(op, key, at, values)? else {
            return Ok(false);
        };
        let closed = self.inner.gate.read();
        if *closed {
            return Err(MetricsError::Closed);
        }
        Ok(buffer.add(&call.key, &call.buckets, call.fields, self.untracked))
    }

    /// Turns pending bucket updates into row updates plus system rows: the data rows in
    /// `items` order, then the system rows in order of first use (one per bucket, or one per
    /// item without `merge_system`), every row's fields sorted by name.
    ///
    /// Linear in the items: a bucket's system row has one field per distinct tracked key, so
    /// merging into it goes through an index by name ([`SystemFields`]), not a scan.
    fn rows(
        &self,
        items: Vec<(PendingKey, Pending)>,
        merge_system: bool,
    ) -> Result<Vec<RowUpdate>, MetricsError> {
        let mut rows = Vec::with_capacity(items.len() + 8);
        let mut system: Vec<(RowId, SystemFields)> = Vec::new();
        let mut index: HashMap<(Granularity, i64), usize, ahash::RandomState> = HashMap::default();
        let hasher = ahash::RandomState::new();
        // The `keys.<tracking key>` name at hand, rebuilt in place: a field name is allocated
        // once per system row it is new to, not once per item.
        let mut name = String::new();
        for (pk, pending) in items {
            let at = Timestamp::from_second(pk.at).map_err(|_| {
                MetricsError::Time(crate::time::TimeError::OutOfRange {
                    local_seconds: pk.at,
                })
            })?;
            if self.inner.system_tracking {
                let slot = if merge_system {
                    index.get(&(pk.granularity, pk.at)).copied()
                } else {
                    None
                };
                let i = slot.unwrap_or_else(|| {
                    if merge_system {
                        index.insert((pk.granularity, pk.at), system.len());
                    }
                    let row = RowId::new(SYSTEM_KEY, pk.granularity, at);
                    system.push((row, SystemFields::default()));
                    system.len() - 1
                });
                let fields = &mut system[i].1;
                fields.inc("count", count(pending.tracked + pending.untracked), &hasher);
                if pending.tracked > 0 {
                    self.tracking_field(&mut name, &pk.key);
                    fields.inc(&name, count(pending.tracked), &hasher);
                }
                if pending.untracked > 0 {
                    self.tracking_field(&mut name, UNTRACKED_KEY);
                    fields.inc(&name, count(pending.untracked), &hasher);
                }
            }
            let mut fields = pending.fields.into_vec();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            rows.push(RowUpdate {
                row: RowId::new(&*pk.key, pk.granularity, at),
                fields,
            });
        }
        rows.extend(system.into_iter().map(|(row, fields)| RowUpdate {
            row,
            fields: fields.into_sorted(),
        }));
        Ok(rows)
    }

    /// Writes `rows` as the lane's next batch and counts it in `outcome`; a batch whose write
    /// fails is kept in the lane and written again before anything else.
    async fn write_next(
        &self,
        lane: &mut Lane,
        rows: Vec<RowUpdate>,
        mut outcome: FlushOutcome,
    ) -> Result<FlushOutcome, MetricsError> {
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

    /// Drains the buffer and builds the rows of its batch (`None`: nothing was pending). A
    /// large flush (by the calls pending, see [`BLOCKING_ROWS_FROM`]) runs both steps on
    /// tokio's blocking pool, so it does not hold the calling async worker; a small one runs
    /// inline. The caller holds the lane, so batch order is the same either way.
    async fn drain_rows(&self) -> Result<Option<Vec<RowUpdate>>, MetricsError> {
        let Some(buffer) = &self.inner.buffer else {
            return Ok(None);
        };
        let updates = buffer
            .pending_ops()
            .saturating_mul(self.inner.granularities.len());
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if updates >= BLOCKING_ROWS_FROM => runtime,
            _ => return self.drain_rows_now(),
        };
        let stats = self.clone();
        match runtime.spawn_blocking(move || stats.drain_rows_now()).await {
            Ok(rows) => rows,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Dropped unrun (the runtime is shutting down): the buffer is untouched.
            Err(_) => self.drain_rows_now(),
        }
    }

    fn drain_rows_now(&self) -> Result<Option<Vec<RowUpdate>>, MetricsError> {
        let Some(buffer) = &self.inner.buffer else {
            return Ok(None);
        };
        let items = buffer.drain();
        if items.is_empty() {
            return Ok(None);
        }
        self.rows(items, buffer.aggregate).map(Some)
    }

    /// Writes `keys.<tracking key>` (the key encoded for the codec) into `out`.
    fn tracking_field(&self, out: &mut String, key: &str) {
        out.clear();
        out.push_str("keys.");
        match self.inner.codec {
            PathCodec::V1 => encode_segment_into(out, key),
            PathCodec::Legacy => out.push_str(key),
        }
    }

    /// Writes everything pending now (first a batch kept from a failed flush, then the
    /// buffer) and waits for the driver. A no-op without a buffer.
    ///
    /// Building the batch is CPU work linear in the pending bucket updates; from a few
    /// thousand it runs on tokio's blocking pool, so a large flush does not stall the other
    /// tasks of the calling worker.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Driver`]: the batch is kept and retried by the next flush.
    /// [`MetricsError::Checkpointed`] on a [checkpointed](MetricsStoreBuilder::checkpointed) store,
    /// which writes only on [`commit`](Self::commit).
    pub async fn flush(&self) -> Result<FlushOutcome, MetricsError> {
        if self.inner.numbering == Numbering::Checkpointed {
            return Err(MetricsError::Checkpointed);
        }
        if self.inner.buffer.is_none() {
            return Ok(FlushOutcome::default());
        }
        let mut lane = self.inner.lane.lock().await;
        if self.pending() > 0 {
            // Not on an idle timer tick: a store with nothing to write reads nothing either.
            self.number_above_mark(&mut lane).await?;
        }
        let mut outcome = FlushOutcome::default();
        if let Some(batch) = lane.stalled.take() {
            if let Err(e) = self.inner.driver.write(&batch).await {
                lane.stalled = Some(batch);
                return Err(e.into());
            }
            outcome.batches += 1;
            outcome.rows += batch.len();
        }
        let Some(rows) = self.drain_rows().await? else {
            return Ok(outcome);
        };
        self.write_next(&mut lane, rows, outcome).await
    }

    /// Refuses further writes, stops the background flush, and writes everything pending.
    /// Idempotent.
    ///
    /// A [checkpointed](MetricsStoreBuilder::checkpointed) store writes nothing here: what was
    /// tracked since the last successful [`commit`](Self::commit), and a commit that failed,
    /// are dropped, for the source to replay after [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`MetricsError::Unflushed`] with the batches the driver could not take, so nothing is
    /// lost silently.
    pub async fn shutdown(&self) -> Result<(), MetricsError> {
        *self.inner.gate.write() = true;
        self.inner.stop.cancel();
        if self.inner.numbering == Numbering::Checkpointed {
            self.discard_uncommitted().await;
            return Ok(());
        }
        match self.flush().await {
            Ok(_) => Ok(()),
            Err(MetricsError::Driver(source)) => {
                let mut lane = self.inner.lane.lock().await;
                let mut batches: Vec<WriteBatch> = lane.stalled.take().into_iter().collect();
                if let Some(rows) = self.drain_rows().await? {
                    batches.push(lane.next_batch(rows));
                }
                Err(MetricsError::Unflushed { batches, source })
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
    /// (inclusive), read from the driver. Buckets with nothing stored hold an empty map, or are
    /// left out of both lists with [`Blanks::Skip`]. The granularity need not be configured.
    ///
    /// # Errors
    ///
    /// [`MetricsError::TooManyBuckets`] past `max_buckets`, [`MetricsError::Driver`].
    pub async fn values(
        &self,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        granularity: Granularity,
        blanks: Blanks,
    ) -> Result<Series, MetricsError> {
        let g = granularity;
        let mut at = Vec::new();
        for t in self.inner.calendar.timeline(from, to, g)? {
            if at.len() == self.inner.max_buckets {
                return Err(MetricsError::TooManyBuckets {
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
            if blanks == Blanks::Skip && values.is_empty() {
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

/// The fields of one system row while [`MetricsStore::rows`] merges into it: one per distinct
/// tracking key of its bucket, so tens of thousands with high-cardinality keys. Up to
/// [`SCAN_FIELDS`] fields a merge scans them; past that an index by name keeps each merge
/// O(1).
#[derive(Default)]
struct SystemFields {
    fields: Vec<(String, FieldOp)>,
    /// Positions in `fields` by the hash of their name; empty until `fields` outgrows
    /// [`SCAN_FIELDS`], complete after.
    index: HashTable<usize>,
}

impl SystemFields {
    /// Folds an increment of `name` into the row (a new field when it is not there yet).
    fn inc(&mut self, name: &str, n: Number, hasher: &ahash::RandomState) {
        let Self { fields, index } = self;
        let rehash = |fields: &[(String, FieldOp)], i: usize| hasher.hash_one(fields[i].0.as_str());
        if index.is_empty() {
            if let Some(i) = fields.iter().position(|(f, _)| f == name) {
                fields[i].1.merge(FieldOp::Inc(n));
                return;
            }
            fields.push((name.to_owned(), FieldOp::Inc(n)));
            if fields.len() > SCAN_FIELDS {
                // Outgrew the scan: index every field from now on.
                for i in 0..fields.len() {
                    index.insert_unique(rehash(fields, i), i, |&j| rehash(fields, j));
                }
            }
            return;
        }
        let hash = hasher.hash_one(name);
        if let Some(&i) = index.find(hash, |&i| fields[i].0 == name) {
            fields[i].1.merge(FieldOp::Inc(n));
            return;
        }
        fields.push((name.to_owned(), FieldOp::Inc(n)));
        index.insert_unique(hash, fields.len() - 1, |&j| rehash(fields, j));
    }

    /// The fields sorted by name (names are unique).
    fn into_sorted(self) -> Vec<(String, FieldOp)> {
        let mut fields = self.fields;
        fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        fields
    }
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

fn validate_key(key: &str) -> Result<(), MetricsError> {
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
    Err(MetricsError::InvalidKey {
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
        let stats = MetricsStore {
            inner,
            untracked: false,
        };
        if let Err(e) = stats.flush().await {
            stats.inner.flush_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "metrics flush failed, data kept for retry"
            );
        }
    }
}

impl fmt::Debug for MetricsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsStore")
            .field("driver", &self.inner.driver.description())
            .field("calendar", &self.inner.calendar)
            .field("granularities", &self.inner.granularities)
            .field("buffered", &self.inner.buffer.is_some())
            .field("numbering", &self.inner.numbering)
            .field("untracked", &self.untracked)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
