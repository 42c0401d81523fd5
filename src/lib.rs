//! # accrue
//!
//! High-throughput ingestion: a sharded concurrent aggregator whose periodic flushes feed
//! time-bucketed metrics stores and an HTTP event collector — fast, and unable to lose what it
//! has accepted.
//!
//! ## Quick start
//!
//! ```
//! use accrue::Aggregator;
//!
//! // Sum values per key; a flusher thread hands everything to `rx` every second.
//! let (agg, rx) = Aggregator::<String, u64>::new();
//!
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| {
//!             for i in 0..1000 {
//!                 agg.add_ref(if i % 2 == 0 { "even" } else { "odd" }, 1).unwrap();
//!             }
//!         });
//!     }
//! });
//!
//! agg.shutdown().unwrap(); // final flush, then the channel closes
//! let mut total = 0;
//! for batch in rx.iter() {
//!     for (_key, count) in batch {
//!         total += count;
//!     }
//! }
//! assert_eq!(total, 4000);
//! ```
//!
//! ## Architecture
//!
//! ```text
//!  add(k, v) ──hash once──► shard = hash bits below the top 7
//!                            │
//!        ┌───────────────────┼───────────────────┐
//!        ▼                   ▼                   ▼
//!   [Mutex<table>]      [Mutex<table>]  …   [Mutex<table>]     64+ cache-padded shards,
//!   merge under lock    merge under lock     merge under lock   hashbrown tables
//!        │                   │                   │
//!        └──── flush: swap each table out under its lock, release, send ────┐
//!                                                                           ▼
//!                         bounded channel of Batch<K, V> ──► BatchReceiver (your consumer)
//!                              │ full? the batch goes back into its shard,
//!                              └─ older values merged first; retried next flush
//! ```
//!
//! Flushes run every `flush_interval` on a flusher thread ([`Builder::spawn`]), early when
//! `flush_threshold` keys are pending, and on demand with [`Aggregator::flush`]. Callers that want
//! to drive flushing themselves (tests, their own scheduler) use [`Builder::build`] and the
//! deterministic step [`Aggregator::flush_once`]. Flushes never overlap: a request that finds one
//! running is *coalesced* — the running flush does one more pass for it — so none is skipped.
//!
//! The merge ([`Merge`]: [`Sum`], [`Count`], [`Min`], [`Max`], [`Last`], [`First`] or any
//! `Fn(&mut V, V)`) runs under the shard lock, so it needs no atomics of its own.
//!
//! ## Hot paths on many threads: local handles
//!
//! [`Aggregator::local`] gives a producer thread a [`LocalHandle`]: its adds merge into a private
//! table behind a lock only that thread takes, and reach the shards in bulk (one lock per shard)
//! when the table holds [`Builder::local_capacity`] keys, at every flush pass, at shutdown, when
//! the handle is dropped, and before any read ([`Aggregator::get`], `len`, `snapshot`,
//! `counters`). Flushes and shutdown drain every live handle, so the delivery guarantees below
//! hold unchanged; a handle's adds keep their order per key.
//!
//! ## When the channel is full
//!
//! A flush offers each shard's batch with `try_send`. When the channel is full, the batch comes
//! back: its items are merged into the shard again — the *older* value first, so order-sensitive
//! merges still see values in add order — and the shards the pass has not reached yet keep their
//! data. The next flush retries. Nothing is dropped and nothing is delivered twice; memory grows
//! with the number of distinct pending keys, not with the number of adds. To bound it, set
//! [`Builder::max_keys`] and use [`Aggregator::try_add`], which hands a new key back at
//! capacity (existing keys always merge). Watch [`Aggregator::counters`] (`deferred_flushes`,
//! `items_reinserted`) to see a consumer falling behind.
//!
//! ## Shutdown
//!
//! [`Aggregator::shutdown`] stops the flusher, closes each shard (later adds get
//! [`AddError::Closed`] with their key and value back), sends everything with *blocking* sends,
//! then closes the channel: the consumer's [`BatchReceiver::recv`] returns `None` after the last
//! batch. If every receiver is gone, the undelivered batches come back in [`ShutdownError`];
//! [`Aggregator::shutdown_timeout`] does the same when a live consumer stops reading. Shutdown is
//! idempotent, and dropping the aggregator shuts it down (with the builder's `drop_timeout`).
//!
//! **When is data acknowledged?** An `add` that returned `Ok` is either delivered to a receiver
//! or returned by `shutdown`; it cannot be dropped silently, except by dropping the aggregator
//! while the consumer is gone (then it is logged with `tracing::error!`).
//!
//! ## Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | *(none, the default)* | the aggregator, time buckets, windowed counters and rate limits ([`window::WindowStore`]); no async runtime |
//! | `window-persist` | windowed-counter persistence: `FileStorage`, `BinaryFormat`, `JsonFormat` |
//! | `window-tokio` | windowed-counter auto-persist on a tokio runtime |
//! | `sqlite` | the metrics store's SQLite driver and `SqliteStorage` for windowed counters |
//! | `metrics` | the metrics store ([`metrics::MetricsStore`], the `Driver` trait, `MemoryDriver`, `connect_driver`) |
//! | `postgres` | `metrics::PostgresDriver` (sqlx) |
//! | `mysql` | `metrics::MysqlDriver` for MySQL 8 / MariaDB 10.6+ (sqlx) |
//! | `redis` | `metrics::RedisDriver` (redis, tokio) |
//! | `mongodb` | `metrics::MongoDriver` (MongoDB 8.0+ or a compatible server) |
//! | `full` | everything |
//! | `server` | the HTTP collector ([`collector::Collector`]) on embedded SQLite, as a library (the `accrue` binary, package `accrue-cli`, runs it as `accrue serve`) |
//! | `sink` | [`sink::Runner`], which drives any [`sink::Sink`] (yours too) from a `BatchReceiver` on tokio |
//! | `client` | [`client::Client`] (batching HTTP client, rustls on *ring*), the tower middleware [`client::AccrueLayer`], the collector sink [`client::HttpSink`] |
//! | `recorder` | [`client::Recorder`], a `metrics` crate recorder backed by the aggregator |
//!
//! ## Minimum supported Rust version
//!
//! Rust 1.94 (what sqlx, the PostgreSQL/MySQL driver, needs; edition 2024).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod aggregator;
#[cfg(any(feature = "client", feature = "recorder"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "client", feature = "recorder"))))]
pub mod client;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod collector;
mod constants;
// The client's emit/close gate is checked by loom, which builds without the `client` feature.
#[cfg(all(test, accrue_loom))]
#[allow(dead_code)]
#[path = "client/gate.rs"]
mod client_gate_loom;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "sink")]
#[cfg_attr(docsrs, doc(cfg(feature = "sink")))]
pub mod sink;
mod sync;
pub mod time;
pub mod window;

pub use crate::aggregator::{
    AddError, Aggregator, Batch, BatchReceiver, BuildError, ShutdownError,
};

// The crate documentation links to these by their short names.
#[cfg(doc)]
use crate::aggregator::{Builder, Count, First, Last, LocalHandle, Max, Merge, Min, Sum};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
