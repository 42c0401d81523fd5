//! [`SqliteStorage`]: counters in one SQLite table.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::storage::{Storage, StorageWrite};
use crate::window::error::StorageError;

/// The schema this build writes; a newer one is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

/// Stores counters in an SQLite database (bundled SQLite, through rusqlite), table
/// `accrue_window_counters (key TEXT PRIMARY KEY, data BLOB)`, with the schema version in
/// `accrue_window_meta`.
///
/// The database runs in WAL mode with `synchronous = FULL`: a
/// [`persist`](crate::window::WindowStore::persist) is one transaction, durable when it returns. The
/// tables can share a database file with anything else.
///
/// # Examples
///
/// ```
/// use accrue::window::{SqliteStorage, WindowStore};
///
/// let store = WindowStore::builder().with_storage(SqliteStorage::open_in_memory()?).build()?;
/// store.record("e");
/// store.persist()?;
/// assert!(!store.is_dirty());
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Connection,
}

fn err(context: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError::new(format!("sqlite: {context}"), e)
}

impl SqliteStorage {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    ///
    /// The database cannot be opened or initialised, or was written by a newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let conn = Connection::open(path.as_ref()).map_err(err("cannot open database"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("cannot enable WAL"))?;
        Self::init(conn)
    }

    /// A private in-memory database (for tests).
    ///
    /// # Errors
    ///
    /// SQLite cannot initialise it.
    pub fn open_in_memory() -> Result<Self, StorageError> {
        Self::init(Connection::open_in_memory().map_err(err("cannot open database"))?)
    }

    fn init(conn: Connection) -> Result<Self, StorageError> {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("cannot set synchronous"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(err("cannot set busy timeout"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS accrue_window_meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS accrue_window_counters (key TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
             INSERT OR IGNORE INTO accrue_window_meta (name, value) VALUES ('schema_version', 1);",
        )
        .map_err(err("cannot create tables"))?;
        let version: i64 = conn
            .query_row(
                "SELECT value FROM accrue_window_meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(err("cannot read schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::msg(format!(
                "sqlite: schema version {version} is newer than this build's {SCHEMA_VERSION}"
            )));
        }
        Ok(Self { conn })
    }
}

impl Storage for SqliteStorage {
    fn load(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM accrue_window_counters WHERE key = ?1")
            .map_err(err("cannot prepare load"))?;
        stmt.query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(err("cannot load"))
    }

    fn keys(&mut self) -> Result<Vec<String>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM accrue_window_counters")
            .map_err(err("cannot prepare key listing"))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(err("cannot list keys"))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(err("cannot list keys"))
    }

    fn write(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("cannot begin"))?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO accrue_window_counters (key, data) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET data = excluded.data",
                )
                .map_err(err("cannot prepare put"))?;
            let mut del = tx
                .prepare_cached("DELETE FROM accrue_window_counters WHERE key = ?1")
                .map_err(err("cannot prepare delete"))?;
            for w in batch {
                match *w {
                    StorageWrite::Put { key, value } => {
                        put.execute(params![key, value])
                            .map_err(err("cannot put"))?;
                    }
                    StorageWrite::Delete { key } => {
                        del.execute(params![key]).map_err(err("cannot delete"))?;
                    }
                }
            }
        }
        tx.commit().map_err(err("cannot commit"))
    }
}
