//! [`PostgresDriver`]: PostgreSQL (sqlx) with a `jsonb` data column and one atomic upsert
//! statement per batch.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::connect::{coalesce_rows, parse_object, sqlx_error, validate_name};
use super::{Driver, DriverFuture, FieldOp, RowUpdate, WriteBatch};
use crate::metrics::error::DriverError;
use crate::metrics::keys::{IdentifierMode, RowId, at_text};
use crate::metrics::value::{Value, Values};

/// SQLSTATEs worth retrying: connection exceptions, serialization failures and deadlocks,
/// insufficient resources, lock timeouts, cancellations and server shutdowns.
const RETRYABLE: &[&str] = &["08*", "40001", "40P01", "53*", "55P03", "57014", "57P*"];

/// The metrics-store driver for PostgreSQL.
///
/// * Schema (by [`setup`](Driver::setup), `CREATE TABLE IF NOT EXISTS`), as upstream:
///   `data JSONB NOT NULL DEFAULT '{}'` holds the packed flat object; identity columns
///   by [`IdentifierMode`]: Full `key VARCHAR(255)` (primary key); Partial `key, at
///   TIMESTAMPTZ`; Separated `key, granularity VARCHAR(255), at TIMESTAMPTZ`. A
///   `<table>_batches (writer, seq)` table records the highest batch applied per writer.
/// * Writes: **one statement per batch** (one round trip): a data-modifying CTE advances the
///   writer's batch mark, and only if it advanced, a multi-row `INSERT … SELECT FROM unnest(…)
///   ON CONFLICT DO UPDATE` upserts every row. The update is computed by the server under the
///   row lock — `data || sets || {field: stored + delta}` — from two bound `jsonb` objects
///   (field names and values are data, never SQL text); no read-merge-write, no lost updates
///   between nodes. Increments use `numeric`, so integers stay integers and fractional sums
///   are exact decimals; a stored non-number counts as 0; an increment whose sum would leave
///   the range of `f64` leaves the stored value as it was. Rows are written in a fixed order
///   so that concurrent writers never deadlock.
/// * Batches are idempotent ([`BatchId`](crate::metrics::BatchId)): the mark and the data commit
///   together, so a retry after a lost acknowledgement changes nothing.
/// * Reads: one query for all rows (`= ANY` / `IN (SELECT … FROM unnest)`). A stored number
///   beyond the range of `f64` reads as `null`; the rest of its row reads as stored.
/// * Errors: lost connections, deadlocks, serialization failures and shutdowns are
///   [`Connection`](crate::metrics::DriverErrorKind::Connection) (the store retries); a write that
///   fails that way is retried once on a fresh connection before reporting.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use accrue::metrics::{Driver, IdentifierMode, MetricsStore, PostgresDriver};
///
/// let driver = PostgresDriver::connect(
///     "postgres://postgres:postgres@127.0.0.1:5432/test",
///     "trifle_stats",
///     IdentifierMode::Separated,
/// )
/// .await?;
/// driver.setup().await?;
/// assert_eq!(driver.description(), "PostgresDriver(S)");
/// let stats = MetricsStore::builder(Arc::new(driver)).time_zone("UTC").build()?;
/// stats.track("events", jiff::Timestamp::now(), serde_json::json!({"count": 1})).await?;
/// stats.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct PostgresDriver {
    pool: PgPool,
    table: String,
    batches: String,
    write_sql: String,
    read_sql: String,
    mode: IdentifierMode,
}

impl PostgresDriver {
    /// Connects a small pool (4 connections) to `url` (any URL sqlx accepts, e.g.
    /// `postgres://user:password@host:5432/db?sslmode=disable`) for `table` (`name` or
    /// `schema.name`) in `mode`. Call [`setup`](Driver::setup) once to create the tables.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid table
    /// name (checked first) or URL; [`Connection`](crate::metrics::DriverErrorKind::Connection) when
    /// the server cannot be reached.
    pub async fn connect(
        url: &str,
        table: &str,
        mode: IdentifierMode,
    ) -> Result<Self, DriverError> {
        Self::validate(table)?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            // A dead connection shows up as an error on use, and writes retry once on a
            // fresh one; pinging before every use would double the round trips.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(|e| sqlx_error("PostgreSQL: cannot connect", e, RETRYABLE))?;
        Self::with_pool(pool, table, mode)
    }

