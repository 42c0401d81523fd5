//! The event store: one SQLite file (WAL), written by a single connection that the writer thread
//! owns, read through a small pool of read-only connections.
//!
//! ```text
//! events(id INTEGER PRIMARY KEY,   -- assigned by the writer, never reused: tie-breaker, cursor
//!        key TEXT NOT NULL,
//!        ts_ns INTEGER NOT NULL,    -- absolute event time, UTC nanoseconds
//!        ts_offset_s INTEGER NOT NULL,  -- the offset the client wrote, echoed by /view
//!        data TEXT,                 -- the JSON object as received, without whitespace
//!        received_ns INTEGER NOT NULL,  -- server arrival time
//!        event_id TEXT)             -- the client's idempotency id, unique when present
//! events_ts(ts_ns) · events_key_ts(key, ts_ns) · events_event_id(event_id) UNIQUE, partial
//! collector_state(name PRIMARY KEY, value)  -- next_id, event_count, store_id
//! ```
//!
//! SQLite appends the rowid to every index entry, so `events_ts` orders by `(ts_ns, id)` and
//! `/view`'s `ORDER BY ts_ns DESC, id DESC` is a backwards index scan, with or without a `key`
//! filter. The event count lives in `collector_state`, updated in the same transaction as the
//! rows, so `total` needs no table scan and always matches the page it comes with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use super::config::Synchronous;
use super::error::CollectorError;
use super::event::Event;
use super::time_fmt::EventTime;

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL,
    ts_ns       INTEGER NOT NULL,
    ts_offset_s INTEGER NOT NULL,
    data        TEXT,
    received_ns INTEGER NOT NULL,
    event_id    TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ns);
CREATE INDEX IF NOT EXISTS events_key_ts ON events (key, ts_ns);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id)
    WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS collector_state (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO collector_state (name, value) VALUES
    ('next_id', 1), ('event_count', 0), ('store_id', abs(random() % 1000000000000));
";

/// Rows per multi-row `INSERT` (largest first; a run is cut into these sizes).
const MULTI_ROW: [usize; 3] = [32, 8, 1];

/// The multi-row insert of `rows` events, with or without client ids.
fn multi_row_insert(rows: usize, with_id: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let build = |with_id: bool| {
            (0..=MULTI_ROW[0])
                .map(|n| {
                    let (cols, row, tail) = if with_id {
                        (
                            "id, key, ts_ns, ts_offset_s, data, received_ns, event_id",
                            "(?,?,?,?,?,?,?)",
                            " ON CONFLICT DO NOTHING RETURNING id",
                        )
                    } else {
                        (
                            "id, key, ts_ns, ts_offset_s, data, received_ns",
                            "(?,?,?,?,?,?)",
                            "",
                        )
                    };
                    let values = vec![row; n].join(",");
                    format!("INSERT INTO events ({cols}) VALUES {values}{tail}")
                })
                .collect()
        };
        [build(false), build(true)]
    });
    &all[usize::from(with_id)][rows]
}

const SET_STATE: &str = "UPDATE collector_state SET value = ?2 WHERE name = ?1";
const GET_STATE: &str = "SELECT value FROM collector_state WHERE name = ?1";

/// How long a connection waits for another writer (the metrics-store driver may share the
/// file) before an operation fails with `SQLITE_BUSY` and is retried by the writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the WAL file after a checkpoint (WAL growth must be bounded).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

fn store_err(context: &str) -> impl FnOnce(rusqlite::Error) -> CollectorError + '_ {
    move |e| CollectorError::store(context, e)
}

/// The writer's connection and the state it keeps in memory between commits.
#[derive(Debug)]
pub(crate) struct EventStore {
    conn: Connection,
    next_id: i64,
    count: i64,
}

/// What one committed group did, in the order the events were given.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    /// For each event: its new row id, or `None` when its `id` was already stored.
    pub(crate) ids: Vec<Option<i64>>,
}

