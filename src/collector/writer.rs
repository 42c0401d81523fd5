//! The ingest queue and the writer thread: group commit, retries, acknowledgements.
//!
//! ```text
//!  handlers ──try_acquire(events, bytes)──► full? 503 + Retry-After
//!     │ Job{events, permits, ack}
//!     ▼
//!  channel (bounded by the permits) ──► writer thread: take one job, then everything queued
//!                                        (up to max_group events) ─► one transaction
//!                                        ─► commit (retried until it succeeds)
//!                                        ─► observers (metrics pipeline) ─► acks, permits freed
//! ```
//!
//! One thread owns the only write connection, so there is no lock contention inside SQLite and
//! concurrent requests share commits: under load a group is whatever queued up while the
//! previous commit ran. A failed commit rolls the whole group back and is retried with backoff;
//! the requests keep waiting (durable mode) and new ones get 503 once the queue is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::config::AckMode;
use super::error::{ApiError, CollectorError, StoreFault};
use super::event::Event;
use super::metrics::Metrics;
use super::store::EventStore;

/// Fixed per-event overhead counted against the byte bound (the `Event` itself).
const EVENT_OVERHEAD: usize = std::mem::size_of::<Event>();
/// First retry delay after a failed store operation; doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often retention runs, and how many rows one delete transaction removes (short
/// transactions keep ingest latency flat while old data is trimmed).
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_CHUNK: usize = 10_000;
/// What a client is told to wait after a 503.
pub(crate) const RETRY_AFTER_S: u32 = 1;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How a stored request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    /// Events written (or, in queued mode, queued).
    pub(crate) stored: usize,
    /// Events skipped because their id was already stored (durable mode only).
    pub(crate) duplicates: usize,
}

/// At most one log line per this period while the store keeps failing.
const FAULT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a job was answered without being stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NotStored {
    /// Shutdown gave up on a failing store.
    Abandoned,
    /// The store failed the job's group (durable mode); nothing of it was written.
    Fault(StoreFault),
}

/// One request's events on their way to the store.
pub(crate) struct Job {
    events: Vec<Event>,
    queued_at: Instant,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ack: Option<oneshot::Sender<Result<Outcome, NotStored>>>,
}

pub(crate) enum Msg {
    Write(Job),
    /// A store operation other than an insert (deletes, KV and API-key writes): run on the
    /// writer thread, after the events queued before it are committed, so the writer stays the
    /// only writer. The closure reports its own result.
    Run(StoreOp),
    Stop,
}

/// See [`Msg::Run`].
pub(crate) type StoreOp = Box<dyn FnOnce(&mut EventStore) + Send>;

/// Something that sees every event once it is committed, with its row id, on the writer
/// thread (the metrics pipeline; later, live feeds). It must be quick: the writer waits. It
/// may take what it owns out of an event (the pipeline takes `metric`); the events are dropped
/// after the observers ran.
pub(crate) trait CommitObserver: Send {
    fn committed(&mut self, events: &mut [(i64, &mut Event)]);
}

/// State the writer shares with the rest of the server.
#[derive(Debug)]
pub(crate) struct WriterShared {
    /// The last write's [`StoreFault`] (`0` when it succeeded).
    fault: AtomicU8,
    /// Set by shutdown when its deadline passed: stop retrying a failing store.
    pub(crate) give_up: AtomicBool,
    pub(crate) stored: AtomicI64,
    /// Highest event id whose metrics are in the metrics store (set by the pipeline);
    /// retention keeps everything above it.
    pub(crate) watermark: AtomicI64,
}

impl WriterShared {
    /// Why the last write failed, or `None` when it succeeded.
    pub(crate) fn fault(&self) -> Option<StoreFault> {
        StoreFault::from_u8(self.fault.load(Ordering::Acquire))
    }

    /// Whether the last write succeeded.
    pub(crate) fn healthy(&self) -> bool {
        self.fault().is_none()
    }

    fn set_fault(&self, fault: Option<StoreFault>) {
        self.fault
            .store(fault.map_or(0, |f| f as u8), Ordering::Release);
    }
}

/// The handlers' side of the queue.
#[derive(Debug)]
pub(crate) struct Ingest {
    tx: Sender<Msg>,
    shared: Arc<WriterShared>,
    events: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    cap_events: usize,
    cap_bytes: usize,
    ack: AckMode,
    closed: AtomicBool,
}