    /// A driver on an existing pool.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::Rejected`](crate::metrics::DriverErrorKind::Rejected) for an invalid table
    /// name: letters, digits and `_` (not first), at most 54 characters, optionally qualified
    /// by a schema name of the same form (`metrics.trifle_stats`).
    pub fn with_pool(pool: PgPool, table: &str, mode: IdentifierMode) -> Result<Self, DriverError> {
        Self::validate(table)?;
        let quoted = quote(table, "");
        let batches = quote(table, "_batches");
        Ok(Self {
            write_sql: write_sql(&quoted, &batches, mode),
            read_sql: read_sql(&quoted, mode),
            pool,
            table: quoted,
            batches,
            mode,
        })
    }

    pub(crate) fn validate(table: &str) -> Result<(), DriverError> {
        let (schema, name) = match table.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, table),
        };
        if let Some(s) = schema {
            validate_name("schema", s, 63)?;
        }
        validate_name("table", name, 54)
    }

    /// The pool (for sharing or closing).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn write_once(&self, rows: &Rows, batch: &WriteBatch) -> Result<(), DriverError> {
        let mut q = sqlx::query(AssertSqlSafe(self.write_sql.as_str()))
            .bind(&batch.id.writer)
            .bind(i64::try_from(batch.id.seq).unwrap_or(i64::MAX))
            .bind(&rows.keys);
        if self.mode != IdentifierMode::Full {
            if self.mode == IdentifierMode::Separated {
                q = q.bind(&rows.grans);
            }
            q = q.bind(&rows.ats);
        }
        q.bind(&rows.incs)
            .bind(&rows.sets)
            .execute(&self.pool)
            .await
            .map_err(|e| sqlx_error("PostgreSQL: batch write failed", e, RETRYABLE))?;
        Ok(())
    }
}

/// `"schema"."name<suffix>"` (names are validated: no quotes inside).
fn quote(table: &str, suffix: &str) -> String {
    match table.split_once('.') {
        Some((s, n)) => format!("\"{s}\".\"{n}{suffix}\""),
        None => format!("\"{table}{suffix}\""),
    }
}

/// The SQL text identifying a row in the bound `jsonb` objects; `p` is the column prefix.
fn ident_sql(mode: IdentifierMode, p: &str) -> String {
    match mode {
        IdentifierMode::Full => format!("{p}key"),
        IdentifierMode::Partial => {
            format!("{p}key || chr(1) || (extract(epoch FROM {p}at))::bigint::text")
        }
        IdentifierMode::Separated => format!(
            "{p}key || chr(1) || {p}granularity || chr(1) || (extract(epoch FROM {p}at))::bigint::text"
        ),
    }
}

/// The same identity, computed here.
fn ident(mode: IdentifierMode, row: &RowId) -> String {
    match mode {
        IdentifierMode::Full => full_key(row),
        IdentifierMode::Partial => format!("{}\u{1}{}", partial_key(row), row.at.as_second()),
        IdentifierMode::Separated => format!(
            "{}\u{1}{}\u{1}{}",
            row.key,
            row.granularity,
            row.at.as_second()
        ),
    }
}

fn full_key(row: &RowId) -> String {
    format!("{}::{}::{}", row.key, row.granularity, row.at.as_second())
}

fn partial_key(row: &RowId) -> String {
    format!("{}::{}", row.key, row.granularity)
}

fn id_columns(mode: IdentifierMode) -> &'static str {
    match mode {
        IdentifierMode::Full => "key",
        IdentifierMode::Partial => "key, at",
        IdentifierMode::Separated => "key, granularity, at",
    }
}

/// The largest finite `f64`, as SQL text: a `numeric` sum beyond it would be stored, but could
/// not be read back as a number, so the increment keeps the stored value instead.
const F64_MAX: &str = "1.7976931348623157e308";

