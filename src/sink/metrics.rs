//! [`MetricsSink`]: aggregated items → a metrics store ([`MetricsStore`] over any driver).

use std::fmt;

use super::contract::{Flush, Sink, WriteError, Written};
use super::item::{Amount, Field, Fields, SinkKey, SinkValue};
use crate::metrics::{Assembly, MetricsStore, Op, Value, Values, WriteBatch};

/// Item-granularity products from which a flush is assembled off the async worker (on a
/// multi-threaded runtime): about a microsecond each.
const BLOCKING_FROM: usize = 2048;

/// Writes an aggregator's flushes into a metrics store: per item, the `Add` fields are
/// tracked and the `Set` fields asserted in every granularity's bucket of the item's time (or
/// the flush's), merged per bucket row, and the whole flush is written as **one driver
/// batch**, straight to the driver: the store's own buffer is not involved, so nothing merges
/// twice and the report tells what the driver acknowledged.
///
/// The batch keeps its id when the [`Runner`](super::Runner) retries it, so drivers apply it
/// once. Its writer id is the sink's own (random per sink), independent of the store's.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use accrue::{Aggregator, metrics::{IdentifierMode, MemoryDriver, MetricsStore}, sink::{MetricsSink, Runner}, time::{Blanks, Granularity, Unit}};
///
/// let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
///     .granularities(["1h"])
///     .build()?;
/// let (agg, rx) = Aggregator::<&'static str, u64>::builder().build()?;
/// let task = Runner::new(MetricsSink::new(stats.clone())).spawn_with_aggregator(&agg, rx);
///
/// for _ in 0..3 {
///     agg.add("orders", 1)?;
/// }
/// task.stop(); // final flush of the aggregator, written to the store
/// let report = task.join().await;
/// assert_eq!((report.items, report.writes, report.is_complete()), (1, 1, true));
///
/// let now = jiff::Timestamp::now();
/// let series = stats.values("orders", now, now, Granularity::one(Unit::Hour), Blanks::Keep).await?;
/// assert_eq!(accrue::metrics::Value::Map(series.values[0].clone()).to_json()["value"], 3);
/// # Ok(()) }
/// ```
pub struct MetricsSink {
    stats: MetricsStore,
    value_field: String,
    fields: Fields,
    assembly: Assembly,
    /// The batch of the flush being retried, with what it holds.
    in_flight: Option<(u64, WriteBatch, Written)>,
}

impl MetricsSink {
    /// A sink writing into `stats`.
    #[must_use]
    pub fn new(stats: MetricsStore) -> Self {
        Self {
            stats,
            value_field: super::DEFAULT_VALUE_FIELD.into(),
            fields: Fields::default(),
            assembly: Assembly::new(),
            in_flight: None,
        }
    }

    /// The field a plain-number value is tracked as. Default: `value`.
    #[must_use]
    pub fn value_field(mut self, name: impl Into<String>) -> Self {
        self.value_field = name.into();
        self
    }

    /// Merges every item of `flush` into `assembly` and returns the batch (`None`: nothing to
    /// write) with what it holds. Items the store refuses are logged and counted as rejected.
    fn assemble<K: SinkKey, V: SinkValue>(
        stats: &MetricsStore,
        value_field: &str,
        fields: &mut Fields,
        assembly: &mut Assembly,
        flush: &Flush<K, V>,
    ) -> (Option<WriteBatch>, Written) {
        let mut written = Written::default();
        for (k, v) in flush.iter() {
            fields.clear();
            v.write_fields(value_field, fields);
            let (mut adds, mut sets) = (Values::new(), Values::new());
            for (name, field) in fields.iter() {
                match field {
                    Field::Add(a) => adds.insert(name.to_owned(), value(a)),
                    Field::Set(a) => sets.insert(name.to_owned(), value(a)),
                };
            }
            let (key, at) = (k.name(), k.at().unwrap_or(flush.flushed_at()));
            let mut ok = true;
            for (op, values) in [(Op::Track, adds), (Op::Assert, sets)] {
                if values.is_empty() {
                    continue;
                }
                if let Err(e) = stats.assemble_call(assembly, op, &key, at, &Value::Map(values)) {
                    tracing::error!(key = %key, error = &e as &dyn std::error::Error, "the metrics store refused an item");
                    ok = false;
                }
            }
            if ok {
                written.items += 1;
            } else {
                written.rejected += 1;
            }
        }
        match stats.assemble(assembly) {
            Ok(batch) => (batch, written),
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "the metrics store refused a flush"
                );
                (
                    None,
                    Written {
                        items: 0,
                        rejected: written.items + written.rejected,
                    },
                )
            }
        }
    }
}

impl fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSink")
            .field("stats", &self.stats)
            .field("value_field", &self.value_field)
            .field("assembly", &self.assembly)
            .finish_non_exhaustive()
    }
}

fn value(a: Amount) -> Value {
    match a {
        Amount::Int(i) => Value::Int(i),
        Amount::Float(f) => Value::Float(f),
    }
}

impl<K, V> Sink<K, V> for MetricsSink
where
    K: SinkKey + Send + Sync + 'static,
    V: SinkValue + Send + Sync + 'static,
{
    async fn write(&mut self, flush: &Flush<K, V>) -> Result<Written, WriteError> {
        if self
            .in_flight
            .as_ref()
            .is_none_or(|(id, ..)| *id != flush.id())
        {
            // A new flush (one the runner gave up on is never retried: drop it).
            self.in_flight = None;
            let Self {
                stats,
                value_field,
                fields,
                assembly,
                ..
            } = self;
            let updates = flush.len().saturating_mul(stats.granularities().len());
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            // Large flushes are CPU work that must not hold an async worker.
            let (batch, written) = if updates >= BLOCKING_FROM && multi_thread {
                tokio::task::block_in_place(|| {
                    Self::assemble(stats, value_field, fields, assembly, flush)
                })
            } else {
                Self::assemble(stats, value_field, fields, assembly, flush)
            };
            let Some(batch) = batch else {
                return Ok(written);
            };
            self.in_flight = Some((flush.id(), batch, written));
        }
        let (_, batch, written) = self.in_flight.as_ref().expect("set above");
        self.stats
            .driver()
            .write(batch)
            .await
            .map_err(WriteError::new)?;
        let written = *written;
        self.in_flight = None;
        Ok(written)
    }
}
