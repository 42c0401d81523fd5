//! The client side of accrue (feature `client`; the recorder needs feature `metrics`).
//!
//! * [`Client`] – a batching HTTP client for `accrue serve`: non-blocking
//!   [`emit`](Client::emit) into a bounded queue, batches on size and period, retries with
//!   exponential backoff and jitter honouring `Retry-After`, per-event ids for idempotent
//!   retries, [`flush`](Client::flush), an idempotent [`close`](Client::close) with a deadline,
//!   an optional bearer token.
//! * Reading back (the collector's issue-8 routes, same client, same token): one key's events
//!   in a time range ([`Client::events`]), the latest event per key ([`Client::latest`]),
//!   deletes ([`Client::delete_key`], [`Client::delete_prefix`], [`Client::delete_event`]),
//!   the KV store ([`Client::kv`]) and live feeds that reconnect with backoff and resume
//!   without gaps ([`Client::subscribe`]).
//! * [`AccrueLayer`] – tower middleware (axum or any tower service): one `http_request` event
//!   per request with the *matched route*, status, latency and sizes; per-route custom events
//!   ([`AccrueLayer::track`]).
//! * [`Recorder`] – a `metrics` crate recorder backed by the [`Aggregator`](crate::Aggregator),
//!   flushed by the [sinks](crate::sink) into the collector or a metrics store.
//!
//! Files: `core` ([`Client`]), `config` ([`ClientBuilder`], [`Retry`], [`Overflow`]), `event`
//! ([`Event`]), `batcher` (the background task and the retry loop), `http` (the shared HTTP
//! core, answer classification, backoff), `query`, `kv`, `live` (the read-back calls), `gate` (the emit/close handshake), `stats`
//! ([`ClientStats`], [`CloseReport`]), `error`, `middleware`, `recorder`.
#![doc = include_str!("client/reference.md")]

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
mod kv;
#[cfg(feature = "client")]
mod live;
#[cfg(feature = "client")]
mod middleware;
#[cfg(feature = "client")]
mod query;
#[cfg(feature = "recorder")]
mod recorder;
#[cfg(feature = "client")]
mod sink;
#[cfg(feature = "client")]
mod stats;
#[cfg(feature = "client")]
mod values;
#[cfg(feature = "client")]
mod view;

#[cfg(feature = "client")]
pub use self::config::{ClientBuilder, EventIds, Overflow, Retry};
#[cfg(feature = "client")]
pub use self::core::{Client, SendReport};
#[cfg(feature = "client")]
pub use self::error::{ClientError, CloseError, EmitError};
#[cfg(feature = "client")]
pub use self::event::{Event, InvalidEvent};
#[cfg(feature = "client")]
pub use self::kv::{Kv, KvEntry, KvList, KvPage};
#[cfg(feature = "client")]
pub use self::live::{Feed, Flush, FlushSample, LiveMessage, SubscribeRequest, Subscription};
#[cfg(feature = "client")]
pub use self::middleware::{
    AccrueLayer, AccrueService, CountedBody, EventFields, ResponseBody, ResponseFuture, UserAgent,
};
#[cfg(feature = "client")]
pub use self::query::{
    DeleteRequest, EventPage, EventQuery, Latest, LatestRequest, Order, Range, RangeRequest, Route,
    StoredEvent,
};
#[cfg(feature = "recorder")]
pub use self::recorder::{
    MetricAggregator, MetricKey, MetricKind, MetricMerge, MetricValue, Recorder, RecorderBuilder,
};
#[cfg(feature = "client")]
pub use self::sink::HttpSink;
#[cfg(feature = "client")]
pub use self::stats::{ClientStats, CloseReport};
#[cfg(feature = "client")]
pub use self::values::{Timeline, ValuesRequest};
#[cfg(feature = "client")]
pub use self::view::{ViewPage, ViewRequest, ViewedEvent};
