//! The [`Driver`] trait every storage backend implements, and the batch it writes.
//!
//! * `memory` – [`MemoryDriver`], in-process (the reference driver).
//! * `sqlite` – [`SqliteDriver`] on embedded SQLite (feature `sqlite`).
//! * `postgres`, `mysql`, `redis`, `mongodb` – the server drivers (features of the same names).
//! * `connect` – [`connect_driver`]: any driver from a URL; helpers the server drivers share.

mod connect;
mod memory;
#[cfg(feature = "mongodb")]
mod mongodb;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use self::connect::{DEFAULT_TABLE, connect_driver};
pub use self::memory::MemoryDriver;
#[cfg(feature = "mongodb")]
pub use self::mongodb::{MongoDriver, MongoDriverBuilder};
#[cfg(feature = "mysql")]
pub use self::mysql::MysqlDriver;
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresDriver;
#[cfg(feature = "redis")]
pub use self::redis::{RedisDriver, RedisDriverBuilder};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteDriver;

use super::error::DriverError;
use super::keys::{IdentifierMode, RowId};
use super::value::{Number, Value, Values};

/// The boxed future a [`Driver`] method returns (`Send`, so `MetricsStore` works on any tokio
/// runtime).
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// A storage backend of the metrics store.
///
/// A driver stores one flat data map per [`RowId`] (metric key, granularity, bucket start),
/// laid out by its [`IdentifierMode`]. Field names are the packer's stored names (dotted
/// paths, already encoded); the driver treats them as opaque strings — never as nested paths.
///
/// # Contract
///
/// * [`write`](Self::write) applies a whole [`WriteBatch`] atomically where the database
///   allows (one transaction, one pipeline, one bulk write: one round trip per flush), and
///   **at most once per [`BatchId`]**: a batch whose `seq` is not greater than the highest seq
///   already applied for its `writer` must be acknowledged without changing anything. The
///   store writes the batches of one writer strictly in `seq` order and retries a failed batch
///   (unchanged, same id) before any later one, so keeping the highest applied seq per writer,
///   in the same transaction as the data, is enough. This makes a retry after a lost
///   acknowledgement safe.
/// * [`applied`](Self::applied) reads that mark back: the highest `seq` of a writer whose
///   batch is stored (`None` when nothing is stored for the writer). It never goes down: a
///   skipped batch leaves it as it was. A store restarted under the same writer id resumes
///   above it. Where the data and the mark commit in one transaction (the SQL drivers, Redis,
///   the in-memory driver), every batch at or below the mark is stored in full and none above
///   it is stored at all. A driver without a transaction spanning both (MongoDB) writes the
///   mark after the data: a batch interrupted between the two can be stored (in full or in
///   part) above the mark. Re-sending that batch under the same id and with the same rows
///   then completes it exactly, since each document skips a batch it already has; a batch
///   with other content under that seq, or the same rows under another writer id, would add
///   them twice to the documents that have it.
/// * [`FieldOp::Inc`] adds to the stored number, creating the field (and the row) at 0; a
///   field holding a non-number is treated as 0. Integers stay integers. An increment whose
///   sum would leave the range of `f64` leaves the stored value as it was (and the rest of the
///   batch is written): JSON has no infinity. A stored number a reader cannot represent reads
///   as `null`, never making the rest of its row unreadable.
///   [`FieldOp::Set`] overwrites the field. Fields a batch does not mention are untouched.
/// * [`read`](Self::read) returns one map per requested row, in order; a missing row (or one
///   whose data cannot be decoded) is an empty map.
/// * Errors that retrying can fix (connection lost, database busy) are
///   [`DriverErrorKind::Connection`](crate::metrics::DriverErrorKind::Connection): the buffer keeps the
///   batch and retries it.
///
/// Every driver runs the same conformance suite (`tests/stats_conformance/`).
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// `Name(J|P|S)`, e.g. `SQLiteDriver(J)`.
    fn description(&self) -> String;

    /// The identity layout.
    fn mode(&self) -> IdentifierMode;

    /// Creates the schema (tables, indexes) if it does not exist. Idempotent.
    fn setup(&self) -> DriverFuture<'_, ()>;

    /// Applies a batch (see the contract above).
    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()>;

    /// Reads the stored flat maps of `rows`, in order (empty map for a missing row).
    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>>;

    /// The highest batch `seq` of `writer` this store has applied (`None`: nothing is stored
    /// for that writer). See the contract above for what the mark covers.
    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>>;
}

