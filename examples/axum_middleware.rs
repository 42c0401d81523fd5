//! An axum app instrumented like the Tlytics Gin example: every request is recorded by the
//! tower layer (method, matched route, status, latency, sizes), one route has a per-route
//! custom event, one handler emits its own event, and everything goes through the batching
//! client to a collector — here an in-process `accrue serve` on loopback. The example sends a
//! few requests, closes the client, and checks what `/view` shows.
//!
//! Run: `cargo run --example axum_middleware --features client`

use std::net::SocketAddr;
use std::time::Duration;

use accrue::client::{AccrueLayer, Client, Event};
use accrue::collector::Collector;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The analytics server (in production: `accrue serve` somewhere else).
    let dir = tempfile::tempdir()?;
    let collector = Collector::builder()
        .db(dir.path().join("events.db"))
        .port(0)
        .start()
        .await?;
    let analytics_url = format!("http://{}", collector.local_addr());

    // The client: a bounded queue, batches every 3 s (as the Gin example) or 1,000 events.
    let analytics = Client::builder(&analytics_url)
        .flush_interval(Duration::from_secs(3))
        .build()?;

    let app = Router::new()
        .route(
            "/",
            get(|State(analytics): State<Client>| async move {
                // Manual tracking: never blocks the request, even if the collector is down.
                let _ = analytics.emit(
                    Event::new("page_view")
                        .with("page", "home")
                        .with("user_id", "123"),
                );
                Json(json!({"message": "Hello World"}))
            }),
        )
        .route(
            "/api/users",
            get(|| async { Json(json!({"users": ["alice", "bob"]})) }).layer(
                // TrackEvent: a fresh map per request, nothing shared between requests.
                AccrueLayer::track(analytics.clone(), "api_access")
                    .with("endpoint", "users")
                    .with("action", "list"),
            ),
        )
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { format!("user {id}") }),
        )
        .with_state(analytics.clone())
        // Every request: recorded under its route template, never the raw path.
        .layer(AccrueLayer::new(analytics.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // Some traffic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/api/users",
        "/users/1",
        "/users/2",
        "/users/3",
        "/nope",
    ] {
        let res = http.get(format!("http://{app_addr}{path}")).send().await?;
        println!("GET {path} -> {}", res.status());
    }

    // Deliver everything (within the close timeout) and stop the client's task.
    let report = analytics.close().await?;
    println!(
        "delivered {} events, dropped {}",
        report.delivered, report.dropped
    );

    let view: Value = http
        .get(format!("{analytics_url}/view?page_size=100"))
        .send()
        .await?
        .json()
        .await?;
    let events = view["events"].as_array().expect("events");
    for e in events {
        println!("{}", e);
    }
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["key"] == "http_request")
        .collect();
    assert_eq!(requests.len(), 6);
    let users = requests
        .iter()
        .filter(|e| e["data"]["route"] == "/users/{id}")
        .count();
    assert_eq!(users, 3, "three requests, one route template");
    assert!(requests.iter().all(|e| {
        let d = &e["data"];
        d["method"] == "GET" && d["duration_us"].is_u64() && d["response_size"].is_u64()
    }));
    let not_found = requests
        .iter()
        .find(|e| e["data"]["status_code"] == 404)
        .expect("the unknown path was recorded");
    assert_eq!(not_found["data"]["route"], Value::Null);
    let access = events
        .iter()
        .find(|e| e["key"] == "api_access")
        .expect("TrackEvent");
    assert_eq!(access["data"]["endpoint"], "users");
    assert_eq!(access["data"]["status_code"], 200);
    let views = events.iter().filter(|e| e["key"] == "page_view").count();
    assert_eq!(views, 1);
    assert_eq!(report.delivered, 8);

    collector.stop().await?;
    println!("ok");
    Ok(())
}
