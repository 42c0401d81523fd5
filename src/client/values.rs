//! [`Client::values`]: a key's metrics timeline from the collector (`GET /v1/values`).

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;

use super::core::Client;
use super::error::ClientError;
use super::http::{HttpCore, Replay};
use super::query::Params;
use crate::time::{Blanks, Granularity};

/// One key's metrics, bucket by bucket: what `/v1/values` answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Timeline {
    /// Bucket starts, oldest first.
    pub at: Vec<Timestamp>,
    /// One object per bucket, in the same order: `count` (events) and `data` (the sums of
    /// the events' numeric `data` fields), or empty when nothing was stored.
    pub values: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Timeline {
    /// The number of events in each bucket (0 for an empty one).
    pub fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.values.iter().map(|v| {
            v.get("count")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    at: Vec<String>,
    values: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A `/v1/values` read being set up: see [`Client::values`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ValuesRequest<'a> {
    core: &'a HttpCore,
    params: Params,
}

impl ValuesRequest<'_> {
    /// The first instant of the range (server default: 24 hours before `to`).
    pub fn from(mut self, t: Timestamp) -> Self {
        self.params.set("from", t.to_string());
        self
    }

    /// The last instant of the range (server default: now). Both ends' buckets are included.
    pub fn to(mut self, t: Timestamp) -> Self {
        self.params.set("to", t.to_string());
        self
    }

    /// The bucket size (server default: its first configured granularity).
    pub fn granularity(mut self, g: Granularity) -> Self {
        self.params.set("granularity", g.to_string());
        self
    }

    /// Whether empty buckets are listed (default: [`Blanks::Keep`]).
    pub fn blanks(mut self, blanks: Blanks) -> Self {
        self.params
            .set("skip_blanks", (blanks == Blanks::Skip).to_string());
        self
    }

    /// Reads the timeline.
    ///
    /// # Errors
    ///
    /// [`ClientError::Rejected`] for a refused read (`400` names the bad parameter, `503`
    /// when the server runs without metrics; `401` / `403` for the key);
    /// [`ClientError::TimedOut`] when the server stayed unreachable; [`ClientError::Protocol`]
    /// for an answer that is not a timeline.
    pub async fn send(self) -> Result<Timeline, ClientError> {
        let url = self.params.url(self.core.url("/v1/values"));
        let answer: Answer = self
            .core
            .call(Method::GET, url, None, Replay::Safe)
            .await?
            .json()?;
        let at = answer
            .at
            .iter()
            .map(|s| s.parse::<Timestamp>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Protocol(format!("a bucket start is not an instant: {e}")))?;
        if at.len() != answer.values.len() {
            return Err(ClientError::Protocol(
                "the timeline's starts and values differ in length".into(),
            ));
        }
        Ok(Timeline {
            at,
            values: answer.values,
        })
    }
}

impl Client {
    /// The metrics timeline of event key `key` — its count and the sums of its numeric `data`
    /// fields per bucket — as the collector aggregated them (`GET /v1/values`). Needs the
    /// `read` scope on a secured server.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), accrue::client::ClientError> {
    /// use accrue::time::Granularity;
    /// use accrue::client::Client;
    ///
    /// let client = Client::new("http://127.0.0.1:8081")?;
    /// let day = client
    ///     .values("page_view")
    ///     .granularity("1h".parse::<Granularity>().expect("a granularity"))
    ///     .send()
    ///     .await?;
    /// println!("{} page views in the last 24 hours", day.counts().sum::<u64>());
    /// # Ok(()) }
    /// ```
    pub fn values(&self, key: impl Into<String>) -> ValuesRequest<'_> {
        let mut params = Params::default();
        params.set("key", key.into());
        ValuesRequest {
            core: self.core(),
            params,
        }
    }
}
