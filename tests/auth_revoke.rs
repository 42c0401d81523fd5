//! Revocation takes effect at once: the next request with the key is refused, and the
//! live connections opened with it are closed — unlike FluxionDB, whose revoked keys kept
//! reading on their open sockets.

#![cfg(feature = "server")]

mod auth_support;

use std::time::Duration;

use auth_support::{ADMIN, call, create_key, secured, subscribe, ws_connect, ws_json, ws_send};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_and_its_live_connections_close() {
    let s = secured().await;
    let (id, doomed) = create_key(s.addr, &["read"], None).await;
    let (_, other) = create_key(s.addr, &["read"], None).await;
    assert_eq!(
        call(s.addr, "GET", "/view", Some(&doomed), "").await.status,
        200
    );

    let mut ws = ws_connect(s.addr, Some(&doomed)).await.unwrap();
    subscribe(&mut ws, "1", "events", "").await;
    let mut ws_other = ws_connect(s.addr, Some(&other)).await.unwrap();
    subscribe(&mut ws_other, "1", "events", "").await;
    // An SSE stream with the same key.
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            hyper::Request::builder()
                .uri("/v1/live/sse")
                .header("host", s.addr.to_string())
                .header("authorization", format!("Bearer {doomed}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut sse = res.into_body();

    let r = call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(ADMIN), "").await;
    assert_eq!(r.status, 200);

    // The very next request is refused.
    assert_eq!(
        call(s.addr, "GET", "/view", Some(&doomed), "").await.status,
        401
    );
    // The WebSocket gets an error, then a policy-violation close.
    let err = ws_json(&mut ws).await;
    assert_eq!(
        (err["type"].as_str(), err["error"].as_str()),
        (Some("error"), Some("Unauthorized")),
        "{err}"
    );
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(f))) => break f.unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "API key revoked");
    // The SSE stream ends with an error event.
    let mut text = String::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), sse.frame())
        .await
        .unwrap()
    {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(
        text.contains("event: error") && text.contains("revoked"),
        "{text}"
    );
    // A new connection with it is refused at the upgrade.
    let err = ws_connect(s.addr, Some(&doomed)).await.err().unwrap();
    assert!(err.to_string().contains("401"), "{err}");
    // The other key's connection is untouched.
    s.post("/events", "[]").await;
    call(
        s.addr,
        "POST",
        "/events",
        Some(ADMIN),
        r#"[{"key":"after"}]"#,
    )
    .await;
    assert_eq!(ws_json(&mut ws_other).await["event"]["key"], "after");
    ws_send(&mut ws_other, json!({"id": 1, "type": "ping"})).await;
    assert_eq!(ws_json(&mut ws_other).await["type"], "pong");
}