impl EventStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub(crate) fn open(path: &Path, sync: Synchronous) -> Result<Self, CollectorError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            return Err(CollectorError::Config(format!(
                "the directory of the database {} does not exist",
                path.display()
            )));
        }
        let conn = Connection::open(path).map_err(store_err("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(store_err("set busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(store_err("enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CollectorError::store(
                "enable WAL",
                format!("SQLite kept journal_mode={mode}"),
            ));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};
             PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
            sync.pragma()
        ))
        .map_err(store_err("configure"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(store_err("read schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(CollectorError::store(
                "open",
                format!(
                    "{} has event schema version {version}, newer than this build's \
                     {SCHEMA_VERSION}; upgrade accrue",
                    path.display()
                ),
            ));
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(store_err("create the schema"))?;
        let mut store = Self {
            conn,
            next_id: 0,
            count: 0,
        };
        // `next_id` never goes back, even when retention deleted the newest rows.
        let max_id: i64 = store
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
            .map_err(store_err("read the last id"))?;
        store.next_id = store.state("next_id")?.max(max_id + 1);
        store.count = store.state("event_count")?;
        Ok(store)
    }

    fn state(&self, name: &str) -> Result<i64, CollectorError> {
        self.conn
            .query_row(GET_STATE, [name], |r| r.get(0))
            .map_err(store_err("read collector_state"))
    }

    /// Events stored now.
    pub(crate) fn count(&self) -> i64 {
        self.count
    }

    /// A random number chosen when the database was created: the metrics store records its
    /// watermark per event store, so a replaced event database is never mistaken for the old one.
    pub(crate) fn store_id(&self) -> Result<i64, CollectorError> {
        self.state("store_id")
    }

    /// Inserts `events` in one transaction: all of them or none. An event whose `id` is
    /// already stored is skipped (reported as `None`), so a retried request is idempotent.
    ///
    /// # Errors
    ///
    /// Any SQLite error; the transaction is rolled back and nothing changed, so the caller may
    /// retry the same group.
    pub(crate) fn insert<'e>(
        &mut self,
        events: impl Iterator<Item = &'e Event>,
        received_ns: i64,
    ) -> Result<Committed, rusqlite::Error> {
        let events: Vec<&Event> = events.collect();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut next = self.next_id;
        let mut ids = Vec::with_capacity(events.len());
        let mut added = 0i64;
        {
            let mut i = 0;
            let mut returned: Vec<i64> = Vec::new();
            while i < events.len() {
                // Runs of events with and without ids, several rows per statement (which halves
                // SQLite's per-row overhead). Rows get consecutive candidate ids; a row whose
                // event id is already stored is skipped by `ON CONFLICT DO NOTHING`, and
                // `RETURNING id` tells which were written (ids may then have gaps).
                let with_id = events[i].id.is_some();
                let run = events[i..]
                    .iter()
                    .take_while(|e| e.id.is_some() == with_id)
                    .count();
                let rows = MULTI_ROW
                    .iter()
                    .copied()
                    .find(|&n| n <= run)
                    .expect("MULTI_ROW ends with 1");
                let cols = if with_id { 7 } else { 6 };
                let mut stmt = tx.prepare_cached(multi_row_insert(rows, with_id))?;
                for (r, e) in events[i..i + rows].iter().enumerate() {
                    let base = r * cols;
                    stmt.raw_bind_parameter(base + 1, next + r as i64)?;
                    stmt.raw_bind_parameter(base + 2, &*e.key)?;
                    stmt.raw_bind_parameter(base + 3, e.time.unix_ns)?;
                    stmt.raw_bind_parameter(base + 4, e.time.offset_s)?;
                    stmt.raw_bind_parameter(base + 5, e.data.as_deref())?;
                    stmt.raw_bind_parameter(base + 6, received_ns)?;
                    if with_id {
                        stmt.raw_bind_parameter(base + 7, e.id.as_deref())?;
                    }
                }
                if with_id {
                    returned.clear();
                    let mut rows_out = stmt.raw_query();
                    while let Some(row) = rows_out.next()? {
                        returned.push(row.get(0)?);
                    }
                    returned.sort_unstable();
                    ids.extend((0..rows as i64).map(|r| {
                        let id = next + r;
                        returned.binary_search(&id).is_ok().then_some(id)
                    }));
                    added += returned.len() as i64;
                } else {
                    stmt.raw_execute()?;
                    ids.extend((0..rows as i64).map(|r| Some(next + r)));
                    added += rows as i64;
                }
                next += rows as i64;
                i += rows;
            }
            if added > 0 {
                let mut set = tx.prepare_cached(SET_STATE)?;
                set.execute(params!["next_id", next])?;
                set.execute(params!["event_count", self.count + added])?;
            }
        }
        tx.commit()?;
        self.count += added;
        self.next_id = next;
        Ok(Committed { ids })
    }

    /// Calls `each` with the stored events whose id is above `after`, in id order, `limit` at
    /// most; returns how many it read. Used to replay events into the metrics pipeline after a
    /// crash.
    pub(crate) fn events_after(
        &self,
        after: i64,
        limit: usize,
        mut each: impl FnMut(i64, &str, EventTime, Option<&str>),
    ) -> Result<usize, CollectorError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, key, ts_ns, ts_offset_s, data FROM events
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(store_err("replay"))?;
        let mut rows = stmt
            .query(params![after, limit as i64])
            .map_err(store_err("replay"))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(store_err("replay"))? {
            let read = || -> rusqlite::Result<_> {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get_ref(1)?.as_str()?.to_owned(),
                    EventTime {
                        unix_ns: row.get(2)?,
                        offset_s: row.get(3)?,
                    },
                    row.get::<_, Option<String>>(4)?,
                ))
            };
            let (id, key, time, data) = read().map_err(store_err("replay"))?;
            each(id, &key, time, data.as_deref());
            n += 1;
        }
        Ok(n)
    }

    /// Deletes up to `limit` events older than `cutoff_ns` whose id is at most `max_id` (events
    /// not yet in the metrics store are kept until they are). Returns how many were deleted.
    pub(crate) fn delete_older_than(
        &mut self,
        cutoff_ns: i64,
        max_id: i64,
        limit: usize,
    ) -> Result<usize, rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = tx
            .prepare_cached(
                "DELETE FROM events WHERE id IN
                 (SELECT id FROM events WHERE ts_ns < ?1 AND id <= ?2 LIMIT ?3)",
            )?
            .execute(params![cutoff_ns, max_id, limit as i64])?;
        if deleted > 0 {
            tx.prepare_cached(SET_STATE)?
                .execute(params!["event_count", self.count - deleted as i64])?;
        }
        tx.commit()?;
        self.count -= deleted as i64;
        Ok(deleted)
    }
}