fn write_sql(table: &str, batches: &str, mode: IdentifierMode) -> String {
    // Parameters: $1 writer, $2 seq, then the identity arrays, then incs and sets objects.
    let (unnest, select, n) = match mode {
        IdentifierMode::Full => ("$3::text[]", "u.key", 4),
        IdentifierMode::Partial => ("$3::text[], $4::text[]", "u.key, u.at::timestamptz", 5),
        IdentifierMode::Separated => (
            "$3::text[], $4::text[], $5::text[]",
            "u.key, u.granularity, u.at::timestamptz",
            6,
        ),
    };
    let alias = match mode {
        IdentifierMode::Full => "u(key, ord)",
        IdentifierMode::Partial => "u(key, at, ord)",
        IdentifierMode::Separated => "u(key, granularity, at, ord)",
    };
    // The objects are parsed once per statement (a CTE read by uncorrelated sub-selects,
    // i.e. init plans), not once per row as a `$n::jsonb` cast in a generic plan would be.
    let params = format!(
        "p AS (SELECT ${n}::jsonb AS incs, ${}::jsonb AS sets)",
        n + 1
    );
    let incs = "(SELECT p.incs FROM p)";
    let sets = "(SELECT p.sets FROM p)";
    let cols = id_columns(mode);
    let ex = ident_sql(mode, "EXCLUDED.");
    let src = ident_sql(mode, "s.");
    format!(
        "WITH {params}, b AS (
            INSERT INTO {batches} AS b (writer, seq) VALUES ($1, $2)
            ON CONFLICT (writer) DO UPDATE SET seq = EXCLUDED.seq WHERE b.seq < EXCLUDED.seq
            RETURNING 1
        )
        INSERT INTO {table} AS t ({cols}, data)
        SELECT {cols}, COALESCE({sets} -> ({src}), '{{}}'::jsonb) || COALESCE({incs} -> ({src}), '{{}}'::jsonb)
        FROM (SELECT {select}, u.ord FROM unnest({unnest}) WITH ORDINALITY AS {alias}) AS s
        WHERE EXISTS (SELECT 1 FROM b)
        ORDER BY s.ord
        ON CONFLICT ({cols}) DO UPDATE SET data =
            (CASE WHEN jsonb_typeof(t.data) = 'object' THEN t.data ELSE '{{}}'::jsonb END)
            || COALESCE({sets} -> ({ex}), '{{}}'::jsonb)
            || COALESCE((
                SELECT jsonb_object_agg(e.key, CASE
                    WHEN m.total IS NULL THEN e.value
                    WHEN abs(m.total) <= {F64_MAX} THEN to_jsonb(m.total)
                    ELSE t.data -> e.key END)
                FROM jsonb_each({incs} -> ({ex})) AS e,
                    LATERAL (SELECT CASE WHEN jsonb_typeof(t.data -> e.key) = 'number'
                        THEN (t.data -> e.key)::numeric + e.value::numeric END AS total) AS m
            ), '{{}}'::jsonb)"
    )
}

fn read_sql(table: &str, mode: IdentifierMode) -> String {
    match mode {
        IdentifierMode::Full => {
            format!("SELECT key, data::text FROM {table} WHERE key = ANY($1::text[])")
        }
        IdentifierMode::Partial => format!(
            "SELECT key, (extract(epoch FROM at))::bigint, data::text FROM {table}
             WHERE (key, at) IN (SELECT k, a::timestamptz FROM unnest($1::text[], $2::text[]) AS u(k, a))"
        ),
        IdentifierMode::Separated => format!(
            "SELECT key, granularity, (extract(epoch FROM at))::bigint, data::text FROM {table}
             WHERE (key, granularity, at) IN
               (SELECT k, g, a::timestamptz FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, g, a))"
        ),
    }
}

/// A batch laid out as the statement's parameters.
#[derive(Default)]
struct Rows {
    keys: Vec<String>,
    grans: Vec<String>,
    ats: Vec<String>,
    incs: String,
    sets: String,
}

fn rows(mode: IdentifierMode, updates: &[RowUpdate]) -> Rows {
    let mut updates: Vec<(String, &RowUpdate)> =
        updates.iter().map(|u| (ident(mode, &u.row), u)).collect();
    // One lock order for every writer: no deadlocks between nodes.
    updates.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Rows::default();
    let mut incs = serde_json::Map::new();
    let mut sets = serde_json::Map::new();
    for (id, u) in updates {
        match mode {
            IdentifierMode::Full => out.keys.push(full_key(&u.row)),
            IdentifierMode::Partial => out.keys.push(partial_key(&u.row)),
            IdentifierMode::Separated => {
                out.keys.push(u.row.key.clone());
                out.grans.push(u.row.granularity.to_string());
            }
        }
        if mode != IdentifierMode::Full {
            out.ats.push(at_text(u.row.at));
        }
        let mut inc = serde_json::Map::new();
        let mut set = serde_json::Map::new();
        for (name, op) in &u.fields {
            match op {
                FieldOp::Inc(n) => inc.insert(name.clone(), Value::from(*n).to_json()),
                FieldOp::Set(v) => set.insert(name.clone(), v.to_json()),
            };
        }
        if !inc.is_empty() {
            incs.insert(id.clone(), serde_json::Value::Object(inc));
        }
        if !set.is_empty() {
            sets.insert(id, serde_json::Value::Object(set));
        }
    }
    out.incs = serde_json::Value::Object(incs).to_string();
    out.sets = serde_json::Value::Object(sets).to_string();
    out
}

