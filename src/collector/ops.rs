//! Store writes other than inserts — event deletes, KV values, API keys — run on the writer
//! thread, so the group-commit writer stays the only writer of the database (and of the event
//! count it keeps). Each op waits for the events queued before it to be committed.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{Semaphore, oneshot};

use super::auth::api_error;
use super::error::{ApiError, StoreFault};
use super::store::EventStore;
use super::writer::Ingest;

/// Ops queued or running at once; more get `503` (they are small requests, so this only bites
/// a client flooding KV writes, whose memory it bounds).
pub(crate) const MAX_PENDING_OPS: usize = 1024;

/// The extra tables, created when the server starts.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL,
    scopes     TEXT NOT NULL,
    prefix     TEXT,
    label      TEXT,
    created_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    ns         TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
";

/// Creates the API-key and KV tables (idempotent; older builds ignore them).
pub(crate) fn create_schema(store: &mut EventStore) -> rusqlite::Result<()> {
    store.connection().execute_batch(SCHEMA)
}

/// Sends closures to the writer thread and waits for their result.
#[derive(Debug)]
pub(crate) struct WriteOps {
    ingest: Arc<Ingest>,
    permits: Arc<Semaphore>,
}

impl WriteOps {
    pub(crate) fn new(ingest: Arc<Ingest>) -> Self {
        Self {
            ingest,
            permits: Arc::new(Semaphore::new(MAX_PENDING_OPS)),
        }
    }

    /// Runs `f` on the writer's connection after everything queued before it.
    ///
    /// # Errors
    ///
    /// `503` when too many ops are pending or the server is stopping; `500` when the store
    /// fails (logged with `what`).
    pub(crate) async fn run<T, F>(&self, what: &'static str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut EventStore) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| ApiError::busy(1, "too many store operations are pending"))?;
        let (tx, rx) = oneshot::channel();
        self.ingest.run_op(Box::new(move |store: &mut EventStore| {
            let _permit = permit;
            let _ = tx.send(f(store));
        }))?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match StoreFault::of(&e) {
                StoreFault::DiskFull => Err(ApiError::store_fault(StoreFault::DiskFull)),
                StoreFault::Failing => {
                    tracing::error!(error = &e as &dyn std::error::Error, "{what} failed");
                    Err(api_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Store error",
                        format!("{what} failed; nothing was changed"),
                    ))
                }
            },
            Err(_) => Err(ApiError::shutting_down()),
        }
    }
}
