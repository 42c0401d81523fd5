//! [`HttpSink`]: aggregated items → events in the collector, through the [`Client`].

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Map;
use tokio_util::sync::CancellationToken;

use super::drain::{self, DEFAULT_STOP_TIMEOUT, Outcome, SinkTask, Write};
use super::item::{Amount, Fields, SinkKey, SinkValue};
use crate::client::{Client, ClientError, Event};
use crate::{Aggregator, Batch, BatchReceiver, Merge};

/// Posts an aggregator's batches to the collector: each item becomes one event whose key is
/// the item's name, whose time is the item's (or the flush's) and whose `data` holds its fields
/// as numbers. The collector then stores them and aggregates the numbers into its metrics
/// (`/v1/values` sums them per bucket).
///
/// A batch is sent with [`Client::send`]: ids are assigned once, so retries are idempotent,
/// and retried (backoff, `Retry-After`) until the server stored it or the stop deadline
/// passed; the next batch waits, so the aggregator keeps merging meanwhile.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::{sync::Arc, time::Duration};
/// use accrue::{Aggregator, client::Client, sink::HttpSink};
/// use tokio_util::sync::CancellationToken;
///
/// let client = Client::new("http://127.0.0.1:8081")?;
/// let (agg, rx) = Aggregator::<String, u64>::builder()
///     .flush_interval(Duration::from_secs(10))
///     .spawn()?;
/// let agg = Arc::new(agg);
/// let stop = CancellationToken::new();
/// let sink = HttpSink::new(client.clone()).spawn_with_aggregator(agg.clone(), rx, stop.clone());
///
/// agg.add_ref("page_view", 1)?; // one event {"key":"page_view","data":{"count":N}} per flush
///
/// stop.cancel(); // shuts the aggregator down, writes its final flush, then ends
/// let report = sink.join().await;
/// assert!(report.is_complete());
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpSink {
    client: Client,
    value_field: String,
    stop_timeout: Duration,
}

impl HttpSink {
    /// A sink sending through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            value_field: "count".into(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }

    /// The `data` field a plain-number value is written to. Default: `count`.
    pub fn value_field(mut self, name: impl Into<String>) -> Self {
        self.value_field = name.into();
        self
    }

    /// How long a stop keeps writing what the aggregator hands over. Default: 30 s.
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

    fn writer(self) -> HttpWriter {
        HttpWriter {
            client: self.client,
            value_field: self.value_field,
            fields: Fields::default(),
        }
    }
}

struct HttpWriter {
    client: Client,
    value_field: String,
    fields: Fields,
}

impl HttpWriter {
    fn events<K: SinkKey, V: SinkValue>(
        &mut self,
        batch: &Batch<K, V>,
        flushed_at: Timestamp,
    ) -> Vec<Event> {
        let mut events = Vec::with_capacity(batch.len());
        for (k, v) in batch.iter() {
            self.fields.clear();
            v.write_fields(&self.value_field, &mut self.fields);
            let mut data = Map::new();
            for (name, field) in self.fields.iter() {
                data.insert(name.to_owned(), json(field.amount()));
            }
            events.push(
                Event::new(k.name().into_owned())
                    .at(k.at().unwrap_or(flushed_at))
                    .with_data(data),
            );
        }
        events
    }
}

impl<K, V> Write<K, V> for HttpWriter
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
        let events = self.events(batch, flushed_at);
        let n = events.len() as u64;
        match self.client.send_until(events, give_up).await {
            Ok(_) => Outcome::Written {
                items: n,
                rejected: 0,
            },
            Err(ClientError::Rejected { status, message }) => {
                tracing::error!(status, %message, items = n, "the collector refused a batch");
                Outcome::Written {
                    items: 0,
                    rejected: n,
                }
            }
            Err(ClientError::Config(reason)) => {
                tracing::error!(%reason, items = n, "a batch holds items the collector cannot take");
                Outcome::Written {
                    items: 0,
                    rejected: n,
                }
            }
            Err(_) => Outcome::GaveUp,
        }
    }
}

fn json(a: Amount) -> serde_json::Value {
    match a {
        Amount::Int(i) => i.into(),
        // A non-finite float has no JSON form.
        Amount::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
    }
}
