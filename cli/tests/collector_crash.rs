//! The crash test: the real `accrue` binary is SIGKILLed at a random moment while clients post
//! concurrently, then restarted on the same file. Every event that was answered `200` must be
//! there exactly once (durable acknowledgement), and the metrics
//! store must count every stored event exactly once (the pipeline's watermark and replay).

#![cfg(unix)]

#[path = "../../tests/collector_support/mod.rs"]
mod collector_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use collector_support::Client;

/// Starts `accrue serve` on a free port and returns it with the address it logged.
fn spawn_server(db: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args([
            "serve", "--port", "0", "--log", "info", "--flush", "200ms", "--db",
        ])
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start accrue serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not log its address");
    (child, addr.parse().unwrap())
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_200_loses_nothing() {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut sent_ids: HashSet<String> = HashSet::new();

    for round in 0..3 {
        let (mut child, addr) = spawn_server(&db);
        let client = Client { addr };
        let mut posters = Vec::new();
        for c in 0..6 {
            let acked = Arc::clone(&acked);
            posters.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for r in 0u64.. {
                    let ids: Vec<String> =
                        (0..25).map(|i| format!("r{round}-c{c}-{r}-{i}")).collect();
                    let body = format!(
                        "[{}]",
                        ids.iter()
                            .map(|id| format!(
                                r#"{{"key":"crash","id":"{id}","data":{{"round":{round}}}}}"#
                            ))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    sent.extend(ids.iter().cloned());
                    match client
                        .try_request("POST", "/events", body.into(), &[])
                        .await
                    {
                        Ok(resp) if resp.status == 200 => acked.lock().unwrap().extend(ids),
                        Ok(resp) => panic!("unexpected answer {}: {}", resp.status, resp.text()),
                        Err(_) => break, // killed
                    }
                }
                sent
            }));
        }
        let delay = 150 + rng.next(600);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL: no shutdown code runs
        child.wait().unwrap();
        for p in posters {
            sent_ids.extend(p.await.unwrap());
        }
        println!(
            "round {round}: killed after {delay} ms, {} acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Restart once more on the same file and read everything back through the API.
    let (mut child, addr) = spawn_server(&db);
    let client = Client { addr };
    let mut stored: HashMap<String, usize> = HashMap::new();
    for page in 1.. {
        let v = client
            .get(&format!("/view?page={page}&page_size=1000"))
            .await
            .json();
        let events = v["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            assert_eq!(e["key"], "crash");
            *stored.entry(e["data"]["round"].to_string()).or_default() += 1;
        }
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let max_id: i64 = conn
        .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))
        .unwrap();
    // Metrics: after the replay and one flush, every stored event is counted exactly once.
    let started = std::time::Instant::now();
    loop {
        let m = client.get("/metrics").await.text();
        let watermark: i64 = m
            .lines()
            .find_map(|l| l.strip_prefix("accrue_metrics_watermark "))
            .unwrap()
            .parse()
            .unwrap();
        if watermark >= max_id {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "metrics never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = jiff::Timestamp::now();
    let q = format!(
        "/v1/values?key=crash&granularity=1y&from={}&to={}",
        now - jiff::SignedDuration::from_hours(48),
        now
    );
    let v = client.get(&q).await.json();
    let counted: i64 = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap_or(0))
        .sum();
    child.kill().unwrap();
    child.wait().unwrap();

    let ids: Vec<String> = conn
        .prepare("SELECT event_id FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event was stored twice");
    assert_eq!(
        stored.values().sum::<usize>(),
        ids.len(),
        "/view and the table disagree"
    );
    assert_eq!(
        counted,
        ids.len() as i64,
        "the metrics store miscounts the stored events"
    );
    for id in &ids {
        assert!(sent_ids.contains(id), "stored an event nobody sent: {id}");
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 100,
        "too little load to prove anything: {}",
        acked.len()
    );
    for id in acked.iter() {
        assert!(unique.contains(id), "acknowledged event {id} was lost");
    }
    println!(
        "{} acknowledged, {} stored, all acknowledged present once",
        acked.len(),
        ids.len()
    );
}
