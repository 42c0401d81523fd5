//! Sinks: an [`Aggregator`](crate::Aggregator)'s flushed batches, written somewhere on tokio.
//!
//! ```text
//!  Aggregator ─flush─► BatchReceiver ─► receiving thread ─► sink task (async) ─┬─► HttpSink  ─► accrue serve
//!                     (bounded: a slow  (blocking recv,      one batch at a     └─► StatsSink ─► metrics store
//!                      sink keeps data   off the runtime)     time, retried        (Stats + driver)
//!                      in the shards)
//! ```
//!
//! * [`HttpSink`] (feature `client`) posts each aggregated item as one event to the collector
//!   through a [`Client`](crate::client::Client): key = the item's name, `data` = its fields.
//! * [`StatsSink`] (feature `stats`) tracks each item into a [`Stats`](crate::Stats) metrics
//!   store (any driver) and flushes it once per batch.
//!
//! The receiver is drained by a blocking thread (the tokio blocking pool), so the runtime is
//! never blocked; the sink writes one batch at a time, so a slow destination leaves data
//! merging in the aggregator's shards instead of piling up in memory.
//!
//! What an item becomes is up to two small traits: [`SinkKey`] (a name, and optionally the
//! time it belongs to) and [`SinkValue`] (its fields, each added up or set). They are
//! implemented for strings and numbers; implement them for your own types.
//!
//! # Stopping without losing anything
//!
//! A sink runs until the aggregator shuts down (its channel closes after the last batch) or
//! its [`CancellationToken`](tokio_util::sync::CancellationToken) is cancelled. On
//! cancellation it keeps writing what the aggregator hands over until the channel closes,
//! for at most the stop timeout: with `spawn_with_aggregator` it shuts the aggregator down
//! itself (its final flush arrives through the channel); with `spawn`, call the aggregator's
//! `shutdown` yourself. Whatever could not be written by the deadline is handed back in
//! [`SinkReport::unsent`], never dropped silently.

#[cfg(any(feature = "client", feature = "stats"))]
mod drain;
#[cfg(feature = "client")]
mod http;
mod item;
#[cfg(feature = "stats")]
mod stats;

#[cfg(any(feature = "client", feature = "stats"))]
pub use self::drain::{SinkReport, SinkTask};
#[cfg(feature = "client")]
pub use self::http::HttpSink;
pub use self::item::{Amount, Field, Fields, SinkKey, SinkValue};
#[cfg(feature = "stats")]
pub use self::stats::StatsSink;
