//! A small key-value store per namespace, written through to SQLite (table `kv`).
//!
//! | route | scope | |
//! |---|---|---|
//! | `PUT /v1/kv/{ns}/{key}?if_version=` | write | body: any JSON value; answers the new `version` |
//! | `GET /v1/kv/{ns}/{key}` | read | `{"ns","key","value","version","updated"}`, or 404 |
//! | `GET /v1/kv/{ns}?prefix=&limit=&cursor=` | read | the values of a namespace, in key order, paged |
//! | `DELETE /v1/kv/{ns}/{key}?if_version=` | delete | 404 if there was none |
//!
//! A write is answered after it is committed (through the writer, like events). Every value has
//! a `version`, 1 on creation and +1 per write; `if_version=N` makes a write or delete
//! conditional (`409` when the stored version differs; `if_version=0` means "only if absent"),
//! which is enough for compare-and-set. Values are kept as the JSON text received. The key may
//! contain `/`. Unlike FluxionDB, deleting events never touches the KV store.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;

use super::auth::{Principal, api_error};
use super::body;
use super::error::ApiError;
use super::json;
use super::query::{Params, bad_query};
use super::routes::AppState;
use super::time_fmt::{EventTime, format_rfc3339};
use super::writer::now_ns;

/// Longest namespace and key, in bytes.
pub(crate) const MAX_NAME: usize = 256;
/// Largest value, in bytes of JSON.
pub(crate) const MAX_VALUE: usize = 64 * 1024;
/// Default and largest page of a listing.
const DEFAULT_LIST: usize = 100;
const MAX_LIST: usize = 1000;

fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(bad_query(format!(
            "the {what} must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_ns(by: &Principal, ns: &str) -> Result<(), ApiError> {
    check_name("namespace", ns)?;
    by.check_key(ns)
}

fn if_version(pairs: &[(String, String)]) -> Result<Option<i64>, ApiError> {
    let p = Params::new(pairs, &["if_version"], &[])?;
    p.get("if_version")
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad_query("if_version is a version number (0: must not exist)"))
        })
        .transpose()
}

fn conflict(current: Option<i64>) -> ApiError {
    api_error(
        StatusCode::CONFLICT,
        "Version mismatch",
        match current {
            Some(v) => format!("the stored version is {v}"),
            None => "there is no stored value".into(),
        },
    )
}

fn not_found() -> ApiError {
    api_error(
        StatusCode::NOT_FOUND,
        "Not found",
        "no value under this key".into(),
    )
}

/// What a conditional write found.
enum Written {
    Version(i64),
    Conflict(Option<i64>),
}

