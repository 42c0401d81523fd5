//! Load generator for `accrue serve`: N concurrent keep-alive HTTP/1.1 clients post batches of
//! events for a fixed time, then it prints events/s and the latency percentiles.
//!
//! ```sh
//! cargo run --release -- serve --db /tmp/load.db &      # the server under test
//! cargo run --release --example loadgen -- --addr 127.0.0.1:8081 --clients 32 --batch 100 --secs 10
//! ```
//!
//! Without `--addr` it starts a collector in-process on a temporary database (same process,
//! same cores). Every answer must be a 200 (or a 503, which is counted and retried after its
//! `Retry-After`); anything else aborts the run. At the end it checks the server's `/view`
//! total grew by exactly the number of events acknowledged (use a fresh database, or a server
//! nobody else writes to).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

#[derive(Debug)]
struct Args {
    addr: Option<SocketAddr>,
    clients: usize,
    batch: usize,
    secs: u64,
    path: String,
    ids: bool,
    ack: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: None,
        clients: 32,
        batch: 100,
        secs: 10,
        path: "/events".into(),
        ids: false,
        ack: "durable".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = Some(val().parse().expect("--addr host:port")),
            "--clients" => a.clients = val().parse().expect("--clients N"),
            "--batch" => a.batch = val().parse().expect("--batch N"),
            "--secs" => a.secs = val().parse().expect("--secs N"),
            "--path" => a.path = val(),
            "--ids" => a.ids = true,
            "--ack" => a.ack = val(),
            "--help" | "-h" => {
                println!(
                    "loadgen [--addr HOST:PORT] [--clients 32] [--batch 100] [--secs 10] \
                     [--path /events|/batch] [--ids] [--ack durable|queued (in-process only)]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One request body; with `--ids` every event gets a unique id.
fn body(args: &Args, client: usize, round: u64) -> Bytes {
    const PAGES: [&str; 4] = ["home", "pricing", "docs", "blog"];
    let mut s = String::with_capacity(args.batch * 90);
    s.push_str(if args.path == "/batch" {
        "{\"events\":["
    } else {
        "["
    });
    for i in 0..args.batch {
        if i > 0 {
            s.push(',');
        }
        let key = ["page_view", "click", "signup", "api_call"][i % 4];
        s.push_str(&format!(
            r#"{{"key":"{key}","data":{{"page":"{}","ms":{},"client":{client}}}"#,
            PAGES[(i / 4) % 4],
            (i * 7) % 250
        ));
        if args.ids {
            s.push_str(&format!(r#","id":"{client}-{round}-{i}""#));
        }
        s.push('}');
    }
    s.push_str(if args.path == "/batch" { "]}" } else { "]" });
    Bytes::from(s)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn send(
    sender: &mut Sender,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> (u16, Bytes) {
    sender.ready().await.expect("connection ready");
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let res = sender.send_request(req).await.expect("request");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

async fn total(addr: SocketAddr) -> u64 {
    let mut s = connect(addr).await;
    let (_, body) = send(&mut s, addr, "GET", "/view?page_size=1", Bytes::new()).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("view JSON");
    v["total"].as_u64().expect("total")
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server) = match args.addr {
        Some(addr) => (addr, None),
        None => {
            let server = accrue::collector::Collector::builder()
                .db(dir.path().join("load.db"))
                .port(0)
                .ack(args.ack.parse().expect("--ack durable|queued"))
                .start()
                .await
                .expect("start the collector");
            (server.local_addr(), Some(server))
        }
    };
    let before = total(addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let args = Arc::new(args);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (stop, busy, args) = (Arc::clone(&stop), Arc::clone(&busy), Arc::clone(&args));
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut events = 0u64;
            let bodies: Vec<Bytes> = (0..8).map(|r| body(&args, c, r)).collect();
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let b = if args.ids {
                    body(&args, c, round)
                } else {
                    bodies[round as usize % bodies.len()].clone()
                };
                round += 1;
                let t = Instant::now();
                let (status, resp) = send(&mut sender, addr, "POST", &args.path, b).await;
                match status {
                    200 => {
                        latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        events += args.batch as u64;
                    }
                    503 => {
                        busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&resp)),
                }
            }
            (events, latencies_us)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut events = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (e, l) = t.await.unwrap();
        events += e;
        lat.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let after = total(addr).await;
    println!(
        "{} clients, batches of {} to {} for {:.1} s: {} events acknowledged, {:.0} events/s, \
         {:.0} requests/s; latency ms p50 {:.2} p99 {:.2} max {:.2}; 503s: {}",
        args.clients,
        args.batch,
        args.path,
        elapsed,
        events,
        events as f64 / elapsed,
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        busy.load(Ordering::Relaxed),
    );
    if let Some(server) = server {
        server.stop().await.expect("stop");
    }
    // In durable mode every acknowledged event is committed before its 200.
    if args.ack == "durable" {
        assert!(
            after - before >= events,
            "the server stores fewer events ({}) than it acknowledged ({events})",
            after - before
        );
    }
}
