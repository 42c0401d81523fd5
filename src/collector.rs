//! `accrue serve`: the HTTP event collector (feature `server`).
//!
//! A Tlytics-compatible server — same routes, JSON shapes, status codes and error strings, so
//! its clients work unchanged — that cannot lose what it acknowledged:
//!
//! * **Durable acknowledgement.** By default a `200` is sent after the request's events are
//!   committed to the event store (SQLite, WAL). Concurrent requests share one transaction
//!   (group commit), so `kill -9` right after a `200` loses nothing. [`AckMode::Queued`] answers
//!   as soon as the events are queued, as Tlytics does.
//! * **All or nothing.** A request is validated completely before anything is queued; a `400`
//!   or `413` stores nothing, and a group that fails to commit is rolled back whole (durable
//!   requests are then answered `507`/`503`, nothing stored; queued ones are retried).
//! * **Bounded.** Body, event count, key, `data` (size, depth, number range), the ingest queue,
//!   connections and the time to send a request all have limits; a full queue answers `503`
//!   with `Retry-After` instead of growing.
//! * **Idempotent retries.** An event may carry an `id`; a second event with the same id is
//!   skipped and counted in the answer's `duplicates`.
//!
//! ```text
//!  POST /events ─► decode + validate ─► bounded queue ─► writer thread ─► SQLite (events)
//!  POST /batch        (400/413)          (503 when full)   group commit      │
//!                                                           retry on error   ▼
//!  GET /view  ◄── read-only connection pool ◄──────────────────────────── events table
//! ```
//!
//! * `config` – [`CollectorBuilder`], [`AckMode`], [`Synchronous`].
//! * `server` – [`Collector`], [`ShutdownHandle`]: start, graceful stop; `serve` – the accept
//!   loop (connection cap, header deadline, accept backoff).
//! * `event` – wire decoding with Go's rules, validation; `data` – an event's `data` compacted
//!   and checked (depth, number range); `time_fmt` – RFC 3339 in and out; `body` – bodies read
//!   within their limit and deadline.
//! * `writer` – the ingest queue and the group-commit writer thread.
//! * `store` – the SQLite schema, writes and page reads.
//! * `routes` – the route table (`route` – one row: method, path, access, handler), the router
//!   built from it and the core handlers; `json` – Gin-compatible output; `openapi` –
//!   `/openapi.json`, from the same table.
//! * `metrics` – the `/metrics` counters; `error` – [`CollectorError`] and the API's errors.
//! * `auth` – API keys and scopes (bearer tokens, hashed, constant-time); `keys` – their admin
//!   routes; `query` – range, latest-per-key and delete queries; `kv` – the KV store; `live` –
//!   WebSocket and SSE feeds; `ops` – store writes other than inserts, run by the writer.
#![doc = include_str!("collector/reference.md")]

mod body;
mod config;
mod data;
mod error;
mod event;
mod json;
mod metrics;
mod openapi;
#[cfg(test)]
mod parser_props;
mod pipeline;
mod route;
mod routes;
mod serve;
mod server;
mod store;
mod target;
mod time_fmt;
mod values;
mod writer;

// API keys, queries, the KV store and live feeds.
mod auth;
mod keys;
mod kv;
mod live;
mod ops;
mod query;

pub use self::config::{AckMode, CollectorBuilder, MetricsPipeline, Synchronous};
pub use self::error::CollectorError;
pub use self::server::{Collector, ShutdownHandle};
