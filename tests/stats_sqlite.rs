//! The conformance suite on SQLite (a fresh in-memory database per case and mode), plus the
//! SQLite-specific vectors (G9, G10, I5 invalid JSON, I13 system tracking off).
#![cfg(feature = "sqlite")]

mod stats_conformance;

use std::sync::Arc;

use accrue::{Driver, IdentifierMode, SqliteDriver};

async fn sqlite(mode: IdentifierMode) -> Arc<dyn Driver> {
    let driver = SqliteDriver::in_memory("trifle_stats", mode).unwrap();
    driver.setup().await.unwrap();
    driver.setup().await.unwrap(); // idempotent
    Arc::new(driver)
}

conformance_tests!(sqlite);
