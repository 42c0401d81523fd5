//! Query latency of the collector against the naive way of asking the same questions, in one
//! run, with per-request percentiles and the ratios printed at the end.
//!
//! **Fixture.** 2,000,000 events in one collector database: 100,000 keys `dev/00000` to
//! `dev/99999` with 10 events each, interleaved with 1,000,000 events of the hot key `hot`; one
//! event per millisecond, ids in time order, `data` like `{"plan":"pro","n":7}` (the plan cycles,
//! so a key's newest `pro` event is up to two events back). The collector creates the file, the
//! rows are written into its `events` table with rusqlite in one transaction (`collector_state`
//! set to match), and the collector is started again on it: what it queries is its own schema
//! and indexes. Every request goes over one keep-alive loopback connection and is timed from
//! sending it to the last byte of the answer.
//!
//! * `latest`: `GET /v1/latest` with a prefix of 100 keys, and one default page (1,000 keys) of
//!   the whole key set from a random cursor; each also with `where=plan=pro`.
//! * `range`: `GET /v1/events?key=hot` over a random minute (30,000 events): 100 events, asc and
//!   desc, and the page after them (through `next_cursor`); and 100 events at a random depth of
//!   the key's whole history (no `from`/`to`), through a cursor, as a client paging through it
//!   all would ask.
//!
//! **Peer.** The same rows in a Tlytics-style table `(key, ts, data)` without the
//! `(key, ts_ns, id)` index, queried directly with rusqlite (no HTTP, so the ratio understates
//! ours): latest per key as `GROUP BY key` with `max(ts)`, a range as `WHERE key = ? AND ts
//! BETWEEN ? AND ? ORDER BY ts LIMIT 100`, later pages with `OFFSET`. Before timing, each
//! workload checks once that both answer the same ids.
//!
//! Run without `--bench` (as `cargo test --benches` does), the fixture is ten times smaller.
//!
//! `cargo bench --bench queries`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use accrue::collector::MetricsPipeline;
use accrue::collector::{Collector, CollectorBuilder};
use bytes::Bytes;
use criterion::{Criterion, SamplingMode};
use http_body_util::{BodyExt, Empty};
use rusqlite::{Connection, params};
use tokio::runtime::Runtime;

/// Events per `dev/` key.
const PER_KEY: usize = 10;
/// One event per millisecond; the hot key has every other one.
const STEP_NS: i64 = 1_000_000;
/// A range spans a minute: 30,000 events of the hot key.
const WINDOW_NS: i64 = 60_000_000_000;
/// The page of a range (the server's default).
const RANGE_PAGE: usize = 100;
/// The default page of `/v1/latest`.
const LATEST_PAGE: usize = 1_000;
/// Keys under one `dev/NNN` prefix.
const PREFIX_KEYS: usize = 100;
const PLANS: [&str; 3] = ["free", "pro", "team"];
/// Criterion's samples per benchmark. In flat sampling its measurement is this many calls of the
/// routine, the last ones: the table reports the requests they timed, not the warm-up's.
const SAMPLE_SIZE: usize = 10;

/// The fixture's size and where it lives.
struct Fixture {
    keys: usize,
    base_ns: i64,
    db: PathBuf,
    peer: PathBuf,
}

impl Fixture {
    /// Events of the hot key, as many as of all `dev/` keys together.
    fn hot(&self) -> usize {
        self.keys * PER_KEY
    }

    fn events(&self) -> usize {
        2 * self.hot()
    }

    fn span_ns(&self) -> i64 {
        self.events() as i64 * STEP_NS
    }
}

fn builder(db: &Path) -> CollectorBuilder {
    // No metrics pipeline: it would replay the whole fixture into the metrics store at start,
    // and the queries read only the event store.
    Collector::builder()
        .db(db)
        .port(0)
        .metrics_pipeline(MetricsPipeline::Off)
}

