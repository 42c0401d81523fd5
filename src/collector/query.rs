//! Queries over the event store: the events of one key in a time range, the latest event per
//! key, and deletes.
//!
//! | route | scope | |
//! |---|---|---|
//! | `GET /v1/events?key=&from=&to=&limit=&order=&cursor=&where=` | read | one key's events in `[from, to]`, keyset-paged |
//! | `GET /v1/latest?prefix=&at=&since=&limit=&cursor=&where=` | read | per key, the newest event at or before `at` that matches `where` |
//! | `DELETE /v1/events?key=` or `?prefix=` (`&from=&to=`) | delete | one key's events, or every key with a prefix |
//! | `DELETE /v1/events/{id}` | delete | one event, by the `id` the queries return |
//!
//! **Predicates.** `where` (repeatable, all must hold) is `PATH OP VALUE` on an event's `data`:
//! `PATH` is field names joined by `.` (`user.plan`), `OP` one of `=`, `!=`, `<`, `<=`, `>`,
//! `>=`, `~` (contains, strings only), and `VALUE` a JSON literal (`42`, `1.5`, `"text"`, `true`,
//! `null`) or bare text (`pro`). Comparisons are typed: `temp>20` only matches numbers and
//! `plan=pro` only strings, and `!=` also matches events without the field. There are no
//! regular expressions (a backtracking regex is a denial-of-service lever).
//!
//! For `/v1/latest` the predicate is applied **before** choosing the latest event: a key whose
//! newest event does not match answers its newest event that does (FluxionDB tested only the
//! newest and dropped the key).
//!
//! **SQL** is assembled only from the fixed fragments in this file; every value a request
//! carries — key, prefix, times, cursor, field path, literal — is a bound parameter.
//!
//! **Indexes.** A range reads `events_key_ts (key, ts_ns, id)` from the cursor on, in either
//! direction, without sorting. `/v1/latest` walks the distinct keys of the prefix through the
//! same index (one seek per key, never a scan of their events) and, per key, seeks its newest
//! event at or before `at`, stepping back only over events the predicate rejects.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};

use super::auth::{Principal, api_error};
use super::error::ApiError;
use super::json;
use super::routes::AppState;
use super::time_fmt::{EventTime, format_rfc3339};

/// Default and largest page of `/v1/events`.
pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 10_000;
/// Most `where` predicates in one query.
pub(crate) const MAX_PREDICATES: usize = 8;
/// Longest predicate path.
const MAX_PATH: usize = 256;
/// Rows one delete transaction removes; ingest commits in between.
pub(crate) const DELETE_CHUNK: usize = 10_000;

pub(crate) fn bad_query(detail: impl Into<String>) -> ApiError {
    ApiError::bad_query(detail.into())
}

/// The query string, checked against the parameters a route knows.
pub(crate) struct Params<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Params<'a> {
    /// Refuses unknown and (except `repeatable`) repeated parameters.
    pub(crate) fn new(
        pairs: &'a [(String, String)],
        known: &[&str],
        repeatable: &[&str],
    ) -> Result<Self, ApiError> {
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(bad_query(format!(
                    "unknown parameter {k:?}; this route takes {}",
                    known.join(", ")
                )));
            }
            if !repeatable.contains(&k.as_str()) && pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(bad_query(format!("{k} is given twice")));
            }
        }
        Ok(Self { pairs })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &'a str> {
        let name = name.to_owned();
        self.pairs
            .iter()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An RFC 3339 instant, as UTC nanoseconds (clamped to what 64 bits hold).
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<Timestamp>()
                    .map(|t| {
                        i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
                            i64::MIN
                        } else {
                            i64::MAX
                        })
                    })
                    .map_err(|e| {
                        bad_query(format!(
                            "{name} must be an RFC 3339 instant like 2025-08-25T10:00:00Z: {e}"
                        ))
                    })
            })
            .transpose()
    }

    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad_query(format!(
                    "limit must be an integer from 1 to {max}"
                ))),
            },
        }
    }

    pub(crate) fn predicates(&self) -> Result<Vec<Predicate>, ApiError> {
        let preds: Vec<Predicate> = self
            .all("where")
            .map(|w| Predicate::parse(w).map_err(bad_query))
            .collect::<Result<_, _>>()?;
        if preds.len() > MAX_PREDICATES {
            return Err(bad_query(format!(
                "at most {MAX_PREDICATES} where predicates"
            )));
        }
        Ok(preds)
    }
}