/// `PUT /v1/kv/{ns}/{key}`.
pub(crate) async fn put(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((ns, key)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match body::read(body, &headers, MAX_VALUE).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let checked = (|| {
        check_ns(&by, &ns)?;
        check_name("key", &key)?;
        let expect = if_version(&pairs)?;
        let value: &RawValue = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_json(format!("the body must be one JSON value: {e}")))?;
        Ok::<_, ApiError>((expect, value.get().to_owned()))
    })();
    let (expect, value) = match checked {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (n, k) = (ns.clone(), key.clone());
    let written = st
        .ops
        .run("writing a KV value", move |store| {
            let tx = store
                .connection()
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .prepare_cached("SELECT version FROM kv WHERE ns = ?1 AND key = ?2")?
                .query_row(params![n, k], |r| r.get(0))
                .optional()?;
            if let Some(want) = expect
                && current.unwrap_or(0) != want
            {
                return Ok(Written::Conflict(current));
            }
            let version = current.unwrap_or(0) + 1;
            tx.prepare_cached(
                "INSERT INTO kv (ns, key, value, version, updated_ns) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,
                     version = excluded.version, updated_ns = excluded.updated_ns",
            )?
            .execute(params![n, k, value, version, now_ns()])?;
            tx.commit()?;
            Ok(Written::Version(version))
        })
        .await;
    match written {
        Ok(Written::Version(v)) => {
            let mut out = b"{\"key\":".to_vec();
            json::write_str(&mut out, &key);
            out.extend_from_slice(b",\"ns\":");
            json::write_str(&mut out, &ns);
            out.extend_from_slice(format!(",\"version\":{v}}}").as_bytes());
            json::response(StatusCode::OK, out)
        }
        Ok(Written::Conflict(cur)) => conflict(cur).into_response(),
        Err(e) => e.into_response(),
    }
}

fn write_item(out: &mut Vec<u8>, key: &str, value: &str, version: i64, updated_ns: i64) {
    out.extend_from_slice(b"{\"key\":");
    json::write_str(out, key);
    out.extend_from_slice(b",\"updated\":\"");
    format_rfc3339(
        EventTime {
            unix_ns: updated_ns,
            offset_s: 0,
        },
        out,
    );
    out.extend_from_slice(b"\",\"value\":");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(format!(",\"version\":{version}}}").as_bytes());
}

/// `GET /v1/kv/{ns}/{key}`.
pub(crate) async fn get(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((ns, key)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let checked = check_ns(&by, &ns)
        .and_then(|()| check_name("key", &key))
        .and_then(|()| Params::new(&pairs, &[], &[]).map(drop));
    if let Err(e) = checked {
        return e.into_response();
    }
    let (n, k) = (ns.clone(), key.clone());
    let read = st
        .readers
        .run(move |conn| {
            conn.prepare_cached(
                "SELECT value, version, updated_ns FROM kv WHERE ns = ?1 AND key = ?2",
            )?
            .query_row(params![n, k], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
        })
        .await;
    match read {
        Ok(Some((value, version, updated))) => {
            let mut out = Vec::with_capacity(value.len() + 96);
            write_item(&mut out, &key, &value, version, updated);
            // `{"key":...` → `{"key":...,"ns":...}`: insert ns after the opening brace.
            let mut with_ns = b"{\"ns\":".to_vec();
            json::write_str(&mut with_ns, &ns);
            with_ns.push(b',');
            with_ns.extend_from_slice(&out[1..]);
            json::response(StatusCode::OK, with_ns)
        }
        Ok(None) => not_found().into_response(),
        Err(e) => {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "reading a KV value failed"
            );
            ApiError::read_failed().into_response()
        }
    }
}

/// `GET /v1/kv/{ns}`: values in key order.
pub(crate) async fn list(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(ns): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let parsed = (|| {
        check_ns(&by, &ns)?;
        let p = Params::new(&pairs, &["prefix", "limit", "cursor"], &[])?;
        let limit = p.limit(DEFAULT_LIST, MAX_LIST)?;
        Ok::<_, ApiError>((
            p.get("prefix").unwrap_or("").to_owned(),
            limit,
            p.get("cursor").map(str::to_owned),
        ))
    })();
    let (prefix, limit, cursor) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let n = ns.clone();
    let read = st
        .readers
        .run(move |conn| {
            let (lo, hi) = super::query::prefix_range(&prefix);
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version, updated_ns FROM kv
                 WHERE ns = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                   AND (?4 IS NULL OR key > ?4)
                 ORDER BY key LIMIT ?5",
            )?;
            let rows = stmt.query_map(params![n, lo, hi, cursor, limit as i64 + 1], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await;
    match read {
        Ok(mut rows) => {
            let next = (rows.len() > limit).then(|| {
                rows.truncate(limit);
                rows.last().map(|r| r.0.clone()).unwrap_or_default()
            });
            let mut out = b"{\"items\":[".to_vec();
            for (i, (k, v, ver, upd)) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_item(&mut out, k, v, *ver, *upd);
            }
            out.extend_from_slice(b"],\"next_cursor\":");
            match next {
                Some(c) => json::write_str(&mut out, &c),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"ns\":");
            json::write_str(&mut out, &ns);
            out.push(b'}');
            json::response(StatusCode::OK, out)
        }
        Err(e) => {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "listing KV values failed"
            );
            ApiError::read_failed().into_response()
        }
    }
}

/// `DELETE /v1/kv/{ns}/{key}`.
pub(crate) async fn delete(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((ns, key)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let expect = match check_ns(&by, &ns)
        .and_then(|()| check_name("key", &key))
        .and_then(|()| if_version(&pairs))
    {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let done = st
        .ops
        .run("deleting a KV value", move |store| {
            let tx = store
                .connection()
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .prepare_cached("SELECT version FROM kv WHERE ns = ?1 AND key = ?2")?
                .query_row(params![ns, key], |r| r.get(0))
                .optional()?;
            if let Some(want) = expect
                && current.unwrap_or(0) != want
            {
                return Ok(Written::Conflict(current));
            }
            let n = tx
                .prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")?
                .execute(params![ns, key])?;
            tx.commit()?;
            Ok(Written::Version(n as i64))
        })
        .await;
    match done {
        Ok(Written::Version(0)) => not_found().into_response(),
        Ok(Written::Version(_)) => json::response(StatusCode::OK, b"{\"deleted\":true}".to_vec()),
        Ok(Written::Conflict(cur)) => conflict(cur).into_response(),
        Err(e) => e.into_response(),
    }
}
