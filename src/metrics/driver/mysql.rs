//! [`MysqlDriver`]: MySQL / MariaDB (sqlx) with a `JSON` data column; a batch is one
//! `INSERT … SELECT FROM JSON_TABLE(…) ON DUPLICATE KEY UPDATE data = JSON_SET(…)` statement.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

use super::connect::{coalesce_rows, parse_object, sqlx_error, validate_name};
use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::metrics::error::DriverError;
use crate::metrics::keys::{IdentifierMode, RowId};
use crate::metrics::value::{Number, Value, Values};

/// SQLSTATEs worth retrying: connection exceptions, deadlocks / serialization failures.
const RETRYABLE: &[&str] = &["08*", "40001"];

/// Server error numbers worth retrying: lock wait timeout, deadlock, too many connections,
/// server shutdown, connection killed, query interrupted, server gone / connection lost.
const RETRYABLE_NUMBERS: &[u16] = &[1205, 1213, 1040, 1053, 1927, 1317, 2006, 2013];

fn mysql_error(what: &str, e: sqlx::Error) -> DriverError {
    if let sqlx::Error::Database(db) = &e
        && let Some(m) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        && RETRYABLE_NUMBERS.contains(&m.number())
    {
        return DriverError::new(
            crate::metrics::error::DriverErrorKind::Connection,
            what.to_owned(),
        )
        .with_source(e);
    }
    sqlx_error(what, e, RETRYABLE)
}

/// The metrics-store driver for MySQL 8 and MariaDB 10.6+.
///
/// * Schema (by [`setup`](Driver::setup), `CREATE TABLE IF NOT EXISTS`), as upstream:
///   `` `data` JSON NOT NULL `` holds the packed flat object; identity columns by
///   [`IdentifierMode`]: Full `` `key` VARCHAR(255) `` (primary key); Partial `key, at
///   DATETIME(6)`; Separated `key, granularity VARCHAR(255), at DATETIME(6)`; `at` in UTC. The
///   table uses `utf8mb4_bin`, so keys are compared exactly (`Events` ≠ `events`). A
///   `<table>_batches (writer, seq)` table records the highest batch applied per writer.
/// * Writes: one transaction per batch with **one data statement**: the batch goes as one
///   bound JSON document, `JSON_TABLE` turns it into one source row per (row, field), and
///   `INSERT … SELECT … ON DUPLICATE KEY UPDATE data = JSON_SET(data, '$."field"', …)` applies
///   them in order under the row locks (atomic, no read-merge-write). Field paths are quoted
///   (`meta.duration` stays one flat field) and built from bound values, never SQL text.
///   Increments: integer + integer is exact (`DECIMAL(65,0)`, so integers stay integers);
///   anything fractional is summed as an exact `DECIMAL(65,30)` and stored with its trailing
///   zeros trimmed (`0.1 + 0.2` is `0.3`); magnitudes beyond 10^30 fall back to `DOUBLE`; a
///   stored non-number counts as 0; an increment whose sum would leave the range of `f64`
///   leaves the stored value as it was. Rows are written in a fixed order so that concurrent
///   writers never deadlock on each other.
/// * Batches are idempotent ([`BatchId`](crate::metrics::BatchId)): the data statement only runs if
///   the writer's mark is below the batch seq, and the mark advances in the same transaction.
/// * Reads: one join of the requested identities (`JSON_TABLE`) with the table. A stored
///   number beyond the range of `f64` reads as `null`; the rest of its row reads as stored.
/// * Errors: lost connections, deadlocks, lock timeouts and shutdowns are
///   [`Connection`](crate::metrics::DriverErrorKind::Connection); a write that fails that way is
///   retried once on a fresh connection before reporting.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use accrue::metrics::{Driver, IdentifierMode, MysqlDriver};
///
/// let driver = MysqlDriver::connect(
///     "mysql://root@127.0.0.1:3306/test",
///     "trifle_stats",
///     IdentifierMode::Separated,
/// )
/// .await?;
/// driver.setup().await?;
/// assert_eq!(driver.description(), "MySQLDriver(S)");
/// # Ok(()) }
/// ```
pub struct MysqlDriver {
    pool: MySqlPool,
    table: String,
    batches: String,
    write_sql: String,
    mark_sql: String,
    read_sql: String,
    mode: IdentifierMode,
}

