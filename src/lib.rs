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
//! ## One pipeline
//!
//! ```text
//!  add(k, v) ─► Aggregator<K, V> ─flush─► BatchReceiver ─► sink ─► destination
//!               (sharded, merges           (bounded          (the metrics store's drivers,
//!                per key)                   channel)          the HTTP collector, your own)
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`aggregator`] | the core: shards, merges, flushes, backpressure, shutdown, local handles |
//! | [`time`] | calendars, granularities and bucket timelines in a time zone |
//! | [`window`] | windowed counters and rate limits in fixed memory |
//! | `metrics` | the metrics store (Track / Assert / Values) and its drivers (feature `metrics`) |
//! | `sink` | the `Sink` contract and the runner that drives it (feature `sink`) |
//! | `client` | the batching HTTP client, tower middleware, `metrics` recorder (features `client`, `recorder`) |
//! | `collector` | the HTTP event collector behind `accrue serve` (feature `server`) |
//!
//! Each module's page is its reference: guarantees, settings, figures and examples.
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
#[cfg(any(feature = "server", feature = "client"))]
mod report;
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
