//! Exactly-once across a kill: per driver, three checkpointed writer processes feed one store
//! from a deterministic source; one is SIGKILLed mid-write and restarted under the same writer
//! id, another is SIGKILLed and replaced by a process with a new id that resumes from the dead
//! one's position. Every key's count and sum must come out exactly as the sources say.
//!
//! The writers are this test binary run again (`writer_child`, a no-op unless
//! `ACCRUE_KILL_CHILD` is set). Server drivers need their URL variables (`source
//! .ci/services.sh`); without them the test is skipped loudly, or fails under
//! `ACCRUE_REQUIRE_SERVICES=1`.
#![cfg(all(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "mongodb"
))]

mod drivers_common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accrue::metrics::Buffering;
use accrue::metrics::{
    Driver, IdentifierMode, MetricsError, MetricsStore, MongoDriver, MysqlDriver, PostgresDriver,
    RedisDriver, SYSTEM_KEY, SqliteDriver, Value,
};
use accrue::time::{Blanks, Granularity, Unit};
use drivers_common::{service_url, unique};
use serde_json::json;

/// Records per source.
const RECORDS: u64 = 20_000;
/// Records per commit.
const EVERY: u64 = 250;
/// Distinct metric keys (`k{i % KEYS}`).
const KEYS: u64 = 50;
/// Writer processes at once.
const WRITERS: usize = 3;
const AT: &str = "2025-01-15T10:20:00Z";
const DEADLINE: Duration = Duration::from_secs(90);
/// How long a writer waits between a commit's return and reporting it done.
const ACK_WINDOW: Duration = Duration::from_millis(30);

/// When the parent kills a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// While a commit is in flight that the destination does not hold yet (it may still store
    /// it before the kill lands: the report says which).
    InFlight,
    /// Once the destination holds the commit the writer started last, before the writer saw
    /// its acknowledgement: a batch stored that the dead writer never knew about.
    StoredUnacknowledged,
}

fn at() -> jiff::Timestamp {
    AT.parse().unwrap()
}

/// Opens the store a test runs on: `kind` and its `target` (file, table, prefix, collection).
async fn open(kind: &str, target: &str) -> Arc<dyn Driver> {
    let url = |var: &str| std::env::var(var).unwrap();
    let driver: Arc<dyn Driver> = match kind {
        "sqlite" => {
            Arc::new(SqliteDriver::open(target, "trifle_stats", IdentifierMode::Full).unwrap())
        }
        "postgres" => Arc::new(
            PostgresDriver::connect(&url("ACCRUE_PG_URL"), target, IdentifierMode::Full)
                .await
                .unwrap(),
        ),
        "mysql" => Arc::new(
            MysqlDriver::connect(&url("ACCRUE_MYSQL_URL"), target, IdentifierMode::Full)
                .await
                .unwrap(),
        ),
        "redis" => Arc::new(
            RedisDriver::builder()
                .prefix(target)
                .connect(&url("ACCRUE_REDIS_URL"))
                .await
                .unwrap(),
        ),
        "mongodb" => Arc::new(
            MongoDriver::builder()
                .database("accrue_kill")
                .collection(target)
                .connect(&url("ACCRUE_MONGO_URL"))
                .await
                .unwrap(),
        ),
        other => panic!("unknown driver {other}"),
    };
    driver
}

// ------------------------------------------------------------------------------ the writer

