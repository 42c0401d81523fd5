//! Helpers for the tests of API keys, queries, KV and live feeds: a collector with an
//! admin key, key creation, authenticated requests, and a WebSocket client.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use accrue::collector::CollectorBuilder;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../collector_support/mod.rs"]
pub mod collector_support;

pub use collector_support::{Client, Resp, TestServer, events_json};

/// The admin key the tests start servers with.
pub const ADMIN: &str = "test-admin-key-0123456789abcdef-0123456789abcdef";

/// A server with [`ADMIN`] as its admin key.
pub async fn secured() -> TestServer {
    secured_with(|b| b).await
}

pub async fn secured_with(f: impl FnOnce(CollectorBuilder) -> CollectorBuilder) -> TestServer {
    TestServer::start_with(|b| f(b.admin_key(ADMIN))).await
}

/// Sends a request with `Authorization: Bearer <token>` (none when `token` is `None`).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: impl Into<Bytes>,
) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    Client { addr }
        .request(method, path, body.into(), &headers)
        .await
}

/// Creates a key through the admin route; returns `(id, token)`.
pub async fn create_key(
    addr: SocketAddr,
    scopes: &[&str],
    prefix: Option<&str>,
) -> (String, String) {
    let mut body = json!({ "scopes": scopes });
    if let Some(p) = prefix {
        body["prefix"] = json!(p);
    }
    let r = call(addr, "POST", "/v1/keys", Some(ADMIN), body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/v1/live` with the key (if any) and waits for the `ready` message.
pub async fn ws_connect(addr: SocketAddr, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{addr}/v1/live").into_client_request()?;
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let ready = ws_json(&mut ws).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    Ok(ws)
}

/// The next text frame as JSON (within 10 s).
pub async fn ws_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Subscribes and returns the subscription label.
pub async fn subscribe(ws: &mut Ws, id: &str, stream: &str, prefix: &str) -> String {
    ws_send(
        ws,
        json!({"id": id, "type": "subscribe", "stream": stream, "prefix": prefix}),
    )
    .await;
    let r = ws_json(ws).await;
    assert_eq!(r["id"], id, "{r}");
    assert_eq!(r["type"], "subscribed", "{r}");
    r["subscription"].as_str().unwrap().to_owned()
}

/// A metric from `/metrics` (first series with this name), fetched with `token`.
pub async fn metric(addr: SocketAddr, token: Option<&str>, name: &str) -> f64 {
    let text = call(addr, "GET", "/metrics", token, "").await.text();
    collector_support::metric_value(&text, name)
}
