//! The collector's KV store from the client: [`Client::kv`] gives a [`Kv`] handle on one
//! namespace (`GET` / `PUT` / `DELETE /v1/kv/{ns}/{key}`, `GET /v1/kv/{ns}`).
//!
//! Every value has a version (1 on creation, +1 per write). Unconditional writes and deletes
//! are retried like reads (writing the same value twice leaves the same value, though the
//! version may then rise by 2). Conditional ones ([`Kv::put_if`], [`Kv::delete_if`]) are only
//! retried on answers that say nothing was applied (`429`, `503`): after a lost answer they
//! return [`ClientError::TimedOut`] and the caller reads the value to see what happened.

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::core::Client;
use super::error::ClientError;
use super::http::{Answer, HttpCore, Replay};
use super::query::{collect_pages, json_body};

/// One stored value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct KvEntry {
    /// Its key.
    pub key: String,
    /// The JSON value as written.
    pub value: serde_json::Value,
    /// 1 on creation, +1 per write.
    pub version: u64,
    /// When it was last written (RFC 3339, UTC).
    pub updated: String,
}

/// One page of a namespace's values, in key order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct KvPage {
    /// The values.
    pub items: Vec<KvEntry>,
    /// Pass to [`KvList::cursor`] for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A handle on one KV namespace; from [`Client::kv`]. Cheap; borrows the client.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
/// use accrue::client::{Client, ClientError};
/// use serde_json::json;
///
/// let client = Client::builder("http://127.0.0.1:8081").bearer_token("…").build()?;
/// let flags = client.kv("feature-flags");
/// let v1 = flags.put("checkout/new-ui", &json!({"on": true, "percent": 10})).await?;
/// // Compare-and-set: only if nobody wrote it since.
/// match flags.put_if("checkout/new-ui", &json!({"on": true, "percent": 50}), v1).await {
///     Ok(v2) => assert_eq!(v2, v1 + 1),
///     Err(ClientError::Conflict { .. }) => { /* someone else won; read and retry */ }
///     Err(e) => return Err(e),
/// }
/// let entry = flags.get("checkout/new-ui").await?.expect("just written");
/// println!("{} v{}", entry.value, entry.version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Kv<'a> {
    core: &'a HttpCore,
    ns: &'a str,
}

#[derive(Deserialize)]
struct Written {
    version: u64,
}

impl Kv<'_> {
    fn url(&self, key: &str) -> Url {
        self.core.url_segments(&["v1", "kv", self.ns, key])
    }

    /// The value under `key`, or `None`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Rejected`] for a refused request (a bad name, a missing scope);
    /// [`ClientError::TimedOut`] when the server stayed unreachable.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, ClientError> {
        let a = self
            .core
            .call(Method::GET, self.url(key), None, Replay::Safe)
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        a.json().map(Some)
    }

    /// Writes `value` (any JSON, up to 64 KiB); returns the new version. Answered once the
    /// server committed it.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`ClientError::Config`] if `value` cannot be serialised.
    pub async fn put<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<u64, ClientError> {
        let body = json_body(value)?;
        let a = self
            .core
            .call(Method::PUT, self.url(key), Some(body), Replay::Safe)
            .await?;
        a.json::<Written>().map(|w| w.version)
    }

    /// Writes `value` only if the stored version is `expected` (`0`: only if there is none);
    /// returns the new version.
    ///
    /// # Errors
    ///
    /// [`ClientError::Conflict`] when the stored version differs (nothing changed); otherwise
    /// as [`put`](Self::put).
    pub async fn put_if<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        expected: u64,
    ) -> Result<u64, ClientError> {
        let body = json_body(value)?;
        let a = self
            .core
            .call(
                Method::PUT,
                conditional(self.url(key), expected),
                Some(body),
                Replay::OnlyIfRefused,
            )
            .await?;
        conflict(&a)?;
        a.json::<Written>().map(|w| w.version)
    }

    /// Deletes `key`; `false` if there was no value.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        let a = self
            .core
            .call(Method::DELETE, self.url(key), None, Replay::Safe)
            .await?;
        removed(&a)
    }

    /// Deletes `key` only if its stored version is `expected`; `false` if there was no value.
    ///
    /// # Errors
    ///
    /// [`ClientError::Conflict`] when the stored version differs; otherwise as
    /// [`get`](Self::get).
    pub async fn delete_if(&self, key: &str, expected: u64) -> Result<bool, ClientError> {
        let a = self
            .core
            .call(
                Method::DELETE,
                conditional(self.url(key), expected),
                None,
                Replay::OnlyIfRefused,
            )
            .await?;
        conflict(&a)?;
        removed(&a)
    }

    /// Lists the namespace's values in key order: see [`KvList`].
    pub fn list(&self) -> KvList<'_> {
        KvList {
            kv: *self,
            prefix: None,
            limit: None,
            cursor: None,
        }
    }
}

fn conditional(mut url: Url, expected: u64) -> Url {
    url.query_pairs_mut()
        .append_pair("if_version", &expected.to_string());
    url
}

fn conflict(a: &Answer) -> Result<(), ClientError> {
    if a.status == StatusCode::CONFLICT {
        return Err(ClientError::Conflict {
            message: super::http::error_message(&a.body),
        });
    }
    Ok(())
}

fn removed(a: &Answer) -> Result<bool, ClientError> {
    if a.status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    #[derive(Deserialize)]
    struct Deleted {
        deleted: bool,
    }
    a.json::<Deleted>().map(|d| d.deleted)
}

/// `GET /v1/kv/{ns}?prefix=&limit=&cursor=`; from [`Kv::list`].
#[derive(Debug, Clone)]
#[must_use = "a listing does nothing until `page` or `collect` is awaited"]
pub struct KvList<'a> {
    kv: Kv<'a>,
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl KvList<'_> {
    /// Only keys starting with this.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Values per page, 1 to 1 000 (server default 100).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a page: its [`KvPage::next_cursor`].
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Reads one page.
    ///
    /// # Errors
    ///
    /// As [`Kv::get`].
    pub async fn page(&self) -> Result<KvPage, ClientError> {
        let mut url = self.kv.core.url_segments(&["v1", "kv", self.kv.ns]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(p) = &self.prefix {
                q.append_pair("prefix", p);
            }
            if let Some(n) = self.limit {
                q.append_pair("limit", &n.to_string());
            }
            if let Some(c) = &self.cursor {
                q.append_pair("cursor", c);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.kv
            .core
            .call(Method::GET, url, None, Replay::Safe)
            .await?
            .json()
    }

    /// Reads pages until the namespace (or prefix) ends or `max` values were read.
    ///
    /// # Errors
    ///
    /// As [`Kv::get`].
    pub async fn collect(&self, max: usize) -> Result<Vec<KvEntry>, ClientError> {
        collect_pages(max, |cursor| {
            let mut q = self.clone();
            if cursor.is_some() {
                q.cursor = cursor;
            }
            async move { q.page().await.map(|p| (p.items, p.next_cursor)) }
        })
        .await
    }
}

impl Client {
    /// The KV store's namespace `ns` (reads need the `read` scope, writes `write`, deletes
    /// `delete`; a key limited to a prefix reaches only namespaces starting with it).
    pub fn kv<'a>(&'a self, ns: &'a str) -> Kv<'a> {
        Kv {
            core: self.core(),
            ns,
        }
    }
}