/// One writer process: resumes from the destination, replays its source from there and
/// commits every [`EVERY`] records with the source position as seq. Prints `KILLTEST commit
/// <seq>` before and `KILLTEST done <seq>` after each commit, for the parent to see what was
/// in flight when it killed it.
#[test]
fn writer_child() {
    if std::env::var("ACCRUE_KILL_CHILD").is_err() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let (kind, target, writer) = (
        var("ACCRUE_KILL_DRIVER"),
        var("ACCRUE_KILL_TARGET"),
        var("ACCRUE_KILL_WRITER"),
    );
    let resume_from = std::env::var("ACCRUE_KILL_RESUME_FROM").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stats = MetricsStore::builder(open(&kind, &target).await)
            .time_zone("UTC")
            .granularities(["1h"])
            .checkpointed(&writer)
            .build()
            .unwrap();
        let mut start = stats.resume().await.unwrap();
        if let Some(old) = &resume_from {
            start = start.max(stats.applied(old).await.unwrap());
        }
        let start = match std::env::var("ACCRUE_KILL_START") {
            Ok(forced) => forced.parse().unwrap(),
            Err(_) => start.unwrap_or(0),
        };
        println!("KILLTEST start {start}");
        for i in start..RECORDS {
            let key = format!("k{}", i % KEYS);
            stats
                .track(&key, at(), json!({"count": 1, "v": i}))
                .await
                .unwrap();
            let position = i + 1;
            if position % EVERY == 0 || position == RECORDS {
                println!("KILLTEST commit {position}");
                commit(&stats, position).await;
                // The moment a process dies after the destination stored its batch and before
                // it could record that anywhere: held long enough for the parent to kill it
                // there.
                tokio::time::sleep(ACK_WINDOW).await;
                println!("KILLTEST done {position}");
            }
        }
        stats.shutdown().await.unwrap();
    });
}

/// Commits `seq`, retrying (the same seq: the same batch) while the driver reports a
/// retryable error, e.g. SQLite busy with another process's transaction.
async fn commit(stats: &MetricsStore, seq: u64) {
    for _ in 0..600 {
        match stats.commit(seq).await {
            Ok(_) => return,
            Err(MetricsError::Driver(e)) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("commit {seq} failed: {e}"),
        }
    }
    panic!("commit {seq} still failing after 600 tries");
}

// ------------------------------------------------------------------------------ the parent

/// A running writer process and the `KILLTEST` lines it printed so far.
struct Writer {
    id: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Where the process replacing a dead writer under a new id starts its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Successor {
    /// At the dead id's position in the destination ([`MetricsStore::applied`]): exactly-once.
    AtStoredPosition,
    /// Control: after the last commit the dead writer saw acknowledged, i.e. what a writer
    /// without a read-back knows. The batch stored unacknowledged is written twice.
    AfterLastAcknowledged,
}

fn spawn(kind: &str, target: &str, id: &str, resume_from: Option<&str>) -> Writer {
    spawn_at(kind, target, id, resume_from, None)
}

fn spawn_at(
    kind: &str,
    target: &str,
    id: &str,
    resume_from: Option<&str>,
    start: Option<u64>,
) -> Writer {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env("ACCRUE_KILL_CHILD", "1")
        .env("ACCRUE_KILL_DRIVER", kind)
        .env("ACCRUE_KILL_TARGET", target)
        .env("ACCRUE_KILL_WRITER", id)
        .env_remove("ACCRUE_KILL_RESUME_FROM")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(old) = resume_from {
        cmd.env("ACCRUE_KILL_RESUME_FROM", old);
    }
    cmd.env_remove("ACCRUE_KILL_START");
    if let Some(start) = start {
        cmd.env("ACCRUE_KILL_START", start.to_string());
    }
    let mut child = cmd.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // The harness may print its `test writer_child ... ` on the same line first.
            if let Some(at) = line.find("KILLTEST ") {
                sink.lock().unwrap().push(line[at + 9..].to_owned());
            }
        }
    });
    Writer {
        id: id.to_owned(),
        child,
        lines,
    }
}

/// The seq of the commit `w` started last and has not reported done.
fn in_flight(w: &Writer) -> Option<u64> {
    let lines = w.lines.lock().unwrap();
    lines.last()?.strip_prefix("commit ")?.parse().ok()
}

