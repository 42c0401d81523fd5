//! The metrics store on SQLite, mirroring Trifle Stats' usage section: a driver with its
//! schema, a store in UTC with `1m 1h 1d`, `track` and `assert`, and an hourly `values` read.
//!
//! Run: `cargo run --example metrics_sqlite --features sqlite`

use std::sync::Arc;

use accrue::metrics::{Driver, IdentifierMode, MetricsStore, SqliteDriver, Value};
use accrue::time::{Blanks, Granularity, Unit};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("accrue-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let driver = SqliteDriver::open(dir.join("stats.db"), "trifle_stats", IdentifierMode::Full)?;
    driver.setup().await?;

    let stats = MetricsStore::builder(Arc::new(driver) as Arc<dyn Driver>)
        .time_zone("UTC")
        .granularities(["1m", "1h", "1d"])
        .build()?;

    let now = Timestamp::now();
    stats.track("event::logs", now, json!({"count": 1})).await?;
    stats
        .track("event::logs", now, json!({"count": 1, "bytes": 512}))
        .await?;
    stats
        .assert("event::logs", now, json!({"duration": 2.5}))
        .await?;

    // Buffered writes are visible after a flush (the background task flushes every second).
    stats.flush().await?;
    let series = stats
        .values(
            "event::logs",
            now - SignedDuration::from_hours(24),
            now,
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await?;
    assert_eq!(series.len(), 25);
    let last = Value::Map(series.values.last().cloned().unwrap_or_default()).to_json();
    assert_eq!(last, json!({"count": 2, "bytes": 512, "duration": 2.5}));
    println!("{} hourly buckets, the current one: {last}", series.len());

    stats.shutdown().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
