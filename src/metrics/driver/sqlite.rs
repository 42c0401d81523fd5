//! [`SqliteDriver`]: embedded SQLite (rusqlite, bundled) with JSON1 upserts.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;
use rusqlite::types::Value as Sql;
use rusqlite::{
    CachedStatement, Connection, ErrorCode, OptionalExtension, TransactionBehavior,
    params_from_iter,
};

use super::connect::{applicable, parse_object};
use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::metrics::error::{DriverError, DriverErrorKind};
use crate::metrics::keys::{IdentifierMode, Identity, RowId, SEPARATOR, at_text};
use crate::metrics::value::{Number, Values};

/// Fields per upsert statement (two bound arguments each; SQLite allows 1000 function args).
const FIELDS_PER_STATEMENT: usize = 64;
/// Rows per read query.
const ROWS_PER_READ: usize = 200;

/// The metrics-store driver for embedded SQLite.
///
/// * Schema (by [`setup`](Driver::setup), `CREATE TABLE IF NOT EXISTS`): `data` holds the
///   packed flat JSON object; the identity columns follow the [`IdentifierMode`]:
///   Full `key` (primary key); Partial `key, at`; Separated `key, granularity, at`. `at` is
///   RFC 3339 UTC text with whole seconds (`2025-01-15T10:00:00Z`); rows written by older
///   clients with `.000000Z` are found too. A `<table>_batches` table records the highest
///   batch seq applied per writer (idempotent retries).
/// * Writes: one `IMMEDIATE` transaction per batch; per row one atomic upsert
///   (`INSERT … ON CONFLICT DO UPDATE SET data = json_set(data, '$."field"', …)`) with every
///   field path quoted (so `meta.duration` is one flat field, unlike upstream) and every value
///   bound as a parameter. Increments keep integers integral; a non-numeric stored value
///   counts as 0; an increment whose sum would leave the range of `f64` leaves the stored value
///   as it was. Each statement shape is prepared once per batch, and rows are written in key
///   order (neighbours in the table's B-tree).
/// * Reads: a stored number beyond the range of `f64` (valid JSON, e.g. `9e999` from an older
///   build) reads as `null`; the rest of its row reads as stored.
/// * The connection runs in WAL mode with `synchronous=NORMAL` and a 5 s busy timeout. Calls
///   run on tokio's blocking pool; a write on a worker of the multi-threaded runtime runs in
///   place instead ([`block_in_place`](tokio::task::block_in_place)), so the batch is not
///   copied.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use accrue::metrics::{Driver, IdentifierMode, SqliteDriver};
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