impl Ingest {
    /// Queues `events` as one all-or-nothing job; in durable mode waits for the commit.
    ///
    /// # Errors
    ///
    /// `503` with `Retry-After` when the queue is full or the server is stopping; `507` (disk
    /// full) or `503` when the store fails the job's commit (durable mode), or is failing when a
    /// job would be queued (queued mode). Every error means nothing of the job was stored.
    pub(crate) async fn submit(&self, events: Vec<Event>) -> Result<Outcome, ApiError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ApiError::shutting_down());
        }
        // Queued mode answers before the commit: it must not accept what it cannot store now.
        // (Durable mode tries, and finds out in the commit.)
        if self.ack == AckMode::Queued
            && let Some(fault) = self.shared.fault()
        {
            return Err(ApiError::store_fault(fault));
        }
        if events.is_empty() {
            return Ok(Outcome::default());
        }
        let n = events.len();
        let bytes: usize = events.iter().map(|e| e.heap_bytes() + EVENT_OVERHEAD).sum();
        let busy = || ApiError::busy(RETRY_AFTER_S, "the ingest queue is full");
        let p_events = Arc::clone(&self.events)
            .try_acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(|_| busy())?;
        let p_bytes = Arc::clone(&self.bytes)
            .try_acquire_many_owned(u32::try_from(bytes.min(self.cap_bytes)).unwrap_or(u32::MAX))
            .map_err(|_| busy())?;
        let (ack, done) = match self.ack {
            AckMode::Durable => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            AckMode::Queued => (None, None),
        };
        let job = Job {
            events,
            queued_at: Instant::now(),
            _permits: (p_events, p_bytes),
            ack,
        };
        self.tx
            .send(Msg::Write(job))
            .map_err(|_| ApiError::shutting_down())?;
        match done {
            None => Ok(Outcome {
                stored: n,
                duplicates: 0,
            }),
            Some(rx) => match rx.await {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(NotStored::Fault(fault))) => Err(ApiError::store_fault(fault)),
                Ok(Err(NotStored::Abandoned)) | Err(_) => Err(ApiError::shutting_down()),
            },
        }
    }

    /// Events accepted and not yet committed.
    pub(crate) fn queued_events(&self) -> usize {
        self.cap_events - self.events.available_permits()
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.cap_bytes - self.bytes.available_permits()
    }

    pub(crate) fn capacity(&self) -> (usize, usize) {
        (self.cap_events, self.cap_bytes)
    }

    /// Queues `op` to run on the writer thread after everything queued before it.
    ///
    /// # Errors
    ///
    /// `503` when the server is stopping (the op is dropped unrun).
    pub(crate) fn run_op(&self, op: StoreOp) -> Result<(), ApiError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ApiError::shutting_down());
        }
        self.tx
            .send(Msg::Run(op))
            .map_err(|_| ApiError::shutting_down())
    }

    /// Refuses new requests and tells the writer to finish what is queued, then stop.
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Msg::Stop);
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    pub(crate) ack: AckMode,
    pub(crate) queue_events: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) max_group: usize,
    pub(crate) window: Duration,
    /// How long a durable request waits for a failing store before it is answered `503`.
    pub(crate) commit_timeout: Duration,
    pub(crate) retention: Option<Duration>,
    /// Whether retention must wait for the metrics watermark.
    pub(crate) pipeline: bool,
}

/// The writer thread's state.
pub(crate) struct Writer {
    store: EventStore,
    rx: Receiver<Msg>,
    metrics: Arc<Metrics>,
    shared: Arc<WriterShared>,
    observers: Vec<Box<dyn CommitObserver>>,
    cfg: WriterConfig,
    next_maintenance: Instant,
    unwritten: u64,
    faults: FaultLog,
}

/// The handles of a started writer.
pub(crate) struct Spawned {
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) shared: Arc<WriterShared>,
    /// Returns the number of queued events it could not write.
    pub(crate) thread: JoinHandle<u64>,
}

