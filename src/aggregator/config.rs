//! [`Config`]: the effective settings of an aggregator.

use std::time::Duration;

/// The effective settings of an aggregator, from [`Aggregator::config`](super::Aggregator::config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) shards: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) flush_threshold: Option<usize>,
    pub(crate) max_keys: Option<usize>,
    pub(crate) local_capacity: usize,
}

impl Config {
    /// Number of shards (a power of two).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Capacity of the batch channel, in batches (a flush sends at most one batch per shard).
    pub fn channel_capacity(&self) -> usize {
        self.channel_capacity
    }

    /// The period of the flusher thread; `None` when flushing is caller-driven
    /// ([`Builder::build`](super::Builder::build)).
    pub fn flush_interval(&self) -> Option<Duration> {
        self.flush_interval
    }

    /// Pending keys that trigger a flush before the interval is up.
    pub fn flush_threshold(&self) -> Option<usize> {
        self.flush_threshold
    }

    /// The bound on pending keys enforced by [`Aggregator::try_add`](super::Aggregator::try_add).
    pub fn max_keys(&self) -> Option<usize> {
        self.max_keys
    }

    /// Keys a [`LocalHandle`](crate::aggregator::LocalHandle) holds before it spills into the shards.
    pub fn local_capacity(&self) -> usize {
        self.local_capacity
    }
}
