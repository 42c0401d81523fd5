//! [`SqliteDriver`]: embedded SQLite (rusqlite, bundled) with JSON1 upserts.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params_from_iter};

use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::stats::error::{DriverError, DriverErrorKind};
use crate::stats::keys::{IdentifierMode, Identity, RowId, at_text};
use crate::stats::value::{Number, Value, Values};

/// Fields per upsert statement (two bound arguments each; SQLite allows 1000 function args).
const FIELDS_PER_STATEMENT: usize = 64;
/// Rows per read query.
const ROWS_PER_READ: usize = 200;

/// The metrics-store driver for embedded SQLite.
///
/// * Schema (by [`setup`](Driver::setup), `CREATE TABLE IF NOT EXISTS`): `data` holds the
///   packed flat JSON object; the identity columns follow the [`IdentifierMode`] (spec §16.1):
///   Full `key` (primary key); Partial `key, at`; Separated `key, granularity, at`. `at` is
///   RFC 3339 UTC text with whole seconds (`2025-01-15T10:00:00Z`); rows written by older
///   clients with `.000000Z` are found too. A `<table>_batches` table records the highest
///   batch seq applied per writer (idempotent retries).
/// * Writes: one `IMMEDIATE` transaction per batch; per row one atomic upsert
///   (`INSERT … ON CONFLICT DO UPDATE SET data = json_set(data, '$."field"', …)`) with every
///   field path quoted (so `meta.duration` is one flat field, unlike upstream) and every value
///   bound as a parameter. Increments keep integers integral; a non-numeric stored value
///   counts as 0; an increment whose sum would leave the range of `f64` leaves the stored value
///   as it was.
/// * The connection runs in WAL mode with `synchronous=NORMAL` and a 5 s busy timeout; calls
///   run on tokio's blocking pool.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use accrue::{Driver, IdentifierMode, SqliteDriver};
/// let driver = SqliteDriver::in_memory("trifle_stats", IdentifierMode::Full).unwrap();
/// driver.setup().await.unwrap();
/// assert_eq!(driver.description(), "SQLiteDriver(J)");
/// # }
/// ```
pub struct SqliteDriver {
    conn: Arc<Mutex<Connection>>,
    table: String,
    mode: IdentifierMode,
}

impl SqliteDriver {
    /// Opens (creating if needed) the database file at `path`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::Rejected`] for an invalid table name (letters, digits, `_`, not
    /// starting with a digit, at most 54 characters); [`DriverErrorKind::Connection`] if the
    /// file cannot be opened.
    pub fn open(
        path: impl AsRef<Path>,
        table: &str,
        mode: IdentifierMode,
    ) -> Result<Self, DriverError> {
        validate_table(table)?;
        let conn = Connection::open(path).map_err(map_err)?;
        Self::configure(conn, table, mode)
    }

    /// A private in-memory database (gone when the driver is dropped).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory(table: &str, mode: IdentifierMode) -> Result<Self, DriverError> {
        validate_table(table)?;
        let conn = Connection::open_in_memory().map_err(map_err)?;
        Self::configure(conn, table, mode)
    }

    fn configure(conn: Connection, table: &str, mode: IdentifierMode) -> Result<Self, DriverError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            table: table.to_owned(),
            mode,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DriverError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock()))
            .await
            .map_err(|e| {
                DriverError::new(DriverErrorKind::Other, "SQLite worker failed").with_source(e)
            })?
    }

    fn id_columns(mode: IdentifierMode) -> &'static [&'static str] {
        match mode {
            IdentifierMode::Full => &["key"],
            IdentifierMode::Partial => &["key", "at"],
            IdentifierMode::Separated => &["key", "granularity", "at"],
        }
    }

    fn id_params(row: &RowId, mode: IdentifierMode) -> Vec<Sql> {
        match row.identity(mode, None) {
            Identity::Full { key } => vec![Sql::Text(key)],
            Identity::Partial { key, at } => vec![Sql::Text(key), Sql::Text(at_text(at))],
            Identity::Separated {
                key,
                granularity,
                at,
            } => vec![
                Sql::Text(key),
                Sql::Text(granularity),
                Sql::Text(at_text(at)),
            ],
        }
    }
}

