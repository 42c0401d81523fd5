//! The HTTP contract of `accrue serve` through a real socket: the Tlytics surface and our
//! improvements on it.

#![cfg(feature = "server")]

mod collector_support;

use bytes::Bytes;
use collector_support::{TestServer, events_json, raw_exchange};
use serde_json::{Value, json};

const JSON_CT: &str = "application/json; charset=utf-8";

#[tokio::test]
async fn post_events_then_view_with_the_exact_tlytics_shapes() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/events",
            r#"[{"key":"page_view","timestamp":"2025-08-25T12:00:00.120+02:00",
                 "data":{"page":"home","big":12345678901234567890123}},
                {"key":"signup","timestamp":"2025-08-25T10:00:01Z"}]"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(JSON_CT));
    assert_eq!(
        r.text(),
        r#"{"count":2,"message":"Successfully queued 2 events"}"#
    );

    let v = s.get("/view").await;
    assert_eq!(v.status, 200);
    assert_eq!(v.header("content-type"), Some(JSON_CT));
    // Go's field order, the offset each event was sent with, the fraction trimmed, and the big
    // integer kept digit for digit (Tlytics would round it through float64).
    assert_eq!(
        v.text(),
        r#"{"events":[{"key":"signup","timestamp":"2025-08-25T10:00:01Z","data":null},{"key":"page_view","timestamp":"2025-08-25T12:00:00.12+02:00","data":{"page":"home","big":12345678901234567890123}}],"page":1,"page_size":10,"total":2,"total_pages":1}"#
    );
}

#[tokio::test]
async fn batch_accepts_the_envelope_and_its_empty_forms() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/batch",
            r#"{"events":[{"key":"click","data":{"button":"signup"}},{"key":"view"}],"extra":1}"#,
        )
        .await;
    assert_eq!(
        r.text(),
        r#"{"count":2,"message":"Successfully queued 2 events"}"#
    );
    for body in ["{}", r#"{"events":null}"#, r#"{"events":[]}"#, "null"] {
        let r = s.post("/batch", body).await;
        assert_eq!(
            (r.status, r.text()),
            (
                200,
                r#"{"count":0,"message":"Successfully queued 0 events"}"#.into()
            ),
            "{body}"
        );
    }
    for body in ["[]", "null"] {
        let r = s.post("/events", body).await;
        assert_eq!(
            (r.status, r.json()["count"].clone()),
            (200, json!(0)),
            "{body}"
        );
    }
    assert_eq!(s.total().await, 2);
}

