//! Every route × every kind of caller: what each scope may do, table-driven, and the
//! namespace of prefix-limited keys on every kind of route.

#![cfg(feature = "server")]

mod auth_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use auth_support::{
    ADMIN, TestServer, call, create_key, secured, subscribe, ws_connect, ws_json, ws_send,
};
use http_body_util::Empty;
use serde_json::{Value, json};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Open,
    Read,
    Write,
    Delete,
    Admin,
    /// `read` without a prefix.
    ReadAll,
}

/// Every route: method, template (as in `/openapi.json`), a concrete request, and what it needs.
/// The first test checks that this table lists exactly the documented routes, so a new route
/// cannot be added without deciding (and testing) its access.
const ROUTES: &[(&str, &str, &str, &str, Need)] = &[
    (
        "post",
        "/events",
        "/events",
        r#"[{"key":"app/t"}]"#,
        Need::Write,
    ),
    (
        "post",
        "/batch",
        "/batch",
        r#"{"events":[{"key":"app/t"}]}"#,
        Need::Write,
    ),
    ("get", "/health", "/health", "", Need::Open),
    ("get", "/ready", "/ready", "", Need::Open),
    ("get", "/openapi.json", "/openapi.json", "", Need::Open),
    ("get", "/view", "/view", "", Need::Read),
    ("get", "/v1/values", "/v1/values?key=app/t", "", Need::Read),
    ("get", "/metrics", "/metrics", "", Need::ReadAll),
    ("get", "/v1/events", "/v1/events?key=app/t", "", Need::Read),
    (
        "delete",
        "/v1/events",
        "/v1/events?key=app/none",
        "",
        Need::Delete,
    ),
    (
        "delete",
        "/v1/events/{id}",
        "/v1/events/987654321",
        "",
        Need::Delete,
    ),
    (
        "get",
        "/v1/latest",
        "/v1/latest?prefix=app/",
        "",
        Need::Read,
    ),
    ("get", "/v1/kv/{ns}", "/v1/kv/app%2Fns", "", Need::Read),
    (
        "get",
        "/v1/kv/{ns}/{*key}",
        "/v1/kv/app%2Fns/some/key",
        "",
        Need::Read,
    ),
    (
        "put",
        "/v1/kv/{ns}/{*key}",
        "/v1/kv/app%2Fns/some/key",
        r#"{"v":1}"#,
        Need::Write,
    ),
    (
        "delete",
        "/v1/kv/{ns}/{*key}",
        "/v1/kv/app%2Fns/absent",
        "",
        Need::Delete,
    ),
    ("get", "/v1/live", "/v1/live", "", Need::Read),
    ("get", "/v1/live/sse", "/v1/live/sse", "", Need::Read),
    (
        "post",
        "/v1/keys",
        "/v1/keys",
        r#"{"scopes":["read"],"label":"t"}"#,
        Need::Admin,
    ),
    ("get", "/v1/keys", "/v1/keys", "", Need::Admin),
    (
        "delete",
        "/v1/keys/{id}",
        "/v1/keys/0123456789abcdef",
        "",
        Need::Admin,
    ),
];

/// The status of a request, reading only the head (the SSE route streams forever).
async fn status(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> u16 {
    answer(addr, method, path, token, body).await.0
}

/// The status of a request and whether a route answered it: the router's own 404 for an
/// unrouted method or path is plain text, every handler answers JSON (or a stream).
async fn answer(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, bool) {
    let routed = |status: u16, content_type: Option<&str>| {
        !(status == 404 && content_type == Some("text/plain"))
    };
    if path.starts_with("/v1/live/sse") {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(path)
            .header("host", addr.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = sender
            .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        return (status, routed(status, ct));
    }
    let r = call(addr, &method.to_uppercase(), path, token, body.to_owned()).await;
    (r.status, routed(r.status, r.header("content-type")))
}

#[tokio::test]
async fn the_table_lists_exactly_the_documented_routes() {
    let s = TestServer::start().await;
    let doc = s.get("/openapi.json").await.json();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, t, ..)| ((*m).to_owned(), (*t).to_owned()))
        .collect();
    assert_eq!(documented, table);
    // The document declares the same scope the table expects.
    for (m, t, _, _, need) in ROUTES {
        let op = &doc["paths"][t][m];
        let scope = op["x-scope"].as_str();
        let expected = match need {
            Need::Open => None,
            Need::Read => Some("read"),
            Need::Write => Some("write"),
            Need::Delete => Some("delete"),
            Need::Admin => Some("admin"),
            Need::ReadAll => Some("read (without a prefix)"),
        };
        assert_eq!(scope, expected, "{m} {t}");
        assert_eq!(op["security"].is_array(), expected.is_some(), "{m} {t}");
    }
}

