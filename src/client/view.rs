//! [`Client::view`]: the collector's stored events a page at a time (`GET /view`).

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;

use super::core::Client;
use super::error::ClientError;
use super::http::{HttpCore, Replay};
use super::query::Params;

/// One event as `/view` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ViewedEvent {
    /// The event key.
    pub key: String,
    /// The event time, RFC 3339.
    pub timestamp: String,
    /// The event's `data` (`null` when it had none).
    pub data: serde_json::Value,
}

impl ViewedEvent {
    /// The event time as an instant.
    ///
    /// # Errors
    ///
    /// When `timestamp` is not RFC 3339 (never, for an answer of `accrue serve`).
    pub fn at(&self) -> Result<Timestamp, jiff::Error> {
        self.timestamp.parse()
    }
}

/// One page of `/view`: newest events first, with the totals to page through the rest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ViewPage {
    /// The events of this page, newest first.
    pub events: Vec<ViewedEvent>,
    /// This page's number, from 1.
    pub page: u64,
    /// The events per page.
    pub page_size: u64,
    /// The events there are in all (of the key, or of every key the caller may read).
    pub total: u64,
    /// The pages there are in all.
    pub total_pages: u64,
}

/// A `/view` read being set up: see [`Client::view`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ViewRequest<'a> {
    core: &'a HttpCore,
    params: Params,
}

impl ViewRequest<'_> {
    /// Only the events of `key` (default: every key the caller may read).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.params.set("key", key.into());
        self
    }

    /// The page to read, from 1 (the default).
    pub fn page(mut self, page: u64) -> Self {
        self.params.set("page", page.to_string());
        self
    }

    /// Events per page (server default 10, at most 1,000).
    pub fn page_size(mut self, size: u64) -> Self {
        self.params.set("page_size", size.to_string());
        self
    }

    /// Reads the page.
    ///
    /// # Errors
    ///
    /// [`ClientError::Rejected`] for a refused read (`401` / `403` for the key, or a `key`
    /// outside its namespace); [`ClientError::TimedOut`] when the server stayed unreachable;
    /// [`ClientError::Protocol`] for an answer that is not a page of events.
    pub async fn send(self) -> Result<ViewPage, ClientError> {
        let url = self.params.url(self.core.url("/view"));
        self.core
            .call(Method::GET, url, None, Replay::Safe)
            .await?
            .json()
    }
}

impl Client {
    /// The stored events, newest first, a page at a time — what the collector's `/view`
    /// lists. Needs the `read` scope on a secured server; a key limited to a namespace sees
    /// only its events. For ranges, filters and cursors use [`Client::events`].
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
    /// use accrue::client::Client;
    ///
    /// let client = Client::new("http://127.0.0.1:8081")?;
    /// let page = client.view().key("page_view").page_size(50).send().await?;
    /// for event in &page.events {
    ///     println!("{} {}", event.timestamp, event.data);
    /// }
    /// println!("{} of {}", page.events.len(), page.total);
    /// # Ok(()) }
    /// ```
    pub fn view(&self) -> ViewRequest<'_> {
        ViewRequest {
            core: self.core(),
            params: Params::default(),
        }
    }
}
