//! Errors of the core aggregator.
//!
//! Errors on the hot path hand the caller's data back (like crossbeam's `SendError<T>`), and
//! their `Debug` impls do not require `K: Debug` or `V: Debug`.

use std::error::Error;
use std::fmt;

use super::receiver::Batch;

/// An invalid [`Builder`](crate::aggregator::Builder) setting, reported by `build()` / `spawn()`.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The shard count was zero or not a power of two.
    ShardCount(usize),
    /// The channel capacity was zero; a flush could never deliver anything.
    ChannelCapacity,
    /// The flush interval was zero.
    FlushInterval,
    /// The size trigger was set to zero keys.
    FlushThreshold,
    /// `max_keys` was set to zero; no key could ever be added with `try_add`.
    MaxKeys,
    /// `local_capacity` was set to zero; a local handle could hold nothing.
    LocalCapacity,
    /// The operating system refused to start the flusher thread (the cause is the error's
    /// [`source`](Error::source)).
    Spawn(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShardCount(n) => write!(
                f,
                "shard count {n} is invalid: use a power of two >= 1 (e.g. {})",
                n.max(&1).next_power_of_two()
            ),
            Self::ChannelCapacity => {
                f.write_str("channel capacity must be at least 1 batch (see `channel_capacity`)")
            }
            Self::FlushInterval => f.write_str(
                "flush interval must be greater than zero (use `build()` for manual flushing)",
            ),
            Self::FlushThreshold => f.write_str("flush threshold must be at least 1 key"),
            Self::MaxKeys => f.write_str("max_keys must be at least 1 (omit it for no limit)"),
            Self::LocalCapacity => f.write_str("local_capacity must be at least 1 key"),
            Self::Spawn(_) => f.write_str("failed to spawn the flusher thread"),
        }
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Why an [`add`](crate::Aggregator::add) or [`try_add`](crate::Aggregator::try_add) was
/// refused. The key and value come back to the caller, nothing was changed.
#[non_exhaustive]
pub enum AddError<K, V> {
    /// The aggregator has been shut down.
    Closed(K, V),
    /// `try_add` of a new key while `max_keys` keys are pending. Existing keys always merge.
    AtCapacity(K, V),
}

impl<K, V> AddError<K, V> {
    /// Returns the key and value that were not added.
    pub fn into_inner(self) -> (K, V) {
        match self {
            Self::Closed(k, v) | Self::AtCapacity(k, v) => (k, v),
        }
    }

    /// Whether the aggregator was shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(..))
    }

    /// Whether the key was refused because `max_keys` keys are pending.
    pub fn is_at_capacity(&self) -> bool {
        matches!(self, Self::AtCapacity(..))
    }
}

impl<K, V> fmt::Debug for AddError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => f.write_str("Closed(..)"),
            Self::AtCapacity(..) => f.write_str("AtCapacity(..)"),
        }
    }
}

impl<K, V> fmt::Display for AddError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => f.write_str("adding to an aggregator that has been shut down"),
            Self::AtCapacity(..) => {
                f.write_str("adding a new key to an aggregator holding max_keys pending keys")
            }
        }
    }
}

impl<K, V> Error for AddError<K, V> {}

/// Data that [`shutdown`](crate::Aggregator::shutdown) could not deliver, handed back instead
/// of being dropped: the receiver was gone, or the deadline of
/// [`shutdown_timeout`](crate::Aggregator::shutdown_timeout) passed.
pub struct ShutdownError<K, V> {
    batches: Vec<Batch<K, V>>,
    timed_out: bool,
}

impl<K, V> ShutdownError<K, V> {
    pub(crate) fn new(batches: Vec<Batch<K, V>>, timed_out: bool) -> Self {
        Self { batches, timed_out }
    }

    /// The undelivered batches, in flush order.
    pub fn into_batches(self) -> Vec<Batch<K, V>> {
        self.batches
    }

    /// The undelivered batches.
    pub fn batches(&self) -> &[Batch<K, V>] {
        &self.batches
    }

    /// Number of undelivered `(key, value)` items.
    pub fn item_count(&self) -> usize {
        self.batches.iter().map(Batch::len).sum()
    }

    /// `true` if the deadline passed (the receiver was alive but not reading); `false` if the
    /// receiver was dropped.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl<K, V> fmt::Debug for ShutdownError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownError")
            .field("batches", &self.batches.len())
            .field("items", &self.item_count())
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

impl<K, V> fmt::Display for ShutdownError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = if self.timed_out {
            "the shutdown deadline passed"
        } else {
            "the receiver is gone"
        };
        write!(
            f,
            "{} items in {} batches could not be delivered: {why}",
            self.item_count(),
            self.batches.len()
        )
    }
}

impl<K, V> Error for ShutdownError<K, V> {}
