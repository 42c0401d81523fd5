//! The contract between the runner and a destination: [`Sink`], what it is handed ([`Flush`])
//! and what it answers ([`Written`], [`WriteError`]).

use std::error::Error;
use std::fmt;
use std::future::Future;

use jiff::Timestamp;

use crate::aggregator::Batch;

/// A destination for an aggregator's flushes: the metrics store ([`MetricsSink`]), the collector
/// (`client::HttpSink`), or your own. The [`Runner`] drives it.
///
/// The runner hands it one [`Flush`] at a time — every batch of one flush pass of the
/// aggregator — and takes the next only once this one is written, so a slow
/// destination leaves data merging in the aggregator instead of piling up in memory.
///
/// **`Ok` means the destination acknowledged the flush.** An error makes the runner retry
/// *the same* flush (same [`id`](Flush::id)) with backoff until it succeeds or the stop
/// deadline passes; a sink that needs an idempotency key for its destination keeps the one it
/// made for the first attempt. When the deadline passes, the runner drops the write in progress
/// and hands the flush back in [`SinkReport::unsent`]: it was not acknowledged (a write cut
/// short may still have reached the destination).
///
/// [`MetricsSink`]: super::MetricsSink
/// [`Runner`]: super::Runner
/// [`SinkReport::unsent`]: super::SinkReport::unsent
///
/// # Examples
///
/// A sink that keeps totals in a shared map (a database client would go where the map is):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use accrue::Aggregator;
/// use accrue::sink::{Flush, Runner, Sink, WriteError, Written};
///
/// #[derive(Clone, Default)]
/// struct Totals(Arc<Mutex<HashMap<String, u64>>>);
///
/// impl Sink<String, u64> for Totals {
///     async fn write(&mut self, flush: &Flush<String, u64>) -> Result<Written, WriteError> {
///         let mut totals = self.0.lock().map_err(|e| WriteError::new(e.to_string()))?;
///         for (key, n) in flush.iter() {
///             *totals.entry(key.clone()).or_default() += n;
///         }
///         Ok(Written::all(flush.len()))
///     }
/// }
///
/// let totals = Totals::default();
/// let (agg, rx) = Aggregator::<String, u64>::new();
/// let task = Runner::new(totals.clone()).spawn(rx);
/// agg.add("a".into(), 2)?;
/// agg.add("a".into(), 3)?;
/// agg.shutdown()?; // its final flush is written, then the task ends
/// assert!(task.join().await.is_complete());
/// assert_eq!(totals.0.lock().unwrap()["a"], 5);
/// # Ok(()) }
/// ```
pub trait Sink<K, V>: Send + 'static {
    /// Writes `flush` as one destination write (split only where the destination has a limit,
    /// such as a request size), and returns once the destination has acknowledged it.
    ///
    /// # Errors
    ///
    /// [`WriteError`]: not acknowledged; the runner retries the same flush.
    fn write(
        &mut self,
        flush: &Flush<K, V>,
    ) -> impl Future<Output = Result<Written, WriteError>> + Send;
}

/// What one write of a [`Sink`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Items the destination stored.
    pub items: u64,
    /// Items it refused for good (invalid for it: retrying cannot help). The sink logs why.
    pub rejected: u64,
}

impl Written {
    /// Every one of `items` stored.
    pub fn all(items: usize) -> Self {
        Self {
            items: items as u64,
            rejected: 0,
        }
    }
}

/// A [`Sink`]'s write was not acknowledged; the cause is the error's
/// [`source`](Error::source). The runner retries the same flush.
#[derive(Debug)]
pub struct WriteError {
    source: Box<dyn Error + Send + Sync>,
}

impl WriteError {
    /// Wraps the destination's error.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the destination did not acknowledge the write")
    }
}

impl Error for WriteError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// What the runner hands a [`Sink`] in one write: every batch of one flush pass of the
/// aggregator (at most one per shard, so each key appears once), in arrival order.
pub struct Flush<K, V> {
    id: u64,
    at: Timestamp,
    batches: Vec<Batch<K, V>>,
    items: usize,
}

impl<K, V> Flush<K, V> {
    pub(crate) fn new(id: u64, at: Timestamp, batches: Vec<Batch<K, V>>) -> Self {
        let items = batches.iter().map(Batch::len).sum();
        Self {
            id,
            at,
            batches,
            items,
        }
    }

    /// The runner's number for this write, from 1; the same on every retry of it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the runner assembled it: the time of items that carry none of their own.
    pub fn flushed_at(&self) -> Timestamp {
        self.at
    }

    /// Items over all batches.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether there are no items (the runner never writes an empty flush).
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Every item, batch after batch.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.batches.iter().flat_map(Batch::iter)
    }

    /// The aggregator's batches it holds, in arrival order.
    pub fn batches(&self) -> &[Batch<K, V>] {
        &self.batches
    }

    pub(crate) fn into_batches(self) -> Vec<Batch<K, V>> {
        self.batches
    }
}

impl<K, V> fmt::Debug for Flush<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flush")
            .field("id", &self.id)
            .field("batches", &self.batches.len())
            .field("items", &self.items)
            .finish()
    }
}
