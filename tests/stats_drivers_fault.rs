//! Fault tests of the server drivers: connections die mid-flush and the totals stay exact —
//! nothing lost, nothing counted twice.
//!
//! Every driver connects through a loopback proxy ([`drivers_common::Proxy`]), which lets
//! the tests find its server-side sessions and cut them:
//!
//! * **ambiguous acknowledgement**: the proxy forwards a large flush to the server and cuts
//!   the connection when the server answers — the server applied (and, for one-statement
//!   writes, committed) the batch but the client sees a lost connection. The retry carries
//!   the same batch id and must change nothing.
//! * **killed sessions**: while several tasks track and flush, a killer terminates the
//!   driver's server sessions every few milliseconds (`pg_terminate_backend`, MariaDB `KILL`,
//!   Redis `CLIENT KILL`; for MongoDB, which has no per-connection kill, the proxy drops the
//!   connections). Failed flushes keep their batch and retry it.
//!
//! Servers are never stopped, so other tests keep running.
#![cfg(all(
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "mongodb"
))]

mod drivers_common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accrue::metrics::{Buffering, FlushTask};
use accrue::metrics::{Driver, IdentifierMode, MetricsStore, Value};
use accrue::time::{Blanks, Granularity, Unit};
use drivers_common::{Proxy, service_url, unique, url_addr, url_via};
use serde_json::json;

const TASKS: u32 = 2;
const CALLS: u32 = 1_500;
const KEYS: u32 = 40;

fn day() -> jiff::Timestamp {
    "2025-03-01T00:00:00Z".parse().unwrap()
}

fn at(i: u32) -> jiff::Timestamp {
    day() + jiff::SignedDuration::from_secs(i64::from(i % 600) * 60)
}

fn store(driver: Arc<dyn Driver>, size: usize) -> MetricsStore {
    MetricsStore::builder(driver)
        .time_zone("UTC")
        .granularities(["1h", "1d"])
        .buffer(Buffering::On)
        .buffer_size(size)
        .buffer_async(FlushTask::None)
        .build()
        .unwrap()
}

/// Flushes until the driver takes everything (the fault may still be in effect briefly).
async fn drain(stats: &MetricsStore) {
    for attempt in 0.. {
        match stats.flush().await {
            Ok(_) if stats.pending() == 0 => match stats.flush().await {
                Ok(o) if o.batches == 0 => return,
                _ => {}
            },
            Ok(_) => {}
            Err(e) => {
                assert!(attempt < 200, "the driver never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sums `count` and `sum` over every key's day bucket, and the system row's count.
async fn totals(reader: &MetricsStore) -> (i64, i64, i64) {
    let (mut count, mut sum) = (0, 0);
    for k in 0..KEYS {
        let v = reader
            .values(
                &format!("fault::{k}"),
                day(),
                day(),
                Granularity::one(Unit::Day),
                Blanks::Keep,
            )
            .await
            .unwrap();
        let n = |f: &str| {
            v.values[0]
                .get(f)
                .and_then(Value::as_number)
                .map_or(0, |n| n.as_f64() as i64)
        };
        count += n("count");
        sum += n("sum");
    }
    let sys = reader
        .values(
            accrue::metrics::SYSTEM_KEY,
            day(),
            day(),
            Granularity::one(Unit::Day),
            Blanks::Keep,
        )
        .await
        .unwrap();
    let calls = sys.values[0]
        .get("count")
        .and_then(Value::as_number)
        .map_or(0, |n| n.as_f64() as i64);
    (count, sum, calls)
}

/// Cuts the connection when the server answers a large flush, `rounds` times; then checks
/// exact totals through a direct (un-proxied) driver.
async fn ambiguous_acks(proxy: &Proxy, via: Arc<dyn Driver>, direct: Arc<dyn Driver>) {
    let (count, n) = ambiguous_totals(proxy, via, direct).await;
    assert_eq!(count, n, "counts lost or doubled");
}

async fn ambiguous_totals(
    proxy: &Proxy,
    via: Arc<dyn Driver>,
    direct: Arc<dyn Driver>,
) -> (i64, i64) {
    let stats = store(via, 1_000_000);
    let rounds = 6;
    let mut failed = 0;
    let before = proxy.cuts();
    for round in 0..rounds {
        for i in 0..CALLS {
            stats
                .track(
                    &format!("fault::{}", i % KEYS),
                    at(i),
                    json!({"count": 1, "sum": i, "pad": {format!("f{}", i % 97): 1}}),
                )
                .await
                .unwrap();
        }
        // Two cuts: the driver's immediate retry is cut too, so the flush fails and the
        // store retries the batch later.
        proxy.arm_times(16 * 1024, 2);
        if stats.flush().await.is_err() {
            failed += 1;
        }
        drain(&stats).await;
        assert_eq!(
            proxy.cuts(),
            before + 2 * (round + 1),
            "the proxy did not cut round {round}"
        );
    }
    stats.shutdown().await.unwrap();
    let reader = store(direct, 1);
    let (count, sum, calls) = totals(&reader).await;
    let n = i64::from(rounds as u32 * CALLS);
    eprintln!(
        "{}: {rounds} flushes whose answer was cut twice after the server applied them, {failed} reported an error and were retried; totals {count}/{n}",
        reader.driver().description()
    );
    if count == n {
        assert_eq!(
            sum,
            i64::from(rounds as u32) * (0..i64::from(CALLS)).sum::<i64>()
        );
        assert_eq!(calls, n);
    }
    (count, n)
}

/// A driver that gives every write attempt a new batch id: what a store without idempotent
/// retries would do. The ambiguous-acknowledgement test must catch it (a control that the
/// fault really hits after the server applied the batch).
#[derive(Debug)]
struct FreshIds(Arc<dyn Driver>);

impl Driver for FreshIds {
    fn description(&self) -> String {
        self.0.description()
    }
    fn mode(&self) -> IdentifierMode {
        self.0.mode()
    }
    fn setup(&self) -> accrue::metrics::DriverFuture<'_, ()> {
        self.0.setup()
    }
    fn write<'a>(
        &'a self,
        batch: &'a accrue::metrics::WriteBatch,
    ) -> accrue::metrics::DriverFuture<'a, ()> {
        Box::pin(async move {
            let mut fresh = batch.clone();
            fresh.id.writer = unique("w");
            self.0.write(&fresh).await
        })
    }
    fn read<'a>(
        &'a self,
        rows: &'a [accrue::metrics::RowId],
    ) -> accrue::metrics::DriverFuture<'a, Vec<accrue::metrics::Values>> {
        self.0.read(rows)
    }
    fn applied<'a>(&'a self, writer: &'a str) -> accrue::metrics::DriverFuture<'a, Option<u64>> {
        self.0.applied(writer)
    }
}