impl MysqlDriver {
    /// Connects a small pool (4 connections) to `url` (`mysql://user:password@host:3306/db`)
    /// for `table` (`name` or `database.name`) in `mode`. Call [`setup`](Driver::setup) once.
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid table name (checked
    /// first) or URL; [`Connection`](crate::metrics::DriverErrorKind::Connection) when the server
    /// cannot be reached.
    pub async fn connect(
        url: &str,
        table: &str,
        mode: IdentifierMode,
    ) -> Result<Self, DriverError> {
        Self::validate(table)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(|e| mysql_error("MySQL: cannot connect", e))?;
        Self::with_pool(pool, table, mode)
    }

    /// A driver on an existing pool.
    ///
    /// # Errors
    ///
    /// [`Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid table name: letters,
    /// digits and `_` (not first), at most 54 characters, optionally qualified by a database
    /// name of the same form (`metrics.trifle_stats`).
    pub fn with_pool(
        pool: MySqlPool,
        table: &str,
        mode: IdentifierMode,
    ) -> Result<Self, DriverError> {
        Self::validate(table)?;
        let quoted = quote(table, "");
        let batches = quote(table, "_batches");
        Ok(Self {
            write_sql: write_sql(&quoted, &batches, mode),
            mark_sql: format!(
                "INSERT INTO {batches} (writer, seq) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))"
            ),
            read_sql: read_sql(&quoted, mode),
            pool,
            table: quoted,
            batches,
            mode,
        })
    }

    pub(crate) fn validate(table: &str) -> Result<(), DriverError> {
        let (db, name) = match table.split_once('.') {
            Some((d, n)) => (Some(d), n),
            None => (None, table),
        };
        if let Some(d) = db {
            validate_name("database", d, 64)?;
        }
        validate_name("table", name, 54)
    }

    /// The pool (for sharing or closing).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    async fn write_once(&self, payload: &str, batch: &WriteBatch) -> Result<(), DriverError> {
        let fail = |e| mysql_error("MySQL: batch write failed", e);
        let seq = i64::try_from(batch.id.seq).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query(AssertSqlSafe(self.write_sql.as_str()))
            .bind(payload)
            .bind(&batch.id.writer)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query(AssertSqlSafe(self.mark_sql.as_str()))
            .bind(&batch.id.writer)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }
}

/// `` `db`.`name<suffix>` `` (names are validated: no backticks inside).
fn quote(table: &str, suffix: &str) -> String {
    match table.split_once('.') {
        Some((d, n)) => format!("`{d}`.`{n}{suffix}`"),
        None => format!("`{table}{suffix}`"),
    }
}

fn id_columns(mode: IdentifierMode) -> &'static str {
    match mode {
        IdentifierMode::Full => "`key`",
        IdentifierMode::Partial => "`key`, `at`",
        IdentifierMode::Separated => "`key`, `granularity`, `at`",
    }
}