/// Starts the writer thread on an opened store.
pub(crate) fn spawn(
    store: EventStore,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    observers: Vec<Box<dyn CommitObserver>>,
) -> Result<Spawned, CollectorError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(WriterShared {
        fault: AtomicU8::new(0),
        give_up: AtomicBool::new(false),
        stored: AtomicI64::new(store.count()),
        watermark: AtomicI64::new(0),
    });
    let ingest = Arc::new(Ingest {
        tx,
        shared: Arc::clone(&shared),
        events: Arc::new(Semaphore::new(cfg.queue_events)),
        bytes: Arc::new(Semaphore::new(cfg.queue_bytes)),
        cap_events: cfg.queue_events,
        cap_bytes: cfg.queue_bytes,
        ack: cfg.ack,
        closed: AtomicBool::new(false),
    });
    let writer = Writer {
        store,
        rx,
        metrics,
        shared: Arc::clone(&shared),
        observers,
        cfg,
        next_maintenance: Instant::now() + Duration::from_secs(1),
        unwritten: 0,
        faults: FaultLog::default(),
    };
    let handle = std::thread::Builder::new()
        .name("accrue-writer".into())
        .spawn(move || writer.run())
        .map_err(|e| CollectorError::Task(format!("cannot start the writer thread: {e}")))?;
    Ok(Spawned {
        ingest,
        shared,
        thread: handle,
    })
}

