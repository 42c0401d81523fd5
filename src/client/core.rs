//! [`Client`]: the handle applications hold: `emit`, `send`, `flush`, `close`, `stats`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::batcher::{Batcher, Cmd, Ids, Prepared, deliver};
use super::config::{ClientBuilder, Overflow};
use super::error::{ClientError, CloseError, EmitError};
use super::event::Event;
use super::gate::Gate;
use super::http::HttpCore;
use super::stats::{ClientStats, CloseReport, Counters};
use crate::sync::chan;

/// A batching client for `accrue serve` (or any Tlytics-compatible collector).
///
/// [`emit`](Self::emit) puts an event in a bounded in-memory queue and returns at once; a
/// background task sends batches (`POST /events`) every `flush_interval`, or as soon as
/// `batch_size` events are waiting, retrying failures with exponential backoff and jitter.
/// Every event gets a unique id once, before its first attempt, so a batch retried after a lost
/// answer is stored once. Cheap to clone: clones share the queue and the task.
///
/// # When is an event delivered?
///
/// When the server acknowledged it (`200`); with `accrue serve`'s default `--ack durable` that
/// means it is committed. Until then it is in the queue or in a request being retried. A full
/// queue drops (counted, logged); a permanent `4xx` drops the batch (counted, logged);
/// [`close`](Self::close) hands back what it could not deliver by its deadline. Events in the
/// queue are lost if the process dies, or if the runtime shuts down without `close`.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use accrue::client::{Client, Event};
///
/// let client = Client::new("http://127.0.0.1:8081")?;
/// client.emit(Event::new("user_signup").with("user_id", "123").with("source", "web"))?;
/// client.flush().await?; // optional: wait until everything emitted so far is stored
/// client.close().await?; // deliver the rest (within `close_timeout`), stop the task
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tx: chan::Sender<Event>,
    /// To evict the oldest event under [`Overflow::DropOldest`], and for the queue length.
    rx: chan::Receiver<Event>,
    gate: Arc<Gate>,
    wake: Arc<Notify>,
    cmds: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Counters>,
    core: Arc<HttpCore>,
    ids: Arc<Ids>,
    give_up: CancellationToken,
    closed: Arc<OnceLock<CloseReport>>,
    overflow: Overflow,
    batch_events: usize,
    capacity: usize,
    max_key: usize,
    max_data: usize,
    born: Instant,
    /// Milliseconds after `born` of the last overflow warning (rate limit).
    last_warning: AtomicU64,
}

/// What [`Client::send`] delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendReport {
    /// Events the server stored.
    pub delivered: u64,
    /// Events the server already had (same id).
    pub duplicates: u64,
}

