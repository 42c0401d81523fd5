//! [`StatsSink`]: aggregated items → a metrics store ([`Stats`] over any driver).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::drain::{self, DEFAULT_STOP_TIMEOUT, Outcome, SinkTask, Write};
use super::item::{Amount, Field, Fields, SinkKey, SinkValue};
use crate::{Aggregator, Batch, BatchReceiver, Merge, Stats, StatsError, Value, Values};

/// Writes an aggregator's batches into a metrics store: per item, the `Add` fields are
/// [`track`](Stats::track)ed and the `Set` fields [`assert`](Stats::assert)ed in every
/// granularity's bucket of the item's time (or the flush's); then the store is flushed, once
/// per batch — one driver write, retried with backoff until it succeeds or the stop deadline
/// passes. A retried write keeps its batch id, so drivers apply it once.
///
/// Give it a buffered `Stats` (the default): the sink's flush is then the only write.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use accrue::{Aggregator, IdentifierMode, MemoryDriver, Stats, sink::StatsSink};
/// use tokio_util::sync::CancellationToken;
///
/// let stats = Stats::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
///     .granularities(["1h"])
///     .build()?;
/// let (agg, rx) = Aggregator::<&'static str, u64>::builder().build()?;
/// let agg = Arc::new(agg);
/// let stop = CancellationToken::new();
/// let sink = StatsSink::new(stats.clone()).spawn_with_aggregator(agg.clone(), rx, stop.clone());
///
/// for _ in 0..3 {
///     agg.add("orders", 1)?;
/// }
/// stop.cancel(); // final flush of the aggregator, written to the store
/// let report = sink.join().await;
/// assert_eq!((report.items, report.is_complete()), (1, true));
///
/// let now = jiff::Timestamp::now();
/// let series = stats.values("orders", now, now, "1h", false).await?;
/// assert_eq!(accrue::Value::Map(series.values[0].clone()).to_json()["count"], 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StatsSink {
    stats: Stats,
    value_field: String,
    stop_timeout: Duration,
}

impl StatsSink {
    /// A sink writing into `stats`.
    pub fn new(stats: Stats) -> Self {
        Self {
            stats,
            value_field: "count".into(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }

    /// The field a plain-number value is tracked as. Default: `count`.
    pub fn value_field(mut self, name: impl Into<String>) -> Self {
        self.value_field = name.into();
        self
    }

    /// How long a stop keeps writing (and retrying the store). Default: 30 s.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Drains `rx` until the aggregator shuts down, or until `stop` is cancelled and the
    /// aggregator's shutdown (which you call) has been written, within the stop timeout.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<K, V>(self, rx: BatchReceiver<K, V>, stop: CancellationToken) -> SinkTask<K, V>
    where
        K: SinkKey + Send + Sync + 'static,
        V: SinkValue + Send + Sync + 'static,
    {
        let timeout = self.stop_timeout;
        drain::spawn(rx, stop, None, self.writer(), timeout)
    }

    /// Like [`spawn`](Self::spawn), and when `stop` is cancelled the sink shuts `aggregator`
    /// down itself: its final flush is written before the task ends.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_with_aggregator<K, V, S, M>(
        self,
        aggregator: Arc<Aggregator<K, V, S, M>>,
        rx: BatchReceiver<K, V>,
        stop: CancellationToken,
    ) -> SinkTask<K, V>
    where
        K: SinkKey + std::hash::Hash + Eq + Send + Sync + 'static,
        V: SinkValue + Send + Sync + 'static,
        S: std::hash::BuildHasher + Send + Sync + 'static,
        M: Merge<V>,
    {
        let timeout = self.stop_timeout;
        let hook = drain::shutdown_hook(aggregator);
        drain::spawn(rx, stop, Some(hook), self.writer(), timeout)
    }

    fn writer(self) -> StatsWriter {
        StatsWriter {
            stats: self.stats,
            value_field: self.value_field,
            fields: Fields::default(),
        }
    }
}

struct StatsWriter {
    stats: Stats,
    value_field: String,
    fields: Fields,
}

fn value(a: Amount) -> Value {
    match a {
        Amount::Int(i) => Value::Int(i),
        Amount::Float(f) => Value::Float(f),
    }
}

impl StatsWriter {
    /// Flushes the store, retrying failed writes (same batch id) until `give_up`.
    async fn flush(&self, give_up: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        loop {
            match self.stats.flush().await {
                Ok(_) => return true,
                Err(e) => {
                    attempt += 1;
                    let wait = Duration::from_millis(50)
                        .saturating_mul(1 << attempt.min(6))
                        .min(Duration::from_secs(5));
                    if attempt == 1 {
                        tracing::warn!(error = %e, "writing to the metrics store failed; retrying");
                    }
                    tokio::select! {
                        () = give_up.cancelled() => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

impl<K, V> Write<K, V> for StatsWriter
where
    K: SinkKey + Send + Sync + 'static,
    V: SinkValue + Send + Sync + 'static,
{
    async fn write(
        &mut self,
        batch: &Batch<K, V>,
        flushed_at: Timestamp,
        give_up: &CancellationToken,
    ) -> Outcome {
        let (mut items, mut rejected) = (0, 0);
        let mut rows: Vec<(String, Timestamp, Values, Values)> = Vec::with_capacity(batch.len());
        for (k, v) in batch.iter() {
            self.fields.clear();
            v.write_fields(&self.value_field, &mut self.fields);
            let (mut adds, mut sets) = (Values::new(), Values::new());
            for (name, field) in self.fields.iter() {
                match field {
                    Field::Add(a) => adds.insert(name.to_owned(), value(a)),
                    Field::Set(a) => sets.insert(name.to_owned(), value(a)),
                };
            }
            rows.push((
                k.name().into_owned(),
                k.at().unwrap_or(flushed_at),
                adds,
                sets,
            ));
        }
        for (key, at, adds, sets) in rows {
            let mut ok = true;
            for (is_set, values) in [(false, adds), (true, sets)] {
                if values.is_empty() {
                    continue;
                }
                let r = if is_set {
                    self.stats.assert(&key, at, Value::Map(values)).await
                } else {
                    self.stats.track(&key, at, Value::Map(values)).await
                };
                match r {
                    Ok(()) => {}
                    Err(StatsError::Closed) => return Outcome::GaveUp,
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "the metrics store refused an item");
                        ok = false;
                    }
                }
            }
            if ok {
                items += 1;
            } else {
                rejected += 1;
            }
        }
        // The items are in the store's buffer now; it keeps them (and hands them back on its
        // shutdown) if the flush cannot finish before the deadline.
        if !self.flush(give_up).await {
            tracing::error!(
                "the metrics store is still failing at the stop deadline; its buffer holds the data (Stats::shutdown reports it)"
            );
        }
        Outcome::Written { items, rejected }
    }

    async fn finish(&mut self, give_up: &CancellationToken) {
        if self.stats.pending() > 0 {
            self.flush(give_up).await;
        }
    }
}
