//! Metrics-store throughput: `track` through the buffer into SQLite against the unbuffered path
//! (one SQLite transaction per call), and `values` latency for a 30-day hourly timeline.
//!
//! Workload (issue 3): 1,000 metric keys, the 7 default granularities (`1m 1h 1d 1w 1mo 1q 1y`),
//! `{"count": 1, "duration": i}` per call, UTC, system tracking on, an on-disk WAL database in
//! a temp dir; two tokio tasks on a two-worker runtime. Buffered: size 1,000,000 calls, flush
//! every second (background task), plus the final flush inside the timed region — so the figure
//! includes the SQLite writes. Unbuffered: every call is one transaction.
//!
//! Run: `cargo bench --bench stats --features sqlite` (about a minute). The summary with ops/s
//! and the ratio is printed at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accrue::{Driver, IdentifierMode, SqliteDriver, Stats};
use criterion::{Criterion, Throughput};
use jiff::Timestamp;
use serde_json::json;

const KEYS: usize = 1_000;
static RESULTS: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn store(rt: &tokio::runtime::Runtime, buffered: bool) -> (Stats, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("accrue-bench-{}-{buffered}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let driver =
        SqliteDriver::open(dir.join("stats.db"), "trifle_stats", IdentifierMode::Full).unwrap();
    rt.block_on(driver.setup()).unwrap();
    let stats = rt.block_on(async {
        Stats::builder(Arc::new(driver) as Arc<dyn Driver>)
            .time_zone("UTC")
            .buffer(buffered)
            .buffer_size(1_000_000)
            .buffer_duration(Duration::from_secs(1))
            .build()
            .unwrap()
    });
    (stats, dir)
}

/// `ops` tracks split over two tasks, then a flush; returns the elapsed time.
fn run(rt: &tokio::runtime::Runtime, stats: &Stats, ops: u64, start_at: u64) -> Duration {
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

fn bench_track(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("track_sqlite_1k_keys_7_granularities");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, buffered) in [("buffered", true), ("unbuffered", false)] {
        let (stats, dir) = store(&rt, buffered);
        let mut done = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let d = run(&rt, &stats, iters, done);
                done += iters;
                d
            })
        });
        // A fixed run for the summary.
        let ops = if buffered { 400_000 } else { 2_000 };
        let d = run(&rt, &stats, ops, done);
        RESULTS
            .lock()
            .unwrap()
            .push((name, ops as f64 / d.as_secs_f64()));
        rt.block_on(stats.shutdown()).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

fn bench_values(c: &mut Criterion) {
    let rt = runtime();
    let (stats, dir) = store(&rt, true);
    let from: Timestamp = "2025-03-01T00:00:00Z".parse().unwrap();
    rt.block_on(async {
        for h in 0..720 {
            let at = from + jiff::SignedDuration::from_hours(h);
            stats
                .track("metric::0", at, json!({"count": 1, "duration": h}))
                .await
                .unwrap();
        }
        stats.flush().await.unwrap();
    });
    let to = from + jiff::SignedDuration::from_hours(719);
    let mut group = c.benchmark_group("values_sqlite");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("30d_hourly_720_buckets", |b| {
        b.iter(|| {
            let s = rt
                .block_on(stats.values("metric::0", from, to, "1h", false))
                .unwrap();
            assert_eq!(s.len(), 720);
        })
    });
    group.finish();
    let begin = Instant::now();
    for _ in 0..20 {
        rt.block_on(stats.values("metric::0", from, to, "1h", false))
            .unwrap();
    }
    RESULTS.lock().unwrap().push((
        "values_720_ms",
        begin.elapsed().as_secs_f64() * 1000.0 / 20.0,
    ));
    rt.block_on(stats.shutdown()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_track(&mut c);
    bench_values(&mut c);
    c.final_summary();
    let results = RESULTS.lock().unwrap();
    let get = |n: &str| results.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    println!("\nmetrics store on SQLite (1k keys x 7 granularities, 2 tasks):");
    if let (Some(b), Some(u)) = (get("buffered"), get("unbuffered")) {
        println!("  track buffered   {b:>12.0} ops/s");
        println!("  track unbuffered {u:>12.0} ops/s");
        println!("  ratio            {:>12.1}x", b / u);
    }
    if let Some(ms) = get("values_720_ms") {
        println!("  values 30 days hourly (720 buckets): {ms:.2} ms");
    }
}
