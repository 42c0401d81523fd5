//! [`BlockingMetricsStore`]: the metrics store for synchronous code.

use std::fmt;

use jiff::Timestamp;

use super::{FlushOutcome, MetricsStore, Series};
use crate::metrics::error::MetricsError;
use crate::metrics::value::Value;
use crate::time::{Blanks, Granularity};

/// [`MetricsStore`] for synchronous code: every method blocks on a private one-worker tokio runtime
/// (which also runs the background flush). Build with [`MetricsStoreBuilder::build_blocking`](super::MetricsStoreBuilder::build_blocking).
///
/// **Blocking:** do not call from inside an async runtime.
pub struct BlockingMetricsStore {
    pub(super) stats: MetricsStore,
    pub(super) rt: tokio::runtime::Runtime,
}

impl BlockingMetricsStore {
    /// See [`MetricsStore::track`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::track`].
    pub fn track(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), MetricsError> {
        self.rt.block_on(self.stats.track(key, at, values))
    }

    /// See [`MetricsStore::assert`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::assert`].
    pub fn assert(
        &self,
        key: &str,
        at: Timestamp,
        values: impl Into<Value>,
    ) -> Result<(), MetricsError> {
        self.rt.block_on(self.stats.assert(key, at, values))
    }

    /// See [`MetricsStore::values`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::values`].
    pub fn values(
        &self,
        key: &str,
        from: Timestamp,
        to: Timestamp,
        granularity: Granularity,
        blanks: Blanks,
    ) -> Result<Series, MetricsError> {
        self.rt
            .block_on(self.stats.values(key, from, to, granularity, blanks))
    }

    /// See [`MetricsStore::flush`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::flush`].
    pub fn flush(&self) -> Result<FlushOutcome, MetricsError> {
        self.rt.block_on(self.stats.flush())
    }

    /// See [`MetricsStore::shutdown`].
    ///
    /// # Errors
    ///
    /// As [`MetricsStore::shutdown`].
    pub fn shutdown(&self) -> Result<(), MetricsError> {
        self.rt.block_on(self.stats.shutdown())
    }

    /// The async store inside.
    pub fn stats(&self) -> &MetricsStore {
        &self.stats
    }
}

impl fmt::Debug for BlockingMetricsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingMetricsStore")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