#[tokio::test]
async fn content_type_is_not_checked() {
    let s = TestServer::start().await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ] {
        let r = s
            .client()
            .request(
                "POST",
                "/events",
                Bytes::from(r#"[{"key":"a"}]"#),
                &[("content-type", ct)],
            )
            .await;
        assert_eq!(r.status, 200, "{ct}");
    }
    let r = s
        .client()
        .request("POST", "/events", Bytes::from(r#"[{"key":"a"}]"#), &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.total().await, 4);
}

async fn error_of(s: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let r = s.post(path, body.to_owned()).await;
    assert_eq!(r.header("content-type"), Some(JSON_CT), "{path} {body}");
    (r.status, r.json())
}

#[tokio::test]
async fn error_answers_keep_the_tlytics_strings() {
    let s = TestServer::start().await;
    for (path, body, status, error) in [
        ("/events", "", 400, "Invalid JSON format"),
        ("/events", "{not json", 400, "Invalid JSON format"),
        ("/events", r#"{"events":[]}"#, 400, "Invalid JSON format"),
        ("/events", "[42]", 400, "Invalid JSON format"),
        ("/events", r#"[{"key":1}]"#, 400, "Invalid JSON format"),
        (
            "/events",
            r#"[{"key":"a","timestamp":1}]"#,
            400,
            "Invalid JSON format",
        ),
        (
            "/events",
            r#"[{"key":"a","timestamp":"2025-08-25"}]"#,
            400,
            "Invalid JSON format",
        ),
        (
            "/events",
            r#"[{"key":"a","data":[1]}]"#,
            400,
            "Invalid JSON format",
        ),
        (
            "/events",
            r#"[{"key":"a"}] garbage"#,
            400,
            "Invalid JSON format",
        ),
        ("/events", "[null]", 400, "Event key is required"),
        ("/events", r#"[{"key":""}]"#, 400, "Event key is required"),
        ("/events", r#"[{"data":{}}]"#, 400, "Event key is required"),
        ("/batch", "", 400, "Invalid JSON format"),
        ("/batch", "[]", 400, "Invalid JSON format"),
        ("/batch", r#"{"events":5}"#, 400, "Invalid JSON format"),
        ("/batch", r#"{"events":[]} {}"#, 400, "Invalid JSON format"),
        ("/batch", r#"{"events":[42]}"#, 400, "Invalid event format"),
        (
            "/batch",
            r#"{"events":[{"key":"a","data":"x"}]}"#,
            400,
            "Invalid event format",
        ),
        (
            "/batch",
            r#"{"events":[null]}"#,
            400,
            "Event key is required",
        ),
        (
            "/batch",
            r#"{"events":[{"key":""}]}"#,
            400,
            "Event key is required",
        ),
    ] {
        let (got_status, v) = error_of(&s, path, body).await;
        assert_eq!(
            (got_status, v["error"].as_str().unwrap()),
            (status, error),
            "{path} {body}"
        );
    }
    assert_eq!(s.total().await, 0);
}

#[tokio::test]
async fn a_request_stores_all_of_its_events_or_none() {
    let s = TestServer::start().await;
    // Tlytics would store the first two of these (partial acceptance on /events).
    let (status, v) = error_of(
        &s,
        "/events",
        r#"[{"key":"a"},{"key":"b"},{"key":""},{"key":"d"}]"#,
    )
    .await;
    assert_eq!(
        (status, v["error"].clone(), v["index"].clone()),
        (400, json!("Event key is required"), json!(2))
    );
    let big = format!(
        r#"[{{"key":"a"}},{{"key":"b","data":{{"x":"{}"}}}}]"#,
        "y".repeat(70_000)
    );
    let (status, v) = error_of(&s, "/events", &big).await;
    assert_eq!(
        (status, v["error"].clone(), v["index"].clone()),
        (400, json!("Event data is too large"), json!(1))
    );
    let (status, _) = error_of(&s, "/batch", r#"{"events":[{"key":"a"},7]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(s.total().await, 0, "nothing of a refused request is stored");
}

#[tokio::test]
async fn limits_answer_413_and_400_with_json() {
    let s = TestServer::start_with(|b| {
        b.max_body_bytes(10_000)
            .max_events_per_request(50)
            .max_key_bytes(16)
            .max_data_bytes(100)
            .queue_events(1000)
    })
    .await;
    let (status, v) = error_of(&s, "/events", &events_json("k", 0, 51)).await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (413, "Too many events in one request")
    );
    assert!(s.post("/events", events_json("k", 0, 50)).await.status == 200);
    let (status, v) = error_of(
        &s,
        "/batch",
        &format!(r#"{{"events":{}}}"#, events_json("k", 0, 51)),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (413, "Too many events in one request")
    );

    let body = format!(
        r#"[{{"key":"a","data":{{"pad":"{}"}}}}]"#,
        " ".repeat(10_000)
    );
    let (status, v) = error_of(&s, "/events", &body).await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (413, "Request body is too large")
    );

    let (status, v) = error_of(&s, "/events", r#"[{"key":"0123456789abcdefX"}]"#).await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (400, "Event key is too long")
    );
    let (status, v) = error_of(
        &s,
        "/events",
        &format!(r#"[{{"key":"a","data":{{"x":"{}"}}}}]"#, "y".repeat(100)),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (400, "Event data is too large")
    );
    assert_eq!(s.total().await, 50);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let s = TestServer::start_with(|b| b.max_body_bytes(1000)).await;
    // A declared length over the limit is answered without reading the body.
    let head = "POST /events HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n[";
    let answer = raw_exchange(s.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#""error":"Request body is too large""#),
        "{answer}"
    );
    // A chunked body is cut off as soon as it passes the limit.
    let mut req = b"POST /batch HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        req.extend_from_slice(b"64\r\n");
        req.extend_from_slice(&[b' '; 100]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(s.addr, &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn missing_and_zero_timestamps_take_the_server_clock() {
    let s = TestServer::start().await;
    let before = jiff::Timestamp::now();
    s.post(
        "/events",
        r#"[{"key":"a"},{"key":"b","timestamp":null},{"key":"c","timestamp":"0001-01-01T00:00:00Z"}]"#,
    )
    .await;
    let after = jiff::Timestamp::now();
    for e in s.all_events().await {
        let ts: jiff::Timestamp = e["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(before <= ts && ts <= after, "{e}");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn view_orders_by_absolute_time_then_newest_id() {
    let s = TestServer::start().await;
    // 12:00+05:00 is 07:00Z, older than 08:00Z: Tlytics' string sort gets this wrong.
    s.post(
        "/events",
        r#"[{"key":"east","timestamp":"2025-01-01T12:00:00+05:00"},
            {"key":"utc","timestamp":"2025-01-01T08:00:00Z"},
            {"key":"tie1","timestamp":"2025-01-01T09:00:00Z"},
            {"key":"tie2","timestamp":"2025-01-01T10:00:00+01:00"},
            {"key":"west","timestamp":"2025-01-01T03:30:00-05:00"}]"#,
    )
    .await;
    let keys: Vec<String> = s
        .all_events()
        .await
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["tie2", "tie1", "west", "utc", "east"]);
    // Paging walks the same order without gaps or repeats.
    let mut paged = Vec::new();
    for page in 1..=3 {
        let v = s
            .get(&format!("/view?page={page}&page_size=2"))
            .await
            .json();
        assert_eq!(v["total_pages"], 3);
        paged.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(paged, keys);
}

#[tokio::test]
async fn view_paging_defaults_clamps_and_empty_pages() {
    let s = TestServer::start().await;
    let empty = s.get("/view").await;
    assert_eq!(
        empty.text(),
        r#"{"events":[],"page":1,"page_size":10,"total":0,"total_pages":0}"#
    );
    for chunk in 0..3 {
        assert_eq!(
            s.post("/events", events_json("k", chunk * 500, 500))
                .await
                .status,
            200
        );
    }
    s.post("/events", events_json("other", 0, 5)).await;
    let v = s.get("/view?page_size=5000").await.json();
    assert_eq!(
        (
            v["page_size"].clone(),
            v["events"].as_array().unwrap().len()
        ),
        (json!(1000), 1000)
    );
    assert_eq!(
        (v["total"].clone(), v["total_pages"].clone()),
        (json!(1505), json!(2))
    );
    let v = s.get("/view?page_size=1000&page=2").await.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 505);
    for q in [
        "page=0",
        "page=-3",
        "page=abc",
        "page=",
        "page_size=0",
        "page_size=x",
    ] {
        let v = s.get(&format!("/view?{q}")).await.json();
        assert_eq!(
            (v["page"].clone(), v["page_size"].clone()),
            (json!(1), json!(10)),
            "{q}"
        );
        assert_eq!(v["events"].as_array().unwrap().len(), 10);
    }
    let v = s.get("/view?page=99999999999").await.json();
    assert_eq!(v["events"], json!([]));
    assert_eq!(v["page"], json!(99_999_999_999_i64));
    let v = s
        .get("/view?page=9223372036854775807&page_size=1000")
        .await
        .json();
    assert_eq!(
        v["events"],
        json!([]),
        "an overflowing offset is past the end, not page 1"
    );
    let v = s.get("/view?key=other&page_size=3").await.json();
    assert_eq!(
        (v["total"].clone(), v["total_pages"].clone()),
        (json!(5), json!(2))
    );
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["key"] == "other")
    );
}

#[tokio::test]
async fn health_unknown_routes_and_wrong_methods() {
    let s = TestServer::start().await;
    let h = s.get("/health").await;
    assert_eq!(h.header("content-type"), Some(JSON_CT));
    assert_eq!(
        h.text(),
        format!(r#"{{"port":{},"status":"healthy"}}"#, s.addr.port())
    );
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/events"),
        ("GET", "/batch"),
        ("POST", "/view"),
        ("POST", "/health"),
        ("DELETE", "/events"),
    ] {
        let r = s.client().request(method, path, Bytes::new(), &[]).await;
        assert_eq!(
            (r.status, r.text()),
            (404, "404 page not found".into()),
            "{method} {path}"
        );
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    assert_eq!(s.get("/ready").await.json(), json!({"status": "ready"}));
}

#[tokio::test]
async fn event_ids_make_retries_idempotent() {
    let s = TestServer::start().await;
    let body = r#"[{"key":"a","id":"e1"},{"key":"b","id":"e2"},{"key":"c"}]"#;
    assert_eq!(
        s.post("/events", body).await.text(),
        r#"{"count":3,"message":"Successfully queued 3 events"}"#
    );
    let again = s.post("/events", body).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.text(),
        r#"{"count":3,"duplicates":2,"message":"Successfully queued 3 events"}"#
    );
    // Duplicates inside one request, and across /events and /batch.
    let r = s
        .post(
            "/batch",
            r#"{"events":[{"key":"d","id":"e3"},{"key":"d","id":"e3"},{"key":"x","id":"e1"}]}"#,
        )
        .await;
    assert_eq!(r.json()["duplicates"], 2);
    assert_eq!(s.total().await, 5);
    let (status, v) = error_of(
        &s,
        "/events",
        &format!(r#"[{{"key":"a","id":"{}"}}]"#, "i".repeat(129)),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (400, "Invalid event id")
    );
}

#[tokio::test]
async fn openapi_describes_exactly_the_routes_that_answer() {
    let s = TestServer::start().await;
    let doc = s.get("/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 7);
    for (template, ops) in paths {
        // Path parameters get example values.
        let path = &template
            .replace("{ns}", "ns")
            .replace("{*key}", "k")
            .replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            // A stream never ends; `auth_scopes.rs` checks that route's status.
            if ops[method]["responses"]["200"]["content"]["text/event-stream"].is_object() {
                continue;
            }
            let body = if method == "post" {
                Bytes::from("[]")
            } else {
                Bytes::new()
            };
            let r = s
                .client()
                .request(&method.to_uppercase(), path, body, &[])
                .await;
            // Routed: anything but the router's plain-text 404 (a resource may be missing).
            assert!(
                r.status != 404 || r.header("content-type") == Some(JSON_CT),
                "{method} {path} is documented but not routed"
            );
            assert!(
                ops[method]["responses"][r.status.to_string()].is_object(),
                "{method} {path} answered {} which is not documented",
                r.status
            );
            for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                if !ops.as_object().unwrap().contains_key(&other.to_lowercase()) {
                    let r = s.client().request(other, path, Bytes::new(), &[]).await;
                    assert_eq!(r.status, 404, "{other} {path} is routed but not documented");
                }
            }
        }
    }
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let s = TestServer::start().await;
    s.post("/events", events_json("k", 0, 7)).await;
    s.post("/events", "[{]").await;
    s.post("/events", r#"[{"key":"a","id":"x"},{"key":"a","id":"x"}]"#)
        .await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("accrue_events_accepted_total"), 9.0);
    assert_eq!(value("accrue_events_stored_total"), 8.0);
    assert_eq!(value("accrue_events_duplicate_total"), 1.0);
    assert_eq!(value("accrue_stored_events"), 8.0);
    assert_eq!(
        value("accrue_requests_rejected_total{error=\"Invalid JSON format\"}"),
        1.0
    );
    assert_eq!(
        value("accrue_http_requests_total{route=\"/events\",status=\"200\"}"),
        2.0
    );
    assert_eq!(value("accrue_ingest_queue_events"), 0.0);
    assert!(value("accrue_store_commits_total") >= 2.0);
    assert_eq!(value("accrue_store_healthy"), 1.0);
}