fn validate_table(table: &str) -> Result<(), DriverError> {
    let ok = !table.is_empty()
        && table.len() <= 54
        && !table.starts_with(|c: char| c.is_ascii_digit())
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DriverError::rejected(format!(
            "invalid table name {table:?}: use letters, digits and '_' (not first), at most 54 characters"
        )))
    }
}

fn map_err(e: rusqlite::Error) -> DriverError {
    let kind = match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory,
        ) => DriverErrorKind::Connection,
        _ => DriverErrorKind::Rejected,
    };
    DriverError::new(kind, "SQLite").with_source(e)
}

fn number_sql(n: Number) -> Sql {
    match n {
        Number::Int(i) => Sql::Integer(i),
        Number::Float(f) => Sql::Real(f),
    }
}

/// The largest finite `f64`, as SQL text.
const F64_MAX: &str = "1.7976931348623157e308";

/// `data`, or `{}` when the stored text is not valid JSON.
const DATA: &str = "(CASE WHEN json_valid(data) THEN data ELSE '{}' END)";

fn upsert_sql(table: &str, mode: IdentifierMode, inc: bool, fields: usize) -> String {
    let cols = SqliteDriver::id_columns(mode);
    let mut sql = format!(
        "INSERT INTO \"{table}\" ({}, data) VALUES (",
        cols.join(", ")
    );
    for i in 0..cols.len() {
        sql.push_str(&format!("?{}, ", i + 1));
    }
    let data_param = cols.len() + 1;
    sql.push_str(&format!(
        "json(?{data_param})) ON CONFLICT ({}) DO UPDATE SET data = json_set({DATA}",
        cols.join(", ")
    ));
    for i in 0..fields {
        let p = data_param + 1 + 2 * i;
        let v = p + 1;
        if inc {
            // An increment whose sum would leave the range of a 64-bit float keeps the stored
            // value: JSON has no infinity, and one would make the whole row unreadable.
            let old = format!(
                "(CASE WHEN json_type({DATA}, ?{p}) IN ('integer', 'real') \
                 THEN json_extract({DATA}, ?{p}) ELSE 0 END)"
            );
            sql.push_str(&format!(
                ", ?{p}, (CASE WHEN {old} + ?{v} BETWEEN -{F64_MAX} AND {F64_MAX} \
                 THEN {old} + ?{v} ELSE {old} END)"
            ));
        } else {
            sql.push_str(&format!(", ?{p}, json(?{v})"));
        }
    }
    sql.push(')');
    sql
}

/// `$."name"`: the whole stored name is one key (names never contain `"` or `\`: the packer
/// encodes or refuses them).
fn json_path(name: &str) -> String {
    format!("$.\"{name}\"")
}

fn apply_row(
    conn: &Connection,
    table: &str,
    mode: IdentifierMode,
    update: &RowUpdate,
) -> Result<(), DriverError> {
    let ids = SqliteDriver::id_params(&update.row, mode);
    let (incs, sets): (Vec<_>, Vec<_>) = update
        .fields
        .iter()
        .partition(|(_, op)| matches!(op, FieldOp::Inc(_)));
    for (inc, group) in [(true, incs), (false, sets)] {
        for chunk in group.chunks(FIELDS_PER_STATEMENT) {
            let sql = upsert_sql(table, mode, inc, chunk.len());
            let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
            let mut initial = serde_json::Map::new();
            let mut params = ids.clone();
            params.push(Sql::Null); // placeholder for the initial object
            for (name, op) in chunk {
                params.push(Sql::Text(json_path(name)));
                match op {
                    FieldOp::Inc(n) => {
                        initial.insert(name.clone(), Value::from(*n).to_json());
                        params.push(number_sql(*n));
                    }
                    FieldOp::Set(v) => {
                        let json = v.to_json();
                        params.push(Sql::Text(json.to_string()));
                        initial.insert(name.clone(), json);
                    }
                }
            }
            params[ids.len()] = Sql::Text(serde_json::Value::Object(initial).to_string());
            stmt.execute(params_from_iter(params)).map_err(map_err)?;
        }
    }
    Ok(())
}

fn parse_data(text: &str) -> Values {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
        }
        _ => Values::new(),
    }
}

/// The identity a stored row is matched back by (`at` normalised to whole seconds).
fn row_key(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| p.replace(".000000Z", "Z"))
        .collect::<Vec<_>>()
        .join("\u{1}")
}

