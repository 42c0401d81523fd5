//! Collector throughput against its nearest peers, in one run, with the ratios printed at the
//! end.
//!
//! * `ingest`: 16 keep-alive HTTP clients on loopback each post 4 requests of 100 events (6,400
//!   events per iteration) to an in-process `accrue serve` with durable acknowledgement. Peer:
//!   the same server committing one transaction per request (`max_group_events(1)`), which is
//!   what a durable server without group commit does. Both with `synchronous=NORMAL` and
//!   `FULL` (one fsync per commit).
//! * `view`: one `/view` page (total + 100 rows, first page and page 500) over 100,000 stored
//!   events. Peer: the Tlytics schema and queries (no index, `ORDER BY timestamp DESC` on the
//!   timestamp text, `COUNT(*)`), on the same SQLite.
//! * `metrics flush`: the cost of one metrics flush of 10k and 100k distinct event keys (one
//!   aggregator → one driver batch into the embedded SQLite metrics store, 7 granularities):
//!   the server's stop, whose final flush writes them, against the same stop of a server with
//!   the metrics pipeline off (closing the event store, checkpointing its WAL); the difference
//!   is the flush.
//!
//! * `pending memory` (printed, not timed): the heap bytes one pending metrics sample holds —
//!   the live Rust heap after posting 100k distinct event keys (nothing flushed yet) minus the
//!   same with the metrics pipeline off, per key. A counting allocator wraps the system one
//!   for the whole bench (SQLite's own page cache is not on the Rust heap).
//!
//! `cargo bench --features server --bench collector` (`-- 'metrics flush'` for that part)

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use accrue::collector::MetricsPipeline;
use accrue::collector::{Collector, Synchronous};
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use rusqlite::Connection;

const CLIENTS: usize = 16;
const REQUESTS: usize = 4;
const BATCH: usize = 100;
const EVENTS: usize = CLIENTS * REQUESTS * BATCH;
const VIEW_ROWS: usize = 100_000;

/// Live bytes on the Rust heap, for `pending memory`.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// The bench crate (not the library, which forbids unsafe code) wraps the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, AtomicOrdering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, AtomicOrdering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            AtomicOrdering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static RESULTS: Mutex<Vec<(String, &'static str, f64)>> = Mutex::new(Vec::new());

fn record(workload: &str, who: &'static str, secs: f64) {
    RESULTS
        .lock()
        .unwrap()
        .push((workload.to_owned(), who, secs));
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn post(s: &mut Sender, addr: SocketAddr, body: Bytes) {
    s.ready().await.unwrap();
    let req = hyper::Request::post("/events")
        .header("host", addr.to_string())
        .body(Full::new(body))
        .unwrap();
    let res = s.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

fn body(client: usize) -> Bytes {
    let events: Vec<String> = (0..BATCH)
        .map(|i| {
            format!(
                r#"{{"key":"{}","data":{{"page":"home","ms":{},"client":{client}}}}}"#,
                ["page_view", "click", "signup", "api_call"][i % 4],
                i * 7 % 250
            )
        })
        .collect();
    Bytes::from(format!("[{}]", events.join(",")))
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (sync, sync_name) in [(Synchronous::Normal, "normal"), (Synchronous::Full, "full")] {
        let workload = format!("{CLIENTS}x{REQUESTS}x{BATCH}/{sync_name}");
        for (who, max_group) in [("group commit", 20_000), ("commit per request", 1)] {
            let dir = tempfile::tempdir().unwrap();
            let (server, senders) = rt.block_on(async {
                let server = Collector::builder()
                    .db(dir.path().join("bench.db"))
                    .port(0)
                    .synchronous(sync)
                    .max_group_events(max_group)
                    .start()
                    .await
                    .unwrap();
                let mut senders = Vec::new();
                for _ in 0..CLIENTS {
                    senders.push(connect(server.local_addr()).await);
                }
                (server, senders)
            });
            let addr = server.local_addr();
            let bodies: Vec<Bytes> = (0..CLIENTS).map(body).collect();
            let mut senders = Some(senders);
            group.bench_function(format!("{sync_name}/{who}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let taken = senders.take().unwrap();
                        let start = Instant::now();
                        let back = rt.block_on(async {
                            let tasks: Vec<_> = taken
                                .into_iter()
                                .zip(bodies.iter().cloned())
                                .map(|(mut s, body)| {
                                    tokio::spawn(async move {
                                        for _ in 0..REQUESTS {
                                            post(&mut s, addr, body.clone()).await;
                                        }
                                        s
                                    })
                                })
                                .collect();
                            let mut back = Vec::new();
                            for t in tasks {
                                back.push(t.await.unwrap());
                            }
                            back
                        });
                        total += start.elapsed();
                        senders = Some(back);
                    }
                    record(&workload, who, total.as_secs_f64() / iters as f64);
                    total
                })
            });
            drop(senders);
            rt.block_on(server.stop()).unwrap();
        }
    }
    group.finish();
}