/// The keys starting with `prefix` are exactly those in `[lo, hi)` under SQLite's binary
/// collation (`hi` is `None` when nothing bounds them above). `hi` is `prefix` with its last
/// character that can be incremented incremented and the rest dropped; UTF-8 sorts bytewise in
/// code-point order and no character's encoding is a prefix of another's, so this is exact.
pub(crate) fn prefix_range(prefix: &str) -> (String, Option<String>) {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return (prefix.to_owned(), Some(chars.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

/// Appends `AND key >= ? [AND key < ?]` for `prefix`.
fn push_prefix(sql: &mut String, values: &mut Vec<Sql>, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    let (lo, hi) = prefix_range(prefix);
    sql.push_str(" AND key >= ?");
    values.push(Sql::Text(lo));
    if let Some(hi) = hi {
        sql.push_str(" AND key < ?");
        values.push(Sql::Text(hi));
    }
}

/// A comparison operator of a `where` predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

/// The value a predicate compares with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

/// The column `data` where SQLite's JSON functions can read it, else `NULL`: a row they cannot
/// parse (one stored before ingest limited the nesting depth, or written by hand) matches no
/// filter instead of failing every reader's query.
const READABLE_DATA: &str = "(CASE WHEN json_valid(data) THEN data END)";

/// One `where` condition on an event's `data`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Predicate {
    /// The SQLite JSON path, e.g. `$."user"."plan"`.
    pub(crate) path: String,
    pub(crate) op: Op,
    pub(crate) value: Literal,
}

impl Predicate {
    /// Parses `PATH OP VALUE`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let at = s
            .find(['=', '!', '<', '>', '~'])
            .ok_or_else(|| format!("where {s:?} has no operator (=, !=, <, <=, >, >=, ~)"))?;
        let (path, rest) = s.split_at(at);
        let (op, value) = [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("~", Op::Contains),
        ]
        .into_iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|v| (op, v)))
        .ok_or_else(|| format!("where {s:?}: unknown operator"))?;
        let path = json_path(path.trim()).map_err(|e| format!("where {s:?}: {e}"))?;
        let value = literal(value.trim());
        match (&op, &value) {
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Literal::Bool(_) | Literal::Null) => {
                return Err(format!(
                    "where {s:?}: <, <=, > and >= compare numbers or strings"
                ));
            }
            (Op::Contains, v) if !matches!(v, Literal::Str(_)) => {
                return Err(format!("where {s:?}: ~ looks for text in strings"));
            }
            _ => {}
        }
        Ok(Self { path, op, value })
    }

    /// Appends ` AND (...)` over the column `data`, binding every value.
    pub(crate) fn push_sql(&self, sql: &mut String, values: &mut Vec<Sql>) {
        let path = || Sql::Text(self.path.clone());
        let (is_type, val): (&str, Option<Sql>) = match &self.value {
            Literal::Str(s) => ("= 'text'", Some(Sql::Text(s.clone()))),
            Literal::Int(i) => ("IN ('integer', 'real')", Some(Sql::Integer(*i))),
            Literal::Float(f) => ("IN ('integer', 'real')", Some(Sql::Real(*f))),
            Literal::Bool(true) => ("= 'true'", None),
            Literal::Bool(false) => ("= 'false'", None),
            Literal::Null => ("= 'null'", None),
        };
        let cmp = match self.op {
            Op::Eq | Op::Ne => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "",
        };
        let mut cond = format!("json_type({READABLE_DATA}, ?) {is_type}");
        values.push(path());
        if let Some(v) = val {
            if self.op == Op::Contains {
                let _ = write!(cond, " AND instr(json_extract({READABLE_DATA}, ?), ?) > 0");
            } else {
                let _ = write!(cond, " AND json_extract({READABLE_DATA}, ?) {cmp} ?");
            }
            values.push(path());
            values.push(v);
        }
        if self.op == Op::Ne {
            // A missing field (NULL) does not equal the value.
            let _ = write!(sql, " AND NOT COALESCE(({cond}), 0)");
        } else {
            let _ = write!(sql, " AND ({cond})");
        }
    }
}

