//! The client side of accrue (feature `client`; the recorder needs feature `metrics`).
//!
//! * [`Client`] – a batching HTTP client for `accrue serve`: non-blocking
//!   [`emit`](Client::emit) into a bounded queue, batches on size and period, retries with
//!   exponential backoff and jitter honouring `Retry-After`, per-event ids for idempotent
//!   retries, [`flush`](Client::flush), an idempotent [`close`](Client::close) with a deadline,
//!   an optional bearer token.
//! * [`AccrueLayer`] – tower middleware (axum or any tower service): one `http_request` event
//!   per request with the *matched route*, status, latency and sizes; per-route custom events
//!   ([`AccrueLayer::track`]).
//! * [`Recorder`] – a `metrics` crate recorder backed by the [`Aggregator`](crate::Aggregator),
//!   flushed by the [sinks](crate::sink) into the collector or a metrics store.
//!
//! Files: `core` ([`Client`]), `config` ([`ClientBuilder`], [`Retry`], [`Overflow`]), `event`
//! ([`Event`]), `batcher` (the background task and the retry loop), `http` (the shared HTTP
//! core, answer classification, backoff), `gate` (the emit/close handshake), `stats`
//! ([`ClientStats`], [`CloseReport`]), `error`, `middleware`, `recorder`.

#[cfg(feature = "client")]
mod batcher;
#[cfg(feature = "client")]
mod config;
#[cfg(feature = "client")]
mod core;
#[cfg(feature = "client")]
mod error;
#[cfg(feature = "client")]
mod event;
#[cfg(feature = "client")]
mod gate;
#[cfg(feature = "client")]
mod http;
#[cfg(feature = "client")]
mod middleware;
#[cfg(feature = "metrics")]
mod recorder;
#[cfg(feature = "client")]
mod stats;

#[cfg(feature = "client")]
pub use self::config::{ClientBuilder, Overflow, Retry};
#[cfg(feature = "client")]
pub use self::core::{Client, SendReport};
#[cfg(feature = "client")]
pub use self::error::{ClientError, CloseError, EmitError};
#[cfg(feature = "client")]
pub use self::event::{Event, InvalidEvent};
#[cfg(feature = "client")]
pub use self::middleware::{
    AccrueLayer, AccrueService, CountedBody, EventFields, ResponseBody, ResponseFuture,
};
#[cfg(feature = "metrics")]
pub use self::recorder::{
    MetricAggregator, MetricKey, MetricKind, MetricMerge, MetricValue, Recorder, RecorderBuilder,
};
#[cfg(feature = "client")]
pub use self::stats::{ClientStats, CloseReport};