impl Driver for PostgresDriver {
    fn description(&self) -> String {
        format!("PostgresDriver({})", self.mode.letter())
    }

    fn mode(&self) -> IdentifierMode {
        self.mode
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let cols = match self.mode {
                IdentifierMode::Full => "key VARCHAR(255) NOT NULL PRIMARY KEY",
                IdentifierMode::Partial => {
                    "key VARCHAR(255) NOT NULL, at TIMESTAMPTZ NOT NULL, PRIMARY KEY (key, at)"
                }
                IdentifierMode::Separated => {
                    "key VARCHAR(255) NOT NULL, granularity VARCHAR(255) NOT NULL, \
                     at TIMESTAMPTZ NOT NULL, PRIMARY KEY (key, granularity, at)"
                }
            };
            let statements = [
                format!(
                    "CREATE TABLE IF NOT EXISTS {} ({cols}, data JSONB NOT NULL DEFAULT '{{}}')",
                    self.table
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (writer TEXT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL)",
                    self.batches
                ),
            ];
            for sql in statements {
                if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
                    // Two nodes creating the same table at once: one of them loses the race
                    // on the catalog's unique index, and the table exists.
                    let raced = matches!(&e, sqlx::Error::Database(db)
                        if matches!(db.code().as_deref(), Some("23505" | "42P07")));
                    if !raced {
                        return Err(sqlx_error("PostgreSQL: setup failed", e, RETRYABLE));
                    }
                }
            }
            Ok(())
        })
    }

    fn write<'a>(&'a self, batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if batch.rows.is_empty() {
                return Ok(());
            }
            let rows = rows(self.mode, &coalesce_rows(&batch.rows));
            match self.write_once(&rows, batch).await {
                Err(e) if e.is_retryable() => {
                    tracing::debug!(
                        error = &e as &dyn std::error::Error,
                        "PostgreSQL write failed, retrying once"
                    );
                    self.write_once(&rows, batch).await
                }
                r => r,
            }
        })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        Box::pin(async move {
            let mut found: HashMap<String, Values> = HashMap::with_capacity(rows.len());
            for chunk in rows.chunks(5_000) {
                let mut keys = Vec::with_capacity(chunk.len());
                let mut grans = Vec::new();
                let mut ats = Vec::new();
                for row in chunk {
                    match self.mode {
                        IdentifierMode::Full => keys.push(full_key(row)),
                        IdentifierMode::Partial => keys.push(partial_key(row)),
                        IdentifierMode::Separated => {
                            keys.push(row.key.clone());
                            grans.push(row.granularity.to_string());
                        }
                    }
                    ats.push(at_text(row.at));
                }
                let result: Vec<(String, Values)> = match self.mode {
                    IdentifierMode::Full => {
                        sqlx::query_as::<_, (String, String)>(AssertSqlSafe(self.read_sql.as_str()))
                            .bind(&keys)
                            .fetch_all(&self.pool)
                            .await
                            .map_err(|e| sqlx_error("PostgreSQL: read failed", e, RETRYABLE))?
                            .into_iter()
                            .map(|(k, d)| (k, parse_object(&d)))
                            .collect()
                    }
                    IdentifierMode::Partial => sqlx::query_as::<_, (String, i64, String)>(
                        AssertSqlSafe(self.read_sql.as_str()),
                    )
                    .bind(&keys)
                    .bind(&ats)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| sqlx_error("PostgreSQL: read failed", e, RETRYABLE))?
                    .into_iter()
                    .map(|(k, at, d)| (format!("{k}\u{1}{at}"), parse_object(&d)))
                    .collect(),
                    IdentifierMode::Separated => {
                        sqlx::query_as::<_, (String, String, i64, String)>(AssertSqlSafe(
                            self.read_sql.as_str(),
                        ))
                        .bind(&keys)
                        .bind(&grans)
                        .bind(&ats)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| sqlx_error("PostgreSQL: read failed", e, RETRYABLE))?
                        .into_iter()
                        .map(|(k, g, at, d)| (format!("{k}\u{1}{g}\u{1}{at}"), parse_object(&d)))
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
            let sql = format!("SELECT seq FROM {} WHERE writer = $1", self.batches);
            let seq: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(writer)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    sqlx_error("PostgreSQL: reading a writer's mark failed", e, RETRYABLE)
                })?;
            Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
        })
    }
}

impl fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDriver")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