/// Fills a collector database through the API, then a Tlytics-schema table with the same rows.
fn view_fixture(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ours = dir.join("accrue.db");
    rt.block_on(async {
        let server = Collector::builder().db(&ours).port(0).start().await.unwrap();
        let mut s = connect(server.local_addr()).await;
        for chunk in 0..VIEW_ROWS / 1000 {
            let events: Vec<String> = (0..1000)
                .map(|i| {
                    let n = chunk * 1000 + i;
                    // Times spread over a day, in three offsets, not in insertion order.
                    let secs = (n * 7919) % 86_400;
                    let off = ["Z", "+02:00", "-05:00"][n % 3];
                    format!(
                        r#"{{"key":"k{}","timestamp":"2025-08-25T{:02}:{:02}:{:02}{off}","data":{{"n":{n}}}}}"#,
                        n % 20,
                        secs / 3600,
                        secs / 60 % 60,
                        secs % 60
                    )
                })
                .collect();
            post(&mut s, server.local_addr(), Bytes::from(format!("[{}]", events.join(",")))).await;
        }
        drop(s);
        server.stop().await.unwrap();
    });
    let theirs = dir.join("tlytics.db");
    let c = Connection::open(&theirs).unwrap();
    c.execute_batch(
        "CREATE TABLE tlytics (key TEXT NOT NULL, timestamp DATETIME NOT NULL, data TEXT);",
    )
    .unwrap();
    c.execute("ATTACH DATABASE ?1 AS ours", [ours.to_str().unwrap()])
        .unwrap();
    // Go's driver stores `YYYY-MM-DD HH:MM:SS±HH:MM` text in the client's offset.
    c.execute_batch(
        "INSERT INTO tlytics SELECT key,
             strftime('%Y-%m-%d %H:%M:%S', ts_ns / 1000000000 + ts_offset_s, 'unixepoch')
               || CASE WHEN ts_offset_s = 0 THEN '+00:00'
                       ELSE printf('%s%02d:%02d', CASE WHEN ts_offset_s < 0 THEN '-' ELSE '+' END,
                                   abs(ts_offset_s) / 3600, abs(ts_offset_s) / 60 % 60) END,
             data
           FROM ours.events;
         DETACH DATABASE ours;",
    )
    .unwrap();
    (ours, theirs)
}

fn view(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = view_fixture(dir.path());
    let ours = Connection::open(ours).unwrap();
    let theirs = Connection::open(theirs).unwrap();
    let mut group = c.benchmark_group("view");
    for page in [1i64, 500] {
        let workload = format!("100k/page{page}");
        let offset = (page - 1) * 100;
        group.bench_function(format!("page{page}/accrue"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let total: i64 = ours
                        .prepare_cached(
                            "SELECT value FROM collector_state WHERE name = 'event_count'",
                        )
                        .unwrap()
                        .query_row([], |r| r.get(0))
                        .unwrap();
                    assert_eq!(total, VIEW_ROWS as i64);
                    let mut stmt = ours
                        .prepare_cached(
                            "SELECT key, ts_ns, ts_offset_s, data FROM events
                             ORDER BY ts_ns DESC, id DESC LIMIT 100 OFFSET ?1",
                        )
                        .unwrap();
                    let n = stmt
                        .query_map([offset], |r| r.get::<_, String>(0))
                        .unwrap()
                        .count();
                    assert_eq!(n, 100);
                }
                let t = start.elapsed();
                record(&workload, "accrue", t.as_secs_f64() / iters as f64);
                t
            })
        });
        group.bench_function(format!("page{page}/tlytics"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let total: i64 = theirs
                        .prepare_cached("SELECT COUNT(*) FROM tlytics")
                        .unwrap()
                        .query_row([], |r| r.get(0))
                        .unwrap();
                    assert_eq!(total, VIEW_ROWS as i64);
                    let mut stmt = theirs
                        .prepare_cached(
                            "SELECT key, timestamp, data FROM tlytics
                             ORDER BY timestamp DESC LIMIT 100 OFFSET ?1",
                        )
                        .unwrap();
                    let n = stmt
                        .query_map([offset], |r| r.get::<_, String>(0))
                        .unwrap()
                        .count();
                    assert_eq!(n, 100);
                }
                let t = start.elapsed();
                record(&workload, "tlytics", t.as_secs_f64() / iters as f64);
                t
            })
        });
    }
    group.finish();
}

