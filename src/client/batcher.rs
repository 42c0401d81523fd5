//! The client's background task: takes events off the queue, builds request bodies, keeps up
//! to `max_in_flight` requests going, retries them, and answers `flush` and `close`.
//!
//! ```text
//!  emit ─► bounded queue ─► batcher task ─► batch (≤ batch_size events, ≤ batch_bytes)
//!            │ full?          woken at batch_size,      │ ids assigned once: retries are
//!            └─ drop, count   every flush_interval,     │ de-duplicated by the server
//!                             on flush() / close()      ▼
//!                                                  delivery task: POST /events, retry with
//!                                                  backoff + jitter, Retry-After, split on 413
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::CloseError;
use super::event::{Event, InvalidEvent};
use super::gate::Gate;
use super::http::{Attempt, HttpCore, backoff};
use super::stats::{CloseReport, Counters};
use crate::sync::chan;

/// Requests from the client handles.
pub(crate) enum Cmd {
    /// Answer once everything queued before it was delivered (or given up on).
    Flush(oneshot::Sender<()>),
    /// Close: deliver everything within the deadline, then report.
    Close(oneshot::Sender<Result<CloseReport, CloseError>>),
}

/// Event ids: a random 64-bit per-client prefix and a counter, unique across clients and
/// restarts (two clients share a prefix with probability ~n²/2⁶⁵). Short, because the server
/// keeps a unique index on them.
#[derive(Debug)]
pub(crate) struct Ids {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
    enabled: bool,
}

impl Ids {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            prefix: format!("{:016x}-", super::http::random_u64()),
            next: std::sync::atomic::AtomicU64::new(0),
            enabled,
        }
    }

    /// Reserves `n` consecutive ids; returns the first.
    pub(crate) fn reserve(&self, n: usize) -> u64 {
        self.next.fetch_add(n as u64, Relaxed)
    }

    fn write(&self, n: u64, buf: &mut String) {
        use std::fmt::Write as _;
        buf.clear();
        buf.push_str(&self.prefix);
        let _ = write!(buf, "{n:x}");
    }
}

/// Events with their ids and the request body built from them.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) events: Vec<(Event, u64)>,
    pub(crate) body: Bytes,
}

impl Prepared {
    /// Builds the body; events whose `data` is over `max_data` are left out and returned.
    pub(crate) fn build(
        events: Vec<(Event, u64)>,
        ids: &Ids,
        max_data: usize,
    ) -> (Self, Vec<(Event, InvalidEvent)>) {
        let mut body = Vec::with_capacity(events.len() * 96 + 2);
        let mut kept = Vec::with_capacity(events.len());
        let mut refused = Vec::new();
        let mut id = String::with_capacity(48);
        body.push(b'[');
        for (event, n) in events {
            let mark = body.len();
            if !kept.is_empty() {
                body.push(b',');
            }
            let data_len = if ids.enabled {
                ids.write(n, &mut id);
                event.write_json(Some(&id), &mut body)
            } else {
                event.write_json(None, &mut body)
            };
            if data_len > max_data {
                body.truncate(mark);
                refused.push((
                    event,
                    InvalidEvent::DataTooLarge {
                        len: data_len,
                        max: max_data,
                    },
                ));
            } else {
                kept.push((event, n));
            }
        }
        body.push(b']');
        (
            Self {
                events: kept,
                body: Bytes::from(body),
            },
            refused,
        )
    }

    fn rebuild(self, ids: &Ids) -> Self {
        Self::build(self.events, ids, usize::MAX).0
    }