/// Event `i` (0-based; its id is `i + 1`): its key and data.
fn event(keys: usize, i: usize, key: &mut String, data: &mut String) {
    key.clear();
    data.clear();
    let j = i / 2;
    if i.is_multiple_of(2) {
        key.push_str("hot");
    } else {
        // 7919 is prime to 10^n, so every key gets exactly PER_KEY events, spread out.
        let _ = write!(key, "dev/{:05}", j * 7919 % keys);
    }
    let _ = write!(data, r#"{{"plan":"{}","n":{j}}}"#, PLANS[j % 3]);
}

/// Lets the collector create its database, writes the events into it, and copies them into the
/// peer's table.
fn fixture(rt: &Runtime, dir: &Path, keys: usize) -> Fixture {
    // A key's events are `keys` apart in `j`; with `keys % 3 == 1` they cycle through the plans.
    assert_eq!(keys % 3, 1);
    assert!((LATEST_PAGE * 2..=100_000).contains(&keys));
    let fx = Fixture {
        keys,
        base_ns: "2025-08-25T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_nanosecond() as i64,
        db: dir.join("accrue.db"),
        peer: dir.join("peer.db"),
    };
    rt.block_on(async {
        let server = builder(&fx.db).start().await.unwrap();
        server.stop().await.unwrap();
    });
    let mut c = Connection::open(&fx.db).unwrap();
    // One big transaction: a rollback journal holds only the few pages that existed; the
    // collector switches the file back to WAL when it opens it.
    let mode: String = c
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    c.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -524288;")
        .unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO events (id, key, ts_ns, ts_offset_s, data, received_ns)
                 VALUES (?1, ?2, ?3, 0, ?4, ?3)",
            )
            .unwrap();
        let (mut key, mut data) = (String::new(), String::new());
        for i in 0..fx.events() {
            event(keys, i, &mut key, &mut data);
            let ts = fx.base_ns + i as i64 * STEP_NS;
            insert
                .execute(params![i as i64 + 1, key, ts, data])
                .unwrap();
        }
        let mut state = tx
            .prepare("UPDATE collector_state SET value = ?2 WHERE name = ?1")
            .unwrap();
        assert_eq!(
            state
                .execute(params!["next_id", fx.events() as i64 + 1])
                .unwrap(),
            1
        );
        assert_eq!(
            state
                .execute(params!["event_count", fx.events() as i64])
                .unwrap(),
            1
        );
    }
    tx.commit().unwrap();
    drop(c);

    let p = Connection::open(&fx.peer).unwrap();
    p.execute_batch(
        "PRAGMA synchronous = OFF;
         CREATE TABLE tlytics (key TEXT NOT NULL, ts INTEGER NOT NULL, data TEXT);",
    )
    .unwrap();
    p.execute("ATTACH DATABASE ?1 AS ours", [fx.db.to_str().unwrap()])
        .unwrap();
    p.execute_batch(
        "INSERT INTO tlytics (rowid, key, ts, data)
             SELECT id, key, ts_ns, data FROM ours.events ORDER BY id;
         DETACH DATABASE ours;",
    )
    .unwrap();
    fx
}

/// A keep-alive HTTP/1.1 connection to the collector.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Self {
            sender,
            host: addr.to_string(),
        }
    }

    /// The whole body of a `200` answer.
    async fn get(&mut self, uri: &str) -> Bytes {
        self.sender.ready().await.unwrap();
        let req = hyper::Request::get(uri)
            .header("host", &self.host)
            .body(Empty::new())
            .unwrap();
        let res = self.sender.send_request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body));
        body
    }
}

/// The ids of a page and its cursor.
fn page(body: &[u8]) -> (Vec<i64>, Option<String>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let ids = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    (ids, v["next_cursor"].as_str().map(str::to_owned))
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    /// `/v1/latest?prefix=dev/NNN`: 100 keys.
    LatestPrefix { filter: bool },
    /// `/v1/latest?cursor=…`: one default page of the whole key set.
    LatestPage { filter: bool },
    /// Every key's latest event: all pages of `/v1/latest`, through the cursors, timed as one.
    LatestAll,
    /// `/v1/events?key=hot`: 100 events.
    Range { desc: bool, page: RangePage },
}

/// Which page of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangePage {
    /// The first of a random minute (`from` and `to`).
    First,
    /// The one after it, through its `next_cursor`.
    Next,
    /// One at a random depth of the hot key's whole history (no `from` or `to`), through a
    /// cursor made from the fixture's layout (`{ts_ns}_{id}` of the event before the page).
    Deep,
}

const WORKLOADS: [Workload; 11] = {
    use RangePage::{Deep, First, Next};
    [
        Workload::LatestPrefix { filter: false },
        Workload::LatestPrefix { filter: true },
        Workload::LatestPage { filter: false },
        Workload::LatestPage { filter: true },
        Workload::LatestAll,
        Workload::Range {
            desc: false,
            page: First,
        },
        Workload::Range {
            desc: false,
            page: Next,
        },
        Workload::Range {
            desc: true,
            page: First,
        },
        Workload::Range {
            desc: true,
            page: Next,
        },
        Workload::Range {
            desc: false,
            page: Deep,
        },
        Workload::Range {
            desc: true,
            page: Deep,
        },
    ]
};

