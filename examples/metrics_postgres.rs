//! The metrics store on PostgreSQL, mirroring Trifle Stats' driver set-up section: a `PostgresDriver` in Separated mode,
//! a store in UTC with `1m 1h 1d`, `track` and `assert`, and an hourly `values` read.
//!
//! Run (the server from `source .ci/services.sh`, or any URL in `ACCRUE_PG_URL`):
//! `cargo run --example metrics_postgres --features postgres`

use std::sync::Arc;

use accrue::metrics::{Driver, IdentifierMode, MetricsStore, PostgresDriver, Value};
use accrue::time::{Blanks, Granularity, Unit};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ACCRUE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into());
    let driver =
        PostgresDriver::connect(&url, "trifle_stats_example", IdentifierMode::Separated).await?;
    driver.setup().await?; // creates the schema if it does not exist (idempotent)

    let stats = MetricsStore::builder(Arc::new(driver) as Arc<dyn Driver>)
        .time_zone("UTC")
        .granularities(["1m", "1h", "1d"])
        .build()?;

    // A key of its own per run, so the example's assertions hold on a shared database.
    let key = format!("event::logs::{}", std::process::id());
    let now = Timestamp::now();
    stats.track(&key, now, json!({"count": 1})).await?;
    stats
        .track(&key, now, json!({"count": 1, "bytes": 512}))
        .await?;
    stats.assert(&key, now, json!({"duration": 2.5})).await?;

    // Buffered writes are visible after a flush (the background task flushes every second).
    stats.flush().await?;
    let series = stats
        .values(
            &key,
            now - SignedDuration::from_hours(24),
            now,
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await?;
    assert_eq!(series.len(), 25);
    let last = Value::Map(series.values.last().cloned().unwrap_or_default()).to_json();
    assert_eq!(last, json!({"count": 2, "bytes": 512, "duration": 2.5}));
    println!(
        "{}: {} hourly buckets, the current one: {last}",
        stats.driver().description(),
        series.len()
    );

    stats.shutdown().await?;
    Ok(())
}