/// The merged value of one field as JSON text: `j.o` is `s` (set), `i` (integer increment)
/// or `f` (float increment), `j.v` its JSON text. (Every branch is text: a `CASE` would turn
/// a JSON value into a JSON string.) The stored value is kept where a sum would leave the range
/// of `f64`, decided without an error that would fail the statement: a stored number beyond
/// it (`@h`; casting it would be a truncation, an error in strict mode) is never cast, and a
/// `DOUBLE` sum that would overflow ("value is out of range") is never computed (two numbers
/// of one sign overflow exactly when one exceeds the maximum less the other).
const NEW_VALUE: &str = "CASE
  WHEN j.o = 's' OR COALESCE(JSON_TYPE(JSON_EXTRACT(@d, @p)) IN ('INTEGER', 'DOUBLE'), FALSE) = FALSE
    THEN j.v
  WHEN j.o = 'i' AND JSON_VALUE(@d, @p) REGEXP '^-?[0-9]{1,30}$'
    THEN CAST(CAST(JSON_VALUE(@d, @p) AS DECIMAL(65,0)) + CAST(j.v AS DECIMAL(65,0)) AS CHAR)
  WHEN @h
    THEN CAST(JSON_EXTRACT(@d, @p) AS CHAR)
  WHEN ABS(CAST(JSON_VALUE(@d, @p) AS DOUBLE)) < 1e30 AND ABS(CAST(j.v AS DOUBLE)) < 1e30
    THEN @t
  WHEN SIGN(CAST(JSON_VALUE(@d, @p) AS DOUBLE)) = SIGN(CAST(j.v AS DOUBLE))
    AND ABS(CAST(JSON_VALUE(@d, @p) AS DOUBLE)) > 1.7976931348623157e308 - ABS(CAST(j.v AS DOUBLE))
    THEN CAST(JSON_EXTRACT(@d, @p) AS CHAR)
  ELSE CAST(CAST(JSON_VALUE(@d, @p) AS DOUBLE) + CAST(j.v AS DOUBLE) AS CHAR)
END";

/// SQL that is true when `v`, the text of a JSON number, is beyond the range of `f64`, found
/// from its digits and exponent alone (no cast): its decimal exponent is above 308, or is 308
/// with leading digits above those of the largest `f64` (the sliver above it that still rounds
/// to it counts as beyond).
fn beyond_f64(v: &str) -> String {
    let a = format!("TRIM(LEADING '-' FROM LOWER({v}))");
    let mantissa = format!("SUBSTRING_INDEX({a}, 'e', 1)");
    let exp_text = format!("IF(LOCATE('e', {a}) > 0, SUBSTRING_INDEX({a}, 'e', -1), '0')");
    let exp_digits =
        format!("TRIM(LEADING '0' FROM TRIM(LEADING '-' FROM TRIM(LEADING '+' FROM {exp_text})))");
    let digits = format!("REPLACE({mantissa}, '.', '')");
    let significant = format!("TRIM(LEADING '0' FROM {digits})");
    let exp =
        format!("IF(LEFT({exp_text}, 1) = '-', -1, 1) * CAST(CONCAT('0', {exp_digits}) AS SIGNED)");
    let e10 = format!(
        "(LENGTH(SUBSTRING_INDEX({mantissa}, '.', 1)) - 1 - (LENGTH({digits}) - LENGTH({significant})) + {exp})"
    );
    format!(
        "({significant} <> '' AND IF(LENGTH({exp_digits}) > 6, LEFT({exp_text}, 1) <> '-', \
         {e10} > 308 OR ({e10} = 308 AND RPAD(LEFT({significant}, 17), 17, '0') > '17976931348623157')))"
    )
}

fn write_sql(table: &str, batches: &str, mode: IdentifierMode) -> String {
    let cols = id_columns(mode);
    let (json_cols, select) = match mode {
        IdentifierMode::Full => ("k VARCHAR(255) PATH '$.k',", "j.k"),
        IdentifierMode::Partial => (
            "k VARCHAR(255) PATH '$.k', a DATETIME(6) PATH '$.a',",
            "j.k, j.a",
        ),
        IdentifierMode::Separated => (
            "k VARCHAR(255) PATH '$.k', g VARCHAR(255) PATH '$.g', a DATETIME(6) PATH '$.a',",
            "j.k, j.g, j.a",
        ),
    };
    let data = "IF(JSON_VALID(data) AND JSON_TYPE(data) = 'OBJECT', data, '{}')";
    let path = "CONCAT('$.\"', j.f, '\"')";
    let sum =
        "CAST(CAST(JSON_VALUE(@d, @p) AS DECIMAL(65,30)) + CAST(j.v AS DECIMAL(65,30)) AS CHAR)";
    let trimmed = format!(
        "IF(RIGHT(TRIM(TRAILING '0' FROM {sum}), 1) = '.', CONCAT(TRIM(TRAILING '0' FROM {sum}), '0'), TRIM(TRAILING '0' FROM {sum}))"
    );
    let value = NEW_VALUE
        .replace("@t", &trimmed)
        .replace("@h", &beyond_f64("JSON_VALUE(@d, @p)"))
        .replace("@d", data)
        .replace("@p", path);
    format!(
        "INSERT INTO {table} ({cols}, data)
         SELECT {select}, JSON_OBJECT(j.f, JSON_EXTRACT(j.v, '$'))
         FROM JSON_TABLE(?, '$[*]' COLUMNS (
             n FOR ORDINALITY, {json_cols}
             f VARCHAR(4096) PATH '$.f', o VARCHAR(1) PATH '$.o', v LONGTEXT PATH '$.v')) AS j
         WHERE NOT EXISTS (SELECT 1 FROM {batches} WHERE writer = ? AND seq >= ?)
         ORDER BY j.n
         ON DUPLICATE KEY UPDATE data = JSON_SET({data}, {path}, JSON_EXTRACT(CONCAT('[', {value}, ']'), '$[0]'))"
    )
}