impl Client {
    /// A client with the default settings (see [`ClientBuilder`]).
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::build`].
    pub fn new(url: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(url).build()
    }

    /// Starts configuring a client for the server at `url` (`http://host:port`, optionally with
    /// a path prefix).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Queues `event` for sending; never blocks and never waits for the network.
    ///
    /// A missing timestamp is set to now. The key is checked as the server checks it.
    ///
    /// # Errors
    ///
    /// The event is handed back in every case: [`EmitError::Full`] when the queue is full
    /// under [`Overflow::DropNewest`] (counted in [`ClientStats::dropped`], and logged at most
    /// once a second); [`EmitError::Closed`] after [`close`](Self::close);
    /// [`EmitError::Invalid`] for an empty or too long key.
    ///
    /// **Blocking:** never. Two atomic operations and a lock-free queue push (plus, under
    /// `DropOldest` with a full queue, a pop).
    #[inline]
    // The error hands the event back by value, like crossbeam's `TrySendError<T>`: boxing it
    // would allocate on the overflow path, exactly when the process is under pressure.
    #[allow(clippy::result_large_err)]
    pub fn emit(&self, mut event: Event) -> Result<(), EmitError> {
        let s = &*self.shared;
        if let Err(reason) = event.validate(s.max_key) {
            return Err(EmitError::Invalid { event, reason });
        }
        if event.timestamp.is_none() {
            event.timestamp = Some(Timestamp::now());
        }
        if !s.gate.enter() {
            return Err(EmitError::Closed(event));
        }
        let result = match s.tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(chan::TrySendError::Full(event)) => self.overflow(event),
            Err(chan::TrySendError::Disconnected(event)) => Err(EmitError::Closed(event)),
        };
        s.gate.leave();
        if result.is_ok() && s.tx.len() >= s.batch_events {
            s.wake.notify_one();
        }
        result
    }

    #[cold]
    #[allow(clippy::result_large_err)]
    fn overflow(&self, mut event: Event) -> Result<(), EmitError> {
        let s = &*self.shared;
        match s.overflow {
            Overflow::DropNewest => {
                let total = s.counters.dropped.fetch_add(1, Relaxed) + 1;
                self.warn_overflow(total);
                Err(EmitError::Full(event))
            }
            Overflow::DropOldest => loop {
                if s.rx.try_recv().is_ok() {
                    s.counters.evicted.fetch_add(1, Relaxed);
                    let total = s.counters.dropped.fetch_add(1, Relaxed) + 1;
                    self.warn_overflow(total);
                }
                match s.tx.try_send(event) {
                    Ok(()) => return Ok(()),
                    Err(chan::TrySendError::Full(e)) => event = e,
                    Err(chan::TrySendError::Disconnected(e)) => return Err(EmitError::Closed(e)),
                }
            },
        }
    }

    fn warn_overflow(&self, total: u64) {
        let s = &*self.shared;
        let now = s.born.elapsed().as_millis() as u64 + 1_000;
        let last = s.last_warning.load(Relaxed);
        if now.saturating_sub(last) >= 1_000
            && s.last_warning
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = total,
                capacity = s.capacity,
                "the accrue client's queue is full; dropping events (is the collector down or slow?)"
            );
        }
    }

    /// Sends `events` now, bypassing the queue, and waits until the server stored them; retries
    /// like the queue does, until [`close`](Self::close)'s deadline. Ids are assigned once, so
    /// the retries are idempotent. Use it where the caller must know (Tlytics' `EmitAndSend`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] naming the first invalid event (nothing was sent);
    /// [`ClientError::Rejected`] when the server refused (part of) them for good;
    /// [`ClientError::TimedOut`] when the client was closed before they were delivered;
    /// [`ClientError::Closed`] if it was already closed.
    pub async fn send(&self, events: Vec<Event>) -> Result<SendReport, ClientError> {
        self.send_until(events, &self.shared.give_up).await
    }

    /// [`send`](Self::send), giving up when `give_up` is cancelled (for the sinks).
    pub(crate) async fn send_until(
        &self,
        mut events: Vec<Event>,
        give_up: &CancellationToken,
    ) -> Result<SendReport, ClientError> {
        let s = &*self.shared;
        if s.gate.is_closed() {
            return Err(ClientError::Closed);
        }
        let now = Timestamp::now();
        for (i, e) in events.iter_mut().enumerate() {
            e.validate(s.max_key)
                .map_err(|r| ClientError::Config(format!("event {i}: {r}")))?;
            e.timestamp.get_or_insert(now);
        }
        let mut report = SendReport::default();
        let give_up = give_up.child_token();
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(s.batch_events));
            let first = s.ids.reserve(events.len());
            let numbered = events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (e, first + i as u64))
                .collect();
            let (batch, refused) = Prepared::build(numbered, &s.ids, s.max_data);
            if let Some((_, reason)) = refused.first() {
                return Err(ClientError::Config(reason.to_string()));
            }
            let d = {
                let delivery = deliver(
                    s.core.clone(),
                    batch,
                    s.ids.clone(),
                    s.counters.clone(),
                    give_up.clone(),
                );
                tokio::pin!(delivery);
                // The caller's token and the client's close deadline both stop it.
                tokio::select! {
                    d = &mut delivery => d,
                    () = s.give_up.cancelled() => {
                        give_up.cancel();
                        delivery.await
                    }
                }
            };
            let c = &s.counters;
            Counters::add(&c.delivered, d.delivered);
            Counters::add(&c.duplicates, d.duplicates);
            Counters::add(&c.rejected, d.rejected);
            Counters::add(&c.failed, d.failed + d.unsent.len() as u64);
            report.delivered += d.delivered;
            report.duplicates += d.duplicates;
            if let Some((status, message)) = d.refusal {
                return Err(ClientError::Rejected { status, message });
            }
            if d.failed > 0 || !d.unsent.is_empty() {
                return Err(ClientError::TimedOut {
                    last: d.last_failure,
                });
            }
            events = rest;
        }
        Ok(report)
    }

    /// Waits until every event emitted before this call was delivered, refused for good, or
    /// given up on (see [`stats`](Self::stats) for which). Sends partial batches at once.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] after [`close`](Self::close).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.shared.gate.is_closed() || self.shared.cmds.send(Cmd::Flush(tx)).is_err() {
            return Err(ClientError::Closed);
        }
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Stops accepting events and delivers everything queued, for at most the builder's
    /// `close_timeout`; then stops the background task. Idempotent: later (and concurrent)
    /// calls wait for the same outcome.
    ///
    /// # Errors
    ///
    /// [`CloseError`] with the events that could not be delivered in time (handed to the first
    /// caller) and the counts.
    pub async fn close(&self) -> Result<CloseReport, CloseError> {
        let s = &*self.shared;
        if let Some(report) = s.closed.get() {
            return done(*report);
        }
        let (tx, rx) = oneshot::channel();
        if s.cmds.send(Cmd::Close(tx)).is_ok()
            && let Ok(result) = rx.await
        {
            return result;
        }
        // The task is gone (its runtime shut down): report what is left.
        match s.closed.get() {
            Some(report) => done(*report),
            None => {
                s.gate.close();
                let events: Vec<Event> = s.rx.try_iter().collect();
                let report = CloseReport {
                    undelivered: events.len() as u64 + s.counters.in_flight.load(Relaxed),
                    ..self.report_now()
                };
                Err(CloseError { report, events })
            }
        }
    }

    fn report_now(&self) -> CloseReport {
        let c = &self.shared.counters;
        CloseReport {
            delivered: c.delivered.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            undelivered: 0,
        }
    }

    /// The counters (exact, read one by one).
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot(self.shared.rx.len() as u64)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.gate.is_closed()
    }

    /// The shared HTTP core (for the read-back calls).
    pub(crate) fn core(&self) -> &HttpCore {
        &self.shared.core
    }

    pub(crate) fn core_arc(&self) -> &Arc<HttpCore> {
        &self.shared.core
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.shared.core.base().as_str()
    }
}

