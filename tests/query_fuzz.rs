//! Fuzzing the query parameters: whatever a request carries — quotes, SQL, `%`, `_`,
//! control characters, any Unicode — is a bound value, never SQL. Every answer is a 200 or a
//! 400 (never a 5xx), results match a model of the stored events literally, and nothing is
//! changed behind the model's back.

#![cfg(feature = "server")]

mod auth_support;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use auth_support::{TestServer, call, enc};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Keys that would break a query built by string concatenation, or a LIKE/GLOB pattern.
const KEYS: &[&str] = &[
    "plain",
    "it's",
    "say \"hi\"",
    "'; DROP TABLE events; --",
    "100%",
    "a_b",
    "a%b",
    "x*y?[z]",
    "back\\slash",
    "ünïcödé/ключ",
    "emoji/🦀",
    "p/",
    "p/1",
    "p/2",
    "p0",
    "q\u{10FFFF}",
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: TestServer,
}

/// One server for all cases, seeded with two events per key.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(async {
            let s = TestServer::start().await;
            let evs: Vec<Value> = KEYS
                .iter()
                .flat_map(|k| {
                    [1, 2].map(|i| {
                        json!({"key": k, "timestamp": format!("2025-08-25T10:0{i}:00Z"),
                            "data": {"i": i, "s": k}})
                    })
                })
                .collect();
            let r = s.post("/events", Value::Array(evs).to_string()).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let r = call(s.addr, "PUT", "/v1/kv/ns/k", None, r#""v""#).await;
            assert_eq!(r.status, 200);
            s
        });
        Fixture { rt, server }
    })
}

fn get(path: &str) -> (u16, Value) {
    let f = fixture();
    f.rt.block_on(async {
        let r = f.server.get(path).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    })
}

fn request(method: &str, path: &str, body: &str) -> (u16, Value) {
    let f = fixture();
    f.rt.block_on(async {
        let r = call(f.server.addr, method, path, None, body.to_owned()).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    })
}

/// Any string, often one of the stored keys or a piece of one.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        proptest::sample::select(KEYS).prop_map(str::to_owned),
        (proptest::sample::select(KEYS), 0usize..8).prop_map(|(k, n)| k.chars().take(n).collect()),
        "[ -~]{0,12}",
    ]
}

/// A `where` value: random, or shaped like a predicate with hostile parts.
fn predicate() -> impl Strategy<Value = String> {
    let path = prop_oneof!["[a-z]{1,3}(\\.[a-z]{1,3})?", ".{0,6}"];
    let op = proptest::sample::select(vec!["=", "!=", "<", "<=", ">", ">=", "~", "==", ""]);
    (path, op, text()).prop_map(|(p, o, v)| format!("{p}{o}{v}"))
}

fn keys_of(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect()
}