/// Waits until `writer`'s mark reaches `seq`, then kills it at `moment`. Returns a line for
/// the report: what was in flight, and whether the driver had stored it.
async fn kill_mid_write(driver: &dyn Driver, w: &mut Writer, seq: u64, moment: Moment) -> String {
    let until = Instant::now() + DEADLINE;
    let mut reached = false;
    loop {
        let mark = driver.applied(&w.id).await.unwrap().unwrap_or(0);
        reached |= mark >= seq;
        if reached {
            // The line first: a mark read after it tells whether that commit is stored.
            // And the line again right before the kill: the writer is still inside that
            // commit (or its acknowledgement window) if it has not reported it done.
            if let Some(s) = in_flight(w) {
                let stored = driver.applied(&w.id).await.unwrap().unwrap_or(0) >= s;
                if stored == (moment == Moment::StoredUnacknowledged) && in_flight(w) == Some(s) {
                    break;
                }
            }
        }
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "writer {} exited before the kill",
            w.id
        );
        assert!(Instant::now() < until, "writer {} made no progress", w.id);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    w.child.kill().unwrap();
    let status = w.child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "writer {} finished before the kill ({status})",
            w.id
        );
    }
    // Lines already read; the pipe is closed by the kill.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mark = driver.applied(&w.id).await.unwrap().unwrap_or(0);
    let last = w.lines.lock().unwrap().last().cloned().unwrap_or_default();
    match in_flight(w) {
        Some(s) => {
            let stored = if mark >= s { "stored" } else { "not stored" };
            if moment == Moment::StoredUnacknowledged {
                assert!(mark >= s, "{}: commit {s} in flight, mark {mark}", w.id);
            }
            format!(
                "{}: killed with commit {s} in flight ({stored}), mark {mark}",
                w.id
            )
        }
        None => panic!("{}: killed after {last}, not mid-commit", w.id),
    }
}

fn wait(w: &mut Writer, until: Instant) {
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            assert!(status.success(), "writer {} failed: {status}", w.id);
            return;
        }
        if Instant::now() > until {
            let _ = w.child.kill();
            let _ = w.child.wait();
            panic!("writer {} did not finish in time", w.id);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The whole scenario on one store; panics on a wrong total.
async fn run(kind: &str, target: &str) {
    run_with(kind, target, Successor::AtStoredPosition).await;
}

async fn run_with(kind: &str, target: &str, successor_start: Successor) {
    let driver = open(kind, target).await;
    driver.setup().await.unwrap();
    let started = Instant::now();
    let run = unique("w");
    let ids: Vec<String> = (0..WRITERS).map(|i| format!("{run}-{i}")).collect();
    let mut writers: Vec<Writer> = ids.iter().map(|id| spawn(kind, target, id, None)).collect();

    // Writer 0: killed after its batch was stored, before it knew; restarted under its id.
    let report0 = kill_mid_write(
        &*driver,
        &mut writers[0],
        RECORDS / 8,
        Moment::StoredUnacknowledged,
    )
    .await;
    writers[0] = spawn(kind, target, &ids[0], None);
    // Writer 1: the same kill; replaced by a new id resuming from the dead one's position.
    let report1 = kill_mid_write(
        &*driver,
        &mut writers[1],
        RECORDS / 4,
        Moment::StoredUnacknowledged,
    )
    .await;
    let dead_mark = driver.applied(&ids[1]).await.unwrap();
    let successor = format!("{}-new", ids[1]);
    let acknowledged = writers[1]
        .lines
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("done ")?.parse::<u64>().ok());
    let forced =
        (successor_start == Successor::AfterLastAcknowledged).then(|| acknowledged.unwrap());
    writers[1] = spawn_at(kind, target, &successor, Some(&ids[1]), forced);
    // Writer 2: killed with a commit in flight, restarted under its id.
    let report2 = kill_mid_write(&*driver, &mut writers[2], RECORDS / 3, Moment::InFlight).await;
    writers[2] = spawn(kind, target, &ids[2], None);

    let until = Instant::now() + DEADLINE;
    for w in &mut writers {
        wait(w, until);
    }
    let first = |w: &Writer| w.lines.lock().unwrap().first().cloned().unwrap_or_default();
    eprintln!(
        "{kind}: {report0}, restarted: {}. {report1}, successor: {}. {report2}, restarted: {}. \
         {:.1} s",
        first(&writers[0]),
        first(&writers[1]),
        first(&writers[2]),
        started.elapsed().as_secs_f64()
    );

    // Every source read exactly once.
    let stats = MetricsStore::builder(driver.clone())
        .time_zone("UTC")
        .granularities(["1h"])
        .buffer(Buffering::Off)
        .build()
        .unwrap();
    let writers = WRITERS as u64;
    if successor_start == Successor::AfterLastAcknowledged {
        let system = stats
            .values(
                SYSTEM_KEY,
                at(),
                at(),
                Granularity::one(Unit::Hour),
                Blanks::Keep,
            )
            .await
            .unwrap();
        let count = Value::Map(system.values[0].clone()).to_json()["count"].clone();
        assert_eq!(
            count,
            json!(writers * RECORDS + EVERY),
            "{kind}: the control counts the unacknowledged batch twice"
        );
        return;
    }
    for k in 0..KEYS {
        let series = stats
            .values(
                &format!("k{k}"),
                at(),
                at(),
                Granularity::one(Unit::Hour),
                Blanks::Keep,
            )
            .await
            .unwrap();
        let got = Value::Map(series.values[0].clone()).to_json();
        let sum: u64 = (k..RECORDS).step_by(KEYS as usize).sum();
        assert_eq!(
            got,
            json!({"count": writers * RECORDS / KEYS, "v": writers * sum}),
            "{kind}: key k{k}"
        );
    }
    let system = stats
        .values(
            SYSTEM_KEY,
            at(),
            at(),
            Granularity::one(Unit::Hour),
            Blanks::Keep,
        )
        .await
        .unwrap();
    let system = Value::Map(system.values[0].clone()).to_json();
    assert_eq!(
        system["count"],
        json!(writers * RECORDS),
        "{kind}: system row"
    );
    // The marks: every live id at the end of its source, the dead one where it stopped.
    assert_eq!(driver.applied(&ids[0]).await.unwrap(), Some(RECORDS));
    assert_eq!(driver.applied(&ids[2]).await.unwrap(), Some(RECORDS));
    assert_eq!(driver.applied(&successor).await.unwrap(), Some(RECORDS));
    assert_eq!(driver.applied(&ids[1]).await.unwrap(), dead_mark);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_exactly_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.db");
    run("sqlite", path.to_str().unwrap()).await;
}

