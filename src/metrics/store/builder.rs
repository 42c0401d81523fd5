//! [`MetricsStoreBuilder`]: a metrics store's settings, checked when it is built.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use jiff::civil::Weekday;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::blocking::BlockingMetricsStore;
use super::{
    DEFAULT_MAX_BUCKETS, Inner, Lane, MetricsStore, Numbering, first_seq, flush_loop,
    random_writer_id,
};
use crate::metrics::buffer::Buffer;
use crate::metrics::driver::Driver;
use crate::metrics::error::ConfigError;
use crate::metrics::packer::PathCodec;
use crate::time::{Calendar, Granularity};

/// Configures a [`MetricsStore`]. Created by [`MetricsStore::builder`]; checked by [`build`](Self::build).
///
/// Defaults: time zone `GMT`, weeks start on Monday, granularities
/// `1m 1h 1d 1w 1mo 1q 1y`, buffer on (size 256 calls, flushed every second by a background
/// task, aggregating), system tracking on, [`PathCodec::V1`].
#[must_use = "a builder does nothing until `build()`"]
pub struct MetricsStoreBuilder {
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
    pub(super) writer: Option<String>,
    pub(super) numbering: Numbering,
}

impl MetricsStore {
    /// Starts configuring a store writing through `driver` (see [`MetricsStoreBuilder`] for the
    /// defaults). Call the driver's `setup` once to create its schema.
    pub fn builder(driver: Arc<dyn Driver>) -> MetricsStoreBuilder {
        MetricsStoreBuilder {
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
            numbering: Numbering::Automatic,
        }
    }
}

impl MetricsStoreBuilder {
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

    /// Whether writes are buffered (default [`Buffering::On`]). With [`Buffering::Off`] every
    /// call is one driver write, acknowledged when the driver has written it.
    pub fn buffer(mut self, buffering: Buffering) -> Self {
        self.buffer = buffering == Buffering::On;
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

    /// Whether pending writes to the same bucket merge (default [`BufferMerge::Merged`]):
    /// numbers add up, asserted fields keep the latest value, field by field.
    pub fn buffer_aggregate(mut self, merge: BufferMerge) -> Self {
        self.buffer_aggregate = merge == BufferMerge::Merged;
        self
    }

    /// Who runs the periodic flush (default [`FlushTask::Tokio`], which needs a runtime at
    /// `build`). With [`FlushTask::None`] the buffer is written by the size trigger, `flush`
    /// and `shutdown` only.
    pub fn buffer_async(mut self, task: FlushTask) -> Self {
        self.buffer_async = task == FlushTask::Tokio;
        self
    }

    /// Count writes per key in the `__system__key__` rows (default on).
    ///
    /// Each bucket's system row holds one field per distinct tracked key written to it, and
    /// every flush that touches the bucket rewrites the fields it changed: with
    /// high-cardinality keys (ids, URLs) the row and its writes grow with the number of keys.
    /// Write those through [`MetricsStore::untracked`] (counted once, under `__untracked__`) or turn
    /// tracking off here.
    pub fn system_tracking(mut self, tracking: SystemTracking) -> Self {
        self.system_tracking = tracking == SystemTracking::On;
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
    /// exactly one live instance uses it at a time.
    ///
    /// Drivers apply a batch id at most once: they keep the highest sequence number applied
    /// per writer and skip any batch at or below it. With a stable id, the store reads that
    /// mark back ([`Driver::applied`]) before its first write and numbers its batches above
    /// both the mark and the microseconds since the Unix epoch at which it was built, so an
    /// instance that reuses the id after a restart continues above everything its predecessor
    /// stored, even if the system clock went back, and none of its batches is skipped. (A
    /// random id has nothing stored: its store skips that read.)
    ///
    /// What neither id gives is exactly-once across a crash: a batch whose write was in flight
    /// when the process died may or may not be stored, and the restarted process cannot tell.
    /// For that, feed the store from a replayable source and use
    /// [`checkpointed`](Self::checkpointed) (see [`MetricsStore`], "Writer identity").
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
    pub fn build(self) -> Result<MetricsStore, ConfigError> {
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
        let checkpointed = self.numbering == Numbering::Checkpointed;
        if checkpointed && !self.buffer {
            return Err(ConfigError::CheckpointedUnbuffered);
        }
        let spawn =
            !checkpointed && self.buffer && self.buffer_async && !self.buffer_duration.is_zero();
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
            // A random id has no mark to read back; a checkpointed store takes its numbers from
            // its caller.
            lane: tokio::sync::Mutex::new(Lane {
                numbered_above_mark: self.writer.is_none() || checkpointed,
                writer: self.writer.unwrap_or_else(random_writer_id),
                next_seq: if checkpointed { 1 } else { first_seq() },
                stalled: None,
            }),
            numbering: self.numbering,
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
        Ok(MetricsStore {
            inner,
            untracked: false,
        })
    }

    /// Builds a [`BlockingMetricsStore`] on its own one-worker tokio runtime, for callers without
    /// async code.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad setting.
    pub fn build_blocking(self) -> Result<BlockingMetricsStore, ConfigError> {
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
        Ok(BlockingMetricsStore { stats, rt })
    }
}

impl fmt::Debug for MetricsStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsStoreBuilder")
            .field("driver", &self.driver.description())
            .field("time_zone", &self.zone)
            .field("buffer", &self.buffer)
            .field("numbering", &self.numbering)
            .finish_non_exhaustive()
    }
}

/// Whether a metrics store buffers its writes ([`MetricsStoreBuilder::buffer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Buffering {
    /// Calls queue into the write buffer; flushes write them (the default).
    #[default]
    On,
    /// Every call is one driver write.
    Off,
}

/// Whether buffered writes to one bucket merge before they are written
/// ([`MetricsStoreBuilder::buffer_aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferMerge {
    /// Numbers add up and asserted fields keep the latest value (the default).
    #[default]
    Merged,
    /// Each call stays its own update of the bucket.
    Separate,
}

/// Who runs a buffered store's periodic flush ([`MetricsStoreBuilder::buffer_async`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushTask {
    /// A task on the tokio runtime the store is built in (the default).
    #[default]
    Tokio,
    /// No periodic flush: the size trigger, `flush` and `shutdown` write the buffer.
    None,
}

/// Whether writes are counted per key in the `__system__key__` rows
/// ([`MetricsStoreBuilder::system_tracking`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemTracking {
    /// Each write also counts under its key in its bucket's system row (the default).
    #[default]
    On,
    /// No system rows.
    Off,
}
