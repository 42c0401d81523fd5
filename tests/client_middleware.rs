//! The tower layer in an axum app, sending through the client to a real collector: the events
//! in `/view` carry the right fields.

#![cfg(all(feature = "client", feature = "server"))]

mod collector_support;

use std::net::SocketAddr;
use std::time::Duration;

use accrue::client::{AccrueLayer, Client, EventFields};
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use collector_support::TestServer;
use serde_json::{Value, json};

fn app(client: &Client, trusted_header: bool) -> Router {
    let mut layer = AccrueLayer::new(client.clone());
    if trusted_header {
        layer = layer.client_ip_header("x-forwarded-for");
    }
    Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move {
                let fields = json!({"user_id": id}).as_object().unwrap().clone();
                (Extension(EventFields(fields)), format!("user {id}"))
            }),
        )
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{}", body.len()) }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/api/users",
            get(|| async { "[\"alice\",\"bob\"]" }).layer(
                AccrueLayer::track(client.clone(), "api_access")
                    .with("endpoint", "users")
                    .with("action", "list"),
            ),
        )
        .layer(layer)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

fn by_key<'a>(events: &'a [Value], key: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["key"] == key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_events_reach_the_collector_with_the_right_fields() {
    let server = TestServer::start().await;
    let client = Client::builder(format!("http://{}", server.addr))
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let addr = serve(app(&client, true)).await;
    let http = collector_support::Client { addr };
    let xff = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
        ("user-agent", "probe/1.0"),
    ];

    // 40 concurrent requests to one route with different ids: each event has its own fields.
    let mut tasks = Vec::new();
    for id in 0..40u32 {
        tasks.push(tokio::spawn(async move {
            let r = http
                .request("GET", &format!("/users/{id}"), Bytes::new(), &xff)
                .await;
            assert_eq!(r.text(), format!("user {id}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = http
        .request("POST", "/upload", Bytes::from(vec![b'x'; 1234]), &xff)
        .await;
    assert_eq!(r.text(), "1234");
    assert_eq!(
        http.request("GET", "/nope/42", Bytes::new(), &xff)
            .await
            .status,
        404
    );
    assert_eq!(
        http.request("GET", "/api/users", Bytes::new(), &xff)
            .await
            .status,
        200
    );
    // The handler panics: the connection dies, the event still says 500.
    assert!(
        http.try_request("GET", "/panic", Bytes::new(), &xff)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.flush().await.unwrap();

    let events = server.all_events().await;
    let requests = by_key(&events, "http_request");
    assert_eq!(requests.len(), 40 + 4, "{events:#?}");
    let users = requests
        .iter()
        .filter(|e| e["data"]["route"] == "/users/{id}")
        .collect::<Vec<_>>();
    assert_eq!(users.len(), 40);
    let mut ids: Vec<u64> = users
        .iter()
        .map(|e| e["data"]["user_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    for e in &users {
        let d = &e["data"];
        assert_eq!(d["method"], "GET");
        assert_eq!(d["status_code"], 200);
        let id = d["user_id"].as_u64().unwrap();
        assert_eq!(d["response_size"], format!("user {id}").len());
        assert_eq!(d["request_size"], 0);
        assert_eq!(
            d["client_ip"], "203.0.113.7",
            "the rightmost entry, from our proxy"
        );
        assert_eq!(d["user_agent"], "probe/1.0");
        assert!(d["duration_us"].as_u64().is_some() && d["duration_ms"].as_u64().is_some());
        assert!(d.get("panicked").is_none());
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // No raw path anywhere: cardinality stays bounded.
    assert!(!serde_json::to_string(&events).unwrap().contains("/users/7"));

    let upload = requests
        .iter()
        .find(|e| e["data"]["route"] == "/upload")
        .unwrap();
    assert_eq!(upload["data"]["method"], "POST");
    assert_eq!(upload["data"]["request_size"], 1234);
    assert_eq!(upload["data"]["response_size"], 4);

    let missing = requests
        .iter()
        .find(|e| e["data"]["status_code"] == 404)
        .unwrap();
    assert_eq!(missing["data"]["route"], Value::Null);

    let panicked = requests
        .iter()
        .find(|e| e["data"]["route"] == "/panic")
        .unwrap();
    assert_eq!(panicked["data"]["status_code"], 500);
    assert_eq!(panicked["data"]["panicked"], true);

    let tracked = by_key(&events, "api_access");
    assert_eq!(tracked.len(), 1);
    let d = &tracked[0]["data"];
    assert_eq!(
        (d["endpoint"].clone(), d["action"].clone()),
        (json!("users"), json!("list"))
    );
    assert_eq!(d["route"], "/api/users");
    assert_eq!(d["status_code"], 200);
    client.close().await.unwrap();
}

#[tokio::test]
async fn proxy_headers_are_not_trusted_unless_configured() {
    let server = TestServer::start().await;
    let client = Client::new(format!("http://{}", server.addr)).unwrap();
    let addr = serve(app(&client, false)).await;
    let http = collector_support::Client { addr };
    http.request(
        "GET",
        "/users/1",
        Bytes::new(),
        &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")],
    )
    .await;
    client.flush().await.unwrap();
    let events = server.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["data"]["client_ip"], "127.0.0.1",
        "the socket's peer"
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_layer_wraps_any_tower_service() {
    use tower::{Layer, Service, ServiceExt};
    let server = TestServer::start().await;
    let client = Client::new(format!("http://{}", server.addr)).unwrap();
    // A plain tower service, no axum router: no matched route.
    let svc = tower::service_fn(
        |req: axum::http::Request<accrue::client::CountedBody<String>>| async move {
            let _ = req;
            Ok::<_, std::convert::Infallible>(axum::http::Response::new(String::from("hello")))
        },
    );
    let mut svc = AccrueLayer::track(client.clone(), "plain").layer(svc);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(axum::http::Request::new(String::from("abc")))
        .await
        .unwrap();
    drop(res); // the body is dropped unread: the event is still emitted
    client.flush().await.unwrap();
    let events = server.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["key"], "plain");
    assert_eq!(events[0]["data"]["route"], Value::Null);
    assert_eq!(events[0]["data"]["status_code"], 200);
    client.close().await.unwrap();
}
