//! [`Collector`]: starting the server, and stopping it without losing anything.
//!
//! Shutdown order (each step waits for the previous one):
//! 1. stop accepting connections; let open requests finish (up to the shutdown timeout);
//! 2. close the ingest queue and let the writer commit everything in it;
//! 3. flush the metrics aggregator into the metrics store and close it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::KeyRegistry;
use super::config::CollectorBuilder;
use super::error::CollectorError;
use super::live::LiveHub;
use super::metrics::Metrics;
use super::ops::WriteOps;
use super::pipeline::flusher::Pipeline;
use super::routes::{AppInner, AppState, router};
use super::serve::ConnectionLimits;
use super::store::{EventStore, ReadPool};
use super::target::StatsTarget;
use crate::metrics::{Driver, FlushTask, IdentifierMode, MemoryDriver, MetricsStore, SqliteDriver};

/// The metrics store's table (Trifle Stats' default name, so its tools can read it).
const METRICS_TABLE: &str = "trifle_stats";

/// Opens the metrics store `target` and creates its schema.
async fn open_stats(
    target: &StatsTarget,
    cfg: &CollectorBuilder,
) -> Result<MetricsStore, CollectorError> {
    let driver: Arc<dyn Driver> = match target {
        StatsTarget::Sqlite(path) => {
            let path = path.clone();
            let driver = tokio::task::spawn_blocking(move || {
                SqliteDriver::open(path, METRICS_TABLE, IdentifierMode::Full)
            })
            .await
            .map_err(|e| CollectorError::Task(e.to_string()))?
            .map_err(|e| CollectorError::metrics("open", e))?;
            Arc::new(driver)
        }
        StatsTarget::Memory => Arc::new(MemoryDriver::new(IdentifierMode::Full)),
        // Server drivers; `table` defaults to `trifle_stats` like METRICS_TABLE.
        StatsTarget::Remote { url, .. } => crate::metrics::connect_driver(url)
            .await
            .map_err(|e| CollectorError::metrics("open", e))?,
    };
    driver
        .setup()
        .await
        .map_err(|e| CollectorError::metrics("create the schema", e))?;
    MetricsStore::builder(driver)
        .time_zone(cfg.time_zone.clone())
        .week_start(cfg.week_start)
        .granularities(&cfg.granularities)
        // The pipeline flushes itself, one batch per flush: no size or timer flushes that could
        // split a batch from its watermark.
        .buffer_size(usize::MAX)
        .buffer_async(FlushTask::None)
        .build()
        .map_err(|e| CollectorError::Config(format!("metrics store: {e}")))
}
use super::writer::{self, WriterConfig, WriterShared};

/// A running collector: the HTTP server, the writer thread and the metrics pipeline.
///
/// Start one with [`Collector::builder`]; stop it with [`stop`](Self::stop), a
/// [`ShutdownHandle`], or a signal ([`run_until_signal`](Self::run_until_signal)). Dropping this
/// handle does not stop the server (as with a task's `JoinHandle`); without a graceful stop,
/// what is committed is safe, and the metrics not yet flushed are replayed on the next start.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("accrue-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let server = accrue::collector::Collector::builder()
///     .db(dir.join("events.db"))
///     .port(0) // any free port
///     .start()
///     .await?;
/// assert!(server.local_addr().port() > 0);
/// server.stop().await?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    cancel: CancellationToken,
    done: tokio::task::JoinHandle<Result<(), CollectorError>>,
}

