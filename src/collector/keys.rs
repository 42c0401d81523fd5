//! Managing API keys at runtime (scope `admin`): `POST /v1/keys`, `GET /v1/keys`,
//! `DELETE /v1/keys/{id}`. Keys are stored hashed in the `api_keys` table through the writer;
//! the token is shown once, in the answer to its creation.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{
    MAX_PREFIX_LEN, Principal, Scope, Scopes, StoredKey, Who, api_error, hash_token, new_token,
};
use super::body;
use super::error::ApiError;
use super::json;
use super::routes::AppState;
use super::time_fmt::{EventTime, format_rfc3339};
use super::writer::now_ns;

/// Largest body of a key creation.
const MAX_BODY: usize = 16 * 1024;
/// Longest label.
const MAX_LABEL: usize = 256;

/// Reads the stored keys (at start-up, before the writer runs).
pub(crate) fn load(conn: &Connection) -> rusqlite::Result<Vec<StoredKey>> {
    let mut stmt = conn.prepare(
        "SELECT id, hash, scopes, prefix, label, created_ns FROM api_keys ORDER BY created_ns",
    )?;
    let rows = stmt.query_map([], |r| {
        let hash: Vec<u8> = r.get(1)?;
        let scopes: String = r.get(2)?;
        Ok((
            r.get::<_, String>(0)?,
            hash,
            scopes,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, hash, scopes, prefix, label, created_ns) = row?;
        let (Ok(hash), Some(scopes)) = (<[u8; 32]>::try_from(hash), Scopes::from_text(&scopes))
        else {
            // A row this build cannot read grants nothing; say so rather than fail to start.
            tracing::error!(key_id = %id, "ignoring an unreadable row of api_keys");
            continue;
        };
        out.push(StoredKey {
            id: id.into(),
            hash,
            scopes,
            prefix: prefix.map(Into::into),
            label,
            created_ns,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    scopes: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

fn bad(detail: String) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, "Invalid request", detail)
}

fn rfc3339(unix_ns: i64) -> String {
    let mut out = Vec::new();
    format_rfc3339(
        EventTime {
            unix_ns,
            offset_s: 0,
        },
        &mut out,
    );
    String::from_utf8(out).expect("RFC 3339 is ASCII")
}

fn describe(k: &StoredKey) -> Value {
    json!({
        "id": &*k.id,
        "scopes": k.scopes.list().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "prefix": k.prefix.as_deref(),
        "label": k.label,
        "created": rfc3339(k.created_ns),
    })
}

/// Validates a creation request before anything is written.
fn validate(body: &[u8]) -> Result<(Scopes, Option<String>, Option<String>), ApiError> {
    let req: NewKey = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "expected {{\"scopes\": [\"read\"|\"write\"|\"delete\"|\"admin\", ...], \
             \"prefix\"?: string, \"label\"?: string}}: {e}"
        ))
    })?;
    let mut scopes = Vec::new();
    for s in &req.scopes {
        scopes.push(Scope::parse(s).ok_or_else(|| {
            bad(format!(
                "unknown scope {s:?}; the scopes are read, write, delete and admin"
            ))
        })?);
    }
    if scopes.is_empty() {
        return Err(bad("a key needs at least one scope".into()));
    }
    let scopes = Scopes::of(&scopes);
    if let Some(p) = &req.prefix {
        if p.is_empty() || p.len() > MAX_PREFIX_LEN {
            return Err(bad(format!(
                "prefix must be 1 to {MAX_PREFIX_LEN} bytes (omit it for all keys)"
            )));
        }
        if p.chars().any(char::is_control) {
            return Err(bad("prefix must not contain control characters".into()));
        }
        if scopes.contains(Scope::Admin) {
            return Err(bad(
                "an admin key manages every key, so it cannot be limited to a prefix".into(),
            ));
        }
    }
    if let Some(l) = &req.label
        && (l.len() > MAX_LABEL || l.chars().any(char::is_control))
    {
        return Err(bad(format!(
            "label must be at most {MAX_LABEL} bytes without control characters"
        )));
    }
    Ok((scopes, req.prefix, req.label))
}