fn done(report: CloseReport) -> Result<CloseReport, CloseError> {
    if report.undelivered == 0 {
        Ok(report)
    } else {
        Err(CloseError {
            report,
            events: Vec::new(),
        })
    }
}

impl ClientBuilder {
    /// Checks the settings, sets up HTTP (rustls on *ring*, the platform's certificate
    /// verifier) and starts the background task on the runtime.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] for an invalid setting or URL (the message never contains the
    /// token or URL credentials), [`ClientError::NoRuntime`] outside a tokio runtime without
    /// [`runtime`](Self::runtime), [`ClientError::Http`] if TLS cannot be set up.
    pub fn build(self) -> Result<Client, ClientError> {
        self.validate()?;
        let runtime = match &self.runtime {
            Some(h) => h.clone(),
            None => tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?,
        };
        let core = HttpCore::new(&self)?;
        let (tx, rx) = chan::bounded(self.queue);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Gate::default());
        let wake = Arc::new(Notify::new());
        let ids = Arc::new(Ids::new(self.event_ids));
        let give_up = CancellationToken::new();
        let closed = Arc::new(OnceLock::new());
        let batcher = Batcher {
            rx: rx.clone(),
            wake: wake.clone(),
            cmds: cmd_rx,
            core: core.clone(),
            counters: counters.clone(),
            gate: gate.clone(),
            ids: ids.clone(),
            give_up: give_up.clone(),
            closed: closed.clone(),
            batch_events: self.batch_events,
            batch_bytes: self.batch_bytes,
            max_data: self.max_data,
            max_in_flight: self.in_flight,
            flush: self.flush,
            close_timeout: self.close_timeout,
        };
        runtime.spawn(batcher.run());
        Ok(Client {
            shared: Arc::new(Shared {
                tx,
                rx,
                gate,
                wake,
                cmds: cmd_tx,
                counters,
                core,
                ids,
                give_up,
                closed,
                overflow: self.overflow,
                batch_events: self.batch_events,
                capacity: self.queue,
                max_key: self.max_key,
                max_data: self.max_data,
                born: Instant::now(),
                last_warning: AtomicU64::new(0),
            }),
        })
    }
}
