//! The metrics store (a port of Trifle Stats): Track / Assert / Values over time buckets,
//! buffered writes on the core [`Aggregator`](crate::Aggregator), pluggable drivers.
//!
//! * `value` – [`Value`] / [`Number`]: the typed tree, exact integers.
//! * `packer` – tree ⇄ flat dotted field names ([`PathCodec`]).
//! * `keys` – [`IdentifierMode`], [`RowId`], storage identities.
//! * `buffer` – pending updates merged in an aggregator, drained per flush.
//! * `store` – [`MetricsStore`], its builder, the flush lane, [`BlockingMetricsStore`].
//! * `driver` – the [`Driver`] trait, [`WriteBatch`], and the drivers.
//! * `error` – [`MetricsError`], [`ConfigError`], [`DriverError`], [`ValueError`].
#![doc = include_str!("metrics/reference.md")]

mod buffer;
mod driver;
mod error;
mod keys;
mod packer;
mod store;
mod value;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::driver::SqliteDriver;
pub use self::driver::{
    BatchId, Driver, DriverFuture, FieldOp, MemoryDriver, RowUpdate, WriteBatch,
};
// Server drivers and the URL constructor.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use self::driver::MysqlDriver;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::driver::PostgresDriver;
pub use self::driver::{DEFAULT_TABLE, connect_driver};
#[cfg(feature = "mongodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongodb")))]
pub use self::driver::{MongoDriver, MongoDriverBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::driver::{RedisDriver, RedisDriverBuilder};

pub use self::error::{ConfigError, DriverError, DriverErrorKind, MetricsError, ValueError};
pub use self::keys::{
    IdentifierMode, Identity, RowId, SEPARATOR, SYSTEM_KEY, UNTRACKED_KEY, UnknownMode, at_text,
};
pub use self::packer::{PathCodec, decode_segment, encode_segment, parse_public_path};
pub(crate) use self::store::{Assembly, Op};
pub use self::store::{
    BlockingMetricsStore, BufferMerge, Buffering, FlushOutcome, FlushTask, MAX_KEY_LEN,
    MetricsStore, MetricsStoreBuilder, Series, SystemTracking,
};
pub use self::value::{Number, Value, Values};
