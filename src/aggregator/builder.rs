//! [`Builder`], and the constructors [`Aggregator::builder`] and [`Aggregator::new`].

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::Duration;

use super::config::Config;
use super::core::{Aggregator, Shared};
use super::error::BuildError;
use super::merge::{Merge, Sum};
use super::receiver::BatchReceiver;
use crate::constants::{
    DEFAULT_DROP_TIMEOUT, DEFAULT_FLUSH_INTERVAL, DEFAULT_LOCAL_CAPACITY, MAX_DEFAULT_SHARDS,
    MIN_DEFAULT_SHARDS, SHARDS_PER_CPU,
};
#[cfg(not(accrue_loom))]
use crate::sync::Mutex;
use crate::sync::{Arc, available_parallelism};

/// The default shard count: `SHARDS_PER_CPU × CPUs`, rounded up to a power of two, at least
/// [`MIN_DEFAULT_SHARDS`] (64) and at most [`MAX_DEFAULT_SHARDS`].
pub(crate) fn default_shards() -> usize {
    (available_parallelism() * SHARDS_PER_CPU)
        .next_power_of_two()
        .clamp(MIN_DEFAULT_SHARDS, MAX_DEFAULT_SHARDS)
}

/// Configures an [`Aggregator`]. Created by [`Aggregator::builder`]; settings are checked by
/// [`build`](Self::build) and [`spawn`](Self::spawn).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use accrue::{Aggregator, aggregator::Max};
///
/// let (agg, rx) = Aggregator::<String, i64>::builder()
///     .merge(Max)
///     .shards(128)
///     .channel_capacity(256)
///     .flush_interval(Duration::from_millis(100))
///     .flush_threshold(10_000)
///     .spawn()
///     .unwrap();
/// agg.add_ref("temperature", 21).unwrap();
/// agg.add_ref("temperature", 25).unwrap();
/// agg.shutdown().unwrap();
/// assert_eq!(rx.recv().unwrap().into_vec(), vec![("temperature".to_string(), 25)]);
/// ```
#[must_use = "a builder does nothing until `build()` or `spawn()`"]
pub struct Builder<K, V, S = ahash::RandomState, M = Sum> {
    shards: Option<usize>,
    channel_capacity: Option<usize>,
    flush_interval: Duration,
    flush_threshold: Option<usize>,
    max_keys: Option<usize>,
    local_capacity: usize,
    drop_timeout: Duration,
    thread_name: String,
    hasher: S,
    merge: M,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Builder<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: None,
            channel_capacity: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            flush_threshold: None,
            max_keys: None,
            local_capacity: DEFAULT_LOCAL_CAPACITY,
            drop_timeout: DEFAULT_DROP_TIMEOUT,
            thread_name: "accrue-flusher".into(),
            hasher: ahash::RandomState::new(),
            merge: Sum,
            _types: PhantomData,
        }
    }
}

impl<K, V, S, M> Builder<K, V, S, M> {
    /// Number of shards, a power of two. Default: 16 per CPU, at least 64 (two threads on 64
    /// shards collide rarely; more shards cost memory and flush time for no gain).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Capacity of the batch channel, in batches. A flush sends at most one batch per non-empty
    /// shard, so `4 × shards` (the default) holds about four flushes. When the channel is full,
    /// data stays in the aggregator (merged, so memory grows with distinct keys, not with adds)
    /// until the consumer catches up.
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.channel_capacity = Some(batches);
        self
    }

    /// Period of the flusher thread started by [`spawn`](Self::spawn). Default: 1 s.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Flush early once this many keys are pending (the size trigger). Default: none.
    pub fn flush_threshold(mut self, keys: usize) -> Self {
        self.flush_threshold = Some(keys);
        self
    }

    /// Bound the pending keys that [`Aggregator::try_add`] accepts; reaching it also triggers a
    /// flush. Default: unbounded.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = Some(keys);
        self
    }

    /// Keys a [`LocalHandle`](crate::aggregator::LocalHandle) (from [`Aggregator::local`]) merges privately
    /// before it moves them into the shards in one go. Larger means fewer spills and more
    /// memory per handle; the win is largest when it holds the thread's whole working set.
    /// Default: 16,384.
    pub fn local_capacity(mut self, keys: usize) -> Self {
        self.local_capacity = keys;
        self
    }

    /// How long dropping the aggregator waits for the consumer before giving up (what is not
    /// delivered by then is logged and dropped). Default: 10 s.
    pub fn drop_timeout(mut self, timeout: Duration) -> Self {
        self.drop_timeout = timeout;
        self
    }

    /// Name of the flusher thread. Default: `accrue-flusher`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Use another hasher (for example `std::hash::RandomState` for DoS-resistant SipHash).
    pub fn hasher<S2>(self, hasher: S2) -> Builder<K, V, S2, M> {
        Builder {
            shards: self.shards,
            channel_capacity: self.channel_capacity,
            flush_interval: self.flush_interval,
            flush_threshold: self.flush_threshold,
            max_keys: self.max_keys,
            local_capacity: self.local_capacity,
            drop_timeout: self.drop_timeout,
            thread_name: self.thread_name,
            hasher,
            merge: self.merge,
            _types: PhantomData,
        }
    }

    /// Use another merge: [`Min`](crate::aggregator::Min), [`Max`](crate::aggregator::Max), [`Last`](crate::aggregator::Last), …
    /// or a closure `Fn(&mut V, V)`. It runs under the shard lock, so it needs no atomics.
    pub fn merge<M2: Merge<V>>(self, merge: M2) -> Builder<K, V, S, M2> {
        Builder {
            shards: self.shards,
            channel_capacity: self.channel_capacity,
            flush_interval: self.flush_interval,
            flush_threshold: self.flush_threshold,
            max_keys: self.max_keys,
            local_capacity: self.local_capacity,
            drop_timeout: self.drop_timeout,
            thread_name: self.thread_name,
            hasher: self.hasher,
            merge,
            _types: PhantomData,
        }
    }

    fn config(&self, flush_interval: Option<Duration>) -> Result<Config, BuildError> {
        let shards = self.shards.unwrap_or_else(default_shards);
        if shards == 0 || !shards.is_power_of_two() {
            return Err(BuildError::ShardCount(shards));
        }
        let channel_capacity = self.channel_capacity.unwrap_or(shards * 4);
        if channel_capacity == 0 {
            return Err(BuildError::ChannelCapacity);
        }
        if flush_interval.is_some_and(|d| d.is_zero()) {
            return Err(BuildError::FlushInterval);
        }
        if self.flush_threshold == Some(0) {
            return Err(BuildError::FlushThreshold);
        }
        if self.max_keys == Some(0) {
            return Err(BuildError::MaxKeys);
        }
        if self.local_capacity == 0 {
            return Err(BuildError::LocalCapacity);
        }
        Ok(Config {
            shards,
            channel_capacity,
            flush_interval,
            flush_threshold: self.flush_threshold,
            max_keys: self.max_keys,
            local_capacity: self.local_capacity,
        })
    }
}

