//! Reading and deleting stored events: [`Client::events`] (one key's events in a time range),
//! [`Client::latest`] (the latest event per key), and the deletes.
//!
//! Each maps to one collector route (`GET /v1/events`, `GET /v1/latest`, `DELETE /v1/events`,
//! `DELETE /v1/events/{id}`; see the collector's `query` module for the exact semantics) and
//! shares the client's HTTP core: the bearer token, and retries of transient failures for at
//! most the builder's [`call_timeout`](crate::client::ClientBuilder::call_timeout).

use bytes::Bytes;
use jiff::Timestamp;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::core::Client;
use super::error::ClientError;
use super::http::{HttpCore, Replay};

/// An event as the collector stored it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StoredEvent {
    /// The server's id for it: commit order, the cursor of live feeds, what
    /// [`Client::delete_event`] takes.
    pub id: i64,
    /// The event key.
    pub key: String,
    /// The event time, RFC 3339 with the offset it was sent with.
    pub timestamp: String,
    /// The event's `data` (`null` when it had none), every digit of its numbers kept.
    pub data: serde_json::Value,
    /// The client-side id the event was sent with, if any (idempotent retries).
    #[serde(default)]
    pub event_id: Option<String>,
}

impl StoredEvent {
    /// The event time as an instant.
    ///
    /// # Errors
    ///
    /// When `timestamp` is not RFC 3339 (never, for an answer of `accrue serve`).
    pub fn at(&self) -> Result<Timestamp, jiff::Error> {
        self.timestamp.parse()
    }
}

/// One page of events, and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct EventPage {
    /// The events, in the query's order.
    pub events: Vec<StoredEvent>,
    /// Pass to `.cursor(..)` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The order of a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// The query string shared by the requests below: `(name, value)` pairs, `where` repeatable.
#[derive(Debug, Clone, Default)]
pub(super) struct Params(Vec<(&'static str, String)>);

impl Params {
    pub(super) fn set(&mut self, name: &'static str, value: String) {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value));
    }

    fn add(&mut self, name: &'static str, value: String) {
        self.0.push((name, value));
    }

    pub(super) fn url(&self, mut url: Url) -> Url {
        if !self.0.is_empty() {
            url.query_pairs_mut().extend_pairs(self.0.iter());
        }
        url
    }
}

/// Reads pages (items and the next cursor) from the first on, stopping after `max` items.
pub(crate) async fn collect_pages<T, F, Fut>(max: usize, mut page: F) -> Result<Vec<T>, ClientError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ClientError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = page(cursor).await?;
        out.extend(items);
        if out.len() >= max {
            out.truncate(max);
            return Ok(out);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The route an [`EventQuery`] asks: [`Range`] (`GET /v1/events`) or [`Latest`]
/// (`GET /v1/latest`). Sealed.
pub trait Route: sealed::Sealed + Clone {}

/// `GET /v1/events`: one key's events in `[from, to]`, keyset-paged.
#[derive(Debug, Clone, Copy)]
pub struct Range;

/// `GET /v1/latest`: per key with a prefix, its newest event at or before `at` that matches
/// the predicates (applied *before* choosing), in key order.
#[derive(Debug, Clone, Copy)]
pub struct Latest;

mod sealed {
    pub trait Sealed {
        const PATH: &'static str;
    }
    impl Sealed for super::Range {
        const PATH: &'static str = "v1/events";
    }
    impl Sealed for super::Latest {
        const PATH: &'static str = "v1/latest";
    }
}

impl Route for Range {}
impl Route for Latest {}

/// A query over stored events, paged by cursor: [`RangeRequest`] from [`Client::events`],
/// [`LatestRequest`] from [`Client::latest`]. Set its parameters, then await
/// [`page`](Self::page) or [`collect`](Self::collect).
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until `page` or `collect` is awaited"]
pub struct EventQuery<'a, R> {
    core: &'a HttpCore,
    params: Params,
    route: std::marker::PhantomData<R>,
}

/// One key's events in a time range, keyset-paged; from [`Client::events`].
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
/// use accrue::client::{Client, Order};
///
/// let client = Client::builder("http://127.0.0.1:8081").bearer_token("…").build()?;
/// let page = client
///     .events("checkout")
///     .from("2026-12-01T00:00:00Z".parse().unwrap())
///     .filter("plan=pro")       // typed predicates on `data`, all must hold
///     .order(Order::Desc)
///     .limit(50)
///     .page()
///     .await?;
/// for e in &page.events {
///     println!("{} {} {}", e.id, e.timestamp, e.data);
/// }
/// if let Some(next) = page.next_cursor {
///     let _older = client.events("checkout").order(Order::Desc).cursor(next).page().await?;
/// }
/// # Ok(()) }
/// ```
pub type RangeRequest<'a> = EventQuery<'a, Range>;

/// Every key's latest event (with a prefix, as of a time, matching predicates); from
/// [`Client::latest`]. One event per key, in key order.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
/// use accrue::client::Client;
///
/// let client = Client::new("http://127.0.0.1:8081")?;
/// // Every sensor's last reading above 20 degrees, as of now.
/// let latest = client.latest().prefix("sensor/").filter("temp>20").collect(10_000).await?;
/// println!("{} sensors", latest.len());
/// # Ok(()) }
/// ```
pub type LatestRequest<'a> = EventQuery<'a, Latest>;

impl<R: Route> EventQuery<'_, R> {
    /// Events per page, 1 to 10 000 (server default: 100 for a range, 1 000 for latest).
    pub fn limit(mut self, n: usize) -> Self {
        self.params.set("limit", n.to_string());
        self
    }

    /// A `where` predicate on `data`, `PATH OP VALUE` (`user.plan=pro`, `ms>=100`,
    /// `name~smith`); repeatable, all must hold. For latest it is applied before the latest
    /// event is chosen. The server checks it (a bad one is a [`ClientError::Rejected`] with
    /// status 400).
    pub fn filter(mut self, predicate: impl Into<String>) -> Self {
        self.params.add("where", predicate.into());
        self
    }

    /// Continues after a page: its [`EventPage::next_cursor`].
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.params.set("cursor", cursor.into());
        self
    }

    /// Reads one page.
    ///
    /// # Errors
    ///
    /// [`ClientError::Rejected`] for a refused query (`400` names the bad parameter; `401` /
    /// `403` for the key); [`ClientError::TimedOut`] when the server stayed unreachable.
    pub async fn page(&self) -> Result<EventPage, ClientError> {
        let url = self.params.url(self.core.url(<R as sealed::Sealed>::PATH));
        self.core
            .call(Method::GET, url, None, Replay::Safe)
            .await?
            .json()
    }

    /// Reads pages from the cursor (or the start) on until the query ends or `max` events were
    /// read.
    ///
    /// # Errors
    ///
    /// As [`page`](Self::page).
    pub async fn collect(&self, max: usize) -> Result<Vec<StoredEvent>, ClientError> {
        collect_pages(max, |cursor| {
            let mut q = self.clone();
            if let Some(c) = cursor {
                q = q.cursor(c);
            }
            async move { q.page().await.map(|p| (p.events, p.next_cursor)) }
        })
        .await
    }
}

