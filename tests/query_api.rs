//! Range, latest-per-key and delete queries, and the KV store, through the HTTP API.

#![cfg(feature = "server")]

mod auth_support;

use accrue::collector::MetricsPipeline;
use auth_support::{TestServer, call, enc};
use serde_json::{Value, json};

async fn post(s: &TestServer, body: Value) {
    let r = s.post("/events", body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn ids(v: &Value) -> Vec<i64> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

fn field(v: &Value, name: &str) -> Vec<Value> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"][name].clone())
        .collect()
}

fn at(minute: u32) -> String {
    format!("2025-08-25T10:{minute:02}:00Z")
}

#[tokio::test]
async fn a_range_is_inclusive_ordered_by_time_then_id_and_pages_without_gaps() {
    let s = TestServer::start().await;
    // Out of order, with equal timestamps and another key in between.
    let mut evs = Vec::new();
    for (i, minute) in [5, 1, 3, 3, 9, 0, 3, 7].into_iter().enumerate() {
        evs.push(json!({"key": "k", "timestamp": at(minute), "data": {"i": i}}));
        evs.push(json!({"key": "other", "timestamp": at(minute), "data": {"i": i}}));
    }
    post(&s, Value::Array(evs)).await;
    let all = s.get("/v1/events?key=k").await.json();
    assert_eq!(field(&all, "i"), [5, 1, 2, 3, 6, 0, 7, 4].map(|i| json!(i)));
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(all["events"][0]["timestamp"] == at(0));

    let from_to = format!("/v1/events?key=k&from={}&to={}", enc(&at(3)), enc(&at(7)));
    let r = s.get(&from_to).await.json();
    assert_eq!(
        field(&r, "i"),
        [2, 3, 6, 0, 7].map(|i| json!(i)),
        "both ends included"
    );

    let desc = s.get(&format!("{from_to}&order=desc")).await.json();
    let mut asc_ids = ids(&r);
    asc_ids.reverse();
    assert_eq!(ids(&desc), asc_ids);

    // Paging by 2 in both orders reads the same events, each once.
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("/v1/events?key=k&limit=2&order={order}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", enc(c)));
            }
            let page = s.get(&url).await.json();
            seen.extend(ids(&page));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        let full = s
            .get(&format!("/v1/events?key=k&order={order}"))
            .await
            .json();
        assert_eq!(seen, ids(&full), "{order}");
    }
}

#[tokio::test]
async fn range_parameters_are_checked() {
    let s = TestServer::start().await;
    for bad in [
        "/v1/events",
        "/v1/events?key=",
        "/v1/events?key=k&limit=0",
        "/v1/events?key=k&limit=10001",
        "/v1/events?key=k&order=up",
        "/v1/events?key=k&from=yesterday",
        "/v1/events?key=k&from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
        "/v1/events?key=k&cursor=abc",
        "/v1/events?key=k&where=nop",
        "/v1/events?key=k&lmit=3",
        "/v1/events?key=k&key=j",
    ] {
        let r = s.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"], "Invalid query", "{bad}");
    }
}

