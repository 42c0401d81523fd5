//! The client's two costs, each next to its nearest peer in the same run, with the ratios
//! printed at the end.
//!
//! * `emit`: the caller's cost of [`Client::emit`] (one event, static key, no data; and with
//!   two data fields built by the caller). Peer: Tlytics' `Emit`, a mutex-guarded vector
//!   append (unbounded, no drop counting).
//! * `end_to_end`: 50,000 events per iteration through the client to an in-process
//!   `accrue serve` on loopback (durable acknowledgement, group commit, metrics pipeline on),
//!   from the first `emit` until `flush` returns (every event stored). Peer: a plain `reqwest`
//!   loop posting the same events as raw JSON arrays of 1,000, one request at a time, without
//!   ids (no retries, no de-duplication: what a hand-written client does).
//!
//! The server, the client task and the load share the machine's cores.
//!
//! `cargo bench --bench client --features client`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use accrue::client::EventIds;
use accrue::client::{Client, Event};
use accrue::collector::Collector;
use criterion::{Criterion, Throughput};

const E2E_EVENTS: usize = 50_000;
const BATCH: usize = 1_000;

static RESULTS: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn record(name: &'static str, secs_per_op: f64) {
    RESULTS.lock().unwrap().push((name, secs_per_op));
}

fn median(name: &str) -> Option<f64> {
    let mut v: Vec<f64> = RESULTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

struct Server {
    _dir: tempfile::TempDir,
    collector: Option<Collector>,
    url: String,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::builder()
        .db(dir.path().join("bench.db"))
        .port(0)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", collector.local_addr());
    Server {
        _dir: dir,
        collector: Some(collector),
        url,
    }
}

fn emit(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let server = rt.block_on(start_server());
    let client = rt.block_on(async {
        Client::builder(&server.url)
            .queue_capacity(1 << 22)
            .batch_size(1_000)
            .build()
            .unwrap()
    });
    let mut g = c.benchmark_group("emit");
    g.throughput(Throughput::Elements(1));
    // Batches of 10,000 emits, then a flush outside the timing, so the queue never fills and
    // every measured call is the accepting path.
    g.bench_function("accrue/static_key", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10_000);
                let events: Vec<Event> = (0..n).map(|_| Event::new("page_view")).collect();
                let start = Instant::now();
                for e in events {
                    client.emit(std::hint::black_box(e)).unwrap();
                }
                total += start.elapsed();
                rt.block_on(client.flush()).unwrap();
                left -= n;
            }
            record("accrue/static_key", total.as_secs_f64() / iters as f64);
            total
        });
    });
    let tlytics: Mutex<Vec<Event>> = Mutex::new(Vec::with_capacity(1 << 20));
    g.bench_function("tlytics_mutex_vec/static_key", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10_000);
                let events: Vec<Event> = (0..n).map(|_| Event::new("page_view")).collect();
                let start = Instant::now();
                for mut e in events {
                    // Tlytics stamps the time and appends under a mutex.
                    e = e.at(jiff::Timestamp::now());
                    tlytics.lock().unwrap().push(std::hint::black_box(e));
                }
                total += start.elapsed();
                tlytics.lock().unwrap().clear();
                left -= n;
            }
            record(
                "tlytics_mutex_vec/static_key",
                total.as_secs_f64() / iters as f64,
            );
            total
        });
    });
    g.bench_function("accrue/build_and_emit_2_fields", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10_000);
                let start = Instant::now();
                for i in 0..n {
                    let e = Event::new("page_view").with("page", "home").with("ms", i);
                    client.emit(std::hint::black_box(e)).unwrap();
                }
                total += start.elapsed();
                rt.block_on(client.flush()).unwrap();
                left -= n;
            }
            record(
                "accrue/build_and_emit_2_fields",
                total.as_secs_f64() / iters as f64,
            );
            total
        });
    });
    g.finish();
    rt.block_on(async {
        client.close().await.unwrap();
    });
    stop_server(server, rt);
}

fn stop_server(mut server: Server, rt: &tokio::runtime::Runtime) {
    if let Some(c) = server.collector.take() {
        rt.block_on(c.stop()).unwrap();
    }
}