impl Writer {
    /// Runs until `Stop`; returns the number of queued events it could not write (only when
    /// shutdown gave up on a failing store).
    fn run(mut self) -> u64 {
        let mut group: Vec<Job> = Vec::new();
        let mut stop = false;
        while !stop {
            let wait = self
                .next_maintenance
                .saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.maintenance();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut events = 0;
            stop |= self.take(first, &mut group, &mut events);
            while !stop && events < self.cfg.max_group {
                match self.rx.try_recv() {
                    Ok(m) => stop |= self.take(m, &mut group, &mut events),
                    Err(TryRecvError::Empty) if !self.cfg.window.is_zero() => {
                        match self.rx.recv_timeout(self.cfg.window) {
                            Ok(m) => stop |= self.take(m, &mut group, &mut events),
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(&mut group);
            }
            if Instant::now() >= self.next_maintenance {
                self.maintenance();
            }
        }
        // Anything sent after `Stop` (a request that raced with shutdown) is written too.
        loop {
            let mut events = 0;
            while events < self.cfg.max_group {
                match self.rx.try_recv() {
                    Ok(m) => {
                        self.take(m, &mut group, &mut events);
                    }
                    Err(_) => break,
                }
            }
            if group.is_empty() {
                break;
            }
            self.commit(&mut group);
        }
        if self.unwritten > 0 {
            tracing::error!(
                events = self.unwritten,
                "shutdown gave up on a failing event store; these queued events were NOT written"
            );
        }
        self.unwritten
    }

    /// Adds a message to the group; `true` for `Stop`.
    fn take(&mut self, m: Msg, group: &mut Vec<Job>, events: &mut usize) -> bool {
        match m {
            Msg::Write(job) => {
                *events += job.events.len();
                group.push(job);
                false
            }
            Msg::Run(op) => {
                // Ops see every event queued before them committed.
                if !group.is_empty() {
                    self.commit(group);
                }
                *events = 0;
                op(&mut self.store);
                self.shared
                    .stored
                    .store(self.store.count(), Ordering::Release);
                false
            }
            Msg::Stop => true,
        }
    }

    /// Commits the group, tells the observers, then answers every request.
    ///
    /// A failed commit rolls the whole group back and is retried with backoff. In durable mode
    /// a request is answered with the fault, nothing of it stored, rather than wait longer: at
    /// once when the disk is full, and once it has waited the commit timeout otherwise (so the
    /// answer comes before the client gives up, and a request it gave up on is never stored
    /// later). Queued-mode requests were already answered `200`: their group is retried until
    /// it is written or shutdown gives up.
    fn commit(&mut self, group: &mut Vec<Job>) {
        let started = Instant::now();
        let mut delay = RETRY_MIN;
        let committed = loop {
            let received_ns = now_ns();
            match self
                .store
                .insert(group.iter().flat_map(|j| j.events.iter()), received_ns)
            {
                Ok(c) => break c,
                Err(e) => {
                    let fault = StoreFault::of(&e);
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    self.shared.set_fault(Some(fault));
                    self.faults
                        .failed(&e, group.iter().map(|j| j.events.len()).sum());
                    if self.shared.give_up.load(Ordering::Acquire) {
                        self.answer_unstored(group.drain(..), NotStored::Abandoned);
                        return;
                    }
                    if self.cfg.ack == AckMode::Durable {
                        let timeout = self.cfg.commit_timeout;
                        let (expired, waiting) =
                            std::mem::take(group).into_iter().partition(|j: &Job| {
                                fault == StoreFault::DiskFull
                                    || j.queued_at.elapsed() + delay >= timeout
                            });
                        *group = waiting;
                        self.answer_unstored(expired, NotStored::Fault(fault));
                        if group.is_empty() {
                            return;
                        }
                    }
                    self.pause(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        };
        if self.shared.fault().is_some() {
            self.faults.recovered();
        }
        self.shared.set_fault(None);
        self.shared
            .stored
            .store(self.store.count(), Ordering::Release);
        let m = &self.metrics;
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.commit_latency.observe(started.elapsed());
        let stored = committed.ids.iter().flatten().count();
        m.events_stored.fetch_add(stored as u64, Ordering::Relaxed);
        m.events_duplicate
            .fetch_add((committed.ids.len() - stored) as u64, Ordering::Relaxed);
        if !self.observers.is_empty() && stored > 0 {
            let mut new: Vec<(i64, &mut Event)> = committed
                .ids
                .iter()
                .zip(group.iter_mut().flat_map(|j| j.events.iter_mut()))
                .filter_map(|(id, e)| id.map(|id| (id, e)))
                .collect();
            for o in &mut self.observers {
                o.committed(&mut new);
            }
        }
        let mut ids = committed.ids.iter();
        for Job {
            events,
            _permits: permits,
            ack,
            ..
        } in group.drain(..)
        {
            let stored = ids.by_ref().take(events.len()).flatten().count();
            // Free the queue space before answering, so a client that reads `/metrics` after
            // its 200 sees its events gone from the queue.
            drop(permits);
            if let Some(ack) = ack {
                let _ = ack.send(Ok(Outcome {
                    stored,
                    duplicates: events.len() - stored,
                }));
            }
        }
    }

    /// Answers jobs that were not stored (their events rolled back).
    fn answer_unstored(&mut self, jobs: impl IntoIterator<Item = Job>, why: NotStored) {
        for job in jobs {
            if matches!(why, NotStored::Abandoned) {
                self.unwritten += job.events.len() as u64;
            }
            if let Some(ack) = job.ack {
                let _ = ack.send(Err(why));
            }
        }
    }

    /// Waits `delay` before a retry, or less when shutdown gives up on the store meanwhile.
    fn pause(&self, delay: Duration) {
        const STEP: Duration = Duration::from_millis(20);
        let until = Instant::now() + delay;
        while !self.shared.give_up.load(Ordering::Acquire) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STEP));
        }
    }

    /// Periodic work: retention.
    fn maintenance(&mut self) {
        self.next_maintenance = Instant::now() + RETENTION_EVERY;
        let Some(keep) = self.cfg.retention else {
            return;
        };
        let cutoff = now_ns().saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX));
        let max_id = if self.cfg.pipeline {
            self.shared.watermark.load(Ordering::Acquire)
        } else {
            i64::MAX
        };
        loop {
            match self
                .store
                .delete_older_than(cutoff, max_id, RETENTION_CHUNK)
            {
                Ok(n) => {
                    self.metrics
                        .retention_deleted
                        .fetch_add(n as u64, Ordering::Relaxed);
                    if n > 0 {
                        tracing::debug!(deleted = n, "retention");
                    }
                    if n < RETENTION_CHUNK {
                        break;
                    }
                    // Let queued requests in between chunks.
                    if !self.rx.is_empty() {
                        self.next_maintenance = Instant::now();
                        break;
                    }
                }
                Err(e) => {
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "retention failed; will retry"
                    );
                    break;
                }
            }
        }
        self.shared
            .stored
            .store(self.store.count(), Ordering::Release);
    }
}

/// Logs store failures without flooding the log: the first of a run at once, then at most one
/// line per [`FAULT_LOG_EVERY`] with the number of failures in between, and the recovery.
#[derive(Debug, Default)]
struct FaultLog {
    unlogged: u64,
    last: Option<Instant>,
}

impl FaultLog {
    fn failed(&mut self, e: &rusqlite::Error, events: usize) {
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= FAULT_LOG_EVERY) {
            tracing::error!(
                error = e as &dyn std::error::Error,
                events,
                failures = self.unlogged,
                "event store write failed (at most one line per {}s while it fails)",
                FAULT_LOG_EVERY.as_secs()
            );
            self.unlogged = 0;
            self.last = Some(Instant::now());
        }
    }

    fn recovered(&mut self) {
        tracing::info!(
            failures_since_last_line = self.unlogged,
            "event store writes succeed again"
        );
        *self = Self::default();
    }
}