/// What to do with one stored field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldOp {
    /// Add to the stored number (missing or non-numeric counts as 0).
    Inc(Number),
    /// Overwrite with this value (a scalar or an opaque array).
    Set(Value),
}

impl FieldOp {
    /// Folds a later operation on the same field into this one, so that applying the result
    /// equals applying both in order. A later increment whose sum would leave the range of
    /// `f64` is dropped, as the drivers drop one that would take a stored value out of it.
    pub(crate) fn merge(&mut self, later: FieldOp) {
        let in_range = |n: Number| n.as_f64().is_finite().then_some(n);
        *self = match (std::mem::replace(self, FieldOp::Inc(Number::Int(0))), later) {
            (FieldOp::Inc(a), FieldOp::Inc(b)) => FieldOp::Inc(in_range(a + b).unwrap_or(a)),
            (_, FieldOp::Set(v)) => FieldOp::Set(v),
            (FieldOp::Set(v), FieldOp::Inc(b)) => match v.as_number() {
                Some(a) => match in_range(a + b) {
                    Some(sum) => FieldOp::Set(sum.into()),
                    None => FieldOp::Set(v),
                },
                None => FieldOp::Set(b.into()),
            },
        };
    }
}

/// The changes to one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowUpdate {
    /// Which row.
    pub row: RowId,
    /// Stored field name → operation, each name at most once, sorted by name.
    pub fields: Vec<(String, FieldOp)>,
}

/// Identifies a batch for idempotent retries: the writing store instance and a sequence
/// number that increases by one per batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// The writer: random per [`MetricsStore`](crate::metrics::MetricsStore) instance unless configured
    /// ([`MetricsStoreBuilder::writer_id`](crate::metrics::MetricsStoreBuilder::writer_id)).
    pub writer: String,
    /// Starts at 1.
    pub seq: u64,
}

/// Everything one flush (or one unbuffered call) writes: row updates, system rows included.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBatch {
    /// The batch's identity.
    pub id: BatchId,
    /// The rows, in first-write order; each row at most once... unless the buffer's
    /// aggregation is off, in which case one row per call.
    pub rows: Vec<RowUpdate>,
}

impl WriteBatch {
    /// Number of row updates.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch has no row updates.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(first: FieldOp, later: FieldOp) -> FieldOp {
        let mut op = first;
        op.merge(later);
        op
    }

    #[test]
    fn merging_keeps_sums_within_f64_and_drops_an_overflowing_increment() {
        let big = Number::Float(1e308);
        assert_eq!(
            merged(FieldOp::Inc(Number::Int(2)), FieldOp::Inc(Number::Int(3))),
            FieldOp::Inc(Number::Int(5))
        );
        assert_eq!(
            merged(FieldOp::Inc(big), FieldOp::Inc(big)),
            FieldOp::Inc(big)
        );
        assert_eq!(
            merged(
                FieldOp::Inc(Number::Float(-1e308)),
                FieldOp::Inc(Number::Float(-1e308))
            ),
            FieldOp::Inc(Number::Float(-1e308))
        );
        assert_eq!(
            merged(FieldOp::Set(Value::Float(1e308)), FieldOp::Inc(big)),
            FieldOp::Set(Value::Float(1e308))
        );
        assert_eq!(
            merged(FieldOp::Set(Value::Int(1)), FieldOp::Inc(Number::Int(2))),
            FieldOp::Set(Value::Int(3))
        );
        assert_eq!(
            merged(FieldOp::Inc(big), FieldOp::Set(Value::Int(7))),
            FieldOp::Set(Value::Int(7))
        );
    }
}
