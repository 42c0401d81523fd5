//! Metrics-store throughput: `track` through the buffer into SQLite against the unbuffered path
//! (one SQLite transaction per call), and `values` latency for a 30-day hourly timeline.
//!
//! Workload: 1,000 metric keys, the 7 default granularities (`1m 1h 1d 1w 1mo 1q 1y`),
//! `{"count": 1, "duration": i}` per call, UTC, system tracking on, an on-disk WAL database in
//! a temp dir; two tokio tasks on a two-worker runtime. Buffered: size 1,000,000 calls, flush
//! every second (background task), plus the final flush inside the timed region — so the figure
//! includes the SQLite writes. Unbuffered: every call is one transaction.
//!
//! `flush cost`: one flush of N distinct keys (10k, 100k, 1M) in one window, each tracked once
//! with `{"count": 1, "data": {"ms": n}}` through `stats.untracked()` (as the collector's metrics
//! pipeline does), the 7 default granularities, UTC, buffer on (`buffer_size(usize::MAX)`,
//! `buffer_async(FlushTask::None)`): 7N data rows and 7 system rows. Only `flush()` is timed; the tracking
//! before it is not (its cost per key is printed apart). Into a no-op driver (the store's own
//! share of a flush), the `MemoryDriver`, and `SqliteDriver` on a fresh temp file, beside the
//! nearest peer: the same rows written by a hand-written rusqlite loop (one transaction, one
//! prepared `INSERT … ON CONFLICT(key) DO UPDATE SET data = json_set(…)` per row, the statement
//! and row shape `SqliteDriver` uses), run beside every SQLite flush (alternating which goes
//! first) for a paired ratio. 10k and 100k are criterion samples of one flush each; 1M runs
//! [`FIXED_ROUNDS`] timed rounds outside criterion, printed one by one. The summary gives ns per
//! key: flat from 10k to 1M when a flush is linear.
//!
//! Run: `cargo bench --bench stats --features sqlite` (about 5 minutes; the flush cost alone:
//! `cargo bench --no-default-features --features sqlite --bench stats -- 'flush cost'`). The
//! summary with ops/s, ns/key and the ratios is printed at the end.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use accrue::metrics::{Buffering, FlushTask};
use accrue::metrics::{
    Driver, DriverFuture, IdentifierMode, MemoryDriver, MetricsStore, RowId, SqliteDriver, Value,
    Values, WriteBatch,
};
use accrue::time::{Blanks, Granularity, Unit};
use criterion::{Criterion, SamplingMode, Throughput};
use jiff::Timestamp;
use rusqlite::{Connection, TransactionBehavior};
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

fn store(rt: &tokio::runtime::Runtime, buffered: bool) -> (MetricsStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("accrue-bench-{}-{buffered}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let driver =
        SqliteDriver::open(dir.join("stats.db"), "trifle_stats", IdentifierMode::Full).unwrap();
    rt.block_on(driver.setup()).unwrap();
    let stats = rt.block_on(async {
        MetricsStore::builder(Arc::new(driver) as Arc<dyn Driver>)
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
    });
    (stats, dir)
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

/// What the command line asks for, as far as the untimed work around criterion's samples needs
/// to know (criterion keeps its own parse private): whether benchmarks are measured (`cargo
/// bench`; not `cargo test --benches`, `--test`, `--list`, `--profile-time`) and the filter.
struct Cli {
    measure: bool,
    filter: Option<String>,
    exact: bool,
}

fn cli() -> &'static Cli {
    static CLI: OnceLock<Cli> = OnceLock::new();
    CLI.get_or_init(|| {
        // Criterion's options that take a value (the rest are flags).
        const VALUED: [&str; 16] = [
            "--color",
            "--save-baseline",
            "--baseline",
            "--baseline-lenient",
            "--format",
            "--profile-time",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--plotting-backend",
            "--output-format",
        ];
        let mut cli = Cli {
            measure: false,
            filter: None,
            exact: false,
        };
        let (mut bench, mut other_mode) = (false, false);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => bench = true,
                "--test" | "--list" => other_mode = true,
                "--exact" => cli.exact = true,
                a if a.starts_with("--profile-time") => other_mode = true,
                a if VALUED.contains(&a) => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                _ if cli.filter.is_none() => cli.filter = Some(arg),
                _ => {}
            }
        }
        cli.measure = bench && !other_mode;
        cli
    })
}

