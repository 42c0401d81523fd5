//! Windowed counters against tiny-counter 0.1.0, in one run, with the ratios printed at the end.
//!
//! Same workloads on both, each with its idiomatic call (a fresh limiter per call, as
//! tiny-counter's API requires), default configuration (60 minutes, 72 hours, 56 days,
//! 52 weeks, 12 months, 4 years), system clock:
//!
//! * record: 200,000 records over 1 key / 10,000 keys, on 1 and 2 threads (keys warm);
//! * `last_days(7).sum()`: 100,000 queries, 1 hot key / round robin over 10,000 keys;
//! * `check_and_record` with one `at_most`: allowed (limit never reached) and denied;
//! * reserve + commit;
//! * persist 10,000 dirty keys: ours to [`FileStorage`] (one fsync) and [`SqliteStorage`]
//!   (one transaction, `synchronous = FULL`), tiny-counter to its `FilePerEvent` (10,000 files,
//!   no fsync; its SQLite backend would link a second libsqlite3);
//! * cold load: open a store on 10,000 persisted keys and query each once;
//! * memory per key: bytes allocated for 10,000 keys (a counting global allocator).
//!
//! Run: `cargo bench --bench window --features window-persist,sqlite` (about 3 minutes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use accrue::{
    time::Unit,
    window::{FileStorage, SqliteStorage, WindowStore},
};
use criterion::Criterion;

/// Counts live heap bytes, for memory per key.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const OPS: usize = 200_000;
const QUERIES: usize = 100_000;
const KEYS: usize = 10_000;

