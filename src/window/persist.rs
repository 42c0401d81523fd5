//! Persistence of windowed counters (feature `window-persist`; SQLite with `sqlite`,
//! auto-persist with `window-tokio`).
//!
//! * `storage` – the [`Storage`] trait and [`MemoryStorage`].
//! * `file` – [`FileStorage`], an append-only checksummed log, one fsync per persist.
//! * `sqlite` – [`SqliteStorage`], one table in WAL mode with `synchronous = FULL`.
//! * `format` – [`BinaryFormat`] (compact, default) and [`JsonFormat`].
//! * `engine` – persist / persist_all / compact, lazy loads, the builder options.
//! * `auto` – the tokio auto-persist task.

#[cfg(all(feature = "window-tokio", not(accrue_loom)))]
mod auto;
mod engine;
mod file;
mod format;
#[cfg(feature = "sqlite")]
mod sqlite;
mod storage;

#[cfg(all(feature = "window-tokio", not(accrue_loom)))]
pub(crate) use self::auto::AutoPersist;
pub(crate) use self::engine::{PersistConfig, Persistence};
pub use self::file::FileStorage;
pub use self::format::{BinaryFormat, Format, JsonFormat};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStorage;
pub use self::storage::{MemoryStorage, Storage, StorageWrite};