impl RangeRequest<'_> {
    /// Events at or after this instant.
    pub fn from(mut self, t: Timestamp) -> Self {
        self.params.set("from", t.to_string());
        self
    }

    /// Events at or before this instant.
    pub fn to(mut self, t: Timestamp) -> Self {
        self.params.set("to", t.to_string());
        self
    }

    /// The order (default oldest first).
    pub fn order(mut self, order: Order) -> Self {
        let o = match order {
            Order::Asc => "asc",
            Order::Desc => "desc",
        };
        self.params.set("order", o.into());
        self
    }
}

impl LatestRequest<'_> {
    /// Only keys starting with this (a key limited to a namespace is narrowed to it).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.params.set("prefix", prefix.into());
        self
    }

    /// As of this instant (default: now).
    pub fn at(mut self, t: Timestamp) -> Self {
        self.params.set("at", t.to_string());
        self
    }

    /// Leaves out keys whose chosen event is older than this ("active since").
    pub fn since(mut self, t: Timestamp) -> Self {
        self.params.set("since", t.to_string());
        self
    }
}

/// `DELETE /v1/events?key=|prefix=&from=&to=`; from [`Client::delete_key`] and
/// [`Client::delete_prefix`]. Needs the `delete` scope.
#[derive(Debug, Clone)]
#[must_use = "a delete does nothing until `send` is awaited"]
pub struct DeleteRequest<'a> {
    core: &'a HttpCore,
    params: Params,
}

impl DeleteRequest<'_> {
    /// Only events at or after this instant.
    pub fn from(mut self, t: Timestamp) -> Self {
        self.params.set("from", t.to_string());
        self
    }

    /// Only events at or before this instant.
    pub fn to(mut self, t: Timestamp) -> Self {
        self.params.set("to", t.to_string());
        self
    }

    /// Deletes; returns how many events were removed. The collector first flushes the metrics
    /// of the events it deletes, so the metrics keep counting them.
    ///
    /// # Errors
    ///
    /// As [`RangeRequest::page`].
    pub async fn send(&self) -> Result<u64, ClientError> {
        let url = self.params.url(self.core.url("v1/events"));
        deleted(self.core, url).await.map(|n| n.unwrap_or(0))
    }
}