/// Seconds per operation, per (workload, contender), filled while criterion runs.
static RESULTS: Mutex<Vec<(String, &'static str, f64)>> = Mutex::new(Vec::new());

fn record(workload: &str, who: &'static str, secs_per_op: f64) {
    RESULTS
        .lock()
        .unwrap()
        .push((workload.to_owned(), who, secs_per_op));
}

fn key_names() -> Vec<String> {
    (0..KEYS).map(|i| format!("event.{i}")).collect()
}

/// A deterministic key sequence over `n` keys.
fn sequence(len: usize, n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// What both libraries are asked to do.
trait Contender: Sync {
    fn record(&self, key: &str);
    fn last_7_days(&self, key: &str) -> Option<u64>;
    fn check_and_record(&self, key: &str, limit: u32) -> bool;
    fn reserve_commit(&self, key: &str, limit: u32) -> bool;
}

struct Ours(WindowStore);
struct Theirs(tiny_counter::EventStore);

impl Contender for Ours {
    #[inline]
    fn record(&self, key: &str) {
        self.0.record(key);
    }
    #[inline]
    fn last_7_days(&self, key: &str) -> Option<u64> {
        self.0.query(key).last_days(7).sum()
    }
    #[inline]
    fn check_and_record(&self, key: &str, limit: u32) -> bool {
        self.0
            .limit()
            .at_most(key, u64::from(limit), Unit::Hour)
            .check_and_record(key)
            .is_ok()
    }
    #[inline]
    fn reserve_commit(&self, key: &str, limit: u32) -> bool {
        match self
            .0
            .limit()
            .at_most(key, u64::from(limit), Unit::Hour)
            .reserve(key)
        {
            Ok(r) => {
                r.commit();
                true
            }
            Err(_) => false,
        }
    }
}

impl Contender for Theirs {
    #[inline]
    fn record(&self, key: &str) {
        self.0.record(key);
    }
    #[inline]
    fn last_7_days(&self, key: &str) -> Option<u64> {
        self.0.query(key).last_days(7).sum().map(u64::from)
    }
    #[inline]
    fn check_and_record(&self, key: &str, limit: u32) -> bool {
        self.0
            .limit()
            .at_most(key, limit, tiny_counter::TimeUnit::Hours)
            .check_and_record(key)
            .is_ok()
    }
    #[inline]
    fn reserve_commit(&self, key: &str, limit: u32) -> bool {
        match self
            .0
            .limit()
            .at_most(key, limit, tiny_counter::TimeUnit::Hours)
            .reserve(key)
        {
            Ok(r) => {
                r.commit();
                true
            }
            Err(_) => false,
        }
    }
}

fn contenders() -> [(&'static str, Box<dyn Contender>); 2] {
    [
        ("accrue", Box::new(Ours(WindowStore::new()))),
        (
            "tiny-counter",
            Box::new(Theirs(tiny_counter::EventStore::new())),
        ),
    ]
}

/// Runs `f(op)` for every op of `seq`, split over `threads` started together; wall time.
fn run(threads: usize, seq: &[usize], f: &(dyn Fn(usize) + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let chunk = seq.len() / threads;
    thread::scope(|s| {
        for t in 0..threads {
            let part = &seq[t * chunk..(t + 1) * chunk];
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for &i in part {
                    f(i);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn timed(
    c: &mut Criterion,
    workload: &str,
    ops: usize,
    mut body: impl FnMut(&'static str, &dyn Contender) -> Duration,
) {
    let mut group = c.benchmark_group(workload);
    group.throughput(criterion::Throughput::Elements(ops as u64));
    for (name, contender) in contenders() {
        // Warm: every key exists before timing starts.
        body(name, &*contender);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let d = body(name, &*contender);
                    record(workload, name, d.as_secs_f64() / ops as f64);
                    total += d;
                }
                total
            })
        });
    }
    group.finish();
}

fn records(c: &mut Criterion) {
    let names = key_names();
    for (keys, threads) in [(1, 1), (KEYS, 1), (1, 2), (KEYS, 2)] {
        let seq = sequence(OPS, keys);
        let workload = format!("record/{keys}key/{threads}T");
        timed(c, &workload, OPS, |_, who| {
            run(threads, &seq, &|i| who.record(&names[i]))
        });
    }
}

fn queries(c: &mut Criterion) {
    let names = key_names();
    for keys in [1, KEYS] {
        let seq = sequence(QUERIES, keys);
        let workload = format!("last_days(7).sum/{keys}key");
        timed(c, &workload, QUERIES, |_, who| {
            if who.last_7_days(&names[0]).is_none() {
                for n in &names[..keys] {
                    who.record(n);
                }
            }
            run(1, &seq, &|i| {
                std::hint::black_box(who.last_7_days(&names[i]));
            })
        });
    }
}

fn limits(c: &mut Criterion) {
    let seq = vec![0; OPS];
    timed(c, "check_and_record/allowed", OPS, |_, who| {
        run(1, &seq, &|_| {
            assert!(who.check_and_record("api", u32::MAX));
        })
    });
    timed(c, "check_and_record/denied", OPS, |_, who| {
        for _ in 0..10 {
            who.check_and_record("full", 10);
        }
        run(1, &seq, &|_| {
            assert!(!who.check_and_record("full", 10));
        })
    });
    timed(c, "reserve+commit", OPS, |_, who| {
        run(1, &seq, &|_| {
            assert!(who.reserve_commit("job", u32::MAX));
        })
    });
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("accrue-bench-window-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    File,
    Sqlite,
    TinyFiles,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::File => "accrue file",
            Self::Sqlite => "accrue sqlite",
            Self::TinyFiles => "tiny-counter files",
        }
    }
}

enum AnyStore {
    Ours(WindowStore),
    Theirs(tiny_counter::EventStore),
}

fn open(backend: Backend, dir: &Path) -> AnyStore {
    match backend {
        Backend::File => AnyStore::Ours(
            WindowStore::builder()
                .with_storage(FileStorage::open(dir.join("counters.log")).unwrap())
                .build()
                .unwrap(),
        ),
        Backend::Sqlite => AnyStore::Ours(
            WindowStore::builder()
                .with_storage(SqliteStorage::open(dir.join("counters.db")).unwrap())
                .build()
                .unwrap(),
        ),
        Backend::TinyFiles => AnyStore::Theirs(
            tiny_counter::EventStore::builder()
                .with_storage(tiny_counter::storage::FilePerEvent::new(dir, ".bin").unwrap())
                .build()
                .unwrap(),
        ),
    }
}

impl AnyStore {
    fn record(&self, key: &str) {
        match self {
            Self::Ours(s) => s.record(key),
            Self::Theirs(s) => s.record(key),
        }
    }
    fn persist(&self) {
        match self {
            Self::Ours(s) => s.persist().unwrap(),
            Self::Theirs(s) => s.persist().unwrap(),
        }
    }
    fn query(&self, key: &str) -> Option<u64> {
        match self {
            Self::Ours(s) => s.query(key).last_days(7).sum(),
            Self::Theirs(s) => s.query(key).last_days(7).sum().map(u64::from),
        }
    }
    /// Drops without the final persist (tiny-counter marks loaded keys dirty and would
    /// rewrite every file).
    fn discard(self) {
        match self {
            Self::Ours(s) => {
                s.reset_dirty();
                drop(s);
            }
            Self::Theirs(s) => {
                s.reset_dirty();
                drop(s);
            }
        }
    }
}

fn persistence(c: &mut Criterion) {
    let names = key_names();
    let backends = [Backend::File, Backend::Sqlite, Backend::TinyFiles];
    let mut group = c.benchmark_group(format!("persist/{KEYS}keys"));
    group.sample_size(10);
    for backend in backends {
        group.bench_function(backend.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = tmp_dir(&format!("persist-{i}"));
                    let store = open(backend, &dir);
                    for n in &names {
                        store.record(n);
                    }
                    let start = Instant::now();
                    store.persist();
                    let d = start.elapsed();
                    record(
                        &format!("persist/{KEYS}keys"),
                        backend.name(),
                        d.as_secs_f64() / KEYS as f64,
                    );
                    total += d;
                    store.discard();
                    std::fs::remove_dir_all(&dir).unwrap();
                }
                total
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("cold_load/{KEYS}keys"));
    group.sample_size(10);
    for backend in backends {
        let dir = tmp_dir(&format!("cold-{}", backend.name().replace(' ', "-")));
        {
            let store = open(backend, &dir);
            for n in &names {
                store.record(n);
            }
            store.persist();
            store.discard();
        }
        group.bench_function(backend.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let store = open(backend, &dir);
                    for n in &names {
                        assert_eq!(store.query(n), Some(1));
                    }
                    let d = start.elapsed();
                    record(
                        &format!("cold_load/{KEYS}keys"),
                        backend.name(),
                        d.as_secs_f64() / KEYS as f64,
                    );
                    total += d;
                    store.discard();
                }
                total
            })
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
    group.finish();
}

/// Heap bytes per key for 10,000 keys recorded once each.
fn memory_per_key() -> (f64, f64) {
    let names = key_names();
    let measure = |f: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = ALLOCATED.load(Ordering::SeqCst);
        let store = f();
        let after = ALLOCATED.load(Ordering::SeqCst);
        drop(store);
        (after - before) as f64 / KEYS as f64
    };
    let ours = measure(&|| {
        let s = WindowStore::new();
        for n in &names {
            s.record(n);
        }
        s.reset_dirty();
        Box::new(s)
    });
    let theirs = measure(&|| {
        let s = tiny_counter::EventStore::new();
        for n in &names {
            s.record(n);
        }
        Box::new(s)
    });
    (ours, theirs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn report() {
    let results = RESULTS.lock().unwrap();
    let mut by: HashMap<(String, &str), Vec<f64>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (w, who, t) in results.iter() {
        if !order.contains(w) {
            order.push(w.clone());
        }
        by.entry((w.clone(), who)).or_default().push(*t);
    }
    let med = |w: &str, who: &str| by.get(&(w.to_owned(), who)).map(|v| median(v.clone()));
    let rate = |secs: f64| {
        let per_sec = 1.0 / secs;
        if per_sec >= 1e6 {
            format!("{:.2} M/s", per_sec / 1e6)
        } else {
            format!("{:.0} k/s", per_sec / 1e3)
        }
    };
    println!("\n## accrue windowed counters vs tiny-counter 0.1.0 (medians; per-op rates)\n");
    println!("| workload | accrue | tiny-counter | ratio | bar |");
    println!("|---|---:|---:|---:|---|");
    for w in &order {
        if w.starts_with("persist") || w.starts_with("cold_load") {
            let Some(t) = med(w, Backend::TinyFiles.name()) else {
                continue;
            };
            for b in [Backend::File, Backend::Sqlite] {
                let Some(a) = med(w, b.name()) else { continue };
                let verdict = if t / a >= 2.0 { "ok" } else { "BELOW" };
                println!(
                    "| {w} ({}) | {:.1} ms | {:.1} ms (files) | {:.1}x | >= 2x {verdict} |",
                    b.name(),
                    a * KEYS as f64 * 1e3,
                    t * KEYS as f64 * 1e3,
                    t / a
                );
            }
            continue;
        }
        let (Some(a), Some(t)) = (med(w, "accrue"), med(w, "tiny-counter")) else {
            continue;
        };
        let bar = if w.starts_with("record") || w.starts_with("check_and_record") {
            5.0
        } else {
            2.0
        };
        let verdict = if t / a >= bar { "ok" } else { "BELOW" };
        println!(
            "| {w} | {} ({:.0} ns) | {} ({:.0} ns) | {:.1}x | >= {bar}x {verdict} |",
            rate(a),
            a * 1e9,
            rate(t),
            t * 1e9,
            t / a
        );
    }
    let (ours, theirs) = memory_per_key();
    let verdict = if ours <= 2665.0 { "ok" } else { "ABOVE" };
    println!(
        "| memory per key (10k keys, heap bytes) | {ours:.0} B | {theirs:.0} B | {:.2}x | <= 2665 B {verdict} |",
        theirs / ours
    );
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    records(&mut c);
    queries(&mut c);
    limits(&mut c);
    persistence(&mut c);
    c.final_summary();
    report();
}
