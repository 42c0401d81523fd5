//! The client's errors: [`EmitError`] on the hot path (it hands the event back),
//! [`ClientError`] for everything that talks to the server, [`CloseError`] for what `close`
//! could not deliver.

use std::error::Error;
use std::fmt;

use super::event::{Event, InvalidEvent};
use super::stats::CloseReport;

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why [`Client::emit`](crate::client::Client::emit) did not queue an event. Every variant
/// hands the event back.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use accrue::client::{Client, EmitError, Event};
///
/// let client = Client::new("http://127.0.0.1:9").unwrap();
/// let err = client.emit(Event::new("")).unwrap_err();
/// assert!(matches!(err, EmitError::Invalid { .. }));
/// assert_eq!(err.into_event().key(), "");
/// # }
/// ```
#[non_exhaustive]
pub enum EmitError {
    /// The queue is full (overflow policy [`Overflow::DropNewest`](crate::client::Overflow)):
    /// the event was dropped and counted in [`ClientStats::dropped`](crate::client::ClientStats).
    Full(Event),
    /// [`close`](crate::client::Client::close) was called.
    Closed(Event),
    /// The event can never be accepted by the collector.
    Invalid {
        /// The event.
        event: Event,
        /// What is wrong with it.
        reason: InvalidEvent,
    },
}

impl EmitError {
    /// The event that was not queued.
    pub fn into_event(self) -> Event {
        match self {
            Self::Full(e) | Self::Closed(e) | Self::Invalid { event: e, .. } => e,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the client was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl fmt::Debug for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Invalid { reason, .. } => write!(f, "Invalid({reason:?})"),
        }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the client's queue is full; the event was dropped"),
            Self::Closed(_) => f.write_str("the client is closed"),
            Self::Invalid { .. } => f.write_str("invalid event"),
        }
    }
}

impl Error for EmitError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Why a client could not be built, or a call to the server failed.
///
/// # Examples
///
/// ```
/// use accrue::client::{Client, ClientError};
///
/// // Settings are checked when the client is built; nothing is sent.
/// let err = Client::builder("http://user:secret@example.com").build().unwrap_err();
/// assert!(matches!(err, ClientError::Config(_)));
/// assert!(!err.to_string().contains("secret"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// A setting is invalid; the message names it.
    Config(String),
    /// The client needs a tokio runtime: build it inside one (or pass a handle with
    /// [`ClientBuilder::runtime`](crate::client::ClientBuilder::runtime)).
    NoRuntime,
    /// The HTTP stack could not be set up (TLS configuration).
    Http(BoxError),
    /// The client was closed.
    Closed,
    /// The server refused the request for good (a 4xx other than 408 and 429); retrying the
    /// same request cannot succeed.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's `error` (and `detail`) text, or the start of its body.
        message: String,
    },
    /// A conditional KV write or delete found another version than the one it expected
    /// (`409`); nothing was changed.
    Conflict {
        /// The server's explanation (it names the stored version).
        message: String,
    },
    /// The server's answer could not be read as the call expects (not the collector's API,
    /// or an answer over the size limit).
    Protocol(String),
    /// The call did not succeed before its deadline (retries included).
    TimedOut {
        /// The last failure seen, if any.
        last: Option<String>,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "invalid client setting: {m}"),
            Self::NoRuntime => f.write_str(
                "the accrue client needs a tokio runtime: build it inside one or pass a handle",
            ),
            Self::Http(_) => f.write_str("cannot set up the HTTP client"),
            Self::Closed => f.write_str("the client is closed"),
            Self::Rejected { status, message } => {
                write!(f, "the server refused the request ({status}): {message}")
            }
            Self::Conflict { message } => write!(f, "version conflict: {message}"),
            Self::Protocol(m) => write!(f, "unexpected answer from the server: {m}"),
            Self::TimedOut { last: Some(last) } => {
                write!(f, "gave up before the deadline; last failure: {last}")
            }
            Self::TimedOut { last: None } => f.write_str("gave up before the deadline"),
        }
    }
}

impl Error for ClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Http(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// What [`Client::close`](crate::client::Client::close) could not deliver before its deadline.
///
/// The events are handed back (to the first caller of `close`), so an application can keep
/// them elsewhere; the report has the counts.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use accrue::client::{Client, Event};
///
/// // Nothing listens on port 9: the event cannot be delivered within the deadline.
/// let client = Client::builder("http://127.0.0.1:9")
///     .close_timeout(Duration::from_millis(200))
///     .build()
///     .unwrap();
/// client.emit(Event::new("lost")).unwrap();
/// let err = client.close().await.unwrap_err();
/// assert_eq!(err.report().undelivered, 1);
/// assert_eq!(err.events()[0].key(), "lost");
/// # }
/// ```
pub struct CloseError {
    pub(crate) report: CloseReport,
    pub(crate) events: Vec<Event>,
}

impl CloseError {
    /// The counts.
    pub fn report(&self) -> &CloseReport {
        &self.report
    }

    /// The undelivered events (empty for every caller of `close` but the first).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the undelivered events.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

impl fmt::Debug for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseError")
            .field("report", &self.report)
            .field("events", &self.events.len())
            .finish()
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events could not be delivered before the close deadline",
            self.report.undelivered
        )
    }
}

impl Error for CloseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_the_source_and_not_in_the_message() {
        let e = ClientError::Http("no TLS root certificates".into());
        assert_eq!(e.to_string(), "cannot set up the HTTP client");
        assert_eq!(e.source().unwrap().to_string(), "no TLS root certificates");

        let e = EmitError::Invalid {
            event: Event::new(""),
            reason: InvalidEvent::EmptyKey,
        };
        assert_eq!(e.to_string(), "invalid event");
        assert_eq!(e.source().unwrap().to_string(), "event key is empty");
    }
}