fn read_sql(table: &str, mode: IdentifierMode) -> String {
    let fmt = "DATE_FORMAT(t.at, '%Y-%m-%d %H:%i:%s')";
    match mode {
        IdentifierMode::Full => format!(
            "SELECT t.`key`, CAST(t.data AS CHAR) FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(255) PATH '$.k')) AS j
             JOIN {table} AS t ON t.`key` = j.k"
        ),
        IdentifierMode::Partial => format!(
            "SELECT t.`key`, {fmt}, CAST(t.data AS CHAR)
             FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(255) PATH '$.k', a DATETIME(6) PATH '$.a')) AS j
             JOIN {table} AS t ON t.`key` = j.k AND t.at = j.a"
        ),
        IdentifierMode::Separated => format!(
            "SELECT t.`key`, t.granularity, {fmt}, CAST(t.data AS CHAR)
             FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(255) PATH '$.k', g VARCHAR(255) PATH '$.g', a DATETIME(6) PATH '$.a')) AS j
             JOIN {table} AS t ON t.`key` = j.k AND t.granularity = j.g AND t.at = j.a"
        ),
    }
}

/// `at` as the UTC text MySQL compares with `DATETIME` (whole seconds).
fn at_sql(row: &RowId) -> String {
    row.at.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn key_of(mode: IdentifierMode, row: &RowId) -> String {
    match mode {
        IdentifierMode::Full => format!("{}::{}::{}", row.key, row.granularity, row.at.as_second()),
        IdentifierMode::Partial => format!("{}::{}", row.key, row.granularity),
        IdentifierMode::Separated => row.key.clone(),
    }
}

/// The identity a row is matched back by after a read.
fn ident(mode: IdentifierMode, row: &RowId) -> String {
    match mode {
        IdentifierMode::Full => key_of(mode, row),
        IdentifierMode::Partial => format!("{}\u{1}{}", key_of(mode, row), at_sql(row)),
        IdentifierMode::Separated => {
            format!("{}\u{1}{}\u{1}{}", row.key, row.granularity, at_sql(row))
        }
    }
}

/// The row's identity object (`k`, `g`, `a`) for the JSON documents.
fn id_json(mode: IdentifierMode, row: &RowId) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("k".into(), key_of(mode, row).into());
    if mode == IdentifierMode::Separated {
        m.insert("g".into(), row.granularity.to_string().into());
    }
    if mode != IdentifierMode::Full {
        m.insert("a".into(), at_sql(row).into());
    }
    m
}

