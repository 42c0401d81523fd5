//! Shared helpers for the collector's integration tests: a server on a loopback port with its
//! own temporary database, and a minimal HTTP/1.1 client on hyper.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use accrue::collector::{Collector, CollectorBuilder};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A collector on `127.0.0.1:<free port>` with a fresh database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    server: Option<Collector>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    /// Starts with extra settings applied to the builder (`db` and `port` are set here).
    pub async fn start_with(f: impl FnOnce(CollectorBuilder) -> CollectorBuilder) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, f).await
    }

    /// Starts on the database in `dir` (to restart a server on the same file).
    pub async fn start_in(
        dir: tempfile::TempDir,
        f: impl FnOnce(CollectorBuilder) -> CollectorBuilder,
    ) -> Self {
        let builder = Collector::builder()
            .db(dir.path().join("events.db"))
            .port(0)
            .shutdown_timeout(Duration::from_secs(10));
        let server = f(builder).start().await.unwrap();
        Self {
            addr: server.local_addr(),
            dir,
            server: Some(server),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("events.db")
    }

    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Resp {
        self.client().post(path, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.client().get(path).await
    }

    /// Stops gracefully and hands the directory back, for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().stop().await.unwrap();
        self.dir
    }

    pub fn collector(&mut self) -> &mut Option<Collector> {
        &mut self.server
    }

    /// All stored events, newest first, read page by page through `/view`.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let v = self
                .get(&format!("/view?page={page}&page_size=1000"))
                .await
                .json();
            let events = v["events"].as_array().unwrap().clone();
            if events.is_empty() {
                break;
            }
            out.extend(events);
        }
        out
    }

    pub async fn total(&self) -> u64 {
        self.get("/view").await.json()["total"].as_u64().unwrap()
    }
}

/// A plain HTTP client: one connection per request.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub addr: SocketAddr,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_request(method, path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(self.addr).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = sender.send_request(req.body(Full::new(body))?).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes().to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Resp {
        self.request(
            "POST",
            path,
            body.into(),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, Bytes::new(), &[]).await
    }
}

/// Sends raw bytes and reads the raw answer until the server closes or `limit` bytes arrive.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before the whole request is written.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if let Some(end) = header_end(&out) {
                    let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if len.is_some_and(|len| out.len() >= end + len) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A JSON array of `n` events `key`, each with `data.seq` = `start + i`.
pub fn events_json(key: &str, start: usize, n: usize) -> String {
    let items: Vec<String> = (start..start + n)
        .map(|i| format!(r#"{{"key":"{key}","data":{{"seq":{i}}}}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

/// The value of the first series named `name` in a `/metrics` text (with or without labels).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

impl TestServer {
    /// `/v1/values?{query}`, which must answer 200.
    pub async fn values(&self, query: &str) -> Value {
        let r = self.get(&format!("/v1/values?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Waits (up to 10 s) until `/v1/values?{query}` equals `expected`.
    pub async fn wait_values(&self, query: &str, expected: &Value) {
        let start = std::time::Instant::now();
        loop {
            let got = self.values(query).await;
            if &got == expected {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{query}: {got} != {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A log writer that keeps everything written to it, for tests that read the server's log.
#[derive(Clone, Default)]
pub struct LogCapture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
