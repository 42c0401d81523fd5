//! The conformance suite on the in-memory driver.
#![cfg(feature = "metrics")]

mod stats_conformance;

use std::sync::Arc;

use accrue::metrics::{Driver, IdentifierMode, MemoryDriver};

async fn memory(mode: IdentifierMode) -> Arc<dyn Driver> {
    Arc::new(MemoryDriver::new(mode))
}

conformance_tests!(memory);
