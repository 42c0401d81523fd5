//! [`Recorder`]: a [`metrics`] recorder backed by the [`Aggregator`](crate::Aggregator).
//!
//! Every `counter!` / `gauge!` / `histogram!` update is merged into the aggregator under its
//! key (name + labels + kind) and leaves in the next flush, as one item per key:
//!
//! | kind | merged per flush | written by a sink as |
//! |---|---|---|
//! | counter | the sum of the increments (`absolute` adds the rise) | the sink's value field, `value` by default (added up) |
//! | gauge | the last value | `value` (set) |
//! | histogram | count, sum, min, max of the recorded values | `count`, `sum` (added up), `min`, `max` (set: the flush's extremes) |
//!
//! The batches go to any [sink](crate::sink): `HttpSink` (to the collector) or `MetricsSink` (a
//! metrics store).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
use metrics::{Metadata, SharedString, Unit};
use parking_lot::RwLock;

use crate::aggregator::{Aggregator, BatchReceiver, BuildError, Merge};
use crate::sink::{Fields, SinkKey, SinkValue};

/// The aggregator behind a [`Recorder`].
pub type MetricAggregator = Aggregator<MetricKey, MetricValue, ahash::RandomState, MetricMerge>;

/// Counter, gauge or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// Monotonic count.
    Counter,
    /// Last value.
    Gauge,
    /// Distribution of recorded values.
    Histogram,
}

/// A metric's identity: its kind, name and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricKey {
    kind: MetricKind,
    key: Key,
}

impl MetricKey {
    /// The kind.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The labels, as given.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.key.labels().map(|l| (l.key(), l.value()))
    }

    /// `name`, or `name{a=1,b=2}` with the labels sorted by name: the key sinks write under.
    pub fn render(&self) -> Cow<'_, str> {
        let mut labels: Vec<(&str, &str)> = self.labels().collect();
        if labels.is_empty() {
            return Cow::Borrowed(self.key.name());
        }
        labels.sort_unstable();
        let mut s = String::with_capacity(self.key.name().len() + 16 * labels.len());
        s.push_str(self.key.name());
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s.push('}');
        Cow::Owned(s)
    }
}

impl SinkKey for MetricKey {
    fn name(&self) -> Cow<'_, str> {
        self.render()
    }
}

/// A metric's value for one flush.
#[derive(Clone)]
pub struct MetricValue(Inner);

#[derive(Clone)]
enum Inner {
    Counter(u64),
    /// The gauge's cell, read when the batch is written: always its latest value.
    Gauge(Arc<AtomicU64>),
    Histogram(Summary),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl MetricValue {
    /// The counter's increase over the flush.
    pub fn counter(&self) -> Option<u64> {
        match &self.0 {
            Inner::Counter(n) => Some(*n),
            _ => None,
        }
    }

    /// The gauge's latest value.
    pub fn gauge(&self) -> Option<f64> {
        match &self.0 {
            Inner::Gauge(bits) => Some(f64::from_bits(bits.load(Ordering::Acquire))),
            _ => None,
        }
    }

    /// The histogram's `(count, sum, min, max)` over the flush.
    pub fn histogram(&self) -> Option<(u64, f64, f64, f64)> {
        match &self.0 {
            Inner::Histogram(s) => Some((s.count, s.sum, s.min, s.max)),
            _ => None,
        }
    }
}

impl fmt::Debug for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Counter(n) => write!(f, "Counter({n})"),
            Inner::Gauge(_) => write!(f, "Gauge({})", self.gauge().unwrap_or_default()),
            Inner::Histogram(s) => write!(
                f,
                "Histogram(count={}, sum={}, min={}, max={})",
                s.count, s.sum, s.min, s.max
            ),
        }
    }
}

impl SinkValue for MetricValue {
    fn write_fields(&self, default: &str, out: &mut Fields) {
        match &self.0 {
            Inner::Counter(n) => out.add(default.to_owned(), *n),
            Inner::Gauge(_) => out.set("value", self.gauge().unwrap_or_default()),
            Inner::Histogram(s) => {
                out.add("count", s.count);
                out.add("sum", s.sum);
                out.set("min", s.min);
                out.set("max", s.max);
            }
        }
    }
}

/// How a [`MetricAggregator`] merges: counters add, gauges keep the latest, histograms
/// combine their summaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricMerge;