impl Driver for SqliteDriver {
    fn description(&self) -> String {
        format!("SQLiteDriver({})", self.mode.letter())
    }

    fn mode(&self) -> IdentifierMode {
        self.mode
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        let table = self.table.clone();
        let cols = match self.mode {
            IdentifierMode::Full => "key TEXT NOT NULL PRIMARY KEY",
            IdentifierMode::Partial => "key TEXT NOT NULL, at TEXT NOT NULL",
            IdentifierMode::Separated => {
                "key TEXT NOT NULL, granularity TEXT NOT NULL, at TEXT NOT NULL"
            }
        };
        let pk = match self.mode {
            IdentifierMode::Full => String::new(),
            m => format!(", PRIMARY KEY ({})", Self::id_columns(m).join(", ")),
        };
        Box::pin(self.blocking(move |conn| {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{table}\" ({cols}, data TEXT NOT NULL DEFAULT '{{}}'{pk});
                 CREATE TABLE IF NOT EXISTS \"{table}_batches\" (writer TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL);"
            ))
            .map_err(map_err)
        }))
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        let table = self.table.clone();
        let mode = self.mode;
        let batch = batch.clone();
        Box::pin(self.blocking(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let applied: Option<i64> = tx
                .query_row(
                    &format!("SELECT seq FROM \"{table}_batches\" WHERE writer = ?1"),
                    [&batch.id.writer],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            let seq = i64::try_from(batch.id.seq).unwrap_or(i64::MAX);
            if applied.is_some_and(|a| a >= seq) {
                return tx.commit().map_err(map_err);
            }
            for update in &batch.rows {
                apply_row(&tx, &table, mode, update)?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO \"{table}_batches\" (writer, seq) VALUES (?1, ?2)
                     ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq"
                ),
                rusqlite::params![batch.id.writer, seq],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)
        }))
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        let table = self.table.clone();
        let mode = self.mode;
        let rows = rows.to_vec();
        Box::pin(self.blocking(move |conn| {
            let cols = Self::id_columns(mode);
            let mut found: HashMap<String, Values> = HashMap::new();
            for chunk in rows.chunks(ROWS_PER_READ) {
                let mut params: Vec<Sql> = Vec::new();
                let mut tuples = Vec::new();
                for row in chunk {
                    let ids = Self::id_params(row, mode);
                    let variants = if mode == IdentifierMode::Full { 1 } else { 2 };
                    for v in 0..variants {
                        let mut ids = ids.clone();
                        if v == 1
                            && let Some(Sql::Text(at)) = ids.last_mut()
                        {
                            *at = at.replace('Z', ".000000Z");
                        }
                        let start = params.len();
                        params.extend(ids);
                        let marks: Vec<String> = (start..params.len())
                            .map(|i| format!("?{}", i + 1))
                            .collect();
                        tuples.push(format!("({})", marks.join(", ")));
                    }
                }
                let sql = if mode == IdentifierMode::Full {
                    let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
                    format!(
                        "SELECT key, data FROM \"{table}\" WHERE key IN ({})",
                        marks.join(", ")
                    )
                } else {
                    format!(
                        "SELECT {cols}, data FROM \"{table}\" WHERE ({cols}) IN (VALUES {})",
                        tuples.join(", "),
                        cols = cols.join(", ")
                    )
                };
                let mut stmt = conn.prepare(&sql).map_err(map_err)?;
                let mut result = stmt.query(params_from_iter(params)).map_err(map_err)?;
                while let Some(r) = result.next().map_err(map_err)? {
                    let mut parts = Vec::with_capacity(cols.len());
                    for i in 0..cols.len() {
                        parts.push(r.get::<_, String>(i).map_err(map_err)?);
                    }
                    let data: String = r.get(cols.len()).map_err(map_err)?;
                    found.insert(row_key(&parts), parse_data(&data));
                }
            }
            Ok(rows
                .iter()
                .map(|row| {
                    let parts: Vec<String> = Self::id_params(row, mode)
                        .into_iter()
                        .map(|p| match p {
                            Sql::Text(t) => t,
                            _ => String::new(),
                        })
                        .collect();
                    found.get(&row_key(&parts)).cloned().unwrap_or_default()
                })
                .collect())
        }))
    }
}

impl fmt::Debug for SqliteDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDriver")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