/// The batch as the statement's JSON document: one entry per (row, field), rows in a fixed
/// order (no deadlocks between writers), fields in their row's order.
fn payload(mode: IdentifierMode, updates: &[RowUpdate]) -> String {
    let mut sorted: Vec<(String, &RowUpdate)> =
        updates.iter().map(|u| (ident(mode, &u.row), u)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut items = Vec::new();
    for (_, u) in sorted {
        let id = id_json(mode, &u.row);
        for (name, op) in &u.fields {
            let mut item = id.clone();
            let (o, v) = match op {
                FieldOp::Inc(n @ Number::Int(_)) => ("i", Value::from(*n).to_json().to_string()),
                FieldOp::Inc(n) => ("f", Value::from(*n).to_json().to_string()),
                FieldOp::Set(v) => ("s", v.to_json().to_string()),
            };
            item.insert("f".into(), name.clone().into());
            item.insert("o".into(), o.into());
            item.insert("v".into(), v.into());
            items.push(serde_json::Value::Object(item));
        }
    }
    serde_json::Value::Array(items).to_string()
}

impl Driver for MysqlDriver {
    fn description(&self) -> String {
        format!("MySQLDriver({})", self.mode.letter())
    }

    fn mode(&self) -> IdentifierMode {
        self.mode
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let cols = match self.mode {
                IdentifierMode::Full => "`key` VARCHAR(255) NOT NULL, PRIMARY KEY (`key`)",
                IdentifierMode::Partial => {
                    "`key` VARCHAR(255) NOT NULL, `at` DATETIME(6) NOT NULL, PRIMARY KEY (`key`, `at`)"
                }
                IdentifierMode::Separated => {
                    "`key` VARCHAR(255) NOT NULL, `granularity` VARCHAR(255) NOT NULL, \
                     `at` DATETIME(6) NOT NULL, PRIMARY KEY (`key`, `granularity`, `at`)"
                }
            };
            let statements = [
                format!(
                    "CREATE TABLE IF NOT EXISTS {} ({cols}, `data` JSON NOT NULL) \
                     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                    self.table
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (writer VARCHAR(255) NOT NULL PRIMARY KEY, \
                     seq BIGINT NOT NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                    self.batches
                ),
            ];
            for sql in statements {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| mysql_error("MySQL: setup failed", e))?;
            }
            Ok(())
        })
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if batch.rows.is_empty() {
                return Ok(());
            }
            let payload = payload(self.mode, &coalesce_rows(&batch.rows));
            match self.write_once(&payload, batch).await {
                Err(e) if e.is_retryable() => {
                    tracing::debug!(
                        error = &e as &dyn std::error::Error,
                        "MySQL write failed, retrying once"
                    );
                    self.write_once(&payload, batch).await
                }
                r => r,
            }
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        Box::pin(async move {
            let fail = |e| mysql_error("MySQL: read failed", e);
            let mut found: HashMap<String, Values> = HashMap::with_capacity(rows.len());
            for chunk in rows.chunks(5_000) {
                let doc = serde_json::Value::Array(
                    chunk
                        .iter()
                        .map(|r| serde_json::Value::Object(id_json(self.mode, r)))
                        .collect(),
                )
                .to_string();
                let q = AssertSqlSafe(self.read_sql.as_str());
                let result: Vec<(String, Values)> = match self.mode {
                    IdentifierMode::Full => sqlx::query_as::<_, (String, String)>(q)
                        .bind(doc)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail)?
                        .into_iter()
                        .map(|(k, d)| (k, parse_object(&d)))
                        .collect(),
                    IdentifierMode::Partial => sqlx::query_as::<_, (String, String, String)>(q)
                        .bind(doc)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail)?
                        .into_iter()
                        .map(|(k, a, d)| (format!("{k}\u{1}{a}"), parse_object(&d)))
                        .collect(),
                    IdentifierMode::Separated => {
                        sqlx::query_as::<_, (String, String, String, String)>(q)
                            .bind(doc)
                            .fetch_all(&self.pool)
                            .await
                            .map_err(fail)?
                            .into_iter()
                            .map(|(k, g, a, d)| (format!("{k}\u{1}{g}\u{1}{a}"), parse_object(&d)))
                            .collect()
                    }
                };
                found.extend(result);
            }
            Ok(rows
                .iter()
                .map(|r| found.get(&ident(self.mode, r)).cloned().unwrap_or_default())
                .collect())
        })
    }

    fn applied<'a>(&'a self, writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        Box::pin(async move {
            let sql = format!("SELECT seq FROM {} WHERE writer = ?", self.batches);
            let seq: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(writer)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| mysql_error("MySQL: reading a writer's mark failed", e))?;
            Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
        })
    }
}

impl fmt::Debug for MysqlDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlDriver")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
