//! Windowed counters and rate limits: fixed-memory event counts over clock-aligned time
//! windows, queries, limits, reservations, merge, and persistence.
//!
//! * `calendar` – [`Window`] and the store's calendar (over [`crate::time::Calendar`]).
//! * `ring` – one key's contiguous bucket array and its integer-indexed rings.
//! * `store` – [`WindowStore`]: the sharded key map, records, merge, export/import.
//! * `builder` – [`WindowStoreBuilder`].
//! * `query` – read-only queries.
//! * `record` – [`Record`]: what one record call records.
//! * `limit` – [`Limiter`], [`Schedule`], [`Reservation`].
//! * `key` – key names, short ones inline ([`KeyName`]).
//! * `snapshot` – [`Snapshot`] and conversion between configurations.
//! * `clock` – [`Clock`], [`SystemClock`], [`TestClock`].
//! * `persist` – storage backends and formats (feature `window-persist`).
#![doc = include_str!("window/reference.md")]

mod builder;
mod calendar;
mod clock;
mod error;
mod key;
mod limit;
#[cfg(feature = "window-persist")]
mod persist;
mod query;
mod record;
mod ring;
mod shards;
mod snapshot;
mod store;

#[cfg(all(test, accrue_loom))]
mod loom_tests;

pub(crate) use self::ring::MAX_BUCKETS;

pub use self::builder::WindowStoreBuilder;
pub use self::calendar::Window;
pub use self::clock::{Clock, SystemClock, TestClock};
pub use self::error::{LimitExceeded, StorageError, WindowError};
pub use self::key::KeyName;
pub use self::limit::{Limiter, Reservation, Rule, Schedule, Usage};
#[cfg(feature = "sqlite")]
pub use self::persist::SqliteStorage;
#[cfg(feature = "window-persist")]
pub use self::persist::{
    BinaryFormat, FileStorage, Format, JsonFormat, MemoryStorage, Storage, StorageWrite,
};
pub use self::query::{
    DeltaQuery, DeltaRangeQuery, MultiQuery, MultiRangeQuery, Query, RangeQuery, RatioQuery,
};
pub use self::record::Record;
pub use self::snapshot::Snapshot;
pub use self::store::WindowStore;