impl Merge<MetricValue> for MetricMerge {
    fn merge(&self, acc: &mut MetricValue, newer: MetricValue) {
        match (&mut acc.0, newer.0) {
            (Inner::Counter(a), Inner::Counter(b)) => *a = a.wrapping_add(b),
            (Inner::Histogram(a), Inner::Histogram(b)) => {
                a.count += b.count;
                a.sum += b.sum;
                a.min = a.min.min(b.min);
                a.max = a.max.max(b.max);
            }
            // Gauges (and, impossibly, mixed kinds: the kind is part of the key) keep the newer.
            (a, b) => *a = b,
        }
    }
}

const SHARDS: usize = 16;

#[derive(Clone)]
enum Handle {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

/// Handles by key, so every `counter!` call for a key shares one cell (needed for `absolute`
/// and for gauges' increments).
struct Registry {
    shards: [RwLock<HashMap<MetricKey, Handle>>; SHARDS],
}

impl Registry {
    fn get_or_insert(&self, key: MetricKey, make: impl FnOnce(MetricKey) -> Handle) -> Handle {
        let mut h = ahash::AHasher::default();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() >> 60) as usize % SHARDS];
        if let Some(handle) = shard.read().get(&key) {
            return handle.clone();
        }
        shard
            .write()
            .entry(key.clone())
            .or_insert_with(|| make(key))
            .clone()
    }
}

struct CounterCell {
    agg: Arc<MetricAggregator>,
    key: MetricKey,
    /// The counter's running total, for `absolute`.
    total: AtomicU64,
}

impl CounterCell {
    fn add(&self, value: u64) {
        let _ = self
            .agg
            .add_ref(&self.key, MetricValue(Inner::Counter(value)));
    }
}

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        if value > 0 {
            self.total.fetch_add(value, Ordering::AcqRel);
            self.add(value);
        }
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::AcqRel);
        if value > before {
            self.add(value - before);
        }
    }
}

struct GaugeCell {
    agg: Arc<MetricAggregator>,
    key: MetricKey,
    bits: Arc<AtomicU64>,
}

impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
        let _ = self
            .agg
            .add_ref(&self.key, MetricValue(Inner::Gauge(self.bits.clone())));
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct HistogramCell {
    agg: Arc<MetricAggregator>,
    key: MetricKey,
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        if count == 0 || !value.is_finite() {
            return;
        }
        let s = Summary {
            count: count as u64,
            sum: value * count as f64,
            min: value,
            max: value,
        };
        let _ = self
            .agg
            .add_ref(&self.key, MetricValue(Inner::Histogram(s)));
    }
}

/// A [`metrics::Recorder`] that aggregates into a [`MetricAggregator`]; its batches go to a
/// [sink](crate::sink).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use accrue::client::Recorder;
/// use accrue::{metrics::{IdentifierMode, MemoryDriver, MetricsStore}, sink::{MetricsSink, Runner}, time::{Blanks, Granularity, Unit}};
///
/// let (recorder, rx) = Recorder::builder().build()?;
/// let agg = recorder.aggregator();
/// let stats = MetricsStore::builder(Arc::new(MemoryDriver::new(IdentifierMode::Full)))
///     .granularities(["1h"])
///     .build()?;
/// let sink = Runner::new(MetricsSink::new(stats.clone())).spawn_with_aggregator(&agg, rx);
///
/// // In an application: `metrics::set_global_recorder(recorder)`.
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("requests", "route" => "/a").increment(2);
///     metrics::counter!("requests", "route" => "/a").increment(3);
///     metrics::gauge!("queue_depth").set(7.0);
///     metrics::histogram!("latency_ms").record(4.0);
///     metrics::histogram!("latency_ms").record(10.0);
/// });
///
/// sink.stop(); // shuts the aggregator down; its last flush is written
/// assert!(sink.join().await.is_complete());
/// let now = jiff::Timestamp::now();
/// let get = |key: &'static str| {
///     let stats = stats.clone();
///     async move {
///         let s = stats.values(key, now, now, Granularity::one(Unit::Hour), Blanks::Keep).await.unwrap();
///         accrue::metrics::Value::Map(s.values[0].clone()).to_json()
///     }
/// };
/// assert_eq!(get("requests{route=/a}").await["value"], 5);
/// assert_eq!(get("queue_depth").await["value"], 7.0);
/// let latency = get("latency_ms").await;
/// assert_eq!((latency["count"].clone(), latency["sum"].clone()), (2.into(), 14.0.into()));
/// assert_eq!((latency["min"].clone(), latency["max"].clone()), (4.0.into(), 10.0.into()));
/// # Ok(()) }
/// ```
pub struct Recorder {
    agg: Arc<MetricAggregator>,
    registry: Arc<Registry>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("pending_keys", &self.agg.len())
            .finish()
    }
}