fn ok_or_bad(status: u16, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(status == 200 || status == 400, "{what}: status {status}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn range_queries_match_keys_literally(
        key in text(),
        from in prop_oneof![Just(None), text().prop_map(Some), Just(Some("2025-08-25T10:02:00Z".to_owned()))],
        limit in prop_oneof![Just(None), text().prop_map(Some), (1u32..4).prop_map(|n| Some(n.to_string()))],
        order in prop_oneof![Just(None), text().prop_map(Some), Just(Some("desc".to_owned()))],
        cursor in prop_oneof![Just(None), text().prop_map(Some)],
        preds in proptest::collection::vec(predicate(), 0..3),
    ) {
        let mut url = format!("/v1/events?key={}", enc(&key));
        for (name, v) in [("from", &from), ("limit", &limit), ("order", &order), ("cursor", &cursor)] {
            if let Some(v) = v {
                url.push_str(&format!("&{name}={}", enc(v)));
            }
        }
        for p in &preds {
            url.push_str(&format!("&where={}", enc(p)));
        }
        let (status, v) = get(&url);
        ok_or_bad(status, &url)?;
        if status == 200 {
            let keys = keys_of(&v);
            prop_assert!(keys.iter().all(|k| *k == key), "{url}: {keys:?}");
            if KEYS.contains(&key.as_str()) && from.is_none() && limit.is_none() && cursor.is_none() && preds.is_empty() {
                prop_assert_eq!(keys.len(), 2, "{}", url);
            }
        }
    }

    #[test]
    fn latest_matches_the_prefix_model(
        prefix in text(),
        preds in proptest::collection::vec(predicate(), 0..2),
    ) {
        let mut url = format!("/v1/latest?prefix={}&at=2030-01-01T00:00:00Z", enc(&prefix));
        for p in &preds {
            url.push_str(&format!("&where={}", enc(p)));
        }
        let (status, v) = get(&url);
        ok_or_bad(status, &url)?;
        if status == 200 {
            let got = keys_of(&v);
            let mut model: Vec<String> = KEYS.iter().filter(|k| k.starts_with(prefix.as_str())).map(|k| (*k).to_owned()).collect();
            model.sort();
            if preds.is_empty() {
                prop_assert_eq!(&got, &model, "{}", url);
                // The latest event of each key is its second one.
                for e in v["events"].as_array().unwrap() {
                    prop_assert_eq!(&e["data"]["i"], &json!(2));
                }
            } else {
                let got: BTreeSet<String> = got.into_iter().collect();
                prop_assert!(got.is_subset(&model.into_iter().collect()), "{url}");
            }
        }
    }

    #[test]
    fn kv_names_and_values_are_data(ns in text(), key in text(), value in text()) {
        let path = format!("/v1/kv/{}/{}", enc(&ns), enc(&key));
        let body = json!(value).to_string();
        let (status, _) = request("PUT", &path, &body);
        // 404: an empty segment does not match the route (`/v1/kv//k`).
        prop_assert!([200, 400, 404].contains(&status), "{path}: {status}");
        if status == 200 {
            let (status, v) = request("GET", &path, "");
            prop_assert_eq!(status, 200);
            prop_assert_eq!(&v["value"], &json!(value));
            prop_assert_eq!(&v["key"], &json!(key));
            let (status, _) = request("DELETE", &path, "");
            prop_assert_eq!(status, 200);
        }
        let (status, _) = get(&format!("/v1/kv/{}?prefix={}&cursor={}", enc(&ns), enc(&key), enc(&value)));
        prop_assert!([200, 400, 404].contains(&status));
    }

    #[test]
    fn deletes_of_unknown_targets_delete_nothing(target in text(), by_prefix in any::<bool>()) {
        let matches = KEYS.iter().any(|k| if by_prefix { k.starts_with(target.as_str()) } else { **k == target });
        prop_assume!(!matches);
        let name = if by_prefix { "prefix" } else { "key" };
        let (status, v) = request("DELETE", &format!("/v1/events?{name}={}", enc(&target)), "");
        ok_or_bad(status, &target)?;
        if status == 200 {
            prop_assert_eq!(v, json!({"deleted": 0}));
        }
    }
}

/// Runs after the properties in the same process only by chance, so it checks from scratch:
/// the fixture's store is intact after any number of hostile queries.
#[test]
fn hostile_queries_leave_the_store_intact() {
    for (method, path) in [
        (
            "GET",
            "/v1/events?key=%27%3B%20DROP%20TABLE%20events%3B%20--",
        ),
        ("GET", "/v1/latest?prefix=%27%20OR%201%3D1%20--"),
        ("GET", "/v1/events?key=plain&where=i%3D1%20OR%201%3D1"),
        ("GET", "/v1/events?key=plain&where=a%22)%20OR%20(1%3D1"),
        ("DELETE", "/v1/events?key=%27%20OR%20%27%27%3D%27"),
        ("DELETE", "/v1/events?prefix=%25"),
    ] {
        let (status, _) = request(method, path, "");
        assert!(status == 200 || status == 400, "{method} {path}: {status}");
    }
    let (_, v) = get("/view?page_size=1000");
    assert_eq!(v["total"], json!(KEYS.len() * 2));
    let (_, v) = get("/v1/events?key=%27%3B%20DROP%20TABLE%20events%3B%20--");
    assert_eq!(keys_of(&v).len(), 2, "the hostile key is an ordinary key");
    let (_, v) = get("/v1/events?key=plain&where=i%3D1%20OR%201%3D1");
    assert_eq!(
        v["events"].as_array().unwrap().len(),
        0,
        "`1 OR 1=1` is a literal"
    );
    let (status, v) = request("GET", "/v1/kv/ns/k", "");
    assert_eq!((status, v["value"].clone()), (200, json!("v")));
}