/// The control: a successor that starts after what the dead writer saw acknowledged, instead
/// of reading its position back, counts the batch stored at the kill twice. Shows that the
/// kill lands where a writer without the read-back duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_control_without_read_back_double_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.db");
    run_with(
        "sqlite",
        path.to_str().unwrap(),
        Successor::AfterLastAcknowledged,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exactly_once_across_kills() {
    if service_url("ACCRUE_PG_URL").is_none() {
        return;
    }
    let table = unique("accrue_kill");
    run("postgres", &table).await;
    let pool = sqlx::PgPool::connect(&std::env::var("ACCRUE_PG_URL").unwrap())
        .await
        .unwrap();
    for t in [table.clone(), format!("{table}_batches")] {
        let sql = format!("DROP TABLE IF EXISTS \"{t}\"");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_exactly_once_across_kills() {
    if service_url("ACCRUE_MYSQL_URL").is_none() {
        return;
    }
    let table = unique("accrue_kill");
    run("mysql", &table).await;
    let pool = sqlx::MySqlPool::connect(&std::env::var("ACCRUE_MYSQL_URL").unwrap())
        .await
        .unwrap();
    for t in [table.clone(), format!("{table}_batches")] {
        let sql = format!("DROP TABLE IF EXISTS `{t}`");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_exactly_once_across_kills() {
    let Some(url) = service_url("ACCRUE_REDIS_URL") else {
        return;
    };
    let prefix = unique("accrue_kill");
    run("redis", &prefix).await;
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_exactly_once_across_kills() {
    let Some(url) = service_url("ACCRUE_MONGO_URL") else {
        return;
    };
    let collection = unique("accrue_kill");
    run("mongodb", &collection).await;
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let db = client.database("accrue_kill");
    for c in [collection.clone(), format!("{collection}_writers")] {
        db.collection::<mongodb::bson::Document>(&c)
            .drop()
            .await
            .unwrap();
    }
}