/// Configures a [`Recorder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RecorderBuilder {
    flush: Duration,
    channel: usize,
}

impl Recorder {
    /// Starts configuring a recorder (flush every 10 s).
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder {
            flush: Duration::from_secs(10),
            channel: 64,
        }
    }

    /// The aggregator, to hand to a sink's `spawn_with_aggregator`, or to `flush` /
    /// `shutdown` it yourself.
    pub fn aggregator(&self) -> Arc<MetricAggregator> {
        self.agg.clone()
    }

    fn handle(&self, kind: MetricKind, key: &Key) -> Handle {
        let key = MetricKey {
            kind,
            key: key.clone(),
        };
        let agg = &self.agg;
        self.registry.get_or_insert(key, |key| match kind {
            MetricKind::Counter => Handle::Counter(Arc::new(CounterCell {
                agg: agg.clone(),
                key,
                total: AtomicU64::new(0),
            })),
            MetricKind::Gauge => Handle::Gauge(Arc::new(GaugeCell {
                agg: agg.clone(),
                key,
                bits: Arc::new(AtomicU64::new(0f64.to_bits())),
            })),
            MetricKind::Histogram => Handle::Histogram(Arc::new(HistogramCell {
                agg: agg.clone(),
                key,
            })),
        })
    }
}

impl RecorderBuilder {
    /// How often the aggregated metrics are flushed to the sink. Default: 10 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush = every;
        self
    }

    /// Batches the channel to the sink holds. Default: 64.
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.channel = batches;
        self
    }

    /// Starts the aggregator (with its flusher thread).
    ///
    /// # Errors
    ///
    /// [`BuildError`] for an invalid setting, or if the flusher thread cannot start.
    pub fn build(self) -> Result<(Recorder, BatchReceiver<MetricKey, MetricValue>), BuildError> {
        let (agg, rx) = Aggregator::<MetricKey, MetricValue>::builder()
            .merge(MetricMerge)
            .flush_interval(self.flush)
            .channel_capacity(self.channel)
            .thread_name("accrue-metrics-flush")
            .spawn()?;
        Ok((
            Recorder {
                agg: Arc::new(agg),
                registry: Arc::new(Registry {
                    shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
                }),
            },
            rx,
        ))
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.handle(MetricKind::Counter, key) {
            Handle::Counter(c) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.handle(MetricKind::Gauge, key) {
            Handle::Gauge(g) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.handle(MetricKind::Histogram, key) {
            Handle::Histogram(h) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_merge_per_kind_and_key() {
        let (recorder, rx) = Recorder::builder().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..10 {
                metrics::counter!("hits", "b" => "2", "a" => "1").increment(1);
            }
            metrics::counter!("hits", "b" => "2", "a" => "1").absolute(25); // rises by 15
            metrics::counter!("hits", "b" => "2", "a" => "1").absolute(20); // not a rise
            metrics::gauge!("hits").set(3.0); // same name, other kind: another key
            metrics::gauge!("hits").increment(2.5);
            metrics::gauge!("hits").decrement(0.5);
            metrics::histogram!("ms").record(5.0);
            metrics::histogram!("ms").record_many(1.0, 3);
            metrics::histogram!("ms").record(f64::NAN); // ignored
        });
        recorder.aggregator().shutdown().unwrap();
        let mut items: Vec<(String, MetricValue)> = rx
            .iter()
            .flatten()
            .map(|(k, v)| (format!("{:?}:{}", k.kind(), k.render()), v))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let shown: Vec<String> = items.iter().map(|(k, v)| format!("{k} {v:?}")).collect();
        assert_eq!(
            shown,
            [
                "Counter:hits{a=1,b=2} Counter(25)",
                "Gauge:hits Gauge(5)",
                "Histogram:ms Histogram(count=4, sum=8, min=1, max=5)",
            ]
        );
    }
}