/// Stops a [`Collector`] from anywhere (cheap to clone).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let server = accrue::collector::Collector::builder().db(dir.path().join("e.db")).port(0).start().await?;
/// let handle = server.shutdown_handle();
/// tokio::spawn(async move { handle.shutdown() }); // e.g. from an admin task
/// server.wait().await?; // returns once everything is written
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts a graceful shutdown; returns at once. Idempotent.
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether a shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl Collector {
    /// Starts configuring a collector; every setting has a default.
    pub fn builder() -> CollectorBuilder {
        CollectorBuilder::default()
    }

    /// The address the server listens on (with the real port when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that starts the shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.cancel.clone())
    }

    /// Waits until the collector has stopped (after [`ShutdownHandle::shutdown`]).
    ///
    /// # Errors
    ///
    /// [`CollectorError::Unwritten`] if a failing store kept queued events from being written
    /// before the shutdown deadline; [`CollectorError::Task`] if a background task died.
    pub async fn wait(self) -> Result<(), CollectorError> {
        self.done
            .await
            .map_err(|e| CollectorError::Task(format!("the supervisor task failed: {e}")))?
    }

    /// Starts a graceful shutdown and waits for it: open requests finish, everything queued is
    /// committed, aggregated metrics are flushed.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn stop(self) -> Result<(), CollectorError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Runs until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), or [`CollectorError::Task`] if the signal handlers cannot be
    /// installed.
    pub async fn run_until_signal(self) -> Result<(), CollectorError> {
        let cancel = self.cancel.clone();
        let signal = shutdown_signal()?;
        tokio::select! {
            () = signal => {
                tracing::info!("signal received; shutting down (a second signal does not abort)");
                cancel.cancel();
            }
            () = cancel.cancelled() => {}
        }
        self.wait().await
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()>, CollectorError> {
    let err =
        |e: std::io::Error| CollectorError::Task(format!("cannot install signal handlers: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(err)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

impl CollectorBuilder {
    /// Opens the stores, starts the writer and binds the socket; returns once the server
    /// accepts connections. Works on any tokio runtime: blocking work runs on the blocking pool
    /// and the writer has its own thread.
    ///
    /// # Errors
    ///
    /// [`CollectorError::Config`] for inconsistent settings, [`CollectorError::Store`] when the
    /// database cannot be opened, [`CollectorError::Bind`] when the address is taken.
    pub async fn start(self) -> Result<Collector, CollectorError> {
        self.validate()?;
        let cfg = self;
        let target = StatsTarget::parse(cfg.stats_driver.as_deref(), &cfg.db)?;
        // Bind first: a taken port is reported before any file is created.
        let addr = cfg.addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| CollectorError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| CollectorError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let stats = if cfg.metrics {
            Some(open_stats(&target, &cfg).await?)
        } else {
            None
        };
        let path = cfg.db.clone();
        let sync = cfg.synchronous;
        let store = tokio::task::spawn_blocking(move || EventStore::open(&path, sync))
            .await
            .map_err(|e| CollectorError::Task(e.to_string()))??;
        // The API-key and KV tables, and the stored keys.
        let (store, stored_keys) = tokio::task::spawn_blocking(move || {
            let mut store = store;
            super::ops::create_schema(&mut store)
                .and_then(|()| super::keys::load(store.connection()))
                .map(|keys| (store, keys))
                .map_err(|e| CollectorError::store("create the API-key and KV tables", e))
        })
        .await
        .map_err(|e| CollectorError::Task(e.to_string()))??;
        let auth = Arc::new(KeyRegistry::new(
            cfg.admin_key.as_ref().map(|k| k.hash),
            stored_keys,
        ));
        let live = LiveHub::new(cfg.live);
        let metrics = Arc::new(Metrics::default());
        let metrics_handle = Arc::clone(&metrics);
        let writer_cfg = WriterConfig {
            ack: cfg.ack,
            queue_events: cfg.queue_events,
            queue_bytes: cfg.queue_bytes,
            max_group: cfg.max_group_events,
            window: cfg.commit_window,
            commit_timeout: cfg.commit_timeout,
            retention: cfg.retention,
            pipeline: cfg.metrics,
        };
        let (store, pipeline) = match stats {
            Some(stats) => {
                let store_id = store.store_id()?;
                let pipeline = Pipeline::new(stats, store_id, Arc::clone(&metrics)).await?;
                let p = Arc::clone(&pipeline);
                let store = tokio::task::spawn_blocking(move || p.replay(&store).map(|_| store))
                    .await
                    .map_err(|e| CollectorError::Task(e.to_string()))??;
                (store, Some(pipeline))
            }
            None => (store, None),
        };
        let mut observers: Vec<_> = pipeline.iter().map(|p| p.observer()).collect();
        observers.push(live.observer());
        if let Some(p) = &pipeline {
            p.set_live(Arc::clone(&live));
        }
        let writer::Spawned {
            ingest,
            shared,
            thread: writer,
        } = writer::spawn(store, writer_cfg, Arc::clone(&metrics), observers)?;
        if let Some(p) = &pipeline {
            p.attach(Arc::clone(&shared));
        }
        let state = AppState(Arc::new(AppInner {
            ingest: Arc::clone(&ingest),
            writer: Arc::clone(&shared),
            readers: Arc::new(ReadPool::new(cfg.db.clone(), cfg.readers)),
            metrics,
            pipeline: pipeline.clone(),
            limits: cfg.limits,
            max_body: cfg.max_body_bytes,
            port: local.port(),
            auth: Arc::clone(&auth),
            live: Arc::clone(&live),
            ops: WriteOps::new(Arc::clone(&ingest)),
        }));
        let app = router(state);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let limits = ConnectionLimits {
            max_connections: cfg.max_connections,
            header_timeout: cfg.header_timeout,
            body_timeout: cfg.body_timeout,
        };
        let server = tracker.spawn(super::serve::serve(
            listener,
            app,
            limits,
            cancel.clone(),
            Arc::clone(&metrics_handle),
        ));
        let pipeline_stop = CancellationToken::new();
        if let Some(p) = &pipeline {
            tracker.spawn(Arc::clone(p).run(cfg.flush, pipeline_stop.clone()));
        }
        tracker.close();
        tracing::info!(
            addr = %local,
            db = %cfg.db.display(),
            ack = cfg.ack.as_str(),
            synchronous = cfg.synchronous.as_str(),
            metrics = %target.describe(),
            "accrue collector listening on http://{local} (events: {}, ack: {}, metrics: {})",
            cfg.db.display(),
            cfg.ack.as_str(),
            target.describe(),
        );
        if auth.enabled() {
            tracing::info!(
                admin_key = auth.has_admin_key(),
                stored_keys = auth.list().len(),
                "API keys required (Authorization: Bearer); /health, /ready and /openapi.json stay open"
            );
        } else {
            tracing::warn!(
                "NO API KEYS CONFIGURED: every route of http://{local} is open to anyone who can \
                 reach it — read, write and delete (Tlytics-compatible mode). Set ACCRUE_ADMIN_KEY \
                 or --admin-key-file to require keys."
            );
        }
        let timeout = cfg.shutdown_timeout;
        let done = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                // One deadline for the whole shutdown, shared by its steps.
                let deadline = tokio::time::Instant::now() + timeout;
                tracing::info!("shutting down: no new connections; finishing open requests");
                // Live feeds never finish on their own: close them (code 1001 / end of stream).
                live.shutdown();
                let mut server = server;
                match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(
                        error = &e as &dyn std::error::Error,
                        "the HTTP server task failed"
                    ),
                    Err(_) => {
                        tracing::warn!(
                            ?timeout,
                            "open requests did not finish in time; closing them"
                        );
                        server.abort();
                    }
                }
                ingest.close();
                tracing::info!(queued = ingest.queued_events(), "writing the queued events");
                let unwritten = join_writer(writer, &shared, deadline).await?;
                pipeline_stop.cancel();
                tracker.wait().await;
                let flushed = match pipeline {
                    Some(p) => {
                        tracing::info!("flushing aggregated metrics");
                        p.finish(deadline).await
                    }
                    None => Ok(()),
                };
                tracing::info!("collector stopped");
                // Acknowledged events not written outweigh metrics not flushed (those are
                // replayed from the event store on the next start; `finish` logged why).
                if unwritten > 0 {
                    return Err(CollectorError::Unwritten { events: unwritten });
                }
                flushed
            }
        });
        Ok(Collector {
            addr: local,
            cancel,
            done,
        })
    }
}

/// Waits for the writer thread; at `deadline`, tells it to stop retrying a failing store.
async fn join_writer(
    writer: std::thread::JoinHandle<u64>,
    shared: &WriterShared,
    deadline: tokio::time::Instant,
) -> Result<u64, CollectorError> {
    let joined = tokio::task::spawn_blocking(move || writer.join());
    tokio::pin!(joined);
    let result = match tokio::time::timeout_at(deadline, &mut joined).await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(
                "the event store is still failing at the shutdown deadline; giving up on the queue"
            );
            // The writer sees the flag at its next retry.
            shared.give_up.store(true, Ordering::Release);
            joined.await
        }
    };
    match result {
        Ok(Ok(unwritten)) => Ok(unwritten),
        Ok(Err(_)) => Err(CollectorError::Task("the writer thread panicked".into())),
        Err(e) => Err(CollectorError::Task(e.to_string())),
    }
}