/// `a.b` → `$."a"."b"`.
fn json_path(p: &str) -> Result<String, String> {
    if p.is_empty() || p.len() > MAX_PATH {
        return Err(format!("the field path must be 1 to {MAX_PATH} bytes"));
    }
    let mut out = String::from("$");
    for seg in p.split('.') {
        if seg.is_empty() || seg.contains(['"', '\\']) || seg.chars().any(char::is_control) {
            return Err(
                "field names are non-empty, joined by `.`, without quotes, backslashes or \
                 control characters"
                    .into(),
            );
        }
        let _ = write!(out, ".\"{seg}\"");
    }
    Ok(out)
}

/// A JSON literal, or else the text itself.
fn literal(v: &str) -> Literal {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::String(s)) => Literal::Str(s),
        Ok(serde_json::Value::Bool(b)) => Literal::Bool(b),
        Ok(serde_json::Value::Null) => Literal::Null,
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Literal::Int(i),
            None => n
                .as_f64()
                .map_or(Literal::Str(v.to_owned()), Literal::Float),
        },
        _ => Literal::Str(v.to_owned()),
    }
}

/// A stored event as the queries return it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) time: EventTime,
    pub(crate) data: Option<String>,
    pub(crate) event_id: Option<String>,
}

const COLUMNS: &str = "id, key, ts_ns, ts_offset_s, data, event_id";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        key: r.get(1)?,
        time: EventTime {
            unix_ns: r.get(2)?,
            offset_s: r.get(3)?,
        },
        data: r.get(4)?,
        event_id: r.get(5)?,
    })
}

/// Appends `{"id":..,"key":..,"timestamp":..,"data":..[,"event_id":..]}`.
pub(crate) fn write_event(
    out: &mut Vec<u8>,
    id: i64,
    key: &str,
    time: EventTime,
    data: Option<&str>,
    event_id: Option<&str>,
) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"key\":");
    json::write_str(out, key);
    out.extend_from_slice(b",\"timestamp\":\"");
    format_rfc3339(time, out);
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data.unwrap_or("null").as_bytes());
    if let Some(eid) = event_id {
        out.extend_from_slice(b",\"event_id\":");
        json::write_str(out, eid);
    }
    out.push(b'}');
}

fn write_row(out: &mut Vec<u8>, r: &Row) {
    write_event(
        out,
        r.id,
        &r.key,
        r.time,
        r.data.as_deref(),
        r.event_id.as_deref(),
    );
}

/// Sort order of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Asc,
    Desc,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RangeQuery {
    pub(crate) key: String,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) order: Order,
    pub(crate) limit: usize,
    /// The `(ts_ns, id)` of the last event of the previous page.
    pub(crate) after: Option<(i64, i64)>,
    pub(crate) preds: Vec<Predicate>,
}

/// The SQL of a range page (fetching `limit + 1` rows to know whether another page follows).
pub(crate) fn range_sql(q: &RangeQuery) -> (String, Vec<Sql>) {
    let mut sql =
        format!("SELECT {COLUMNS} FROM events WHERE key = ? AND ts_ns >= ? AND ts_ns <= ?");
    // SQLite starts the index walk from the `ts_ns` bounds, not from the row-value cursor
    // condition: tighten the bound the walk starts from to the cursor's time, or a page deep
    // into a key would step over every event before it.
    let (from, to) = match (q.after, q.order) {
        (Some((ts, _)), Order::Asc) => (q.from.max(ts), q.to),
        (Some((ts, _)), Order::Desc) => (q.from, q.to.min(ts)),
        (None, _) => (q.from, q.to),
    };
    let mut values = vec![
        Sql::Text(q.key.clone()),
        Sql::Integer(from),
        Sql::Integer(to),
    ];
    if let Some((ts, id)) = q.after {
        sql.push_str(match q.order {
            Order::Asc => " AND (ts_ns, id) > (?, ?)",
            Order::Desc => " AND (ts_ns, id) < (?, ?)",
        });
        values.push(Sql::Integer(ts));
        values.push(Sql::Integer(id));
    }
    for p in &q.preds {
        p.push_sql(&mut sql, &mut values);
    }
    sql.push_str(match q.order {
        Order::Asc => " ORDER BY ts_ns ASC, id ASC LIMIT ?",
        Order::Desc => " ORDER BY ts_ns DESC, id DESC LIMIT ?",
    });
    values.push(Sql::Integer(q.limit as i64 + 1));
    (sql, values)
}

