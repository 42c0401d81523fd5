//! `HttpSink` against a real collector: aggregated counts arrive as events with exact totals,
//! a stop writes the aggregator's final flush, an outage loses nothing, and what cannot be
//! written by the stop deadline is handed back.

#![cfg(all(feature = "client", feature = "server"))]

mod client_support;
mod collector_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use accrue::Aggregator;
use accrue::client::HttpSink;
use accrue::client::{Client, Retry};
use accrue::sink::Runner;
use client_support::{FaultProxy, Mode};
use collector_support::TestServer;

fn sums(events: &[serde_json::Value]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for e in events {
        *out.entry(e["key"].as_str().unwrap().to_owned())
            .or_default() += e["data"]["count"].as_u64().unwrap();
    }
    out
}

fn fast_client(url: String) -> Client {
    Client::builder(url)
        .retry(
            Retry::default()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(200)),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_counts_arrive_exactly_and_the_stop_writes_the_final_flush() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(Some(server.addr), Mode::Forward).await;
    let client = fast_client(proxy.url());
    let (agg, rx) = Aggregator::<String, u64>::builder()
        .flush_interval(Duration::from_millis(20))
        .channel_capacity(4)
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let sink = Runner::new(HttpSink::new(client.clone()).value_field("count"))
        .spawn_with_aggregator(&agg, rx);

    // An outage from the start: the first flushes meet it and are retried, batches wait (and
    // merge) meanwhile.
    proxy.set(Mode::Status(503, None));
    let adders: Vec<_> = (0..4)
        .map(|t| {
            let agg = agg.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    agg.add_ref(&format!("key{}", (i + t) % 5), 1).unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Mode::Forward);
    for a in adders {
        a.join().unwrap();
    }
    sink.stop();
    let report = sink.join().await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rejected, 0);
    let events = server.all_events().await;
    assert_eq!(events.len() as u64, report.items);
    let totals = sums(&events);
    assert_eq!(totals.len(), 5);
    assert!(totals.values().all(|n| *n == 16_000), "{totals:?}");
    assert!(
        proxy.requests() > report.writes,
        "the outage caused retries"
    );
    assert!(agg.is_closed(), "the stop shut the aggregator down");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_without_the_aggregator_ends_when_it_shuts_down() {
    let server = TestServer::start().await;
    let client = fast_client(format!("http://{}", server.addr));
    let (agg, rx) = Aggregator::<(&'static str, jiff::Timestamp), u64>::builder()
        .build()
        .unwrap();
    let sink = Runner::new(HttpSink::new(client.clone()).value_field("n")).spawn(rx);
    let at: jiff::Timestamp = "2025-08-25T10:00:00Z".parse().unwrap();
    agg.add(("bucketed", at), 7).unwrap();
    agg.add(("bucketed", at), 5).unwrap();
    tokio::task::spawn_blocking(move || agg.shutdown().unwrap())
        .await
        .unwrap();
    let report = sink.join().await;
    assert_eq!((report.items, report.is_complete()), (1, true));
    let events = server.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["key"], "bucketed");
    assert_eq!(events[0]["data"]["n"], 12);
    assert_eq!(
        events[0]["timestamp"], "2025-08-25T10:00:00Z",
        "the key's time"
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_written_by_the_stop_deadline_is_handed_back() {
    let proxy = FaultProxy::start(None, Mode::Status(503, None)).await;
    let client = fast_client(proxy.url());
    let (agg, rx) = Aggregator::<String, u64>::builder()
        .flush_interval(Duration::from_millis(10))
        .spawn()
        .unwrap();
    let agg = Arc::new(agg);
    let sink = Runner::new(HttpSink::new(client.clone()))
        .stop_timeout(Duration::from_millis(300))
        .spawn_with_aggregator(&agg, rx);
    let mut total = 0u64;
    for round in 0..50u64 {
        for k in 0..20u64 {
            agg.add(format!("k{k}"), round + k).unwrap();
            total += round + k;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sink.stop();
    let report = tokio::time::timeout(Duration::from_secs(10), sink.join())
        .await
        .expect("the stop deadline holds");
    assert!(!report.is_complete());
    assert_eq!(report.items, 0, "nothing was written");
    let handed_back: u64 = report
        .unsent
        .into_iter()
        .flat_map(|b| b.into_vec())
        .map(|(_, v)| v)
        .sum();
    assert_eq!(handed_back, total, "every value is in the report");
    let _ = client.close().await;
}