// --- deletes, and the connection for the KV and API-key tables -------------------

impl EventStore {
    /// The writer's connection, for the tables other than `events` (KV values, API keys).
    /// Event rows must only change through this type's methods, which keep `event_count` true.
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Deletes up to `limit` events matching `filter` (a fixed SQL condition on `events` whose
    /// `?` placeholders take `values`, in order) in one transaction, keeping the event count
    /// true. Returns how many were deleted; fewer than `limit` means none are left.
    pub(crate) fn delete_matching(
        &mut self,
        filter: &str,
        values: &[rusqlite::types::Value],
        limit: usize,
    ) -> rusqlite::Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let sql = format!(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE {filter} LIMIT ?)"
        );
        let limit = rusqlite::types::Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        let deleted = tx
            .prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(values.iter().chain([&limit])))?;
        if deleted > 0 {
            tx.prepare_cached(SET_STATE)?
                .execute(params!["event_count", self.count - deleted as i64])?;
        }
        tx.commit()?;
        self.count -= deleted as i64;
        Ok(deleted)
    }
}

/// What `/view` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageQuery {
    pub(crate) key: Option<String>,
    /// Only keys in `[lo, hi)`: the namespace of a key-prefix-limited API key.
    pub(crate) key_range: Option<(String, Option<String>)>,
    pub(crate) limit: i64,
    /// `None` when `(page - 1) * page_size` overflows: a page past any possible end.
    pub(crate) offset: Option<i64>,
}