/// Reads one page; returns the rows and the cursor of the next page, if any.
pub(crate) fn read_range(
    conn: &Connection,
    q: &RangeQuery,
) -> rusqlite::Result<(Vec<Row>, Option<String>)> {
    let (sql, values) = range_sql(q);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<Row> = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), read_row)?
        .collect::<Result<_, _>>()?;
    let next = if rows.len() > q.limit {
        rows.truncate(q.limit);
        rows.last().map(|r| format!("{}_{}", r.time.unix_ns, r.id))
    } else {
        None
    };
    Ok((rows, next))
}

fn parse_range_cursor(c: &str) -> Result<(i64, i64), ApiError> {
    c.split_once('_')
        .and_then(|(t, i)| Some((t.parse().ok()?, i.parse().ok()?)))
        .ok_or_else(|| bad_query("cursor is not one this server returned"))
}

/// `GET /v1/latest`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestQuery {
    pub(crate) prefix: String,
    pub(crate) at: i64,
    pub(crate) since: Option<i64>,
    pub(crate) limit: usize,
    /// Keys up to this one were on earlier pages.
    pub(crate) after_key: Option<String>,
    pub(crate) preds: Vec<Predicate>,
}

/// The SQL of "the newest event of one key at or before `at` that matches".
pub(crate) fn latest_sql(q: &LatestQuery) -> (String, Vec<Sql>) {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE key = ? AND ts_ns <= ?");
    // The key is bound per row; a placeholder value keeps the order of the values.
    let mut values = vec![Sql::Null, Sql::Integer(q.at)];
    if let Some(since) = q.since {
        sql.push_str(" AND ts_ns >= ?");
        values.push(Sql::Integer(since));
    }
    for p in &q.preds {
        p.push_sql(&mut sql, &mut values);
    }
    sql.push_str(" ORDER BY ts_ns DESC, id DESC LIMIT 1");
    (sql, values)
}

/// Per key (in key order, after `after_key`), the latest matching event; returns the rows and
/// the cursor of the next page. Runs in one read transaction: one snapshot.
pub(crate) fn read_latest(
    conn: &mut Connection,
    q: &LatestQuery,
) -> rusqlite::Result<(Vec<Row>, Option<String>)> {
    let tx = conn.transaction()?;
    let (lo, hi) = prefix_range(&q.prefix);
    let (latest_sql, mut latest_values) = latest_sql(q);
    let mut out = Vec::new();
    let mut next = None;
    {
        let mut first_key =
            tx.prepare_cached("SELECT key FROM events WHERE key >= ?1 ORDER BY key LIMIT 1")?;
        let mut next_key =
            tx.prepare_cached("SELECT key FROM events WHERE key > ?1 ORDER BY key LIMIT 1")?;
        let mut latest = tx.prepare_cached(&latest_sql)?;
        let mut key: Option<String> = match &q.after_key {
            Some(after) if after.as_str() >= lo.as_str() => {
                next_key.query_row([after], |r| r.get(0)).optional()?
            }
            _ => first_key.query_row([&lo], |r| r.get(0)).optional()?,
        };
        while let Some(k) = key {
            if hi.as_deref().is_some_and(|hi| k.as_str() >= hi) {
                break;
            }
            if out.len() == q.limit {
                // More keys follow; the page ends with the previous one.
                next = out.last().map(|r: &Row| hex_key(&r.key));
                break;
            }
            latest_values[0] = Sql::Text(k.clone());
            if let Some(row) = latest
                .query_row(rusqlite::params_from_iter(latest_values.iter()), read_row)
                .optional()?
            {
                out.push(row);
            }
            key = next_key.query_row([&k], |r| r.get(0)).optional()?;
        }
    }
    tx.finish()?;
    Ok((out, next))
}

fn hex_key(k: &str) -> String {
    super::auth::hex(k.as_bytes())
}

