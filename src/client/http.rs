//! The HTTP core every client call goes through: one `reqwest` client (rustls on *ring*), the
//! server's base URL, the bearer token, and the classification of answers into "done", "retry"
//! and "refused". The queries, the KV calls and the live feeds share it ([`HttpCore::call`],
//! [`HttpCore::live`]).

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use super::config::{ClientBuilder, Retry};
use super::error::ClientError;

/// How much of an error answer is kept for the message.
const ERROR_BODY_MAX: usize = 4 * 1024;
/// A `Retry-After` longer than this (or than the retry cap, if larger) is capped: a confused
/// server must not park the client for hours.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// The largest answer a query or KV call reads (a page of 10 000 events of 64 KiB `data`
/// would be 640 MiB; the server's pages are far smaller in practice).
pub(crate) const ANSWER_MAX: usize = 64 * 1024 * 1024;
/// A live feed with no byte (event or keep-alive comment) for this long is reconnected; the
/// collector sends a keep-alive every 15 s.
pub(crate) const LIVE_IDLE: Duration = Duration::from_secs(45);

/// The shared HTTP state.
pub(crate) struct HttpCore {
    http: reqwest::Client,
    /// For live feeds: no whole-request timeout (a feed lasts), a per-read idle timeout.
    live: OnceLock<reqwest::Client>,
    base: Url,
    events: Url,
    auth: Option<HeaderValue>,
    user_agent: String,
    connect_timeout: Duration,
    tls: rustls::ClientConfig,
    pub(crate) retry: Retry,
    /// How long a query or KV call keeps retrying transient failures.
    pub(crate) call_timeout: Duration,
}

/// Whether a call may be sent again after a failure that leaves it unknown if the server
/// applied it (a lost connection, a timeout, a `5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Reads, and writes that land the same state twice (an unconditional KV put, a delete).
    Safe,
    /// Conditional writes: only answers that say the request was not applied (`429`, `503`)
    /// are retried; anything ambiguous is reported.
    OnlyIfRefused,
}

/// A final answer to a call: a `2xx`, or a `4xx` other than `408` and `429`.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The body as `T`, for a `2xx`; any other status as [`ClientError::Rejected`].
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        if !self.status.is_success() {
            return Err(self.rejected());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Protocol(format!("the server's answer is not what was expected: {e}"))
        })
    }

    /// This answer as a refusal.
    pub(crate) fn rejected(&self) -> ClientError {
        ClientError::Rejected {
            status: self.status.as_u16(),
            message: error_message(&self.body),
        }
    }
}

impl std::fmt::Debug for HttpCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCore")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What one attempt at a request came to.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// `200`: the server stored `count - duplicates` events.
    Stored { duplicates: u64 },
    /// Worth retrying after at least `after` (from `Retry-After`).
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// `400` naming one bad event: drop it, send the rest.
    BadEvent { index: usize, message: String },
    /// `413`: the body (or event count) is over the server's limit.
    TooLarge { message: String },
    /// Any other `4xx`: refused for good.
    Refused { status: u16, message: String },
}