/// Writes one batch: one `IMMEDIATE` transaction, skipped (but committed) when the writer's
/// mark shows it applied already; the mark advances in the same transaction.
fn write_batch(
    conn: &mut Connection,
    table: &str,
    mode: IdentifierMode,
    batch: &WriteBatch,
) -> Result<(), DriverError> {
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
    {
        // Key order puts each upsert next to the previous one in the table's B-tree (a batch
        // comes in hash order); the sort is stable, so repeats of a row keep their order.
        let mut rows: Vec<&RowUpdate> = batch.rows.iter().collect();
        rows.sort_by(|a, b| a.row.key.cmp(&b.row.key));
        let mut writer = RowWriter::new(&tx, table, mode);
        for update in rows {
            writer.apply(update)?;
        }
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
}

/// Applies row updates inside one transaction: each statement shape (increments or sets, field
/// count) is built and prepared once, and the parameters are written into reused buffers and
/// bound in place.
struct RowWriter<'c> {
    conn: &'c Connection,
    table: &'c str,
    mode: IdentifierMode,
    /// Prepared upserts by (increments?, field count); a batch uses a few shapes.
    statements: Vec<(bool, usize, CachedStatement<'c>)>,
    /// `at_text` of the bucket starts seen (a batch has a few).
    ats: Vec<(Timestamp, String)>,
    key: String,
    granularity: String,
    path: String,
    value: String,
    initial: String,
}

impl<'c> RowWriter<'c> {
    fn new(conn: &'c Connection, table: &'c str, mode: IdentifierMode) -> Self {
        Self {
            conn,
            table,
            mode,
            statements: Vec::new(),
            ats: Vec::new(),
            key: String::new(),
            granularity: String::new(),
            path: String::new(),
            value: String::new(),
            initial: String::new(),
        }
    }

    /// The index of the prepared upsert for `fields` fields, preparing it on first use.
    fn statement(&mut self, inc: bool, fields: usize) -> Result<usize, DriverError> {
        if let Some(i) = self
            .statements
            .iter()
            .position(|(i, f, _)| *i == inc && *f == fields)
        {
            return Ok(i);
        }
        let sql = upsert_sql(self.table, self.mode, inc, fields);
        let stmt = self.conn.prepare_cached(&sql).map_err(map_err)?;
        self.statements.push((inc, fields, stmt));
        Ok(self.statements.len() - 1)
    }

    /// The row's identity into `key` (and `granularity`), as [`RowId::identity`] joins it;
    /// returns the index of `at`'s text (Partial, Separated).
    fn identity(&mut self, row: &RowId) -> usize {
        self.key.clear();
        if self.mode != IdentifierMode::Separated {
            if !row.key.is_empty() {
                self.key.push_str(&row.key);
                self.key.push_str(SEPARATOR);
            }
            let _ = write!(self.key, "{}", row.granularity);
        }
        if self.mode == IdentifierMode::Full {
            let _ = write!(self.key, "{SEPARATOR}{}", row.at.as_second());
            return 0;
        }
        if self.mode == IdentifierMode::Separated {
            self.granularity.clear();
            let _ = write!(self.granularity, "{}", row.granularity);
        }
        match self.ats.iter().position(|(at, _)| *at == row.at) {
            Some(i) => i,
            None => {
                if self.ats.len() >= 64 {
                    self.ats.clear();
                }
                self.ats.push((row.at, at_text(row.at)));
                self.ats.len() - 1
            }
        }
    }

    fn apply(&mut self, update: &RowUpdate) -> Result<(), DriverError> {
        let at = self.identity(&update.row);
        for inc in [true, false] {
            // An increment that cannot be applied (not finite) leaves the stored value as is.
            let group = |(_, op): &&(String, FieldOp)| match op {
                FieldOp::Inc(_) => inc && applicable(op),
                FieldOp::Set(_) => !inc,
            };
            let mut left = update.fields.iter().filter(group).count();
            let mut fields = update.fields.iter().filter(group);
            while left > 0 {
                let n = left.min(FIELDS_PER_STATEMENT);
                left -= n;
                let s = self.statement(inc, n)?;
                let stmt = &mut self.statements[s].2;
                let ids = match self.mode {
                    IdentifierMode::Full => {
                        stmt.raw_bind_parameter(1, self.key.as_str())
                            .map_err(map_err)?;
                        1
                    }
                    IdentifierMode::Partial => {
                        stmt.raw_bind_parameter(1, self.key.as_str())
                            .map_err(map_err)?;
                        stmt.raw_bind_parameter(2, self.ats[at].1.as_str())
                            .map_err(map_err)?;
                        2
                    }
                    IdentifierMode::Separated => {
                        stmt.raw_bind_parameter(1, update.row.key.as_str())
                            .map_err(map_err)?;
                        stmt.raw_bind_parameter(2, self.granularity.as_str())
                            .map_err(map_err)?;
                        stmt.raw_bind_parameter(3, self.ats[at].1.as_str())
                            .map_err(map_err)?;
                        3
                    }
                };
                // The object a new row starts with: every field of the statement at its value.
                let initial = &mut self.initial;
                initial.clear();
                initial.push('{');
                for (j, (name, op)) in fields.by_ref().take(n).enumerate() {
                    let p = ids + 2 + 2 * j;
                    if j > 0 {
                        initial.push(',');
                    }
                    push_json_string(initial, name);
                    initial.push(':');
                    // `$."name"`: the whole stored name is one key (names never contain `"`
                    // or `\`: the packer encodes or refuses them).
                    self.path.clear();
                    let _ = write!(self.path, "$.\"{name}\"");
                    stmt.raw_bind_parameter(p, self.path.as_str())
                        .map_err(map_err)?;
                    match op {
                        FieldOp::Inc(Number::Int(i)) => {
                            stmt.raw_bind_parameter(p + 1, *i).map_err(map_err)?;
                            let _ = write!(initial, "{i}");
                        }
                        FieldOp::Inc(Number::Float(f)) => {
                            stmt.raw_bind_parameter(p + 1, *f).map_err(map_err)?;
                            match serde_json::Number::from_f64(*f) {
                                Some(n) => {
                                    let _ = write!(initial, "{n}");
                                }
                                None => initial.push_str("null"),
                            }
                        }
                        FieldOp::Set(v) => {
                            self.value.clear();
                            let _ = write!(self.value, "{}", v.to_json());
                            stmt.raw_bind_parameter(p + 1, self.value.as_str())
                                .map_err(map_err)?;
                            initial.push_str(&self.value);
                        }
                    }
                }
                initial.push('}');
                stmt.raw_bind_parameter(ids + 1, initial.as_str())
                    .map_err(map_err)?;
                stmt.raw_execute().map_err(map_err)?;
            }
        }
        Ok(())
    }
}

/// `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
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
        use tokio::runtime::{Handle, RuntimeFlavor};
        let mode = self.mode;
        Box::pin(async move {
            match Handle::try_current().map(|h| h.runtime_flavor()) {
                // The worker hands its other tasks to another thread while this one writes.
                Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| {
                    write_batch(&mut self.conn.lock(), &self.table, mode, batch)
                }),
                Ok(_) => {
                    let table = self.table.clone();
                    let batch = batch.clone();
                    self.blocking(move |conn| write_batch(conn, &table, mode, &batch))
                        .await
                }
                Err(_) => write_batch(&mut self.conn.lock(), &self.table, mode, batch),
            }
        })
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
                    found.insert(row_key(&parts), parse_object(&data));
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

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        let table = self.table.clone();
        let writer = writer.to_owned();
        Box::pin(self.blocking(move |conn| {
            let seq: Option<i64> = conn
                .query_row(
                    &format!("SELECT seq FROM \"{table}_batches\" WHERE writer = ?1"),
                    [&writer],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_writer_identities_are_the_rows_identities() {
        let conn = Connection::open_in_memory().unwrap();
        for mode in IdentifierMode::ALL {
            let mut writer = RowWriter::new(&conn, "t", mode);
            for (key, gran, at) in [
                ("events", "1h", "2025-01-15T10:00:00Z"),
                ("a::b.c", "1mo", "1969-12-01T00:00:00Z"),
                ("", "1w", "2025-01-13T00:00:00Z"),
                ("events", "1h", "2025-01-15T10:00:00Z"),
            ] {
                let row = RowId::new(key, gran.parse().unwrap(), at.parse().unwrap());
                let at = writer.identity(&row);
                let mine: Vec<String> = match mode {
                    IdentifierMode::Full => vec![writer.key.clone()],
                    IdentifierMode::Partial => vec![writer.key.clone(), writer.ats[at].1.clone()],
                    IdentifierMode::Separated => vec![
                        row.key.clone(),
                        writer.granularity.clone(),
                        writer.ats[at].1.clone(),
                    ],
                };
                let expected: Vec<String> = SqliteDriver::id_params(&row, mode)
                    .into_iter()
                    .map(|p| match p {
                        Sql::Text(t) => t,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(mine, expected, "{mode:?}");
            }
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        for s in ["plain", "q\"b\\s", "tab\tnl\n\u{1}", "é€"] {
            out.clear();
            push_json_string(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