#[derive(Deserialize)]
struct Deleted {
    deleted: u64,
}

/// A delete's count, `None` for a `404`. Deleting twice deletes once, so it is safe to retry.
async fn deleted(core: &HttpCore, url: Url) -> Result<Option<u64>, ClientError> {
    let a = core.call(Method::DELETE, url, None, Replay::Safe).await?;
    if a.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    a.json::<Deleted>().map(|d| Some(d.deleted))
}

impl Client {
    /// The events of `key` in a time range: set the range, order, predicates and page size on
    /// the [`RangeRequest`], then await [`page`](RangeRequest::page) or
    /// [`collect`](RangeRequest::collect). Needs the `read` scope on a secured server.
    pub fn events(&self, key: impl Into<String>) -> RangeRequest<'_> {
        let mut params = Params::default();
        params.set("key", key.into());
        EventQuery {
            core: self.core(),
            params,
            route: std::marker::PhantomData,
        }
    }

    /// The latest event of every key (with a prefix, as of a time, matching predicates): see
    /// [`LatestRequest`]. Needs the `read` scope on a secured server.
    pub fn latest(&self) -> LatestRequest<'_> {
        EventQuery {
            core: self.core(),
            params: Params::default(),
            route: std::marker::PhantomData,
        }
    }

    /// Deletes one event by its [`StoredEvent::id`]; `false` if there was none (in the key's
    /// namespace). Needs the `delete` scope.
    ///
    /// # Errors
    ///
    /// As [`RangeRequest::page`].
    pub async fn delete_event(&self, id: i64) -> Result<bool, ClientError> {
        let url = self.core().url_segments(&["v1", "events", &id.to_string()]);
        Ok(deleted(self.core(), url).await?.is_some())
    }

    /// Deletes the events of one key (in a time range, if given).
    pub fn delete_key(&self, key: impl Into<String>) -> DeleteRequest<'_> {
        let mut params = Params::default();
        params.set("key", key.into());
        DeleteRequest {
            core: self.core(),
            params,
        }
    }

    /// Deletes the events of every key starting with `prefix` (non-empty; in a time range, if
    /// given).
    pub fn delete_prefix(&self, prefix: impl Into<String>) -> DeleteRequest<'_> {
        let mut params = Params::default();
        params.set("prefix", prefix.into());
        DeleteRequest {
            core: self.core(),
            params,
        }
    }
}

/// A JSON body for a write.
pub(crate) fn json_body<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClientError::Config(format!("the value cannot be written as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_replace_and_repeat() {
        let mut p = Params::default();
        p.set("key", "a b/c".into());
        p.add("where", "x=1".into());
        p.add("where", "y~é".into());
        p.set("key", "k&=".into());
        let u = p.url(Url::parse("http://h/v1/events").unwrap());
        assert_eq!(
            u.query(),
            Some("where=x%3D1&where=y%7E%C3%A9&key=k%26%3D"),
            "{u}"
        );
        assert_eq!(
            Params::default()
                .url(Url::parse("http://h/x").unwrap())
                .as_str(),
            "http://h/x"
        );
    }

    #[tokio::test]
    async fn collect_follows_cursors_and_stops_at_max() {
        let page = |n: i64, next: Option<&str>| EventPage {
            events: (0..2)
                .map(|i| StoredEvent {
                    id: n * 2 + i,
                    key: "k".into(),
                    timestamp: "2026-01-01T00:00:00Z".into(),
                    data: serde_json::Value::Null,
                    event_id: None,
                })
                .collect(),
            next_cursor: next.map(str::to_owned),
        };
        let seen = std::sync::Mutex::new(Vec::new());
        let all = collect_pages(10, |c| {
            seen.lock().unwrap().push(c.clone());
            let p = match c.as_deref() {
                None => page(0, Some("c1")),
                Some("c1") => page(1, Some("c2")),
                _ => page(2, None),
            };
            async move { Ok((p.events, p.next_cursor)) }
        })
        .await
        .unwrap();
        assert_eq!(
            all.iter().map(|e| e.id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [None, Some("c1".into()), Some("c2".into())]
        );
        let three = collect_pages(3, |_| async {
            let p = page(0, Some("again"));
            Ok((p.events, p.next_cursor))
        })
        .await
        .unwrap();
        assert_eq!(three.len(), 3);
    }
}