const WHERE_SQL: &str = " AND json_extract(data, '$.plan') = 'pro'";

impl Workload {
    /// The criterion id.
    fn id(self) -> String {
        match self {
            Self::LatestPrefix { filter } => {
                format!("prefix{PREFIX_KEYS}{}", if filter { "+where" } else { "" })
            }
            Self::LatestPage { filter } => {
                format!("page{LATEST_PAGE}{}", if filter { "+where" } else { "" })
            }
            Self::LatestAll => "all".into(),
            Self::Range { desc, page } => format!(
                "{}{}",
                if desc { "desc" } else { "asc" },
                match page {
                    RangePage::First => "",
                    RangePage::Next => "/next",
                    RangePage::Deep => "/deep",
                }
            ),
        }
    }

    /// The row of the table.
    fn describe(self, fx: &Fixture) -> String {
        let filter = |f: bool| if f { ", where plan=pro" } else { "" };
        match self {
            Self::LatestPrefix { filter: f } => format!(
                "latest, prefix of {PREFIX_KEYS} keys (of {}k){}",
                fx.keys / 1000,
                filter(f)
            ),
            Self::LatestPage { filter: f } => format!(
                "latest, {LATEST_PAGE}-key page of all {}k keys{}",
                fx.keys / 1000,
                filter(f)
            ),
            Self::LatestAll => format!(
                "latest, all {}k keys (every page, through the cursors; one row = the sweep)",
                fx.keys / 1000
            ),
            Self::Range { desc, page } => {
                let dir = if desc { "desc" } else { "asc" };
                let (hot, all) = (fx.hot() / 1000, fx.events() / 1000);
                match page {
                    RangePage::First | RangePage::Next => format!(
                        "range {dir}, {RANGE_PAGE} in a random minute of the hot key \
                         ({hot}k of {all}k), {} page",
                        if page == RangePage::First {
                            "first"
                        } else {
                            "next"
                        }
                    ),
                    RangePage::Deep => format!(
                        "range {dir}, {RANGE_PAGE} at a random depth of the hot key's {hot}k \
                         (cursor, no from/to)"
                    ),
                }
            }
        }
    }

    fn rows(self, fx: &Fixture) -> usize {
        match self {
            Self::LatestPrefix { .. } => PREFIX_KEYS,
            Self::LatestPage { .. } => LATEST_PAGE,
            // The `dev/` keys and `hot`.
            Self::LatestAll => fx.keys + 1,
            Self::Range { .. } => RANGE_PAGE,
        }
    }

    /// A random question of this shape: a prefix number, the key index of a cursor, the start
    /// of a range, or the depth of a page (hot events before it, in its order).
    fn draw(self, fx: &Fixture, rng: &mut Rng) -> i64 {
        match self {
            Self::LatestPrefix { .. } => rng.below((fx.keys / PREFIX_KEYS) as u64) as i64,
            // The page after key `n` holds keys n+1 ..= n+LATEST_PAGE, all `dev/` keys.
            Self::LatestPage { .. } => rng.below((fx.keys - LATEST_PAGE) as u64) as i64,
            Self::LatestAll => 0,
            Self::Range {
                page: RangePage::Deep,
                ..
            } => rng.below((fx.hot() - RANGE_PAGE - 2) as u64) as i64,
            Self::Range { .. } => fx.base_ns + rng.below((fx.span_ns() - WINDOW_NS) as u64) as i64,
        }
    }
}

fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .unwrap()
        .to_string()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Asks the collector; returns the time of the (last) request and the ids it answered.
