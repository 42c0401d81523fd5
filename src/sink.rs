//! Sinks: where an [`Aggregator`](crate::Aggregator)'s flushes go.
//!
//! ```text
//!  Aggregator ─flush─► BatchReceiver ──await──► Runner ──one write per flush──► Sink
//!                     (bounded: a slow          (coalesces a flush's batches,   ├─ client::HttpSink ─► accrue serve
//!                      sink keeps data           retries, stops by a deadline,  ├─ MetricsSink ─► metrics-store driver
//!                      in the shards)            reports what was written)      └─ your own
//! ```
//!
//! * [`Sink`] is the contract: write one [`Flush`] (every batch of one flush pass) and
//!   return once the destination acknowledged it.
//! * [`Runner`] drives any sink from a [`BatchReceiver`](crate::BatchReceiver) on tokio,
//!   woken by the aggregator when it sends (no thread polls), and ends with a [`SinkReport`]
//!   that hands back whatever was not acknowledged.
//! * `client::HttpSink` (feature `client`) posts each aggregated item as one event to the
//!   collector through the batching client: key = the item's name, `data` = its fields.
//! * [`MetricsSink`] (feature `metrics`) writes each flush as one batch into a metrics store's
//!   driver.
//!
//! What an item becomes is up to two small traits: [`SinkKey`] (a name, and optionally the
//! time it belongs to) and [`SinkValue`] (its fields, each added up or set). They are
//! implemented for strings and numbers; implement them for your own types.
//!
//! # Stopping without losing anything
//!
//! A runner ends when the aggregator shuts down (its channel closes after the last batch) or
//! after [`SinkTask::stop`]. On a stop it keeps writing what the aggregator hands over until
//! the channel closes, for at most the stop timeout: with `spawn_with_aggregator` it shuts
//! the aggregator down itself (its final flush arrives through the channel); with `spawn`,
//! call the aggregator's `shutdown` yourself. Whatever was not acknowledged by the deadline is
//! handed back in [`SinkReport::unsent`], and [`SinkReport::is_complete`] is `false`.
#![doc = include_str!("sink/reference.md")]

mod contract;
mod item;
#[cfg(feature = "metrics")]
mod metrics;
mod runner;

pub use self::contract::{Flush, Sink, WriteError, Written};
pub use self::item::{Amount, Field, Fields, SinkKey, SinkValue};
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsSink;
pub use self::runner::{Progress, Runner, SinkReport, SinkTask, StopHandle};
/// The time type of [`SinkKey::at`] and [`Flush::flushed_at`].
pub use crate::time::Timestamp;

/// The field a plain-number value is written to unless the sink is told otherwise: not
/// `count`, which the collector reports for the events of a bucket.
#[cfg(any(feature = "client", feature = "metrics"))]
pub(crate) const DEFAULT_VALUE_FIELD: &str = "value";
