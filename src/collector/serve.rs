//! The HTTP/1.1 front door: accepts connections up to a cap, gives every connection a deadline
//! for its request heads, and stops gracefully.
//!
//! * **Connection cap.** At most `max_connections` connections are served at once; one more is
//!   answered `503` with `Retry-After` and closed, so a flood of idle or slow connections can
//!   neither exhaust the process's file descriptors nor starve the connections already served.
//! * **Header deadline.** A connection must deliver a complete request head within
//!   `header_timeout`, counted from the moment the server is ready for it: when the connection
//!   opens, and again after each response on a kept-alive connection. So the same deadline bounds
//!   a client that sends its headers a byte at a time and a kept-alive connection left idle.
//! * **Body deadline.** A request body must arrive completely within `body_timeout` of its head
//!   (the handlers that read bodies answer `408` past it).
//! * **Accept errors** (out of file descriptors, out of memory) are retried with a backoff up to
//!   a second, and logged at most every ten seconds with the number seen, instead of spinning or
//!   flooding the log.
//! * **Graceful stop.** When `stop` fires, no connection is accepted any more and the open ones
//!   finish their current request; dropping the returned future aborts them all.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyDeadline;

use super::metrics::Metrics;

/// How connections are admitted and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
}

/// Connections over the cap being answered `503` at once; more are closed without an answer.
const MAX_REFUSING: usize = 64;
/// How long a refused connection gets to receive its `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Accept-error backoff.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one accept-error log line per this period.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` fires and every open connection has finished.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
            // Reap finished connections so the set stays the size of the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(RequestBodyDeadline::new(app.clone(), limits.body_timeout));
        let stop = stop.clone();
        let metrics = Arc::clone(&metrics);
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = &e as &dyn std::error::Error, "connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    // Open connections finish their current request (the caller bounds how long).
    while connections.join_next().await.is_some() {}
}

/// Answers a connection over the cap with `503` and closes it, reading what the client sent so
/// that closing does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(&over_capacity_answer()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
}

fn over_capacity_answer() -> Vec<u8> {
    let body = br#"{"detail":"the server is at its connection limit","error":"Server is busy, retry later"}"#;
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Errors that concern one connection only (it was reset before it was accepted): the next
/// accept can go ahead at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// The growing wait between failed accepts, and the rate limit of their log lines.
#[derive(Debug)]
struct AcceptBackoff {
    delay: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            delay: ACCEPT_BACKOFF_MIN,
            unlogged: 0,
            last_log: None,
        }
    }
}

impl AcceptBackoff {
    fn reset(&mut self) {
        self.delay = ACCEPT_BACKOFF_MIN;
    }

    /// Records a failed accept; returns how long to wait before the next one.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(
                error = e as &dyn std::error::Error,
                failures = self.unlogged,
                "cannot accept connections (at most one line per {}s); backing off",
                ACCEPT_LOG_EVERY.as_secs()
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(&e)).collect();
        assert_eq!(waits[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(waits[1], ACCEPT_BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        // One line logged for the burst; the rest counted for the next.
        assert_eq!(b.unlogged, 9);
        b.reset();
        assert_eq!(b.failed(&e), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let a = over_capacity_answer();
        let text = String::from_utf8(a).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "Server is busy, retry later");
    }
}