/// Emits `E2E_EVENTS` events and waits until the server stored them; seconds.
fn client_round(client: &Client, rt: &tokio::runtime::Runtime) -> f64 {
    let start = Instant::now();
    for i in 0..E2E_EVENTS {
        client
            .emit(Event::new("page_view").with("page", "home").with("seq", i))
            .unwrap();
    }
    rt.block_on(client.flush()).unwrap();
    start.elapsed().as_secs_f64()
}

/// Posts `E2E_EVENTS` events as raw JSON arrays, one request at a time; seconds.
async fn raw_round(raw: &reqwest::Client, url: &str, ids: bool, round: u64) -> f64 {
    let start = Instant::now();
    for chunk in 0..E2E_EVENTS / BATCH {
        let body: Vec<serde_json::Value> = (0..BATCH)
            .map(|i| {
                let seq = chunk * BATCH + i;
                let mut e = serde_json::json!({
                    "key": "page_view",
                    "timestamp": jiff::Timestamp::now().to_string(),
                    "data": {"page": "home", "seq": seq},
                });
                if ids {
                    e["id"] = format!("{round:x}-{seq:x}").into();
                }
                e
            })
            .collect();
        let res = raw
            .post(url)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    start.elapsed().as_secs_f64()
}

fn end_to_end(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Elements(E2E_EVENTS as u64));
    for (name, ids) in [("e2e/accrue", true), ("e2e/accrue_no_ids", false)] {
        // A fresh server per variant: every variant starts from an empty event store.
        let server = rt.block_on(start_server());
        let client = rt.block_on(async {
            Client::builder(&server.url)
                .queue_capacity(E2E_EVENTS * 2)
                .batch_size(BATCH)
                .event_ids(if ids {
                    EventIds::Stamped
                } else {
                    EventIds::None
                })
                .build()
                .unwrap()
        });
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let secs: f64 = (0..iters).map(|_| client_round(&client, rt)).sum();
                record(name, secs / iters as f64);
                Duration::from_secs_f64(secs)
            });
        });
        rt.block_on(async {
            let stats = client.stats();
            assert_eq!(
                stats.dropped + stats.failed + stats.rejected,
                0,
                "{stats:?}"
            );
            client.close().await.unwrap();
        });
        stop_server(server, rt);
    }
    let raw = reqwest::Client::new();
    for (name, ids) in [("e2e/raw", true), ("e2e/raw_no_ids", false)] {
        let server = rt.block_on(start_server());
        let url = format!("{}/events", server.url);
        let mut round = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut secs = 0.0;
                for _ in 0..iters {
                    round += 1;
                    secs += rt.block_on(raw_round(&raw, &url, ids, round));
                }
                record(name, secs / iters as f64);
                Duration::from_secs_f64(secs)
            });
        });
        stop_server(server, rt);
    }
    g.finish();
}

fn report() {
    println!("\n| emit, caller's thread | accrue | Tlytics (mutex + vec) | ratio |");
    println!("|---|---:|---:|---:|");
    if let (Some(a), Some(t)) = (
        median("accrue/static_key"),
        median("tlytics_mutex_vec/static_key"),
    ) {
        println!(
            "| one event, static key | {:.1} ns | {:.1} ns | {:.2}x |",
            a * 1e9,
            t * 1e9,
            t / a
        );
    }
    if let Some(a) = median("accrue/build_and_emit_2_fields") {
        println!("| build 2 data fields + emit | {:.1} ns | | |", a * 1e9);
    }
    let eps = |s: f64| E2E_EVENTS as f64 / s / 1e3;
    println!(
        "\n| end to end, loopback, until stored | accrue client | raw reqwest JSON loop | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (label, a, r) in [
        (
            "with event ids (idempotent retries)",
            "e2e/accrue",
            "e2e/raw",
        ),
        ("without ids", "e2e/accrue_no_ids", "e2e/raw_no_ids"),
    ] {
        if let (Some(a), Some(r)) = (median(a), median(r)) {
            println!(
                "| {label}, {E2E_EVENTS} events in batches of {BATCH} | {:.0}k events/s | {:.0}k events/s | {:.2}x |",
                eps(a),
                eps(r),
                r / a
            );
        }
    }
}

fn main() {
    // The peer's plain reqwest client needs a process-wide rustls provider (this crate builds
    // reqwest without aws-lc; accrue's own client brings its ring configuration).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    emit(&mut c, &rt);
    end_to_end(&mut c, &rt);
    c.final_summary();
    report();
}
