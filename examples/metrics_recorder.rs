//! Any Rust code instrumented with the `metrics` crate feeds accrue: the [`Recorder`] merges
//! `counter!` / `gauge!` / `histogram!` updates in the aggregator (counters sum, gauges keep
//! the last value, histograms keep count/sum/min/max), and a sink writes every flush out —
//! here `HttpSink`, to the collector through the batching client, one event per metric (a
//! `MetricsSink` would write into a metrics store instead). Several threads record; the example
//! checks the totals the collector stored.
//!
//! Run: `cargo run --example metrics_recorder --features client,metrics`

use std::collections::HashMap;
use std::time::Duration;

use accrue::client::HttpSink;
use accrue::client::{Client, Recorder};
use accrue::collector::Collector;
use accrue::sink::Runner;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let collector = Collector::builder()
        .db(dir.path().join("events.db"))
        .port(0)
        .start()
        .await?;
    let url = format!("http://{}", collector.local_addr());
    let client = Client::new(&url)?;

    // The recorder flushes every 100 ms; the sink posts each flush to the collector.
    let (recorder, rx) = Recorder::builder()
        .flush_interval(Duration::from_millis(100))
        .build()?;
    let sink = Runner::new(HttpSink::new(client.clone()))
        .spawn_with_aggregator(&recorder.aggregator(), rx);
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;

    // The application: four workers handling requests.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                for i in 0..2_500u64 {
                    let route = if i % 5 == 0 { "/login" } else { "/home" };
                    metrics::counter!("http_requests", "route" => route).increment(1);
                    metrics::histogram!("latency_ms").record((i % 100) as f64);
                    if i % 500 == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                metrics::gauge!("worker_done").increment(1.0);
                let _ = w;
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    metrics::gauge!("queue_depth").set(42.0);

    // Stop: the sink shuts the aggregator down and writes its final flush.
    sink.stop();
    let report = sink.join().await;
    assert!(report.is_complete(), "{report:?}");
    client.close().await?;

    // What the collector stored: one event per metric per flush; add them up.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let view: Value = reqwest::get(format!("{url}/view?page_size=1000"))
        .await?
        .json()
        .await?;
    let mut sums: HashMap<String, f64> = HashMap::new();
    let mut last: HashMap<String, (jiff::Timestamp, f64)> = HashMap::new();
    let (mut hist_min, mut hist_max) = (f64::MAX, f64::MIN);
    for e in view["events"].as_array().expect("events") {
        let key = e["key"].as_str().unwrap_or_default().to_owned();
        let d = &e["data"];
        if let Some(n) = d["count"].as_f64() {
            *sums.entry(key.clone()).or_default() += n;
        }
        if let Some(s) = d["sum"].as_f64() {
            *sums.entry(format!("{key}.sum")).or_default() += s;
            hist_min = hist_min.min(d["min"].as_f64().unwrap_or(f64::MAX));
            hist_max = hist_max.max(d["max"].as_f64().unwrap_or(f64::MIN));
        }
        // Counters are added up under `value`; a gauge's `value` is its latest reading.
        if let Some(v) = d["value"].as_f64()
            && key.starts_with("http_requests")
        {
            *sums.entry(key.clone()).or_default() += v;
        } else if let Some(v) = d["value"].as_f64() {
            let ts: jiff::Timestamp = e["timestamp"].as_str().unwrap_or_default().parse()?;
            let newest = last.get(&key).is_none_or(|(t, _)| *t < ts);
            if newest {
                last.insert(key, (ts, v));
            }
        }
    }
    println!("sums: {sums:?}");
    println!("gauges: {last:?}");
    assert_eq!(sums["http_requests{route=/login}"], 2_000.0);
    assert_eq!(sums["http_requests{route=/home}"], 8_000.0);
    assert_eq!(sums["latency_ms"], 10_000.0, "histogram count");
    assert_eq!(
        sums["latency_ms.sum"],
        4.0 * 25.0 * 4_950.0,
        "histogram sum"
    );
    assert_eq!((hist_min, hist_max), (0.0, 99.0));
    assert_eq!(last["worker_done"].1, 4.0);
    assert_eq!(last["queue_depth"].1, 42.0);

    collector.stop().await?;
    println!("ok");
    Ok(())
}