#[tokio::test]
async fn every_scope_is_allowed_or_denied_on_every_route() {
    let s = secured().await;
    let a = s.addr;
    let (_, read) = create_key(a, &["read"], None).await;
    let (_, write) = create_key(a, &["write"], None).await;
    let (_, delete) = create_key(a, &["delete"], None).await;
    let (_, admin) = create_key(a, &["admin"], None).await;
    let (_, read_ns) = create_key(a, &["read"], Some("app/")).await;
    let (_, rw) = create_key(a, &["read", "write"], None).await;
    let bogus = format!("accrue_{}_{}", "0".repeat(16), "f".repeat(64));

    // (caller, token, what it may do)
    let callers: Vec<(&str, Option<&str>, &[Need])> = vec![
        ("no key", None, &[]),
        ("unknown key", Some(&bogus), &[]),
        ("garbage", Some("not a key"), &[]),
        ("read", Some(&read), &[Need::Read, Need::ReadAll]),
        ("read, limited to app/", Some(&read_ns), &[Need::Read]),
        ("write", Some(&write), &[Need::Write]),
        ("delete", Some(&delete), &[Need::Delete]),
        (
            "read+write",
            Some(&rw),
            &[Need::Read, Need::ReadAll, Need::Write],
        ),
        (
            "admin (created)",
            Some(&admin),
            &[
                Need::Read,
                Need::ReadAll,
                Need::Write,
                Need::Delete,
                Need::Admin,
            ],
        ),
        (
            "admin (configured)",
            Some(ADMIN),
            &[
                Need::Read,
                Need::ReadAll,
                Need::Write,
                Need::Delete,
                Need::Admin,
            ],
        ),
    ];
    let mut checked = 0;
    for (method, template, path, body, need) in ROUTES {
        for (who, token, may) in &callers {
            let got = status(a, method, path, *token, body).await;
            let allowed = *need == Need::Open || may.contains(need);
            if allowed {
                assert!(
                    ![401, 403].contains(&got) && got < 500,
                    "{who} must be allowed {method} {template}: got {got}"
                );
            } else {
                let expected = if token.is_none() || may.is_empty() {
                    401
                } else {
                    403
                };
                assert_eq!(got, expected, "{who} must be refused {method} {template}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * callers.len());
    // The configured admin key is not a stored key: the listing holds the six created keys
    // (and the one a `POST /v1/keys` row created per admin caller).
    let keys = call(a, "GET", "/v1/keys", Some(ADMIN), "").await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 6 + 2);
}

/// Every method a client can send. `HEAD` is answered by a `GET` route; anything no row of
/// the table routes must be answered 404 whoever asks.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];

#[tokio::test]
async fn every_method_on_every_path_is_checked_like_its_route_or_not_answered() {
    let s = secured().await;
    let a = s.addr;
    let (_, read) = create_key(a, &["read"], None).await;
    let (_, write) = create_key(a, &["write"], None).await;
    let (_, delete) = create_key(a, &["delete"], None).await;
    let (_, elsewhere) = create_key(a, &["read", "write", "delete"], Some("zzz/")).await;
    // A stored secret that a `where=` oracle would reveal to an unchecked method.
    let r = call(
        a,
        "POST",
        "/events",
        Some(ADMIN),
        r#"[{"key":"app/t","data":{"password":"hunter2"}}]"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let callers: Vec<(&str, Option<&str>, &[Need])> = vec![
        ("no key", None, &[]),
        ("read", Some(&read), &[Need::Read, Need::ReadAll]),
        ("write", Some(&write), &[Need::Write]),
        ("delete", Some(&delete), &[Need::Delete]),
        (
            "admin",
            Some(ADMIN),
            &[
                Need::Read,
                Need::ReadAll,
                Need::Write,
                Need::Delete,
                Need::Admin,
            ],
        ),
    ];
    let mut paths: Vec<(&str, &str)> = ROUTES.iter().map(|(_, t, p, ..)| (*t, *p)).collect();
    paths.sort_unstable();
    paths.dedup();
    paths.push(("/v1/events", "/v1/events?key=app/t&where=password=hunter2"));
    let mut checked = 0;
    for (template, path) in paths {
        for method in METHODS {
            let row = ROUTES.iter().find(|(m, t, ..)| {
                *t == template
                    && (m.eq_ignore_ascii_case(method) || (*method == "HEAD" && *m == "get"))
            });
            let body = row.map_or("", |(.., body, _)| *body);
            for (who, token, may) in &callers {
                let (got, routed) = answer(a, method, path, *token, body).await;
                match row {
                    None => assert!(
                        got == 404 && !routed,
                        "{who}: {method} {path} is not a route, got {got}"
                    ),
                    Some((.., need)) if *need == Need::Open || may.contains(need) => assert!(
                        ![401, 403].contains(&got) && got < 500 && routed,
                        "{who} must be answered {method} {path}: got {got}"
                    ),
                    Some(_) => {
                        let expected = if token.is_none() { 401 } else { 403 };
                        assert_eq!(got, expected, "{who} must be refused {method} {path}");
                    }
                }
                checked += 1;
            }
            // A key confined to another prefix never reads this data, whatever the method.
            if row.is_some_and(|(.., need)| *need == Need::Read) && path.contains("app") {
                let got = status(a, method, path, Some(&elsewhere), body).await;
                assert_eq!(got, 403, "a zzz/ key must be refused {method} {path}");
            }
        }
    }
    assert!(checked > ROUTES.len() * METHODS.len(), "{checked}");
}

#[tokio::test]
async fn a_refusal_says_why_and_asks_for_a_bearer_token() {
    let s = secured().await;
    let r = call(s.addr, "GET", "/view", None, "").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"accrue\"")
    );
    assert_eq!(r.json()["error"], "Unauthorized");
    // A key in the query string is not a key.
    let r = call(s.addr, "GET", &format!("/view?api_key={ADMIN}"), None, "").await;
    assert_eq!(r.status, 401);
    let r = s
        .client()
        .request(
            "GET",
            "/view",
            bytes::Bytes::new(),
            &[("authorization", ADMIN)],
        )
        .await;
    assert_eq!(r.status, 401, "the Bearer scheme is required");
    let (_, read) = create_key(s.addr, &["read"], None).await;
    let r = call(s.addr, "POST", "/events", Some(&read), "[]").await;
    assert_eq!(r.status, 403);
    assert!(r.json()["detail"].as_str().unwrap().contains("`write`"));
    // Refusals are counted by reason.
    let refused = call(s.addr, "GET", "/metrics", Some(ADMIN), "")
        .await
        .text();
    assert!(
        refused.contains("accrue_auth_refused_total{reason=\"missing\"} 2"),
        "{refused}"
    );
    assert!(
        refused.contains("accrue_auth_refused_total{reason=\"scope\"} 1"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_prefix_limited_key_stays_in_its_namespace_on_every_kind_of_route() {
    let s = secured().await;
    let a = s.addr;
    let (_, key) = create_key(a, &["read", "write", "delete"], Some("app/")).await;
    let k = Some(key.as_str());
    // Seed events inside and outside the namespace with the admin key.
    let r = call(
        a,
        "POST",
        "/events",
        Some(ADMIN),
        r#"[{"key":"app/x","data":{"n":1}},{"key":"other","data":{"n":2}},{"key":"app/y"}]"#,
    )
    .await;
    assert_eq!(r.status, 200);

    // Ingest: all or nothing, the offending index named.
    let r = call(
        a,
        "POST",
        "/events",
        k,
        r#"[{"key":"app/z"},{"key":"elsewhere"}]"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["index"], 1);
    assert_eq!(
        call(a, "POST", "/batch", k, r#"{"events":[{"key":"app/z"}]}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        call(a, "GET", "/view?key=elsewhere", Some(ADMIN), "")
            .await
            .json()["total"],
        0,
        "nothing of the refused request was stored"
    );

    // /view lists the namespace only; a key outside it is refused.
    let v = call(a, "GET", "/view", k, "").await.json();
    let keys: BTreeSet<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["app/x", "app/y", "app/z"].map(String::from).into());
    assert_eq!(v["total"], 3);
    assert_eq!(call(a, "GET", "/view?key=other", k, "").await.status, 403);
    assert_eq!(
        call(a, "GET", "/view?key=app/x", k, "").await.json()["total"],
        1
    );
    assert_eq!(
        call(a, "GET", "/v1/values?key=other", k, "").await.status,
        403
    );
    assert_eq!(call(a, "GET", "/metrics", k, "").await.status, 403);

    // Queries.
    assert_eq!(
        call(a, "GET", "/v1/events?key=other", k, "").await.status,
        403
    );
    assert_eq!(
        call(a, "GET", "/v1/events?key=app/x", k, "").await.status,
        200
    );
    let latest = call(a, "GET", "/v1/latest", k, "").await.json();
    let keys: Vec<&str> = latest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/x", "app/y", "app/z"]);
    assert_eq!(
        call(a, "GET", "/v1/latest?prefix=ap", k, "").await.json(),
        latest
    );
    assert_eq!(
        call(a, "GET", "/v1/latest?prefix=oth", k, "").await.status,
        403
    );

    // Deletes never leave the namespace.
    assert_eq!(
        call(a, "DELETE", "/v1/events?prefix=oth", k, "")
            .await
            .status,
        403
    );
    assert_eq!(
        call(a, "DELETE", "/v1/events?key=other", k, "")
            .await
            .status,
        403
    );
    let other = call(a, "GET", "/v1/events?key=other", Some(ADMIN), "")
        .await
        .json();
    let other_id = other["events"][0]["id"].as_i64().unwrap();
    let r = call(a, "DELETE", &format!("/v1/events/{other_id}"), k, "").await;
    assert_eq!(r.status, 404, "an event outside the namespace is not found");
    let r = call(a, "DELETE", "/v1/events?prefix=a", k, "").await;
    assert_eq!(
        r.json(),
        json!({"deleted": 3}),
        "prefix `a` narrows to `app/`"
    );
    assert_eq!(
        call(a, "GET", "/view", Some(ADMIN), "").await.json()["total"],
        1
    );

    // KV namespaces.
    assert_eq!(call(a, "PUT", "/v1/kv/other/k", k, "1").await.status, 403);
    assert_eq!(call(a, "GET", "/v1/kv/other", k, "").await.status, 403);
    assert_eq!(
        call(a, "PUT", "/v1/kv/app%2Fcfg/k", k, "1").await.status,
        200
    );
    assert_eq!(
        call(a, "GET", "/v1/kv/app%2Fcfg/k", k, "").await.json()["value"],
        1
    );

    // Live feeds.
    let mut ws = ws_connect(a, k).await.unwrap();
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "prefix": "other"}),
    )
    .await;
    let r = ws_json(&mut ws).await;
    assert_eq!(
        (r["id"].clone(), r["type"].clone()),
        (json!("1"), json!("error")),
        "{r}"
    );
    let label = subscribe(&mut ws, "2", "events", "").await;
    assert!(label.starts_with('s'));
    call(
        a,
        "POST",
        "/events",
        Some(ADMIN),
        r#"[{"key":"other"},{"key":"app/live"}]"#,
    )
    .await;
    let ev = ws_json(&mut ws).await;
    assert_eq!(ev["event"]["key"], "app/live", "{ev}");
}

#[tokio::test]
async fn without_keys_the_server_is_open_as_tlytics_and_cannot_grow_keys() {
    let s = TestServer::start().await;
    for (method, _, path, body, _) in ROUTES {
        let got = status(s.addr, method, path, None, body).await;
        if path.starts_with("/v1/keys") {
            assert_eq!(got, 403, "{method} {path}");
        } else {
            assert!(
                ![401, 403].contains(&got) && got < 500,
                "{method} {path}: {got}"
            );
        }
    }
    let r = call(s.addr, "POST", "/v1/keys", None, r#"{"scopes":["admin"]}"#).await;
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("ACCRUE_ADMIN_KEY")
    );
    // An Authorization header changes nothing on an open server.
    assert_eq!(
        call(s.addr, "GET", "/view", Some("whatever"), "")
            .await
            .status,
        200
    );
    let m = s.get("/metrics").await.text();
    assert!(m.contains("accrue_auth_enabled 0"), "{m}");
}

#[tokio::test]
async fn stored_keys_keep_the_server_closed_after_a_restart_without_the_admin_key() {
    let s = secured().await;
    let (id, read) = create_key(s.addr, &["read"], None).await;
    let (_, write) = create_key(s.addr, &["write"], Some("w/")).await;
    let r = call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(ADMIN), "").await;
    assert_eq!(r.json(), json!({"revoked": id}));
    let dir = s.stop().await;
    // No admin key this time: the stored (hashed) keys still guard every route.
    let s = TestServer::start_in(dir, |b| b).await;
    assert_eq!(call(s.addr, "GET", "/view", None, "").await.status, 401);
    assert_eq!(
        call(s.addr, "GET", "/view", Some(&read), "").await.status,
        401,
        "revoked stays revoked"
    );
    assert_eq!(
        call(
            s.addr,
            "POST",
            "/events",
            Some(&write),
            r#"[{"key":"w/1"}]"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(s.addr, "POST", "/events", Some(&write), r#"[{"key":"x"}]"#)
            .await
            .status,
        403
    );
    assert_eq!(
        call(s.addr, "GET", "/v1/keys", Some(ADMIN), "")
            .await
            .status,
        401,
        "no admin key now"
    );
    // The database holds hashes, never the tokens.
    let db = std::fs::read(s.db_path()).unwrap();
    let wal = std::fs::read(s.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        for token in [&read, &write] {
            let secret = token.rsplit('_').next().unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a token's secret is stored in plain text"
            );
        }
    }
}

#[tokio::test]
async fn key_creation_is_validated_and_the_token_is_shown_once() {
    let s = secured().await;
    let r = call(
        s.addr,
        "POST",
        "/v1/keys",
        Some(ADMIN),
        r#"{"scopes":["read"],"label":"dash"}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    let created: Value = r.json();
    let token = created["key"].as_str().unwrap();
    assert!(token.starts_with("accrue_") && token.len() > 80);
    assert_eq!(created["scopes"], json!(["read"]));
    let list = call(s.addr, "GET", "/v1/keys", Some(ADMIN), "").await;
    assert!(!list.text().contains(token), "listing never shows a token");
    assert_eq!(list.json()["keys"][0]["label"], "dash");
    for bad in [
        r#"{"scopes":["root"]}"#,
        r#"{"scopes":[]}"#,
        r#"{"scopes":["admin"],"prefix":"a/"}"#,
        r#"{"scopes":["read"],"key":"mine"}"#,
        "not json",
    ] {
        let r = call(s.addr, "POST", "/v1/keys", Some(ADMIN), bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert_eq!(
        call(s.addr, "GET", "/v1/keys", Some(ADMIN), "")
            .await
            .json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call(s.addr, "DELETE", "/v1/keys/nope", Some(ADMIN), "")
            .await
            .status,
        404
    );
}