/// Reads one page, newest event time first (ties: newest id first), calling `each` per row, and
/// returns the total number of matching events. Runs in one read transaction, so the total and
/// the rows are one snapshot.
pub(crate) fn read_page(
    conn: &mut Connection,
    q: &PageQuery,
    mut each: impl FnMut(&str, EventTime, Option<&str>),
) -> rusqlite::Result<i64> {
    use rusqlite::types::Value as Sql;
    let tx = conn.transaction()?;
    // The filter, as a fixed SQL fragment and its bound values.
    let (filter, values): (&str, Vec<Sql>) = match (&q.key, &q.key_range) {
        (Some(key), _) => ("WHERE key = ?", vec![Sql::Text(key.clone())]),
        (None, Some((lo, Some(hi)))) => (
            "WHERE key >= ? AND key < ?",
            vec![Sql::Text(lo.clone()), Sql::Text(hi.clone())],
        ),
        (None, Some((lo, None))) => ("WHERE key >= ?", vec![Sql::Text(lo.clone())]),
        (None, None) => ("", Vec::new()),
    };
    let total: i64 = if filter.is_empty() {
        tx.prepare_cached(GET_STATE)?
            .query_row(["event_count"], |r| r.get(0))?
    } else {
        tx.prepare_cached(&format!("SELECT COUNT(*) FROM events {filter}"))?
            .query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))?
    };
    if let Some(offset) = q.offset.filter(|&o| o < total) {
        let sql = format!(
            "SELECT key, ts_ns, ts_offset_s, data FROM events {filter}
             ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut all = values;
        all.push(Sql::Integer(q.limit));
        all.push(Sql::Integer(offset));
        let mut rows = stmt.query(rusqlite::params_from_iter(all.iter()))?;
        while let Some(row) = rows.next()? {
            let time = EventTime {
                unix_ns: row.get(1)?,
                offset_s: row.get(2)?,
            };
            let data = row.get_ref(3)?.as_str_or_null()?;
            each(row.get_ref(0)?.as_str()?, time, data);
        }
    }
    tx.finish()?;
    Ok(total)
}