impl HttpCore {
    pub(crate) fn new(cfg: &ClientBuilder) -> Result<Arc<Self>, ClientError> {
        let base = parse_base(&cfg.url)?;
        let events = base
            .join("events")
            .map_err(|e| ClientError::Config(format!("server URL: {e}")))?;
        let auth = match &cfg.token {
            Some(t) => {
                let mut v = HeaderValue::try_from(format!("Bearer {t}")).map_err(|_| {
                    ClientError::Config("the bearer token must be visible ASCII".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let tls = tls_config()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .user_agent(cfg.user_agent.clone())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Http(Box::new(e)))?;
        Ok(Arc::new(Self {
            http,
            live: OnceLock::new(),
            base,
            events,
            auth,
            user_agent: cfg.user_agent.clone(),
            connect_timeout: cfg.connect_timeout,
            tls,
            retry: cfg.retry,
            call_timeout: cfg.call_timeout,
        }))
    }

    /// `base` joined with a relative path (`v1/events`).
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("a fixed relative path joins any http(s) base URL")
    }

    /// `base` with path segments appended, each percent-encoded (a `/` inside one stays part
    /// of it).
    pub(crate) fn url_segments(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .expect("an http(s) base URL has path segments")
            .pop_if_empty()
            .extend(segments);
        u
    }

    fn authorize(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req
    }

    /// Sends a query or KV request, retrying transport errors, `408`, `429` and `5xx` with the
    /// client's backoff (never sooner than `Retry-After`) for at most `call_timeout` (and
    /// `max_attempts`). Under [`Replay::OnlyIfRefused`] only `429` and `503` are retried.
    ///
    /// # Errors
    ///
    /// [`ClientError::TimedOut`] with the last failure when the retries ran out;
    /// [`ClientError::Protocol`] for an answer over [`ANSWER_MAX`].
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        replay: Replay,
    ) -> Result<Answer, ClientError> {
        let deadline = Instant::now() + self.call_timeout;
        let mut attempt: u32 = 0;
        loop {
            let mut req = self.authorize(self.http.request(method.clone(), url.clone()));
            if let Some(b) = &body {
                req = req
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(b.clone());
            }
            let (why, retry_after, replayable) = match req.send().await {
                Err(e) => (transport_error(&e), None, replay == Replay::Safe),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = self.retry_after(&resp);
                    match read_limited(resp, ANSWER_MAX + 1).await {
                        Err(e) => (
                            format!("reading the answer: {}", transport_error(&e)),
                            retry_after,
                            replay == Replay::Safe,
                        ),
                        Ok(body) => match final_answer(status, body)? {
                            Ok(answer) => return Ok(answer),
                            Err(why) => {
                                let refused = matches!(status.as_u16(), 429 | 503);
                                (why, retry_after, refused || replay == Replay::Safe)
                            }
                        },
                    }
                }
            };
            let wait = backoff(&self.retry, attempt, retry_after);
            attempt += 1;
            let out_of_attempts = self.retry.max_attempts.is_some_and(|n| attempt >= n);
            if !replayable || out_of_attempts || Instant::now() + wait > deadline {
                return Err(ClientError::TimedOut { last: Some(why) });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Opens a live feed (`GET` with `Accept: text/event-stream`), once.
    pub(crate) async fn live(
        &self,
        url: Url,
        last_event_id: Option<i64>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let http = match self.live.get() {
            Some(c) => c,
            None => {
                let c = reqwest::Client::builder()
                    .tls_backend_preconfigured(self.tls.clone())
                    .user_agent(self.user_agent.clone())
                    .connect_timeout(self.connect_timeout)
                    .read_timeout(LIVE_IDLE)
                    .tcp_nodelay(true)
                    .build()?;
                self.live.get_or_init(|| c)
            }
        };
        let mut req = self
            .authorize(http.get(url))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        req.send().await
    }

    /// The answer's `Retry-After`, capped.
    pub(crate) fn retry_after(&self, resp: &reqwest::Response) -> Option<Duration> {
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.min(RETRY_AFTER_CAP.max(self.retry.max)))
    }

    /// The server's base URL (always ends with `/`).
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// `POST /events` with a JSON array body, once.
    pub(crate) async fn post_events(&self, body: Bytes) -> Attempt {
        let req = self
            .http
            .post(self.events.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        let resp = match self.authorize(req).send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    why: transport_error(&e),
                };
            }
        };
        let status = resp.status();
        let retry_after = self.retry_after(&resp);
        let body = match read_limited(resp, ERROR_BODY_MAX).await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    after: retry_after,
                    why: format!("reading the answer: {}", transport_error(&e)),
                };
            }
        };
        classify(status, retry_after, &body)
    }
}

/// Turns a status and body into an [`Attempt`].
pub(crate) fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Attempt {
    #[derive(serde::Deserialize, Default)]
    struct Answer {
        #[serde(default)]
        duplicates: u64,
        #[serde(default)]
        index: Option<usize>,
    }
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    let message = || error_message(body);
    let code = status.as_u16();
    match code {
        200..=299 => Attempt::Stored {
            duplicates: answer.duplicates,
        },
        408 | 429 | 500..=599 => Attempt::Retry {
            after: retry_after,
            why: format!("{code} {}", message()),
        },
        400 if answer.index.is_some() => Attempt::BadEvent {
            index: answer.index.unwrap_or_default(),
            message: message(),
        },
        413 => Attempt::TooLarge { message: message() },
        _ => Attempt::Refused {
            status: code,
            message: message(),
        },
    }
}

/// A call's answer: `Ok(Ok)` when final (a `2xx`, or a `4xx` other than `408` / `429`),
/// `Ok(Err(why))` when worth retrying, `Err` for an answer over [`ANSWER_MAX`].
fn final_answer(status: StatusCode, body: Vec<u8>) -> Result<Result<Answer, String>, ClientError> {
    if body.len() > ANSWER_MAX {
        return Err(ClientError::Protocol(format!(
            "the answer is larger than {ANSWER_MAX} bytes"
        )));
    }
    let code = status.as_u16();
    if matches!(code, 408 | 429 | 500..=599) {
        return Ok(Err(format!("{code} {}", error_message(&body))));
    }
    Ok(Ok(Answer {
        status,
        body: body.into(),
    }))
}