async fn ours(client: &mut Client, fx: &Fixture, w: Workload, n: i64) -> (Duration, Vec<i64>) {
    let where_ = |f: bool| if f { "&where=plan%3Dpro" } else { "" };
    if matches!(w, Workload::LatestAll) {
        let start = Instant::now();
        let mut ids = Vec::with_capacity(w.rows(fx));
        let mut uri = format!("/v1/latest?limit={LATEST_PAGE}");
        loop {
            let (page_ids, next) = page(&client.get(&uri).await);
            ids.extend(page_ids);
            match next {
                Some(c) => uri = format!("/v1/latest?limit={LATEST_PAGE}&cursor={c}"),
                None => break,
            }
        }
        let took = start.elapsed();
        assert_eq!(ids.len(), w.rows(fx));
        return (took, ids);
    }
    let mut uri = match w {
        Workload::LatestAll => unreachable!("answered above"),
        Workload::LatestPrefix { filter } => {
            format!("/v1/latest?prefix=dev/{n:03}{}", where_(filter))
        }
        Workload::LatestPage { filter } => format!(
            "/v1/latest?cursor={}{}",
            hex(&format!("dev/{n:05}")),
            where_(filter)
        ),
        Workload::Range {
            desc,
            page: RangePage::Deep,
        } => {
            // The hot key's event `k` is the fixture's event `2k`.
            let k = if desc { fx.hot() as i64 - 1 - n } else { n };
            format!(
                "/v1/events?key=hot&limit={RANGE_PAGE}&order={}&cursor={}_{}",
                if desc { "desc" } else { "asc" },
                fx.base_ns + 2 * k * STEP_NS,
                2 * k + 1
            )
        }
        Workload::Range { desc, .. } => format!(
            "/v1/events?key=hot&from={}&to={}&limit={RANGE_PAGE}&order={}",
            rfc3339(n),
            rfc3339(n + WINDOW_NS),
            if desc { "desc" } else { "asc" }
        ),
    };
    if let Workload::Range {
        page: RangePage::Next,
        ..
    } = w
    {
        let (_, cursor) = page(&client.get(&uri).await);
        let _ = write!(
            uri,
            "&cursor={}",
            cursor.expect("a range page has a cursor")
        );
    }
    let start = Instant::now();
    let body = client.get(&uri).await;
    let took = start.elapsed();
    let (ids, next) = page(&body);
    assert_eq!(ids.len(), w.rows(fx), "{uri}");
    assert_eq!(
        next.is_some(),
        !matches!(w, Workload::LatestPrefix { .. }),
        "{uri}"
    );
    (took, ids)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Asks the peer's table the same question.
fn peer(conn: &Connection, fx: &Fixture, w: Workload, n: i64) -> (Duration, Vec<i64>) {
    use rusqlite::types::Value as Sql;
    let filter = |f: bool| if f { WHERE_SQL } else { "" };
    let (sql, values) = match w {
        Workload::LatestPrefix { filter: f } => (
            format!(
                "SELECT rowid, key, max(ts), data FROM tlytics
                 WHERE ts <= ? AND key >= ? AND key < ?{} GROUP BY key ORDER BY key",
                filter(f)
            ),
            vec![
                Sql::Integer(now_ns()),
                Sql::Text(format!("dev/{n:03}")),
                Sql::Text(format!("dev/{:03}", n + 1)),
            ],
        ),
        Workload::LatestPage { filter: f } => (
            format!(
                "SELECT rowid, key, max(ts), data FROM tlytics
                 WHERE ts <= ?{} GROUP BY key ORDER BY key LIMIT ? OFFSET ?",
                filter(f)
            ),
            vec![
                Sql::Integer(now_ns()),
                Sql::Integer(LATEST_PAGE as i64),
                Sql::Integer(n + 1),
            ],
        ),
        Workload::LatestAll => (
            "SELECT rowid, key, max(ts), data FROM tlytics WHERE ts <= ? GROUP BY key ORDER BY key"
                .to_owned(),
            vec![Sql::Integer(now_ns())],
        ),
        Workload::Range { desc, page } => {
            let (from, to, offset) = match page {
                RangePage::First => (n, n + WINDOW_NS, 0),
                RangePage::Next => (n, n + WINDOW_NS, RANGE_PAGE as i64),
                RangePage::Deep => (i64::MIN, i64::MAX, n + 1),
            };
            (
                format!(
                    "SELECT rowid, key, ts, data FROM tlytics
                 WHERE key = ? AND ts BETWEEN ? AND ? ORDER BY ts {} LIMIT ? OFFSET ?",
                    if desc { "DESC" } else { "ASC" }
                ),
                vec![
                    Sql::Text("hot".into()),
                    Sql::Integer(from),
                    Sql::Integer(to),
                    Sql::Integer(RANGE_PAGE as i64),
                    Sql::Integer(offset),
                ],
            )
        }
    };
    let start = Instant::now();
    let mut stmt = conn.prepare_cached(&sql).unwrap();
    let ids: Vec<i64> = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), |r| {
            let _key = r.get_ref(1)?.as_str()?;
            let _data = r.get_ref(3)?.as_str_or_null()?;
            r.get(0)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(ids.len(), w.rows(fx), "{sql}");
    (took, ids)
}

/// SplitMix64: a fixed sequence of questions per run, without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Per workload and side, the requests each call of the routine timed.
type Samples = HashMap<(usize, &'static str), Vec<Vec<Duration>>>;

fn bench(
    c: &mut Criterion,
    rt: &Runtime,
    client: &mut Client,
    conn: &Connection,
    fx: &Fixture,
    samples: &mut Samples,
) {
    for (name, range) in [("latest", 0..5), ("range", 5..WORKLOADS.len())] {
        let mut group = c.benchmark_group(name);
        // The peer takes up to seconds a request: the same few iterations per sample.
        group.sampling_mode(SamplingMode::Flat);
        for i in range {
            let w = WORKLOADS[i];
            let mut rng = Rng(i as u64);
            group.bench_function(format!("{}/accrue", w.id()), |b| {
                b.iter_custom(|iters| {
                    let mut took = Vec::with_capacity(iters as usize);
                    for _ in 0..iters {
                        let n = w.draw(fx, &mut rng);
                        took.push(rt.block_on(ours(client, fx, w, n)).0);
                    }
                    let total = took.iter().sum();
                    samples.entry((i, "accrue")).or_default().push(took);
                    total
                })
            });
            let mut rng = Rng(i as u64);
            group.bench_function(format!("{}/peer", w.id()), |b| {
                b.iter_custom(|iters| {
                    let took: Vec<Duration> = (0..iters)
                        .map(|_| peer(conn, fx, w, w.draw(fx, &mut rng)).0)
                        .collect();
                    let total = took.iter().sum();
                    samples.entry((i, "peer")).or_default().push(took);
                    total
                })
            });
        }
        group.finish();
    }
}

/// p50, p99 (nearest rank) and mean in seconds of the requests of the measurement phase (the
/// last `SAMPLE_SIZE` calls), and how many there were.
fn stats(calls: &[Vec<Duration>]) -> (f64, f64, f64, usize) {
    let mut v: Vec<f64> = calls[calls.len().saturating_sub(SAMPLE_SIZE)..]
        .iter()
        .flatten()
        .map(Duration::as_secs_f64)
        .collect();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (rank(0.50), rank(0.99), mean, v.len())
}

fn ms(secs: f64) -> String {
    let ms = secs * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

fn report(fx: &Fixture, samples: &Samples, fill: Duration) {
    println!(
        "\n## accrue queries vs the naive peer ({}k events, filled in {:.1} s)\n",
        fx.events() / 1000,
        fill.as_secs_f64()
    );
    println!(
        "Per request, over criterion's measurement phase (n requests). accrue: over loopback \
         HTTP; peer: the same rows in an unindexed Tlytics-style table, rusqlite direct (with \
         n of 10 to 20, its p99 is its max).\n"
    );
    println!(
        "| workload | accrue p50 | p99 | mean | n | peer p50 | p99 | mean | n | ratio (p50) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, w) in WORKLOADS.iter().enumerate() {
        let (Some(a), Some(p)) = (samples.get(&(i, "accrue")), samples.get(&(i, "peer"))) else {
            continue;
        };
        let (a50, a99, amean, an) = stats(a);
        let (p50, p99, pmean, pn) = stats(p);
        println!(
            "| {} | {} | {} | {} | {an} | {} | {} | {} | {pn} | {:.0}x |",
            w.describe(fx),
            ms(a50),
            ms(a99),
            ms(amean),
            ms(p50),
            ms(p99),
            ms(pmean),
            p50 / a50
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) criterion runs each
    // benchmark once, and a tenth of the fixture is enough for that.
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let fx = fixture(&rt, dir.path(), if full { 100_000 } else { 10_000 });
    let fill = start.elapsed();
    eprintln!("fixture: {} events in {fill:.1?}", fx.events());

    let server = rt.block_on(builder(&fx.db).start()).unwrap();
    let mut client = rt.block_on(Client::connect(server.local_addr()));
    let conn =
        Connection::open_with_flags(&fx.peer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    // Both answer the same events.
    for (i, &w) in WORKLOADS.iter().enumerate() {
        let n = w.draw(&fx, &mut Rng(1000 + i as u64));
        let (_, a) = rt.block_on(ours(&mut client, &fx, w, n));
        let (_, p) = peer(&conn, &fx, w, n);
        assert_eq!(a, p, "{w:?} at {n}");
    }

    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut samples = Samples::new();
    bench(&mut c, &rt, &mut client, &conn, &fx, &mut samples);
    c.final_summary();
    drop(client);
    rt.block_on(server.stop()).unwrap();
    report(&fx, &samples, fill);
}