impl Cli {
    /// Whether criterion's filter selects any of `ids` (`group/function`). Criterion takes it
    /// as a regex; here plain text is matched as a substring and anything else selects all.
    fn selects(&self, ids: &[&str]) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        if self.exact {
            return ids.contains(&filter.as_str());
        }
        if filter.contains(|c: char| "\\.+*?()|[]{}^$".contains(c)) {
            return true;
        }
        ids.iter().any(|id| id.contains(filter.as_str()))
    }
}

fn bench_track(c: &mut Criterion) {
    if !cli().selects(&[
        "track_sqlite_1k_keys_7_granularities/buffered",
        "track_sqlite_1k_keys_7_granularities/unbuffered",
    ]) {
        return;
    }
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
    if !cli().selects(&["values_sqlite/30d_hourly_720_buckets"]) {
        return;
    }
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
                .block_on(stats.values(
                    "metric::0",
                    from,
                    to,
                    Granularity::one(Unit::Hour),
                    Blanks::Keep,
                ))
                .unwrap();
            assert_eq!(s.len(), 720);
        })
    });
    group.finish();
    let begin = Instant::now();
    for _ in 0..20 {
        rt.block_on(stats.values(
            "metric::0",
            from,
            to,
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        ))
        .unwrap();
    }
    RESULTS.lock().unwrap().push((
        "values_720_ms",
        begin.elapsed().as_secs_f64() * 1000.0 / 20.0,
    ));
    rt.block_on(stats.shutdown()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Key counts of the flush-cost group, and the largest one criterion samples (a flush of 1M keys
/// takes tens of seconds: it gets [`FIXED_ROUNDS`] timed rounds instead).
const FLUSH_KEYS: [usize; 3] = [10_000, 100_000, 1_000_000];
const CRITERION_MAX_KEYS: usize = 100_000;
/// Timed rounds of the 1M-key flush, each pairing the SQLite flush with the rusqlite loop.
const FIXED_ROUNDS: usize = 1;
/// The group's name, as `cargo bench … -- 'flush cost'` filters it.
const FLUSH_GROUP: &str = "flush cost";

/// Per (keys, what) the seconds of each timed flush (or, for `paired`, each round's ratio).
static FLUSH: Mutex<Vec<(usize, &'static str, f64)>> = Mutex::new(Vec::new());

fn record_flush(keys: usize, what: &'static str, value: f64) {
    FLUSH.lock().unwrap().push((keys, what, value));
}

/// The instant every key is tracked at.
fn window() -> Timestamp {
    "2025-03-01T12:34:56Z".parse().unwrap()
}

fn flush_store(rt: &tokio::runtime::Runtime, driver: Arc<dyn Driver>) -> MetricsStore {
    rt.block_on(async {
        MetricsStore::builder(driver)
            .time_zone("UTC")
            .granularities(["1m", "1h", "1d", "1w", "1mo", "1q", "1y"])
            .buffer(Buffering::On)
            .buffer_size(usize::MAX)
            .buffer_async(FlushTask::None)
            .build()
            .unwrap()
    })
}

/// Tracks every key once through `untracked()`; records the time it took.
fn fill(rt: &tokio::runtime::Runtime, stats: &MetricsStore, keys: &[String]) {
    static VALUES: OnceLock<Vec<Value>> = OnceLock::new();
    let values = VALUES.get_or_init(|| {
        (0..1000)
            .map(|ms| json!({"count": 1, "data": {"ms": ms}}).into())
            .collect()
    });
    let at = window();
    let untracked = stats.untracked();
    let took = rt.block_on(async {
        let begin = Instant::now();
        for (i, key) in keys.iter().enumerate() {
            let values = values[i % values.len()].clone();
            untracked.track(key, at, values).await.unwrap();
        }
        begin.elapsed()
    });
    record_flush(keys.len(), "track", took.as_secs_f64());
}

/// Accepts every batch and stores nothing: what is left of a flush is the store's own share
/// (drain the buffer, build the rows and system rows, drop the batch), apart from any backend's.
#[derive(Debug)]
struct NoopDriver;

impl Driver for NoopDriver {
    fn description(&self) -> String {
        "NoopDriver".into()
    }

    fn mode(&self) -> IdentifierMode {
        IdentifierMode::Full
    }

    fn setup(&self) -> DriverFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn write<'a>(&'a self, _batch: &'a WriteBatch) -> DriverFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn read<'a>(&'a self, rows: &'a [RowId]) -> DriverFuture<'a, Vec<Values>> {
        let n = rows.len();
        Box::pin(async move { Ok(vec![Values::new(); n]) })
    }

    fn applied<'a>(&'a self, _writer: &'a str) -> DriverFuture<'a, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
}

/// One flush of `keys` into a fresh in-process driver (`"memory"`: `MemoryDriver`, `"noop"`:
/// [`NoopDriver`]); only the flush is timed.
fn flush_in_process(rt: &tokio::runtime::Runtime, keys: &[String], what: &'static str) -> Duration {
    let driver: Arc<dyn Driver> = match what {
        "memory" => Arc::new(MemoryDriver::new(IdentifierMode::Full)),
        _ => Arc::new(NoopDriver),
    };
    let stats = flush_store(rt, driver);
    fill(rt, &stats, keys);
    let begin = Instant::now();
    let outcome = rt.block_on(stats.flush()).unwrap();
    let took = begin.elapsed();
    assert_eq!(outcome.rows, 7 * keys.len() + 7);
    record_flush(keys.len(), what, took.as_secs_f64());
    took
}

/// One flush of `keys` into `SqliteDriver` on a fresh file in `dir`; only the flush is timed.
fn flush_sqlite(rt: &tokio::runtime::Runtime, keys: &[String], dir: &Path) -> Duration {
    let path = dir.join(format!("accrue-{}.db", keys.len()));
    remove_db(&path);
    let driver = SqliteDriver::open(&path, "trifle_stats", IdentifierMode::Full).unwrap();
    rt.block_on(driver.setup()).unwrap();
    let stats = flush_store(rt, Arc::new(driver));
    fill(rt, &stats, keys);
    let begin = Instant::now();
    let outcome = rt.block_on(stats.flush()).unwrap();
    let took = begin.elapsed();
    assert_eq!(outcome.rows, 7 * keys.len() + 7);
    drop(stats);
    remove_db(&path);
    record_flush(keys.len(), "sqlite", took.as_secs_f64());
    took
}

/// `SqliteDriver`'s upsert of a row with two increments (Full mode), the text its private
/// `upsert_sql` builds: insert the initial object, or `json_set` each field to its stored number
/// (0 if it is not one) plus the increment, unless the sum would leave the range of `f64`.
/// Mirrors src/stats/driver/sqlite.rs: keep the two in step.
fn upsert_sql() -> String {
    const DATA: &str = "(CASE WHEN json_valid(data) THEN data ELSE '{}' END)";
    const F64_MAX: &str = "1.7976931348623157e308";
    let mut sql = String::from(
        "INSERT INTO \"trifle_stats\" (key, data) VALUES (?1, json(?2)) \
         ON CONFLICT (key) DO UPDATE SET data = json_set(",
    );
    sql.push_str(DATA);
    for (p, v) in [(3, 4), (5, 6)] {
        let old = format!(
            "(CASE WHEN json_type({DATA}, ?{p}) IN ('integer', 'real') \
             THEN json_extract({DATA}, ?{p}) ELSE 0 END)"
        );
        sql.push_str(&format!(
            ", ?{p}, (CASE WHEN {old} + ?{v} BETWEEN -{F64_MAX} AND {F64_MAX} \
             THEN {old} + ?{v} ELSE {old} END)"
        ));
    }
    sql.push(')');
    sql
}

/// The peer: the rows of [`flush_sqlite`] written by hand on a fresh file in `dir` (same
/// schema, pragmas, statement, initial objects, row order, and batch-seq record), in one
/// `IMMEDIATE` transaction. Only the writing is timed; the bucket starts are computed once, as
/// all keys share the window.
fn rusqlite_loop(keys: &[String], buckets: &[(String, i64)], dir: &Path) -> Duration {
    let path = dir.join(format!("loop-{}.db", keys.len()));
    remove_db(&path);
    let mut conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE \"trifle_stats\" (key TEXT NOT NULL PRIMARY KEY, data TEXT NOT NULL DEFAULT '{}');
         CREATE TABLE \"trifle_stats_batches\" (writer TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL);",
    )
    .unwrap();
    let begin = Instant::now();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    {
        let mut upsert = tx.prepare(&upsert_sql()).unwrap();
        for (i, key) in keys.iter().enumerate() {
            let ms = (i % 1000) as i64;
            let initial = format!(r#"{{"count":1,"data.ms":{ms}}}"#);
            for (g, at) in buckets {
                let row = format!("{key}::{g}::{at}");
                upsert
                    .execute(rusqlite::params![
                        row,
                        initial,
                        r#"$."count""#,
                        1,
                        r#"$."data.ms""#,
                        ms
                    ])
                    .unwrap();
            }
        }
        let n = keys.len() as i64;
        let initial = format!(r#"{{"count":{n},"keys.__untracked__":{n}}}"#);
        for (g, at) in buckets {
            let row = format!("__system__key__::{g}::{at}");
            upsert
                .execute(rusqlite::params![
                    row,
                    initial,
                    r#"$."count""#,
                    n,
                    r#"$."keys.__untracked__""#,
                    n
                ])
                .unwrap();
        }
    }
    tx.execute(
        "INSERT INTO \"trifle_stats_batches\" (writer, seq) VALUES (?1, ?2) \
         ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq",
        rusqlite::params!["loop", 1],
    )
    .unwrap();
    tx.commit().unwrap();
    let took = begin.elapsed();
    drop(conn);
    remove_db(&path);
    record_flush(keys.len(), "rusqlite loop", took.as_secs_f64());
    took
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// One round of the SQLite flush and the rusqlite loop, the starting one alternating by
/// `round`; records the flush's time over the loop's (how much slower accrue is) and returns
/// the flush's time.
fn paired_round(
    rt: &tokio::runtime::Runtime,
    keys: &[String],
    buckets: &[(String, i64)],
    dir: &Path,
    round: usize,
) -> Duration {
    let (accrue, peer) = if round.is_multiple_of(2) {
        let a = flush_sqlite(rt, keys, dir);
        (a, rusqlite_loop(keys, buckets, dir))
    } else {
        let p = rusqlite_loop(keys, buckets, dir);
        (flush_sqlite(rt, keys, dir), p)
    };
    record_flush(
        keys.len(),
        "paired",
        accrue.as_secs_f64() / peer.as_secs_f64(),
    );
    accrue
}

/// Whether the filter selects any criterion function of the `n`-key size.
fn flush_selected(n: usize) -> bool {
    let ids =
        ["noop", "memory", "sqlite"].map(|what| format!("{FLUSH_GROUP}/{what}/{}k", n / 1000));
    cli().selects(&ids.each_ref().map(String::as_str))
}

fn bench_flush_cost(c: &mut Criterion) {
    // Not measuring (`cargo test --benches`, `--list`): the smallest size, once, no extras.
    let sizes = if cli().measure {
        &FLUSH_KEYS[..]
    } else {
        &FLUSH_KEYS[..1]
    };
    let sizes: Vec<usize> = sizes
        .iter()
        .copied()
        .filter(|&n| flush_selected(n))
        .collect();
    if sizes.is_empty() {
        return;
    }
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let probe = flush_store(&rt, Arc::new(MemoryDriver::new(IdentifierMode::Full)));
    let buckets: Vec<(String, i64)> = probe
        .granularities()
        .iter()
        .map(|&g| {
            let at = probe.calendar().floor(window(), g).unwrap();
            (g.to_string(), at.as_second())
        })
        .collect();
    let mut group = c.benchmark_group(FLUSH_GROUP);
    // One flush per sample (a 100k-key flush takes seconds; criterion warns that 10 samples do
    // not fit the time and runs 10 anyway), no warm-up beyond one flush.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    for n in sizes {
        let keys: Vec<String> = (0..n).map(|i| format!("metric::{i}")).collect();
        if n > CRITERION_MAX_KEYS {
            for round in 0..FIXED_ROUNDS {
                flush_in_process(&rt, &keys, "noop");
                flush_in_process(&rt, &keys, "memory");
                paired_round(&rt, &keys, &buckets, dir.path(), round);
            }
            continue;
        }
        let label = format!("{}k", n / 1000);
        group.throughput(Throughput::Elements(n as u64));
        for what in ["noop", "memory"] {
            group.bench_function(format!("{what}/{label}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| flush_in_process(&rt, &keys, what)).sum())
            });
        }
        // Each sample pairs the flush (what criterion times) with the rusqlite loop (timed
        // apart, for the summary's paired ratio).
        let mut round = 0;
        group.bench_function(format!("sqlite/{label}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        round += 1;
                        paired_round(&rt, &keys, &buckets, dir.path(), round)
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn flush_report() {
    let results = FLUSH.lock().unwrap();
    // Test runs (`cargo test --benches`) are unoptimised and run each size once: no summary.
    if results.is_empty() || !cli().measure {
        return;
    }
    let med = |n: usize, what: &str| {
        let mut v: Vec<f64> = results
            .iter()
            .filter(|(k, w, _)| *k == n && *w == what)
            .map(|(_, _, x)| *x)
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    println!(
        "\n## flush cost: N distinct keys tracked once each (untracked) in one window, 7 granularities = 7N+7 rows; only the flush timed (medians)\n"
    );
    println!(
        "| keys | track ns/key | no-op driver flush | ns/key | MemoryDriver flush | ns/key | SqliteDriver flush | ns/key | rusqlite loop | ns/key | SqliteDriver / loop (paired) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in FLUSH_KEYS {
        let (Some(t), Some(z), Some(m), Some(s), Some(l), Some(p)) = (
            med(n, "track"),
            med(n, "noop"),
            med(n, "memory"),
            med(n, "sqlite"),
            med(n, "rusqlite loop"),
            med(n, "paired"),
        ) else {
            continue;
        };
        let per_key = |secs: f64| secs * 1e9 / n as f64;
        println!(
            "| {n} | {:.0} | {:.0} ms | {:.0} | {:.0} ms | {:.0} | {:.0} ms | {:.0} | {:.0} ms | {:.0} | {p:.2}x |",
            per_key(t),
            z * 1e3,
            per_key(z),
            m * 1e3,
            per_key(m),
            s * 1e3,
            per_key(s),
            l * 1e3,
            per_key(l),
        );
    }
    println!(
        "\nno-op driver: the store's own share (drain, rows, system rows, dropping the batch). \
         SqliteDriver / loop: the flush's time over the hand-written loop's, per round, median."
    );
    let rounds: Vec<String> = results
        .iter()
        .filter(|(k, w, _)| *k == 1_000_000 && *w != "track")
        .map(|(_, w, x)| match *w {
            "paired" => format!("{w} {x:.2}x"),
            _ => format!("{w} {:.1} s", x),
        })
        .collect();
    if !rounds.is_empty() {
        println!("\n1M keys, each timed run: {}", rounds.join(", "));
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_track(&mut c);
    bench_values(&mut c);
    bench_flush_cost(&mut c);
    c.final_summary();
    flush_report();
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