/// Read-only connections, opened on demand and reused, at most `max` at a time.
#[derive(Debug)]
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf, max: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled connection on the blocking thread pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the read pool's semaphore is never closed");
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().pop();
            let mut conn = match idle {
                Some(c) => c,
                None => pool.open()?,
            };
            let out = f(&mut conn);
            // A connection that saw an error is dropped rather than reused.
            if out.is_ok() {
                pool.idle.lock().push(conn);
            }
            out
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Whether the database answers a trivial query (for `/ready`).
    pub(crate) async fn ping(self: &Arc<Self>) -> rusqlite::Result<()> {
        self.run(|c| {
            c.query_row(GET_STATE, ["event_count"], |r| r.get::<_, i64>(0))
                .optional()
                .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, unix_ns: i64, id: Option<&str>) -> Event {
        Event {
            key: key.into(),
            time: EventTime {
                unix_ns,
                offset_s: 3600,
            },
            data: Some(r#"{"n":1}"#.into()),
            id: id.map(Into::into),
            metric: None,
        }
    }

    fn page(conn: &mut Connection, key: Option<&str>, limit: i64, offset: i64) -> (i64, Vec<i64>) {
        let mut seen = Vec::new();
        let q = PageQuery {
            key: key.map(str::to_owned),
            key_range: None,
            limit,
            offset: Some(offset),
        };
        let total = read_page(conn, &q, |_, t, _| seen.push(t.unix_ns)).unwrap();
        (total, seen)
    }

    #[test]
    fn inserts_pages_dedupes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let mut store = EventStore::open(&path, Synchronous::Normal).unwrap();
        let group = [
            ev("a", 30, None),
            ev("b", 10, Some("x")),
            ev("a", 20, Some("x")),
        ];
        let c = store.insert(group.iter(), 1).unwrap();
        assert_eq!(c.ids, vec![Some(1), Some(2), None]);
        assert_eq!(store.count(), 2);
        // The skipped duplicate used up candidate id 3: ids are increasing, not dense.
        let c = store.insert([ev("c", 30, None)].iter(), 2).unwrap();
        assert_eq!(c.ids, vec![Some(4)]);

        let mut conn = Connection::open(&path).unwrap();
        // Newest time first, ties broken by the newest id.
        assert_eq!(page(&mut conn, None, 10, 0), (3, vec![30, 30, 10]));
        assert_eq!(page(&mut conn, Some("a"), 10, 0), (1, vec![30]));
        assert_eq!(page(&mut conn, None, 1, 2), (3, vec![10]));
        assert_eq!(page(&mut conn, None, 5, 3), (3, vec![]));

        drop(store);
        let mut store = EventStore::open(&path, Synchronous::Full).unwrap();
        assert_eq!(store.count(), 3);
        let c = store.insert([ev("d", 1, Some("x"))].iter(), 3).unwrap();
        assert_eq!(c.ids, vec![None], "ids are unique across restarts");
    }

    #[test]
    fn multi_row_runs_and_id_rows_interleave_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let mut store = EventStore::open(&path, Synchronous::Normal).unwrap();
        let ids: Vec<String> = (0..75).map(|i| format!("id{}", i / 2)).collect();
        let group: Vec<Event> = (0..75)
            .map(|i| {
                ev(
                    &format!("k{i}"),
                    i,
                    (i % 10 == 3).then(|| ids[i as usize].as_str()),
                )
            })
            .collect();
        // i = 3, 13, 23, … carry ids id1, id6, id11, …: all distinct.
        let mut dup = group.clone();
        dup.push(ev("late", 999, Some("id6")));
        let c = store.insert(dup.iter(), 5).unwrap();
        let expected: Vec<Option<i64>> = (1..=75).map(Some).chain([None]).collect();
        assert_eq!(c.ids, expected);
        let rows: Vec<(i64, String, i64)> = store
            .conn
            .prepare("SELECT id, key, ts_ns FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 75);
        // A long run with ids: duplicates of stored ids and of ids earlier in the same run.
        let second: Vec<Event> = (0..41)
            .map(|i| {
                let id = match i % 5 {
                    0 => format!("id{}", 1 + (i / 5) % 8 * 5), // stored in the first group
                    3 => format!("new{}", i - 1),              // earlier in the same run
                    _ => format!("new{i}"),
                };
                let mut e = ev("second", i, None);
                e.id = Some(id.into());
                e
            })
            .collect();
        let c = store.insert(second.iter(), 6).unwrap();
        for (i, got) in c.ids.iter().enumerate() {
            let dup = i % 5 == 0 || i % 5 == 3;
            assert_eq!(got.is_none(), dup, "event {i}: {got:?}");
        }
        let stored: Vec<i64> = c.ids.iter().flatten().copied().collect();
        assert!(stored.windows(2).all(|w| w[0] < w[1]) && stored[0] > 76);
        assert_eq!(store.count(), 75 + stored.len() as i64);
        for (i, (id, key, ts)) in rows.iter().enumerate() {
            assert_eq!(
                (*id, key.as_str(), *ts),
                (i as i64 + 1, format!("k{i}").as_str(), i as i64)
            );
        }
    }

    #[test]
    fn retention_keeps_unaggregated_events_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let mut store = EventStore::open(&path, Synchronous::Normal).unwrap();
        let group: Vec<_> = (0..10).map(|i| ev("k", 100 - i, None)).collect();
        store.insert(group.iter(), 0).unwrap();
        // Ids 1..=10 have times 100..=91; delete times < 95 (ids 7..=10), but only ids <= 8.
        assert_eq!(store.delete_older_than(95, 8, 100).unwrap(), 2);
        assert_eq!(store.count(), 8);
        assert_eq!(store.delete_older_than(95, 10, 1).unwrap(), 1);
        assert_eq!(store.delete_older_than(95, 10, 100).unwrap(), 1);
        assert_eq!(store.count(), 6);
        drop(store);
        let mut store = EventStore::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(store.count(), 6);
        let c = store.insert([ev("k", 1, None)].iter(), 0).unwrap();
        assert_eq!(
            c.ids,
            vec![Some(11)],
            "the deleted newest ids are not reused"
        );
        let seen: Vec<i64> = store
            .conn
            .prepare("SELECT id FROM events WHERE id > 5 ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seen, vec![6, 11]);
    }

    #[test]
    fn page_queries_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let store = EventStore::open(&path, Synchronous::Normal).unwrap();
        for (sql, index) in [
            (
                "SELECT key FROM events ORDER BY ts_ns DESC, id DESC LIMIT 10",
                "events_ts",
            ),
            (
                "SELECT key FROM events WHERE key = 'a' ORDER BY ts_ns DESC, id DESC LIMIT 10",
                "events_key_ts",
            ),
        ] {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let err = EventStore::open(&path, Synchronous::Normal).unwrap_err();
        let text = crate::report::Chain(&err).to_string();
        assert!(text.contains("newer"), "{text}");
    }
}