/// `POST /v1/keys`: creates a key and answers its token, once.
pub(crate) async fn create(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match body::read(body, &headers, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match create_inner(&st, &by, &body).await {
        Ok(v) => json::response(StatusCode::CREATED, v.to_string().into_bytes()),
        Err(e) => e.into_response(),
    }
}

async fn create_inner(st: &AppState, by: &Principal, body: &[u8]) -> Result<Value, ApiError> {
    no_management_without_admin(st, by)?;
    let (scopes, prefix, label) = validate(body)?;
    let (id, token) = new_token().map_err(|e| {
        tracing::error!(
            error = &e as &dyn std::error::Error,
            "the random source failed"
        );
        api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Store error",
            "no random bytes for a key".into(),
        )
    })?;
    let key = StoredKey {
        id: id.into(),
        hash: hash_token(&token),
        scopes,
        prefix: prefix.map(Into::into),
        label,
        created_ns: now_ns(),
    };
    let row = key.clone();
    st.ops
        .run("storing an API key", move |store| {
            store.connection().execute(
                "INSERT INTO api_keys (id, hash, scopes, prefix, label, created_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    &*row.id,
                    &row.hash[..],
                    row.scopes.to_text(),
                    row.prefix.as_deref(),
                    row.label,
                    row.created_ns
                ],
            )
        })
        .await?;
    st.auth.insert(key.clone());
    tracing::info!(key_id = %key.id, scopes = ?key.scopes, prefix = ?key.prefix, "API key created");
    let mut v = describe(&key);
    v["key"] = Value::String(token);
    Ok(v)
}

/// `GET /v1/keys`: the keys, without their secrets.
pub(crate) async fn list(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
) -> Response {
    if let Err(e) = no_management_without_admin(&st, &by) {
        return e.into_response();
    }
    let keys: Vec<Value> = st.auth.list().iter().map(describe).collect();
    json::response(
        StatusCode::OK,
        json!({ "keys": keys }).to_string().into_bytes(),
    )
}

/// `DELETE /v1/keys/{id}`: revokes a key at once (its live connections are closed).
pub(crate) async fn revoke(
    State(st): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = no_management_without_admin(&st, &by) {
        return e.into_response();
    }
    // In memory first: the key stops working before the store is even asked.
    let was_live = st.auth.revoke(&id);
    let row_id = id.clone();
    let stored = st
        .ops
        .run("revoking an API key", move |store| {
            store
                .connection()
                .execute("DELETE FROM api_keys WHERE id = ?1", [&row_id])
        })
        .await;
    match stored {
        Ok(n) if n > 0 || was_live => {
            tracing::info!(key_id = %id, "API key revoked");
            json::response(
                StatusCode::OK,
                json!({ "revoked": id }).to_string().into_bytes(),
            )
        }
        Ok(_) => api_error(
            StatusCode::NOT_FOUND,
            "Not found",
            "no API key has this id".into(),
        )
        .into_response(),
        Err(mut e) => {
            e.detail = Some(
                "the key is revoked in this process but the store failed to record it; \
                 repeat the request"
                    .into(),
            );
            e.into_response()
        }
    }
}

/// An open server (no keys at all) cannot grow keys over HTTP: anyone could lock everyone
/// else out. Key management needs a configured admin key or an admin-scoped key.
fn no_management_without_admin(st: &AppState, by: &Principal) -> Result<(), ApiError> {
    if by.who == Who::Open {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this server runs without API keys; start it with ACCRUE_ADMIN_KEY or \
             --admin-key-file to manage keys"
                .into(),
        ));
    }
    debug_assert!(st.auth.enabled());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_requests_are_validated_before_anything_is_written() {
        let ok = validate(br#"{"scopes":["read","write"],"prefix":"app/","label":"x"}"#).unwrap();
        assert_eq!(ok.0, Scopes::of(&[Scope::Read, Scope::Write]));
        assert_eq!(ok.1.as_deref(), Some("app/"));
        for body in [
            r#"{"scopes":[]}"#,
            r#"{"scopes":["root"]}"#,
            r#"{"scopes":["admin"],"prefix":"a"}"#,
            r#"{"scopes":["read"],"prefix":""}"#,
            r#"{"scopes":["read"],"prefix":"a\u0000"}"#,
            r#"{"scopes":["read"],"extra":1}"#,
            r#"{"scopes":"read"}"#,
            "[]",
            "",
        ] {
            let e = validate(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        }
    }
}