/// An error answer's `error: detail`, or the start of its body.
pub(crate) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize, Default)]
    struct Error {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    }
    let e: Error = serde_json::from_slice(body).unwrap_or_default();
    match (e.error, e.detail) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// The base URL: `http` or `https`, no credentials, no query or fragment; a trailing `/` is
/// added so paths join below it.
pub(crate) fn parse_base(url: &str) -> Result<Url, ClientError> {
    let mut u = Url::parse(url)
        .map_err(|e| ClientError::Config(format!("the server URL is not a valid URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "the server URL must be http:// or https://, not {}://",
            u.scheme()
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        // Never echo the URL: it holds a credential.
        return Err(ClientError::Config(
            "the server URL must not carry credentials; use bearer_token()".into(),
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(ClientError::Config(
            "the server URL must not have a query or fragment (tokens go in bearer_token())".into(),
        ));
    }
    if u.host_str().is_none() {
        return Err(ClientError::Config("the server URL has no host".into()));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

/// rustls with the *ring* provider and the platform's certificate verifier.
fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| ClientError::Http(Box::new(e)))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Http(Box::new(e)))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// `Retry-After`: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(v).ok()?;
    let now = jiff::Timestamp::now();
    Some(if at > now {
        Duration::try_from(at.duration_since(now)).unwrap_or_default()
    } else {
        Duration::ZERO
    })
}

/// A transport error's text, without the URL (which names the server, but could in general
/// carry a path someone considers private) — and never a header.
pub(crate) fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind}: {}", crate::report::Chain(s)),
        None => kind.to_owned(),
    }
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(out)
}

/// A random `u64` from a per-thread xorshift generator seeded from the OS (via std's
/// `RandomState`) and the clock. For jitter and ids; not for cryptography.
pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// A uniformly random duration in `[0, max]`.
pub(crate) fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random_u64() % (nanos + 1))
}

/// How long to wait before attempt `attempt + 1`: full jitter under the backoff ceiling, and
/// at least the server's `Retry-After`.
pub(crate) fn backoff(retry: &Retry, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let d = jitter(retry.ceiling(attempt));
    match retry_after {
        Some(ra) => d.max(ra),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_never_echo_credentials() {
        assert_eq!(
            parse_base("http://127.0.0.1:8081").unwrap().as_str(),
            "http://127.0.0.1:8081/"
        );
        assert_eq!(
            parse_base("https://h/analytics").unwrap().as_str(),
            "https://h/analytics/"
        );
        let e = parse_base("http://me:pw@h/").unwrap_err().to_string();
        assert!(!e.contains("pw"), "{e}");
        assert!(parse_base("http://h/?token=x").is_err());
        assert!(parse_base("ftp://h/").is_err());
        assert!(parse_base("not a url").is_err());
    }

    #[test]
    fn answers_are_classified() {
        let ok = classify(StatusCode::OK, None, br#"{"count":3,"duplicates":1}"#);
        assert!(matches!(ok, Attempt::Stored { duplicates: 1 }));
        // A Tlytics server answers without `duplicates`.
        let ok = classify(StatusCode::OK, None, br#"{"message":"x","count":3}"#);
        assert!(matches!(ok, Attempt::Stored { duplicates: 0 }));
        for code in [408, 429, 500, 502, 503] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                classify(s, Some(Duration::from_secs(1)), b"{}"),
                Attempt::Retry { after: Some(_), .. }
            ));
        }
        let bad = classify(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":"Event key is required","index":2}"#,
        );
        assert!(matches!(bad, Attempt::BadEvent { index: 2, .. }));
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, None, b"{}"),
            Attempt::TooLarge { .. }
        ));
        match classify(StatusCode::UNAUTHORIZED, None, br#"{"error":"no key"}"#) {
            Attempt::Refused { status, message } => {
                assert_eq!((status, message.as_str()), (401, "no key"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let text = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let d = parse_retry_after(&text).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_has_jitter_and_honours_retry_after() {
        let r = Retry::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_secs(1));
        let samples: Vec<Duration> = (0..200).map(|_| backoff(&r, 2, None)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "no jitter: {}", distinct.len());
        for _ in 0..100 {
            assert!(backoff(&r, 0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }
}
