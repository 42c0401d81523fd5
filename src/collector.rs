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
//!   or `413` stores nothing, and a group that fails to commit is retried whole.
//! * **Bounded.** Body, event count, key, `data` and the ingest queue all have limits; a full
//!   queue answers `503` with `Retry-After` instead of growing.
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
//! * `server` – [`Collector`], [`ShutdownHandle`]: start, graceful stop.
//! * `event` – wire decoding with Go's rules, validation; `time_fmt` – RFC 3339 in and out.
//! * `writer` – the ingest queue and the group-commit writer thread.
//! * `store` – the SQLite schema, writes and page reads.
//! * `routes` – the axum handlers; `json` – Gin-compatible output; `openapi` – `/openapi.json`.
//! * `metrics` – the `/metrics` counters; `error` – [`CollectorError`] and the API's errors.
//! * `auth` – API keys and scopes (bearer tokens, hashed, constant-time); `keys` – their admin
//!   routes; `query` – range, latest-per-key and delete queries; `kv` – the KV store; `live` –
//!   WebSocket and SSE feeds; `ops` – store writes other than inserts, run by the writer.

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

// Issue 8: API keys, queries, the KV store and live feeds.
mod auth;
mod keys;
mod kv;
mod live;
mod ops;
mod query;

pub use self::config::{AckMode, CollectorBuilder, Synchronous};
pub use self::error::CollectorError;
pub use self::server::{Collector, ShutdownHandle};