/// Posts `keys` events with distinct keys over 4 connections, 1,000 per request.
async fn post_distinct_keys(addr: SocketAddr, keys: usize) {
    let tasks: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(async move {
                let mut s = connect(addr).await;
                for start in (c * 1_000..keys).step_by(4_000) {
                    let end = (start + 1_000).min(keys);
                    let events: Vec<String> = (start..end)
                        .map(|i| format!(r#"{{"key":"user/{i}","data":{{"ms":{}}}}}"#, i % 250))
                        .collect();
                    post(&mut s, addr, Bytes::from(format!("[{}]", events.join(",")))).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A server in `dir` whose metrics are flushed only at its stop, with the pipeline `metrics`.
async fn unflushed_server(dir: &std::path::Path, metrics: MetricsPipeline) -> Collector {
    Collector::builder()
        .db(dir.join("events.db"))
        .port(0)
        .flush_interval(Duration::from_secs(3_600))
        .metrics_pipeline(metrics)
        .start()
        .await
        .unwrap()
}

fn metrics_flush(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("metrics flush");
    for (keys, metrics) in [
        (10_000usize, MetricsPipeline::On),
        (10_000, MetricsPipeline::Off),
        (100_000, MetricsPipeline::On),
        (100_000, MetricsPipeline::Off),
    ] {
        group.throughput(Throughput::Elements(keys as u64));
        let who = match metrics {
            MetricsPipeline::On => "flush",
            MetricsPipeline::Off => "metrics off",
        };
        group.bench_function(format!("{}k keys/{who}", keys / 1_000), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    total += rt.block_on(async {
                        let server = unflushed_server(dir.path(), metrics).await;
                        post_distinct_keys(server.local_addr(), keys).await;
                        let start = Instant::now();
                        server.stop().await.unwrap();
                        start.elapsed()
                    });
                }
                record(&format!("{keys}"), who, total.as_secs_f64() / iters as f64);
                total
            })
        });
    }
    group.finish();
}

/// Heap bytes per pending metrics sample: see the module docs.
fn pending_memory() {
    if !std::env::args().any(|a| a.contains("memory")) && std::env::args().count() > 2 {
        return; // another part was selected
    }
    const KEYS: usize = 100_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let per_key = |metrics: MetricsPipeline| -> f64 {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let server = unflushed_server(dir.path(), metrics).await;
            post_distinct_keys(server.local_addr(), 1_000).await; // warm the buffers
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = LIVE.load(AtomicOrdering::Relaxed);
            post_distinct_keys(server.local_addr(), KEYS).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = LIVE.load(AtomicOrdering::Relaxed);
            server.stop().await.unwrap();
            (after - before) as f64 / KEYS as f64
        })
    };
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let on = per_key(MetricsPipeline::On);
        let off = per_key(MetricsPipeline::Off);
        rounds.push((on, off));
    }
    println!(
        "\n## pending memory: Rust heap per distinct event key posted, nothing flushed ({KEYS} keys, 3 rounds)"
    );
    println!("| round | metrics on | metrics off | per pending sample |");
    println!("|---:|---:|---:|---:|");
    for (i, (on, off)) in rounds.iter().enumerate() {
        println!("| {} | {on:.0} B | {off:.0} B | {:.0} B |", i + 1, on - off);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report() {
    let results = RESULTS.lock().unwrap();
    let mut by: HashMap<(String, &str), Vec<f64>> = HashMap::new();
    for (w, who, t) in results.iter() {
        by.entry((w.clone(), who)).or_default().push(*t);
    }
    let med = |w: &str, who: &str| by.get(&(w.to_owned(), who)).map(|v| median(v.clone()));
    println!("\n## accrue collector vs peers (medians)\n");
    println!(
        "| ingest (16 clients x 4 x 100 events, durable ack) | group commit | commit per request | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for sync in ["normal", "full"] {
        let w = format!("{CLIENTS}x{REQUESTS}x{BATCH}/{sync}");
        if let (Some(g), Some(p)) = (med(&w, "group commit"), med(&w, "commit per request")) {
            let eps = |s: f64| EVENTS as f64 / s / 1e3;
            println!(
                "| synchronous={sync} | {:.0}k events/s | {:.0}k events/s | {:.2}x |",
                eps(g),
                eps(p),
                p / g
            );
        }
    }
    println!("\n| /view over 100k events (total + 100 rows) | accrue | Tlytics schema | ratio |");
    println!("|---|---:|---:|---:|");
    for page in [1, 500] {
        let w = format!("100k/page{page}");
        if let (Some(a), Some(t)) = (med(&w, "accrue"), med(&w, "tlytics")) {
            println!(
                "| page {page} | {:.3} ms | {:.3} ms | {:.0}x |",
                a * 1e3,
                t * 1e3,
                t / a
            );
        }
    }
    println!(
        "\n| metrics flush (distinct event keys, 7 granularities) | stop with its final flush | stop, metrics off | the flush | per key |"
    );
    println!("|---|---:|---:|---:|---:|");
    for keys in [10_000usize, 100_000] {
        let w = format!("{keys}");
        if let (Some(s), Some(off)) = (med(&w, "flush"), med(&w, "metrics off")) {
            println!(
                "| {}k keys | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} us |",
                keys / 1_000,
                s * 1e3,
                off * 1e3,
                (s - off) * 1e3,
                (s - off) * 1e6 / keys as f64
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    ingest(&mut c);
    view(&mut c);
    metrics_flush(&mut c);
    c.final_summary();
    report();
    pending_memory();
}