/// Tracks from several tasks with small buffers while `kill` terminates the driver's
/// sessions; then checks exact totals through `direct`.
async fn killed_sessions<K, F>(via: Arc<dyn Driver>, direct: Arc<dyn Driver>, kill: K)
where
    K: Fn() -> F + Send + 'static,
    F: Future<Output = usize> + Send,
{
    let stats = store(via, 50);
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut killed = 0;
            while !stop.load(Ordering::SeqCst) {
                killed += kill().await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            killed
        })
    };
    let mut tasks = Vec::new();
    for w in 0..TASKS {
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CALLS {
                stats
                    .track(
                        &format!("fault::{}", (i + w) % KEYS),
                        at(i),
                        json!({"count": 1, "sum": i}),
                    )
                    .await
                    .unwrap();
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let killed = killer.await.unwrap();
    drain(&stats).await;
    stats.shutdown().await.unwrap();
    assert!(killed > 0, "the killer never found a session to kill");
    let reader = store(direct, 1);
    let (count, sum, calls) = totals(&reader).await;
    let n = i64::from(TASKS * CALLS);
    eprintln!(
        "{}: {killed} sessions killed during {n} tracks, {} size-triggered flushes failed and were retried; totals {count}/{n}",
        reader.driver().description(),
        stats.failed_flushes()
    );
    assert_eq!(
        count,
        n,
        "counts lost or doubled ({killed} sessions killed, {} failed flushes)",
        stats.failed_flushes()
    );
    assert_eq!(sum, i64::from(TASKS) * (0..i64::from(CALLS)).sum::<i64>());
    assert_eq!(calls, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_die_mid_flush() {
    let Some(url) = service_url("ACCRUE_PG_URL") else {
        return;
    };
    let proxy = Proxy::start(url_addr(&url, 5432)).await;
    let via_url = url_via(&url, proxy.addr, 5432);
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let open = |u: String, table: String, mode: IdentifierMode| async move {
        let d = accrue::metrics::PostgresDriver::connect(&u, &table, mode)
            .await
            .unwrap();
        d.setup().await.unwrap();
        Arc::new(d) as Arc<dyn Driver>
    };
    let mut tables = Vec::new();
    for mode in [IdentifierMode::Full, IdentifierMode::Separated] {
        for scenario in 0..2 {
            let table = unique("accrue_fault");
            tables.push(table.clone());
            let via = open(via_url.clone(), table.clone(), mode).await;
            let direct = open(url.clone(), table.clone(), mode).await;
            if scenario == 0 {
                ambiguous_acks(&proxy, via, direct).await;
                if mode == IdentifierMode::Full {
                    // Control: without batch ids the same faults double-count.
                    let table = unique("accrue_fault");
                    tables.push(table.clone());
                    let fresh =
                        Arc::new(FreshIds(open(via_url.clone(), table.clone(), mode).await));
                    let direct = open(url.clone(), table, mode).await;
                    let (count, n) = ambiguous_totals(&proxy, fresh, direct).await;
                    assert!(count > n, "the control did not double-count: {count}/{n}");
                }
            } else {
                let proxy = proxy.clone();
                let admin = admin.clone();
                killed_sessions(via, direct, move || {
                    let ports: Vec<i32> = proxy.upstream_ports().into_iter().map(i32::from).collect();
                    let admin = admin.clone();
                    async move {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE client_port = ANY($1) AND pid <> pg_backend_pid()) AS k",
                        )
                        .bind(ports)
                        .fetch_one(&admin)
                        .await
                        .unwrap() as usize
                    }
                })
                .await;
            }
        }
    }
    for table in tables {
        for t in [table.clone(), format!("{table}_batches")] {
            let sql = format!("DROP TABLE IF EXISTS \"{t}\"");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_die_mid_flush() {
    let Some(url) = service_url("ACCRUE_MYSQL_URL") else {
        return;
    };
    let proxy = Proxy::start(url_addr(&url, 3306)).await;
    let via_url = url_via(&url, proxy.addr, 3306);
    let admin = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    for scenario in 0..2 {
        let table = unique("accrue_fault");
        let open = |u: String| {
            let table = table.clone();
            async move {
                let d = accrue::metrics::MysqlDriver::connect(&u, &table, IdentifierMode::Partial)
                    .await
                    .unwrap();
                d.setup().await.unwrap();
                Arc::new(d) as Arc<dyn Driver>
            }
        };
        let via = open(via_url.clone()).await;
        let direct = open(url.clone()).await;
        if scenario == 0 {
            ambiguous_acks(&proxy, via, direct).await;
        } else {
            let proxy = proxy.clone();
            let admin = admin.clone();
            killed_sessions(via, direct, move || {
                let hosts: Vec<String> = proxy
                    .upstream_ports()
                    .into_iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect();
                let admin = admin.clone();
                async move {
                    let ids: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT CAST(ID AS SIGNED), CAST(HOST AS CHAR) FROM information_schema.PROCESSLIST",
                    )
                    .fetch_all(&admin)
                    .await
                    .unwrap();
                    let mut killed = 0;
                    for (id, host) in ids {
                        if hosts.contains(&host) {
                            let sql = format!("KILL {id}");
                            if sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.is_ok() {
                                killed += 1;
                            }
                        }
                    }
                    killed
                }
            })
            .await;
        }
        for t in [table.clone(), format!("{table}_batches")] {
            let sql = format!("DROP TABLE IF EXISTS `{t}`");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_die_mid_flush() {
    let Some(url) = service_url("ACCRUE_REDIS_URL") else {
        return;
    };
    let proxy = Proxy::start(url_addr(&url, 6379)).await;
    let via_url = url_via(&url, proxy.addr, 6379);
    let admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for scenario in 0..2 {
        let prefix = unique("accrue_t");
        let open = |u: String| {
            let prefix = prefix.clone();
            async move {
                let d = accrue::metrics::RedisDriver::builder()
                    .prefix(prefix)
                    .connect(&u)
                    .await
                    .unwrap();
                d.setup().await.unwrap();
                Arc::new(d) as Arc<dyn Driver>
            }
        };
        let via = open(via_url.clone()).await;
        let direct = open(url.clone()).await;
        if scenario == 0 {
            ambiguous_acks(&proxy, via, direct).await;
        } else {
            let proxy = proxy.clone();
            let admin = admin.clone();
            killed_sessions(via, direct, move || {
                let ports = proxy.upstream_ports();
                let mut admin = admin.clone();
                async move {
                    let mut killed = 0;
                    for p in ports {
                        let r: redis::RedisResult<i64> = redis::cmd("CLIENT")
                            .arg("KILL")
                            .arg("ADDR")
                            .arg(format!("127.0.0.1:{p}"))
                            .arg("SKIPME")
                            .arg("yes")
                            .query_async(&mut admin)
                            .await;
                        killed += usize::try_from(r.unwrap_or(0)).unwrap_or(0);
                    }
                    killed
                }
            })
            .await;
        }
        let mut admin = admin.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut admin)
            .await
            .unwrap();
        for k in keys {
            let _: i64 = redis::cmd("DEL")
                .arg(k)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_connections_die_mid_flush() {
    let Some(url) = service_url("ACCRUE_MONGO_URL") else {
        return;
    };
    let proxy = Proxy::start(url_addr(&url, 27017)).await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let via_url = format!(
        "{}{sep}directConnection=true",
        url_via(&url, proxy.addr, 27017)
    );
    let database = unique("accrue_t");
    for scenario in 0..2 {
        let coll = unique("fault");
        let open = |u: String| {
            let (database, coll) = (database.clone(), coll.clone());
            async move {
                let d = accrue::metrics::MongoDriver::builder()
                    .database(database)
                    .collection(coll)
                    .mode(IdentifierMode::Separated)
                    .connect(&u)
                    .await
                    .unwrap();
                d.setup().await.unwrap();
                Arc::new(d) as Arc<dyn Driver>
            }
        };
        let via = open(via_url.clone()).await;
        let direct = open(url.clone()).await;
        if scenario == 0 {
            ambiguous_acks(&proxy, via, direct).await;
        } else {
            let proxy = proxy.clone();
            killed_sessions(via, direct, move || {
                let proxy = proxy.clone();
                async move {
                    proxy.drop_all();
                    1
                }
            })
            .await;
        }
    }
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    client.database(&database).drop().await.unwrap();
}