    fn split(self, ids: &Ids) -> (Self, Self) {
        let mut first = self.events;
        let second = first.split_off(first.len() / 2);
        (
            Self::build(first, ids, usize::MAX).0,
            Self::build(second, ids, usize::MAX).0,
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

/// What delivering one batch came to.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub(crate) seq: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) rejected: u64,
    /// Given up on (attempt limit): counted as failed.
    pub(crate) failed: u64,
    /// Not delivered because `give_up` fired: handed back.
    pub(crate) unsent: Vec<Event>,
    /// The first permanent refusal, for `send`.
    pub(crate) refusal: Option<(u16, String)>,
    /// The last retryable failure, for `send`'s timeout error.
    pub(crate) last_failure: Option<String>,
}

/// Sends `batch` until it is stored, refused, or `give_up` fires; splits it on `413`, drops
/// single events the server names in a `400`.
pub(crate) async fn deliver(
    core: Arc<HttpCore>,
    batch: Prepared,
    ids: Arc<Ids>,
    counters: Arc<Counters>,
    give_up: CancellationToken,
) -> Delivery {
    let mut out = Delivery::default();
    let mut parts = VecDeque::from([batch]);
    let mut attempt: u32 = 0;
    while let Some(part) = parts.pop_front() {
        if part.events.is_empty() {
            continue;
        }
        if give_up.is_cancelled() {
            out.unsent.extend(part.events.into_iter().map(|(e, _)| e));
            continue;
        }
        counters.requests.fetch_add(1, Relaxed);
        if attempt > 0 {
            counters.retries.fetch_add(1, Relaxed);
        }
        let answer = tokio::select! {
            biased;
            () = give_up.cancelled() => {
                out.unsent.extend(part.events.into_iter().map(|(e, _)| e));
                continue;
            }
            a = core.post_events(part.body.clone()) => a,
        };
        let n = part.len() as u64;
        match answer {
            Attempt::Stored { duplicates } => {
                let duplicates = duplicates.min(n);
                out.delivered += n - duplicates;
                out.duplicates += duplicates;
                attempt = 0;
            }
            Attempt::BadEvent { index, message } => {
                let mut part = part;
                if index < part.events.len() {
                    let (bad, _) = part.events.remove(index);
                    tracing::warn!(
                        key = bad.key(),
                        %message,
                        "the collector refused one event of a batch; sending the others"
                    );
                    out.rejected += 1;
                    out.refusal.get_or_insert((400, message));
                    parts.push_front(part.rebuild(&ids));
                } else {
                    tracing::error!(%message, events = n, "the collector refused a batch");
                    out.rejected += n;
                    out.refusal.get_or_insert((400, message));
                }
            }
            Attempt::TooLarge { message } => {
                if part.len() > 1 {
                    let (a, b) = part.split(&ids);
                    parts.push_front(b);
                    parts.push_front(a);
                } else {
                    tracing::warn!(%message, "the collector refused an event as too large");
                    out.rejected += 1;
                    out.refusal.get_or_insert((413, message));
                }
            }
            Attempt::Refused { status, message } => {
                tracing::error!(
                    status,
                    %message,
                    events = n,
                    "the collector refused a batch for good; dropping it"
                );
                out.rejected += n;
                out.refusal.get_or_insert((status, message));
            }
            Attempt::Retry { after, why } => {
                attempt += 1;
                if core.retry.max_attempts.is_some_and(|max| attempt >= max) {
                    tracing::error!(%why, attempts = attempt, events = n, "giving up on a batch");
                    out.failed += n;
                    out.last_failure = Some(why);
                    attempt = 0;
                    continue;
                }
                let wait = backoff(&core.retry, attempt - 1, after);
                if attempt == 1 {
                    tracing::warn!(%why, events = n, ?wait, "sending events failed; retrying");
                } else {
                    tracing::debug!(%why, attempt, events = n, ?wait, "retrying");
                }
                out.last_failure = Some(why);
                parts.push_front(part);
                tokio::select! {
                    biased;
                    () = give_up.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    out
}

/// The task's state.
pub(crate) struct Batcher {
    pub(crate) rx: chan::Receiver<Event>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) core: Arc<HttpCore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) ids: Arc<Ids>,
    pub(crate) give_up: CancellationToken,
    pub(crate) closed: Arc<OnceLock<CloseReport>>,
    pub(crate) batch_events: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) max_data: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) flush: Duration,
    pub(crate) close_timeout: Duration,
}

struct Run {
    inflight: JoinSet<Delivery>,
    /// Batch seq → index (in dequeue order) of its first event.
    starts: BTreeMap<u64, u64>,
    /// Batch seq → events, to keep `in_flight` exact.
    sizes: BTreeMap<u64, u64>,
    seq: u64,
    dequeued: u64,
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    closers: Vec<oneshot::Sender<Result<CloseReport, CloseError>>>,
    closing: bool,
    /// A flush period passed: send a partial batch.
    due: bool,
    /// The close deadline passed (seen by the loop).
    deadline_passed: bool,
    undelivered: Vec<Event>,
    undelivered_count: u64,
}

impl Batcher {
    pub(crate) async fn run(mut self) {
        let mut st = Run {
            inflight: JoinSet::new(),
            starts: BTreeMap::new(),
            sizes: BTreeMap::new(),
            seq: 0,
            dequeued: 0,
            waiters: Vec::new(),
            closers: Vec::new(),
            closing: false,
            due: false,
            deadline_passed: false,
            undelivered: Vec::new(),
            undelivered_count: 0,
        };
        let mut tick = tokio::time::interval(self.flush);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut handles_gone = false;
        loop {
            let room = st.inflight.len() < self.max_in_flight;
            tokio::select! {
                biased;
                Some(done) = st.inflight.join_next(), if !st.inflight.is_empty() => {
                    self.finished(&mut st, done);
                }
                cmd = self.cmds.recv(), if !handles_gone => match cmd {
                    Some(Cmd::Flush(tx)) => {
                        let target = st.dequeued + self.rx.len() as u64;
                        st.waiters.push((target, tx));
                    }
                    Some(Cmd::Close(tx)) => {
                        st.closers.push(tx);
                        self.begin_close(&mut st).await;
                    }
                    None => {
                        handles_gone = true;
                        if !st.closing {
                            tracing::debug!("every client handle was dropped; closing");
                            self.begin_close(&mut st).await;
                        }
                    }
                },
                // Once: an always-ready branch would starve the delivery tasks on a
                // current-thread runtime.
                () = self.give_up.cancelled(), if st.closing && !st.deadline_passed => {
                    st.deadline_passed = true;
                }
                () = self.wake.notified(), if room => {}
                _ = tick.tick() => st.due = true,
            }
            self.dispatch(&mut st);
            self.answer_waiters(&mut st);
            if st.closing
                && st.inflight.is_empty()
                && (self.rx.is_empty() || self.give_up.is_cancelled())
            {
                self.finish(st);
                return;
            }
        }
    }

    async fn begin_close(&self, st: &mut Run) {
        if st.closing {
            return;
        }
        st.closing = true;
        self.gate.close();
        // Emitters leave the gate within nanoseconds; after this every admitted event is
        // visible in the queue.
        while !self.gate.is_drained() {
            tokio::task::yield_now().await;
        }
        let give_up = self.give_up.clone();
        let deadline = self.close_timeout;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(deadline) => give_up.cancel(),
                () = give_up.cancelled() => {}
            }
        });
    }

    fn dispatch(&self, st: &mut Run) {
        if self.give_up.is_cancelled() {
            return;
        }
        while st.inflight.len() < self.max_in_flight {
            let available = self.rx.len();
            if available == 0 {
                st.due = false;
                break;
            }
            let wanted = st.waiters.iter().any(|(target, _)| *target > st.dequeued);
            if available < self.batch_events && !(st.due || wanted || st.closing) {
                break;
            }
            let mut events = Vec::with_capacity(available.min(self.batch_events));
            let mut bytes = 0usize;
            while events.len() < self.batch_events && bytes < self.batch_bytes {
                match self.rx.try_recv() {
                    Ok(e) => {
                        bytes += approx_size(&e);
                        events.push(e);
                    }
                    Err(_) => break,
                }
            }
            if events.is_empty() {
                break;
            }
            let first = self.ids.reserve(events.len());
            let numbered: Vec<(Event, u64)> = events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (e, first + i as u64))
                .collect();
            let taken = self.rx_taken(st, &numbered);
            let (batch, refused) = Prepared::build(numbered, &self.ids, self.max_data);
            for (event, reason) in &refused {
                tracing::warn!(key = event.key(), %reason, "event not sent");
            }
            Counters::add(&self.counters.rejected, refused.len() as u64);
            Counters::add(&self.counters.in_flight, batch.len() as u64);
            st.seq += 1;
            st.starts.insert(st.seq, taken);
            st.sizes.insert(st.seq, batch.len() as u64);
            let seq = st.seq;
            let (core, ids, counters, give_up) = (
                self.core.clone(),
                self.ids.clone(),
                self.counters.clone(),
                self.give_up.clone(),
            );
            st.inflight.spawn(async move {
                let mut d = deliver(core, batch, ids, counters, give_up).await;
                d.seq = seq;
                d
            });
        }
    }

    /// Advances the dequeue counters for a batch; returns the index of its first event.
    fn rx_taken(&self, st: &mut Run, events: &[(Event, u64)]) -> u64 {
        let first = st.dequeued;
        st.dequeued += events.len() as u64;
        self.counters.dequeued.store(st.dequeued, Relaxed);
        first
    }

    fn finished(&self, st: &mut Run, done: Result<Delivery, tokio::task::JoinError>) {
        let d = match done {
            Ok(d) => d,
            Err(e) => {
                // A delivery task cannot panic short of a bug; its events are then unknown.
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "a delivery task failed"
                );
                return;
            }
        };
        st.starts.remove(&d.seq);
        let size = st.sizes.remove(&d.seq).unwrap_or(0);
        self.counters.in_flight.fetch_sub(size, Relaxed);
        let c = &self.counters;
        Counters::add(&c.delivered, d.delivered);
        Counters::add(&c.duplicates, d.duplicates);
        Counters::add(&c.rejected, d.rejected);
        Counters::add(&c.failed, d.failed + d.unsent.len() as u64);
        st.undelivered_count += d.failed + d.unsent.len() as u64;
        st.undelivered.extend(d.unsent);
    }

    fn answer_waiters(&self, st: &mut Run) {
        if st.waiters.is_empty() {
            return;
        }
        let oldest = st.starts.values().next().copied();
        let gave_up = self.give_up.is_cancelled();
        let mut i = 0;
        while i < st.waiters.len() {
            let target = st.waiters[i].0;
            if gave_up || (st.dequeued >= target && oldest.is_none_or(|first| first >= target)) {
                let (_, tx) = st.waiters.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
    }

    fn finish(self, mut st: Run) {
        // Whatever is still queued was not sent before the deadline.
        let rest: Vec<Event> = self.rx.try_iter().collect();
        Counters::add(&self.counters.failed, rest.len() as u64);
        st.undelivered_count += rest.len() as u64;
        st.undelivered.extend(rest);
        let c = &self.counters;
        let report = CloseReport {
            delivered: c.delivered.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            undelivered: st.undelivered_count,
        };
        let _ = self.closed.set(report);
        if report.undelivered > 0 {
            tracing::error!(
                undelivered = report.undelivered,
                delivered = report.delivered,
                "the accrue client closed with undelivered events"
            );
        }
        let mut events = Some(std::mem::take(&mut st.undelivered));
        for tx in st.closers.drain(..) {
            let result = if report.undelivered == 0 {
                Ok(report)
            } else {
                Err(CloseError {
                    report,
                    events: events.take().unwrap_or_default(),
                })
            };
            let _ = tx.send(result);
        }
        for (_, tx) in st.waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// A cheap upper-bound guess of an event's serialized size, to cut batches by bytes before
/// serializing.
fn approx_size(e: &Event) -> usize {
    let data = e.data.as_ref().map_or(0, |d| {
        d.iter()
            .map(|(k, v)| k.len() + 8 + value_size(v))
            .sum::<usize>()
    });
    e.key.len() + data + 96
}

fn value_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => a.iter().map(value_size).sum::<usize>() + 2,
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| k.len() + 4 + value_size(v)).sum(),
        _ => 24,
    }
}