#[tokio::test]
async fn predicates_are_typed_and_combine() {
    let s = TestServer::start().await;
    post(
        &s,
        json!([
            {"key": "m", "timestamp": at(1), "data": {"temp": 19, "city": "Paris", "ok": true}},
            {"key": "m", "timestamp": at(2), "data": {"temp": 21.5, "city": "Lyon", "ok": false}},
            {"key": "m", "timestamp": at(3), "data": {"temp": "25", "city": "Parma"}},
            {"key": "m", "timestamp": at(4), "data": {"temp": 30, "user": {"plan": "pro"}}},
            {"key": "m", "timestamp": at(5)},
        ]),
    )
    .await;
    let q = |w: &[&str]| {
        let mut url = String::from("/v1/events?key=m");
        for w in w {
            url.push_str(&format!("&where={}", enc(w)));
        }
        url
    };
    let minutes = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap()[14..16].to_owned())
            .collect()
    };
    for (w, expect) in [
        (vec!["temp>20"], vec!["02", "04"]), // "25" is a string: not a number
        (vec!["temp>=19", "temp<=21.5"], vec!["01", "02"]),
        (vec![r#"temp="25""#], vec!["03"]),
        (vec!["temp=25"], vec![]),
        (vec!["city~Par"], vec!["01", "03"]),
        (vec!["city!=Paris"], vec!["02", "03", "04", "05"]), // missing counts as different
        (vec!["ok=true"], vec!["01"]),
        (vec!["ok=false"], vec!["02"]),
        (vec!["user.plan=pro"], vec!["04"]),
        (vec!["city>M"], vec!["01", "03"]),
        (vec!["temp>20", "city=Lyon"], vec!["02"]),
    ] {
        let r = s.get(&q(&w)).await;
        assert_eq!(r.status, 200, "{w:?}: {}", r.text());
        assert_eq!(minutes(&r.json()), expect, "{w:?}");
    }
}

#[tokio::test]
async fn latest_per_key_applies_the_predicate_before_choosing() {
    let s = TestServer::start().await;
    post(
        &s,
        json!([
            {"key": "dev/a", "timestamp": at(1), "data": {"state": "on", "n": 1}},
            {"key": "dev/a", "timestamp": at(5), "data": {"state": "off", "n": 2}},
            {"key": "dev/b", "timestamp": at(2), "data": {"state": "on", "n": 3}},
            {"key": "dev/b", "timestamp": at(2), "data": {"state": "on", "n": 4}},
            {"key": "dev/c", "timestamp": at(8), "data": {"state": "on", "n": 5}},
            {"key": "dev/d", "timestamp": at(3), "data": {"state": "off", "n": 6}},
            {"key": "devx", "timestamp": at(1), "data": {"state": "on", "n": 7}},
            {"key": "other", "timestamp": at(1), "data": {"state": "on", "n": 8}},
        ]),
    )
    .await;
    let n = |v: &Value| field(v, "n");
    let latest = |q: &str| {
        let s = &s;
        let q = q.to_owned();
        async move {
            let r = s.get(&format!("/v1/latest?{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.json()
        }
    };
    // Newest per key; equal times: the later id wins.
    let r = latest(&format!("prefix=dev/&at={}", enc(&at(9)))).await;
    assert_eq!(n(&r), [2, 4, 5, 6].map(|i| json!(i)));
    // As of 10:04: dev/c did not exist yet, dev/a's newest was the `on` one.
    let r = latest(&format!("prefix=dev/&at={}", enc(&at(4)))).await;
    assert_eq!(n(&r), [1, 4, 6].map(|i| json!(i)));
    // The predicate first: dev/a answers its latest `on` event; dev/d has none.
    let r = latest(&format!("prefix=dev/&at={}&where=state%3Don", enc(&at(9)))).await;
    assert_eq!(n(&r), [1, 4, 5].map(|i| json!(i)));
    // `since` leaves out keys whose latest match is older.
    let r = latest(&format!(
        "prefix=dev/&at={}&since={}",
        enc(&at(9)),
        enc(&at(3))
    ))
    .await;
    assert_eq!(n(&r), [2, 5, 6].map(|i| json!(i)));
    // No prefix: every key. Paging by key.
    let all = latest(&format!("at={}", enc(&at(9)))).await;
    assert_eq!(n(&all), [2, 4, 5, 6, 7, 8].map(|i| json!(i)));
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = format!("at={}&limit=4{cursor}", enc(&at(9)));
        let page = latest(&q).await;
        keys.extend(n(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={}", enc(c)),
            None => break,
        }
    }
    assert_eq!(keys, n(&all));
}

#[tokio::test]
async fn deletes_remove_exactly_their_target_and_keep_counts_true() {
    let s = TestServer::start().await;
    post(
        &s,
        json!([
            {"key": "a/1", "timestamp": at(1)}, {"key": "a/1", "timestamp": at(2)},
            {"key": "a/2", "timestamp": at(3)}, {"key": "ab", "timestamp": at(4)},
            {"key": "b", "timestamp": at(5)}, {"key": "b", "timestamp": at(6)},
        ]),
    )
    .await;
    assert_eq!(s.total().await, 6);
    let b = s.get("/v1/events?key=b").await.json();
    let first_b = b["events"][0]["id"].as_i64().unwrap();
    let r = call(s.addr, "DELETE", &format!("/v1/events/{first_b}"), None, "").await;
    assert_eq!(r.json(), json!({"deleted": 1}));
    let r = call(s.addr, "DELETE", &format!("/v1/events/{first_b}"), None, "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        call(s.addr, "DELETE", "/v1/events/x", None, "")
            .await
            .status,
        400
    );
    // One key, within a time range.
    let r = call(
        s.addr,
        "DELETE",
        &format!("/v1/events?key=a/1&from={}", enc(&at(2))),
        None,
        "",
    )
    .await;
    assert_eq!(r.json(), json!({"deleted": 1}));
    // A prefix: `a/` is not `ab`.
    let r = call(s.addr, "DELETE", "/v1/events?prefix=a/", None, "").await;
    assert_eq!(r.json(), json!({"deleted": 2}));
    let left: Vec<String> = s
        .all_events()
        .await
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["b", "ab"]);
    assert_eq!(s.total().await, 2, "the /view total follows deletes");
    for bad in ["", "?key=a&prefix=a", "?prefix=", "?key=", "?all=1"] {
        let r = call(s.addr, "DELETE", &format!("/v1/events{bad}"), None, "").await;
        assert_eq!(r.status, 400, "{bad}");
    }
    // Metrics were flushed before the delete and still count every stored event.
    let v = s
        .get(&format!(
            "/v1/values?key=a/1&granularity=1h&from={}&to={}",
            enc("2025-08-25T10:00:00Z"),
            enc("2025-08-25T10:00:00Z")
        ))
        .await
        .json();
    assert_eq!(v["values"][0]["count"], 2);
}

#[tokio::test]
async fn a_large_delete_runs_in_chunks_while_ingest_continues() {
    let s = TestServer::start_with(|b| b.metrics_pipeline(MetricsPipeline::Off)).await;
    let n = 25_000;
    for chunk in 0..(n / 5000) {
        let evs: Vec<Value> = (0..5000)
            .map(|i| json!({"key": format!("bulk/{}", i % 7), "data": {"i": chunk * 5000 + i}}))
            .collect();
        post(&s, Value::Array(evs)).await;
    }
    let s2 = s.client();
    let writer = tokio::spawn(async move {
        for i in 0..50 {
            let r = s2
                .post(
                    "/events",
                    format!(r#"[{{"key":"keep","data":{{"i":{i}}}}}]"#),
                )
                .await;
            assert_eq!(r.status, 200);
        }
    });
    let r = call(s.addr, "DELETE", "/v1/events?prefix=bulk/", None, "").await;
    assert_eq!(r.json(), json!({"deleted": n}));
    writer.await.unwrap();
    assert_eq!(s.total().await, 50);
}

#[tokio::test]
async fn the_kv_store_writes_through_with_versions() {
    let s = TestServer::start().await;
    let a = s.addr;
    let r = call(a, "PUT", "/v1/kv/cfg/theme", None, r#"{"dark": true}"#).await;
    assert_eq!(r.json(), json!({"key": "theme", "ns": "cfg", "version": 1}));
    let r = call(a, "PUT", "/v1/kv/cfg/theme", None, r#""light""#).await;
    assert_eq!(r.json()["version"], 2);
    let got = call(a, "GET", "/v1/kv/cfg/theme", None, "").await.json();
    assert_eq!(
        (
            got["value"].clone(),
            got["version"].clone(),
            got["ns"].clone()
        ),
        (json!("light"), json!(2), json!("cfg"))
    );
    // Compare-and-set.
    let r = call(a, "PUT", "/v1/kv/cfg/theme?if_version=1", None, "3").await;
    assert_eq!(r.status, 409);
    assert_eq!(
        call(a, "PUT", "/v1/kv/cfg/theme?if_version=2", None, "3")
            .await
            .status,
        200
    );
    assert_eq!(
        call(a, "PUT", "/v1/kv/cfg/new?if_version=0", None, "1")
            .await
            .status,
        200
    );
    assert_eq!(
        call(a, "PUT", "/v1/kv/cfg/new?if_version=0", None, "1")
            .await
            .status,
        409
    );
    // Keys may hold slashes; listing is in key order, paged, with a prefix.
    for k in ["a/b/c", "a/x", "b"] {
        assert_eq!(
            call(a, "PUT", &format!("/v1/kv/cfg/{k}"), None, "null")
                .await
                .status,
            200
        );
    }
    assert_eq!(
        call(a, "GET", "/v1/kv/cfg/a/b/c", None, "").await.json()["value"],
        Value::Null
    );
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = call(a, "GET", &format!("/v1/kv/cfg?limit=2{cursor}"), None, "")
            .await
            .json();
        keys.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["key"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={}", enc(c)),
            None => break,
        }
    }
    assert_eq!(keys, ["a/b/c", "a/x", "b", "new", "theme"]);
    let pre = call(a, "GET", "/v1/kv/cfg?prefix=a/", None, "")
        .await
        .json();
    assert_eq!(pre["items"].as_array().unwrap().len(), 2);
    // Namespaces are separate.
    assert_eq!(
        call(a, "GET", "/v1/kv/other/theme", None, "").await.status,
        404
    );
    // Deletes, conditional too.
    assert_eq!(
        call(a, "DELETE", "/v1/kv/cfg/theme?if_version=1", None, "")
            .await
            .status,
        409
    );
    assert_eq!(
        call(a, "DELETE", "/v1/kv/cfg/theme", None, "").await.json(),
        json!({"deleted": true})
    );
    assert_eq!(
        call(a, "DELETE", "/v1/kv/cfg/theme", None, "").await.status,
        404
    );
    // Bad input changes nothing.
    for (method, path, body) in [
        ("PUT", "/v1/kv/cfg/x", "{nope"),
        ("PUT", "/v1/kv/cfg/x", "1 2"),
        ("PUT", "/v1/kv/cfg/x?if_version=-1", "1"),
        ("PUT", "/v1/kv/cfg/x?ttl=5", "1"),
    ] {
        assert_eq!(
            call(a, method, path, None, body).await.status,
            400,
            "{path} {body}"
        );
    }
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    assert_eq!(call(a, "PUT", "/v1/kv/cfg/x", None, big).await.status, 413);
    assert_eq!(call(a, "GET", "/v1/kv/cfg/x", None, "").await.status, 404);
    // Deleting events never touches the KV store (FluxionDB's `ddoc` wiped it).
    assert_eq!(
        call(a, "DELETE", "/v1/events?prefix=cfg", None, "")
            .await
            .status,
        200
    );
    // Written through: a restart keeps everything.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |b| b).await;
    let r = call(s.addr, "GET", "/v1/kv/cfg/new", None, "").await.json();
    assert_eq!(r["value"], 1);
}