impl<K, V, S, M> Builder<K, V, S, M>
where
    K: Hash + Eq,
    S: BuildHasher,
    M: Merge<V>,
{
    /// Builds an aggregator without a flusher thread: the caller flushes with
    /// [`Aggregator::flush_once`] / [`Aggregator::flush`] (the flush interval is unused).
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the invalid setting.
    // Spelled out on purpose: the pair is the whole API of construction.
    #[allow(clippy::type_complexity)]
    pub fn build(self) -> Result<(Aggregator<K, V, S, M>, BatchReceiver<K, V>), BuildError> {
        let config = self.config(None)?;
        let (shared, rx, _wake_rx) = Shared::new(config, self.hasher, self.merge);
        let agg = Aggregator {
            shared: Arc::new(shared),
            #[cfg(not(accrue_loom))]
            flusher: std::sync::Arc::new(Mutex::new(None)),
            drop_timeout: self.drop_timeout,
        };
        Ok((agg, rx))
    }
}

#[cfg(not(accrue_loom))]
impl<K, V, S, M> Builder<K, V, S, M>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
    M: Merge<V>,
{
    /// Builds an aggregator and starts its flusher thread, which flushes every
    /// [`flush_interval`](Self::flush_interval) and whenever the size trigger fires.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the invalid setting, or [`BuildError::Spawn`].
    #[allow(clippy::type_complexity)]
    pub fn spawn(self) -> Result<(Aggregator<K, V, S, M>, BatchReceiver<K, V>), BuildError> {
        let config = self.config(Some(self.flush_interval))?;
        let (shared, rx, wake_rx) = Shared::new(config, self.hasher, self.merge);
        let shared = Arc::new(shared);
        let handle = super::flusher::spawn(
            shared.clone(),
            wake_rx,
            self.flush_interval,
            self.thread_name,
        )
        .map_err(BuildError::Spawn)?;
        let agg = Aggregator {
            shared,
            flusher: std::sync::Arc::new(Mutex::new(Some(handle))),
            drop_timeout: self.drop_timeout,
        };
        Ok((agg, rx))
    }
}

impl<K, V, S, M> fmt::Debug for Builder<K, V, S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("shards", &self.shards)
            .field("channel_capacity", &self.channel_capacity)
            .field("flush_interval", &self.flush_interval)
            .field("flush_threshold", &self.flush_threshold)
            .field("max_keys", &self.max_keys)
            .field("local_capacity", &self.local_capacity)
            .field("drop_timeout", &self.drop_timeout)
            .finish_non_exhaustive()
    }
}

impl<K, V> Aggregator<K, V> {
    /// Starts configuring an aggregator (defaults: ahash, [`Sum`], see [`Builder`]).
    pub fn builder() -> Builder<K, V> {
        Builder::new()
    }
}

#[cfg(not(accrue_loom))]
impl<K, V> Aggregator<K, V>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    Sum: Merge<V>,
{
    /// An aggregator that sums values, with the default settings and a flusher thread: flushes
    /// every second into a channel of `4 × shards` batches.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start the flusher thread; use
    /// [`builder`](Self::builder)`().spawn()` to get that as an error.
    ///
    /// # Examples
    ///
    /// ```
    /// let (agg, rx) = accrue::Aggregator::<u32, u64>::new();
    /// agg.add(7, 1).unwrap();
    /// agg.shutdown().unwrap();
    /// let total: u64 = rx.iter().flat_map(|b| b.into_vec()).map(|(_, v)| v).sum();
    /// assert_eq!(total, 1);
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Self, BatchReceiver<K, V>) {
        Self::builder()
            .spawn()
            .expect("the default configuration is valid")
    }
}
