//! Metrics-store throughput per server driver: buffered `track` (flushes batch everything into
//! one round trip per flush) against the unbuffered path (one driver write per call), on the
//! same workload as `benches/stats.rs`, with SQLite as the in-process reference.
//!
//! Workload: 1,000 metric keys, the 7 default granularities, `{"count": 1, "duration": n}`
//! per call, UTC, system tracking on, two tokio tasks on a two-worker runtime. Buffered: flush
//! every second (background task) plus the final flush inside the timed region, so the figure
//! includes the database writes. Unbuffered: every call is one batch of 14 row upserts.
//!
//! Needs the servers (`source .ci/services.sh`); a driver whose URL variable is unset is
//! skipped with a message. Run:
//! `source .ci/services.sh && cargo bench --bench drivers --all-features`
//! (a few minutes; `ACCRUE_BENCH_DRIVERS=PostgreSQL,Redis` runs only those). The summary
//! table with ops/s and ratios is printed at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accrue::metrics::Buffering;
use accrue::metrics::{Driver, MetricsStore};
use criterion::{Criterion, Throughput};
use jiff::Timestamp;
use serde_json::json;

const KEYS: usize = 1_000;
const BUFFERED_OPS: u64 = 200_000;
const UNBUFFERED_OPS: u64 = 300;

/// (driver, buffered ops/s, unbuffered ops/s)
static RESULTS: Mutex<Vec<(String, f64, f64)>> = Mutex::new(Vec::new());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}_{}", t.as_secs(), t.subsec_nanos() % 1_000_000)
}

/// `ops` tracks split over two tasks, then a flush; returns the elapsed time.
fn run(rt: &tokio::runtime::Runtime, stats: &MetricsStore, ops: u64, start_at: u64) -> Duration {
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("metric::{i}")).collect());
    let now: Timestamp = "2025-03-01T12:00:00Z".parse().unwrap();
    rt.block_on(async {
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..2u64 {
            let stats = stats.clone();
            let keys = keys.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..ops).step_by(2) {
                    let n = start_at + i;
                    let at = now + jiff::SignedDuration::from_secs((n / 1000) as i64);
                    stats
                        .track(
                            &keys[(n as usize) % KEYS],
                            at,
                            json!({"count": 1, "duration": n % 100}),
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        stats.flush().await.unwrap();
        begin.elapsed()
    })
}

fn store(rt: &tokio::runtime::Runtime, driver: Arc<dyn Driver>, buffered: bool) -> MetricsStore {
    rt.block_on(async {
        MetricsStore::builder(driver)
            .time_zone("UTC")
            .buffer(if buffered {
                Buffering::On
            } else {
                Buffering::Off
            })
            .buffer_size(1_000_000)
            .buffer_duration(Duration::from_secs(1))
            .build()
            .unwrap()
    })
}

fn bench_driver(c: &mut Criterion, name: &str, url: &str) {
    let rt = runtime();
    let mut group = c.benchmark_group(format!("track_{name}_1k_keys_7_granularities"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut figures = [0.0; 2];
    for (i, buffered) in [true, false].into_iter().enumerate() {
        let driver = rt
            .block_on(accrue::metrics::connect_driver(url))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stats = store(&rt, driver, buffered);
        let mut done = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(if buffered { "buffered" } else { "unbuffered" }, |b| {
            b.iter_custom(|iters| {
                let d = run(&rt, &stats, iters, done);
                done += iters;
                d
            })
        });
        let ops = if buffered {
            BUFFERED_OPS
        } else {
            UNBUFFERED_OPS
        };
        let d = run(&rt, &stats, ops, done);
        figures[i] = ops as f64 / d.as_secs_f64();
        rt.block_on(stats.shutdown()).unwrap();
    }
    group.finish();
    RESULTS
        .lock()
        .unwrap()
        .push((name.to_owned(), figures[0], figures[1]));
}

/// Removes what a run created (tables, keys, database).
fn clean(name: &str, url: &str, id: &str) {
    let rt = runtime();
    rt.block_on(async {
        match name {
            "PostgreSQL" => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                for t in [
                    format!("accrue_bench_{id}"),
                    format!("accrue_bench_{id}_batches"),
                ] {
                    let sql = format!("DROP TABLE IF EXISTS \"{t}\"");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
            "MariaDB" => {
                let pool = sqlx::MySqlPool::connect(url).await.unwrap();
                for t in [
                    format!("accrue_bench_{id}"),
                    format!("accrue_bench_{id}_batches"),
                ] {
                    let sql = format!("DROP TABLE IF EXISTS `{t}`");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
            "Redis" => {
                let mut conn = redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("accrue_bench_{id}*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for chunk in keys.chunks(1000) {
                    let _: i64 = redis::cmd("DEL")
                        .arg(chunk)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }
            "MongoDB" => {
                let client = mongodb::Client::with_uri_str(url).await.unwrap();
                client
                    .database(&format!("accrue_bench_{id}"))
                    .drop()
                    .await
                    .unwrap();
            }
            _ => {}
        }
    });
}

fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let id = suffix();
    let dir = std::env::temp_dir().join(format!("accrue-bench-drivers-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut drivers = vec![(
        "SQLite".to_owned(),
        format!("sqlite://{}", dir.join("stats.db").display()),
        String::new(),
    )];
    for (name, var) in [
        ("PostgreSQL", "ACCRUE_PG_URL"),
        ("MariaDB", "ACCRUE_MYSQL_URL"),
        ("Redis", "ACCRUE_REDIS_URL"),
        ("MongoDB", "ACCRUE_MONGO_URL"),
    ] {
        let Ok(base) = std::env::var(var) else {
            println!("*** {name} skipped: {var} is not set (source .ci/services.sh) ***");
            continue;
        };
        let url = match name {
            "Redis" => with_option(&base, &format!("prefix=accrue_bench_{id}")),
            "MongoDB" => format!(
                "{}/accrue_bench_{id}",
                base.split('?').next().unwrap().trim_end_matches('/')
            ),
            _ => with_option(&base, &format!("table=accrue_bench_{id}")),
        };
        drivers.push((name.to_owned(), url, base));
    }
    // ACCRUE_BENCH_DRIVERS=PostgreSQL,Redis runs only those.
    let only = std::env::var("ACCRUE_BENCH_DRIVERS").unwrap_or_default();
    drivers.retain(|(name, _, _)| only.is_empty() || only.split(',').any(|o| o == name));
    for (name, url, _) in &drivers {
        bench_driver(&mut c, name, url);
    }
    for (name, _, base) in &drivers {
        clean(name, base, &id);
    }
    let _ = std::fs::remove_dir_all(&dir);
    c.final_summary();
    println!(
        "\nmetrics-store drivers, track (1k keys x 7 granularities, 2 tasks, final flush included):"
    );
    println!(
        "  {:<12} {:>16} {:>18} {:>8}",
        "driver", "buffered ops/s", "unbuffered ops/s", "ratio"
    );
    for (name, b, u) in RESULTS.lock().unwrap().iter() {
        println!("  {name:<12} {b:>16.0} {u:>18.0} {:>7.0}x", b / u);
    }
}