fn parse_key_cursor(c: &str) -> Result<String, ApiError> {
    let bad = || bad_query("cursor is not one this server returned");
    if !c.len().is_multiple_of(2) || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&c[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn page_response(rows: &[Row], next: Option<String>) -> Response {
    let mut out = Vec::with_capacity(64 + rows.len() * 128);
    out.extend_from_slice(b"{\"events\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_row(&mut out, r);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match next {
        Some(c) => json::write_str(&mut out, &c),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    json::response(StatusCode::OK, out)
}

fn read_failed(what: &str, e: &rusqlite::Error) -> ApiError {
    tracing::error!(error = e as &dyn std::error::Error, "{what} failed");
    ApiError::read_failed()
}

/// Parses `GET /v1/events` parameters.
pub(crate) fn parse_range(
    pairs: &[(String, String)],
    by: &Principal,
) -> Result<RangeQuery, ApiError> {
    let p = Params::new(
        pairs,
        &["key", "from", "to", "limit", "order", "cursor", "where"],
        &["where"],
    )?;
    let key = p
        .get("key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad_query("key is required"))?
        .to_owned();
    by.check_key(&key)?;
    let from = p.time("from")?.unwrap_or(i64::MIN);
    let to = p.time("to")?.unwrap_or(i64::MAX);
    if from > to {
        return Err(bad_query("from is after to"));
    }
    let order = match p.get("order") {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(o) => return Err(bad_query(format!("order {o:?} is not asc or desc"))),
    };
    Ok(RangeQuery {
        key,
        from,
        to,
        order,
        limit: p.limit(DEFAULT_LIMIT, MAX_LIMIT)?,
        after: p.get("cursor").map(parse_range_cursor).transpose()?,
        preds: p.predicates()?,
    })
}

/// `GET /v1/events`: one key's events in a time range.
pub(crate) async fn range(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let q = match parse_range(&pairs, &by) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    match st.readers.run(move |conn| read_range(conn, &q)).await {
        Ok((rows, next)) => page_response(&rows, next),
        Err(e) => read_failed("a range query", &e).into_response(),
    }
}

/// Parses `GET /v1/latest` parameters.
pub(crate) fn parse_latest(
    pairs: &[(String, String)],
    by: &Principal,
    now_ns: i64,
) -> Result<LatestQuery, ApiError> {
    let p = Params::new(
        pairs,
        &["prefix", "at", "since", "limit", "cursor", "where"],
        &["where"],
    )?;
    let prefix = by.narrow(p.get("prefix").unwrap_or(""))?;
    let at = p.time("at")?.unwrap_or(now_ns);
    let since = p.time("since")?;
    if since.is_some_and(|s| s > at) {
        return Err(bad_query("since is after at"));
    }
    Ok(LatestQuery {
        prefix,
        at,
        since,
        limit: p.limit(DEFAULT_LIMIT * 10, MAX_LIMIT)?,
        after_key: p.get("cursor").map(parse_key_cursor).transpose()?,
        preds: p.predicates()?,
    })
}

/// `GET /v1/latest`: the latest matching event of every key with a prefix.
pub(crate) async fn latest(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let q = match parse_latest(&pairs, &by, super::writer::now_ns()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    match st.readers.run(move |conn| read_latest(conn, &q)).await {
        Ok((rows, next)) => page_response(&rows, next),
        Err(e) => read_failed("a latest query", &e).into_response(),
    }
}

/// What a delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One event by id.
    One(i64),
    /// One key's events in `[from, to]`.
    Key { key: String, from: i64, to: i64 },
    /// The events of every key with a prefix in `[from, to]`.
    Prefix { prefix: String, from: i64, to: i64 },
}

/// The delete condition: the target, the caller's namespace, and events up to `max_id` only.
pub(crate) fn delete_filter(
    t: &Target,
    namespace: Option<&str>,
    max_id: i64,
) -> (String, Vec<Sql>) {
    let mut sql = String::from("id <= ?");
    let mut values = vec![Sql::Integer(max_id)];
    match t {
        Target::One(id) => {
            sql.push_str(" AND id = ?");
            values.push(Sql::Integer(*id));
        }
        Target::Key { key, from, to } => {
            sql.push_str(" AND key = ? AND ts_ns >= ? AND ts_ns <= ?");
            values.extend([
                Sql::Text(key.clone()),
                Sql::Integer(*from),
                Sql::Integer(*to),
            ]);
        }
        Target::Prefix { prefix, from, to } => {
            push_prefix(&mut sql, &mut values, prefix);
            sql.push_str(" AND ts_ns >= ? AND ts_ns <= ?");
            values.extend([Sql::Integer(*from), Sql::Integer(*to)]);
        }
    }
    if let Some(ns) = namespace {
        push_prefix(&mut sql, &mut values, ns);
    }
    (sql, values)
}

/// Runs a delete in chunks through the writer (ingest commits between chunks). With the metrics
/// pipeline on, it first flushes the aggregated metrics and deletes only events whose metrics
/// are stored: the metrics keep counting every event that was stored, and a crash cannot make
/// a deleted event vanish from them (the replay after a crash reads the event store).
pub(crate) async fn run_delete(st: &AppState, t: Target, by: &Principal) -> Result<u64, ApiError> {
    let max_id = match &st.pipeline {
        Some(p) => {
            p.flush().await.map_err(|e| {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "the metrics flush before a delete failed"
                );
                ApiError::busy(
                    1,
                    "the metrics store did not take the flush that must precede a delete",
                )
            })?;
            p.flushed()
        }
        None => i64::MAX,
    };
    let (filter, values) = delete_filter(&t, by.namespace.as_deref(), max_id);
    let mut total = 0u64;
    loop {
        let (f, v) = (filter.clone(), values.clone());
        let n = st
            .ops
            .run("deleting events", move |store| {
                store.delete_matching(&f, &v, DELETE_CHUNK)
            })
            .await?;
        total += n as u64;
        if n < DELETE_CHUNK {
            return Ok(total);
        }
    }
}

fn deleted(n: u64) -> Response {
    json::response(StatusCode::OK, format!("{{\"deleted\":{n}}}").into_bytes())
}

/// `DELETE /v1/events?key=|prefix=&from=&to=`.
pub(crate) async fn delete_many(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let target = (|| {
        let p = Params::new(&pairs, &["key", "prefix", "from", "to"], &[])?;
        let from = p.time("from")?.unwrap_or(i64::MIN);
        let to = p.time("to")?.unwrap_or(i64::MAX);
        if from > to {
            return Err(bad_query("from is after to"));
        }
        match (p.get("key"), p.get("prefix")) {
            (Some(k), None) if !k.is_empty() => {
                by.check_key(k)?;
                Ok(Target::Key {
                    key: k.to_owned(),
                    from,
                    to,
                })
            }
            (None, Some(pre)) if !pre.is_empty() => Ok(Target::Prefix {
                prefix: by.narrow(pre)?,
                from,
                to,
            }),
            _ => Err(bad_query(
                "give exactly one of key or prefix (non-empty); deleting everything is not \
                 offered",
            )),
        }
    })();
    match target {
        Ok(t) => match run_delete(&st, t, &by).await {
            Ok(n) => deleted(n),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/events/{id}`.
pub(crate) async fn delete_one(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return bad_query("the event id is an integer (the `id` the queries return)")
            .into_response();
    };
    match run_delete(&st, Target::One(id), &by).await {
        Ok(0) => api_error(
            StatusCode::NOT_FOUND,
            "Not found",
            "no event with this id (in this key's namespace)".into(),
        )
        .into_response(),
        Ok(n) => deleted(n),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_hold_exactly_the_prefixed_keys() {
        assert_eq!(prefix_range("ab"), ("ab".into(), Some("ac".into())));
        assert_eq!(prefix_range(""), (String::new(), None));
        assert_eq!(
            prefix_range("a\u{10FFFF}"),
            ("a\u{10FFFF}".into(), Some("b".into()))
        );
        assert_eq!(prefix_range("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
        assert_eq!(prefix_range("x\u{D7FF}").1.as_deref(), Some("x\u{E000}"));
    }

    #[test]
    fn predicates_parse_typed_and_refuse_nonsense() {
        let p = Predicate::parse("user.plan=pro").unwrap();
        assert_eq!(p.path, r#"$."user"."plan""#);
        assert_eq!((p.op, p.value), (Op::Eq, Literal::Str("pro".into())));
        let p = Predicate::parse("temp>=20.5").unwrap();
        assert_eq!((p.op, p.value), (Op::Ge, Literal::Float(20.5)));
        let p = Predicate::parse(r#"n != "7""#).unwrap();
        assert_eq!((p.op, p.value), (Op::Ne, Literal::Str("7".into())));
        assert_eq!(
            Predicate::parse("ok=true").unwrap().value,
            Literal::Bool(true)
        );
        assert_eq!(Predicate::parse("x<3").unwrap().value, Literal::Int(3));
        assert_eq!(Predicate::parse("x~ab").unwrap().op, Op::Contains);
        for bad in [
            "nop", "=1", "a..b=1", "a\"b=1", "x<true", "x>null", "x~3", "a\\b=1",
        ] {
            assert!(Predicate::parse(bad).is_err(), "{bad}");
        }
    }

    /// Every query reads an index in order: no table scan, no sort.
    #[test]
    fn queries_use_the_key_time_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        drop(
            super::super::store::EventStore::open(&path, super::super::config::Synchronous::Normal)
                .unwrap(),
        );
        let conn = Connection::open(&path).unwrap();
        let plan = |sql: &str, values: &[Sql]| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.join(" | ")
        };
        let pred = vec![Predicate::parse("a>1").unwrap()];
        for order in [Order::Asc, Order::Desc] {
            for after in [None, Some((5, 6))] {
                let q = RangeQuery {
                    key: "k".into(),
                    from: 0,
                    to: 10,
                    order,
                    limit: 10,
                    after,
                    preds: pred.clone(),
                };
                let (sql, values) = range_sql(&q);
                let p = plan(&sql, &values);
                assert!(
                    p.contains("USING INDEX events_key_ts (key=? AND"),
                    "{sql}: {p}"
                );
                assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
            }
        }
        let q = LatestQuery {
            prefix: "p".into(),
            at: 10,
            since: Some(1),
            limit: 10,
            after_key: None,
            preds: pred,
        };
        let (sql, mut values) = latest_sql(&q);
        values[0] = Sql::Text("k".into());
        let p = plan(&sql, &values);
        assert!(p.contains("USING INDEX events_key_ts (key=? AND"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = plan(
            "SELECT key FROM events WHERE key > ?1 ORDER BY key LIMIT 1",
            &[Sql::Text("k".into())],
        );
        assert!(p.contains("COVERING INDEX events_key_ts (key>?)"), "{p}");
        let (filter, values) = delete_filter(
            &Target::Prefix {
                prefix: "p/".into(),
                from: 0,
                to: 9,
            },
            None,
            100,
        );
        let p = plan(&format!("SELECT id FROM events WHERE {filter}"), &values);
        assert!(p.contains("events_key_ts (key>? AND key<?)"), "{p}");
    }

    /// A page deep into a key costs what a page costs, not what the events before it cost:
    /// counted in SQLite virtual-machine steps, which do not depend on the machine.
    #[test]
    fn a_deep_cursor_starts_the_index_walk_at_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        drop(
            super::super::store::EventStore::open(&path, super::super::config::Synchronous::Normal)
                .unwrap(),
        );
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..20_000i64 {
            tx.execute(
                "INSERT INTO events (key, ts_ns, ts_offset_s, data, received_ns)
                 VALUES ('hot', ?1, 0, '{}', 0)",
                [i * 1_000],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let steps = |order: Order, after: Option<(i64, i64)>| {
            let q = RangeQuery {
                key: "hot".into(),
                from: i64::MIN,
                to: i64::MAX,
                order,
                limit: 100,
                after,
                preds: vec![],
            };
            let (sql, values) = range_sql(&q);
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt
                .query_map(rusqlite::params_from_iter(values.iter()), read_row)
                .unwrap()
                .count();
            assert_eq!(n, 101, "a full page and one more");
            stmt.get_status(rusqlite::StatementStatus::VmStep)
        };
        for order in [Order::Asc, Order::Desc] {
            let shallow = steps(order, None);
            // 15,000 events before the cursor (ascending) / 5,000 after it (descending).
            let deep = steps(order, Some((15_000 * 1_000, 15_001)));
            assert!(
                deep < shallow * 2,
                "{order:?}: a deep page took {deep} steps, the first {shallow}"
            );
        }
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_range_cursor("-5_7").unwrap(), (-5, 7));
        assert!(parse_range_cursor("5").is_err());
        assert_eq!(parse_key_cursor(&hex_key("é/x")).unwrap(), "é/x");
        assert!(parse_key_cursor("zz").is_err());
        assert!(parse_key_cursor("ff").is_err());
    }
}
