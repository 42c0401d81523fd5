//! [`HttpSink`]: aggregated items → events in the collector, through the [`Client`].

use serde_json::Map;

use super::core::Client;
use super::error::ClientError;
use super::event::Event;
use crate::sink::{Amount, Fields, Flush, Sink, SinkKey, SinkValue, WriteError, Written};

/// Posts an aggregator's flushes to the collector: each item becomes one event whose key is
/// the item's name, whose time is the item's (or the flush's) and whose `data` holds its fields
/// as numbers. The collector then stores them and aggregates the numbers into its metrics
/// (`/v1/values` sums them per bucket).
///
/// A flush is sent with [`Client::send`], in requests of the client's batch size: ids are
/// assigned once, so retries are idempotent, and retried (backoff, `Retry-After`) until the
/// server stored them; the [`Runner`](crate::sink::Runner) takes the next flush only then, so the
/// aggregator keeps merging meanwhile.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use accrue::{Aggregator, client::{Client, HttpSink}, sink::Runner};
///
/// let client = Client::new("http://127.0.0.1:8081")?;
/// let (agg, rx) = Aggregator::<String, u64>::builder()
///     .flush_interval(Duration::from_secs(10))
///     .spawn()?;
/// let task = Runner::new(HttpSink::new(client.clone())).spawn_with_aggregator(&agg, rx);
///
/// agg.add_ref("page_view", 1)?; // one event {"key":"page_view","data":{"value":N}} per flush
///
/// task.stop(); // shuts the aggregator down, writes its final flush, then ends
/// let report = task.join().await;
/// assert!(report.is_complete());
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpSink {
    client: Client,
    value_field: String,
    fields: Fields,
}

impl HttpSink {
    /// A sink sending through `client`.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self {
            client,
            value_field: crate::sink::DEFAULT_VALUE_FIELD.into(),
            fields: Fields::default(),
        }
    }

    /// The `data` field a plain-number value is written to. Default: `value` (not `count`,
    /// which the collector reports for the events of a bucket).
    #[must_use]
    pub fn value_field(mut self, name: impl Into<String>) -> Self {
        self.value_field = name.into();
        self
    }

    fn events<K: SinkKey, V: SinkValue>(&mut self, flush: &Flush<K, V>) -> Vec<Event> {
        let mut events = Vec::with_capacity(flush.len());
        for (k, v) in flush.iter() {
            self.fields.clear();
            v.write_fields(&self.value_field, &mut self.fields);
            let mut data = Map::new();
            for (name, field) in self.fields.iter() {
                data.insert(name.to_owned(), json(field.amount()));
            }
            events.push(
                Event::new(k.name().into_owned())
                    .at(k.at().unwrap_or(flush.flushed_at()))
                    .with_data(data),
            );
        }
        events
    }
}

impl<K, V> Sink<K, V> for HttpSink
where
    K: SinkKey + Send + Sync + 'static,
    V: SinkValue + Send + Sync + 'static,
{
    async fn write(&mut self, flush: &Flush<K, V>) -> Result<Written, WriteError> {
        let events = self.events(flush);
        let n = events.len() as u64;
        let refused = |reason: &dyn std::fmt::Display| {
            tracing::error!(%reason, items = n, "the collector refused a flush");
            Ok(Written {
                items: 0,
                rejected: n,
            })
        };
        match self.client.send(events).await {
            Ok(_) => Ok(Written {
                items: n,
                rejected: 0,
            }),
            Err(ClientError::Rejected { status, message }) => {
                refused(&format_args!("{status}: {message}"))
            }
            Err(ClientError::Config(reason)) => refused(&reason),
            Err(e) => Err(WriteError::new(e)),
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
