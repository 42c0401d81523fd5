//! Helpers for the client's integration tests: a fault-injecting HTTP proxy in front of a real
//! collector, a log capture, and event checks.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;

/// What the proxy does with the next requests.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Pass requests to the collector and answers back.
    Forward,
    /// Answer every request with this status (and `Retry-After`, in seconds, if given).
    Status(u16, Option<u32>),
    /// Pass the request to the collector (it stores it), then drop the connection without an
    /// answer: the client cannot know it was stored.
    LoseAnswer,
}

/// A loopback HTTP proxy whose behaviour tests switch at run time; counts requests.
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    mode: Arc<Mutex<Mode>>,
    /// The `Authorization` headers seen.
    pub auth_headers: Arc<Mutex<Vec<String>>>,
    /// The request bodies seen (as JSON).
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (or, with `None`, a proxy that only answers statuses).
    pub async fn start(upstream: Option<SocketAddr>, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            auth_headers: Arc::default(),
            bodies: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let p = p.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = service_fn(move |req| {
                        let p = p.clone();
                        async move { p.handle(req, upstream).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        proxy
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        upstream: Option<SocketAddr>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(auth) = req.headers().get("authorization") {
            self.auth_headers
                .lock()
                .unwrap()
                .push(auth.to_str().unwrap_or("").to_owned());
        }
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(io)?.to_bytes();
        if let Ok(v) = serde_json::from_slice(&body) {
            self.bodies.lock().unwrap().push(v);
        }
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Status(code, retry_after) => {
                let mut res = Response::builder().status(code);
                if let Some(s) = retry_after {
                    res = res.header("retry-after", s.to_string());
                }
                res.body(Full::new(Bytes::from_static(
                    br#"{"error":"injected fault"}"#,
                )))
                .map_err(io)
            }
            Mode::Forward | Mode::LoseAnswer => {
                let upstream = upstream.expect("an upstream for forwarding");
                let client = collector_client(upstream);
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let resp = client
                    .try_request(parts.method.as_str(), path, body, &[])
                    .await
                    .map_err(io)?;
                if matches!(mode, Mode::LoseAnswer) {
                    return Err(io("answer lost on purpose"));
                }
                let mut res = Response::builder().status(resp.status);
                for (k, v) in &resp.headers {
                    res = res.header(k, v);
                }
                res.body(Full::new(Bytes::from(resp.body))).map_err(io)
            }
        }
    }
}

fn collector_client(addr: SocketAddr) -> super::collector_support::Client {
    super::collector_support::Client { addr }
}

/// Checks that `events` hold `data.seq` = `0..n` exactly once each; returns the seqs missing
/// and duplicated.
pub fn seq_report(events: &[Value], n: u64) -> (Vec<u64>, Vec<u64>) {
    let mut seen = HashSet::new();
    let mut dup = Vec::new();
    for e in events {
        let s = e["data"]["seq"].as_u64().expect("seq");
        if !seen.insert(s) {
            dup.push(s);
        }
    }
    let missing = (0..n).filter(|s| !seen.contains(s)).collect();
    (missing, dup)
}

/// Captures `tracing` output (all levels) into a string, for checks on what is logged.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Installs this capture as the process's global subscriber (once per test binary).
    pub fn install_global(&self) {
        let me = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one global subscriber per binary");
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

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
