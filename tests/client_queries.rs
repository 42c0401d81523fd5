//! The client's read-back calls against a real, secured `accrue serve` on loopback:
//! range and latest queries with paging and predicates, deletes, the KV store with
//! compare-and-set, scopes and namespaces, and live feeds that reconnect across a server
//! restart without missing or repeating an event.

#![cfg(all(feature = "client", feature = "server"))]

mod auth_support;
mod client_support;

// `client_support` reaches the HTTP helpers as `super::collector_support`.
use auth_support::collector_support;

use std::time::Duration;

use accrue::client::{Client, ClientError, Event, Feed, LiveMessage, Order, Retry};
use auth_support::{ADMIN, TestServer, call, create_key, secured, secured_with};
use client_support::{FaultProxy, Mode};
use jiff::Timestamp;
use serde_json::json;

fn client(s: &TestServer, token: &str) -> Client {
    Client::builder(format!("http://{}", s.addr))
        .bearer_token(token)
        .retry(
            Retry::default()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(200)),
        )
        .call_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn minute(m: i64) -> Timestamp {
    Timestamp::from_second(1_756_116_000 + m * 60).unwrap() // 2025-08-25T10:00:00Z + m min
}

/// Sends `n` events of `key`, one a minute from minute `start`, with `data.seq` and `data.plan`.
async fn post(c: &Client, key: &str, start: i64, n: i64) {
    let events = (start..start + n)
        .map(|i| {
            Event::new(key.to_owned())
                .at(minute(i))
                .with("seq", i)
                .with("plan", if i % 3 == 0 { "pro" } else { "free" })
        })
        .collect();
    let r = c.send(events).await.unwrap();
    assert_eq!(r.delivered, n as u64);
}

fn seqs(events: &[accrue::client::StoredEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.data["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn ranges_page_both_ways_filter_and_collect() {
    let s = secured().await;
    let c = client(&s, ADMIN);
    post(&c, "orders", 0, 25).await;
    post(&c, "other", 0, 5).await;

    let page = c.events("orders").limit(10).page().await.unwrap();
    assert_eq!(seqs(&page.events), (0..10).collect::<Vec<_>>());
    let next = page.next_cursor.expect("more pages");
    let page2 = c
        .events("orders")
        .limit(10)
        .cursor(next)
        .page()
        .await
        .unwrap();
    assert_eq!(seqs(&page2.events), (10..20).collect::<Vec<_>>());
    assert_eq!(page2.events[0].key, "orders");
    assert_eq!(page2.events[0].at().unwrap(), minute(10));

    let all = c
        .events("orders")
        .limit(7)
        .collect(usize::MAX)
        .await
        .unwrap();
    assert_eq!(seqs(&all), (0..25).collect::<Vec<_>>());
    let desc = c
        .events("orders")
        .order(Order::Desc)
        .from(minute(5))
        .to(minute(9))
        .collect(100)
        .await
        .unwrap();
    assert_eq!(seqs(&desc), [9, 8, 7, 6, 5]);
    let pro = c
        .events("orders")
        .filter("plan=pro")
        .filter("seq>=10")
        .collect(100)
        .await
        .unwrap();
    assert_eq!(seqs(&pro), [12, 15, 18, 21, 24]);
    assert_eq!(c.events("orders").collect(3).await.unwrap().len(), 3);

    // The server's validation comes back typed, with its message.
    match c.events("orders").filter("seq<true").page().await {
        Err(ClientError::Rejected {
            status: 400,
            message,
        }) => {
            assert!(message.contains("compare numbers"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn latest_applies_the_predicate_before_choosing_and_pages_by_key() {
    let s = secured().await;
    let c = client(&s, ADMIN);
    for k in 0..12 {
        post(&c, &format!("sensor/{k:02}"), 0, 4).await; // seq 0..3; plan pro at 0 and 3
    }
    post(&c, "other/x", 0, 1).await;

    let latest = c
        .latest()
        .prefix("sensor/")
        .limit(5)
        .collect(100)
        .await
        .unwrap();
    assert_eq!(latest.len(), 12);
    assert!(latest.iter().all(|e| e.data["seq"] == 3), "{latest:?}");
    let keys: Vec<_> = latest.iter().map(|e| e.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "key order");

    // As of minute 2 the newest is seq 2, but the newest *pro* one is seq 0.
    let pro = c
        .latest()
        .prefix("sensor/0")
        .at(minute(2))
        .filter("plan=pro")
        .page()
        .await
        .unwrap();
    assert_eq!(pro.events.len(), 10);
    assert!(pro.events.iter().all(|e| e.data["seq"] == 0));
    assert!(pro.next_cursor.is_none());
    // `since` leaves out keys whose chosen event is older.
    let active = c
        .latest()
        .prefix("sensor/")
        .at(minute(2))
        .since(minute(1))
        .filter("plan=pro")
        .page()
        .await
        .unwrap();
    assert!(active.events.is_empty(), "{active:?}");
}

#[tokio::test]
async fn deletes_count_what_they_removed() {
    let s = secured().await;
    let c = client(&s, ADMIN);
    post(&c, "a/1", 0, 10).await;
    post(&c, "a/2", 0, 10).await;
    post(&c, "b", 0, 10).await;

    let first = c.events("b").limit(1).page().await.unwrap().events[0].id;
    assert!(c.delete_event(first).await.unwrap());
    assert!(!c.delete_event(first).await.unwrap(), "already gone");
    assert_eq!(
        c.delete_key("b")
            .from(minute(5))
            .to(minute(7))
            .send()
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        seqs(&c.events("b").collect(100).await.unwrap()),
        [1, 2, 3, 4, 8, 9]
    );
    assert_eq!(c.delete_prefix("a/").send().await.unwrap(), 20);
    assert!(c.events("a/1").collect(100).await.unwrap().is_empty());
    assert_eq!(c.events("b").collect(100).await.unwrap().len(), 6);
}

#[tokio::test]
async fn kv_values_round_trip_with_versions_and_compare_and_set() {
    let s = secured().await;
    let c = client(&s, ADMIN);
    let kv = c.kv("flags");
    assert_eq!(kv.get("checkout/new ui").await.unwrap(), None);
    // `0`: only if absent.
    assert_eq!(
        kv.put_if("checkout/new ui", &json!({"on": true}), 0)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        kv.put_if("checkout/new ui", &json!({"on": false}), 0).await,
        Err(ClientError::Conflict { .. })
    ));
    assert_eq!(
        kv.put("checkout/new ui", &json!({"on": true, "pct": 10}))
            .await
            .unwrap(),
        2
    );
    let e = kv.get("checkout/new ui").await.unwrap().unwrap();
    assert_eq!((e.key.as_str(), e.version), ("checkout/new ui", 2));
    assert_eq!(e.value, json!({"on": true, "pct": 10}));
    assert!(e.updated.parse::<Timestamp>().is_ok());
    match kv.put_if("checkout/new ui", &7, 1).await {
        Err(ClientError::Conflict { message }) => assert!(message.contains('2'), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(kv.put_if("checkout/new ui", &7, 2).await.unwrap(), 3);

    for i in 0..7 {
        kv.put(&format!("list/{i}"), &i).await.unwrap();
    }
    let listed = kv
        .list()
        .prefix("list/")
        .limit(3)
        .collect(100)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        (0..7).map(|i| json!(i)).collect::<Vec<_>>()
    );
    let page = kv.list().limit(2).page().await.unwrap();
    assert_eq!(page.items[0].key, "checkout/new ui");
    assert!(page.next_cursor.is_some());
    // Another namespace is another store.
    assert_eq!(c.kv("other").list().page().await.unwrap().items, []);

    assert!(matches!(
        kv.delete_if("list/0", 9).await,
        Err(ClientError::Conflict { .. })
    ));
    assert!(kv.delete_if("list/0", 1).await.unwrap());
    assert!(kv.delete("list/1").await.unwrap());
    assert!(!kv.delete("list/1").await.unwrap());
    assert_eq!(
        kv.list().prefix("list/").collect(100).await.unwrap().len(),
        5
    );
}

#[tokio::test]
async fn scopes_and_namespaces_come_back_as_typed_refusals() {
    let s = secured().await;
    let admin = client(&s, ADMIN);
    post(&admin, "team-a/x", 0, 3).await;
    post(&admin, "team-b/x", 0, 3).await;
    let (_, reader) = create_key(s.addr, &["read"], Some("team-a/")).await;
    let r = client(&s, &reader);

    assert_eq!(r.events("team-a/x").collect(10).await.unwrap().len(), 3);
    // The namespace narrows `latest` to the key's prefix.
    let latest = r.latest().collect(10).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].key, "team-a/x");
    for refused in [
        r.events("team-b/x").page().await.map(drop),
        r.kv("team-a/kv").put("k", &1).await.map(drop),
        r.delete_key("team-a/x").send().await.map(drop),
    ] {
        assert!(
            matches!(refused, Err(ClientError::Rejected { status: 403, .. })),
            "{refused:?}"
        );
    }
    let anonymous = Client::new(format!("http://{}", s.addr)).unwrap();
    assert!(matches!(
        anonymous.events("team-a/x").page().await,
        Err(ClientError::Rejected { status: 401, .. })
    ));
    assert!(matches!(
        anonymous.subscribe(Feed::Events).start().await,
        Err(ClientError::Rejected { status: 401, .. })
    ));
}

/// Reads `n` events from a subscription (skipping `Reconnected`), with a deadline.
async fn take_events(sub: &mut accrue::client::Subscription, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the feed delivers in time")
            .expect("the feed is open")
            .unwrap();
        match msg {
            LiveMessage::Event(e) => seqs.push(e.data["seq"].as_i64().unwrap()),
            LiveMessage::Reconnected { resumed } => assert!(resumed, "an events feed resumes"),
            other => panic!("{other:?}"),
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_feed_resumes_across_a_server_restart_without_gaps_or_repeats() {
    let s = TestServer::start().await;
    let port = s.addr.port();
    let c = client(&s, "unused-on-an-open-server");
    let mut sub = c
        .subscribe(Feed::Events)
        .prefix("app/")
        .start()
        .await
        .unwrap();
    post(&c, "app/a", 0, 50).await;
    post(&c, "elsewhere", 0, 5).await; // filtered out by the prefix
    assert_eq!(take_events(&mut sub, 50).await, (0..50).collect::<Vec<_>>());
    let before = sub.last_event_id().unwrap();

    // Stop the server; events are posted while the feed is down, then it comes back.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |b| b.port(port)).await;
    let c2 = client(&s, "unused-on-an-open-server");
    post(&c2, "app/a", 50, 50).await;
    let after = take_events(&mut sub, 50).await;
    assert_eq!(after, (50..100).collect::<Vec<_>>());
    assert!(sub.reconnects() >= 1);
    assert!(sub.last_event_id().unwrap() > before);

    // A new subscription can start where this one stopped.
    let mut resumed = c2
        .subscribe(Feed::Events)
        .prefix("app/")
        .after(before)
        .start()
        .await
        .unwrap();
    assert_eq!(
        take_events(&mut resumed, 50).await,
        (50..100).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_revoked_key_ends_its_subscription_with_a_typed_error() {
    let s = secured().await;
    let (id, token) = create_key(s.addr, &["read"], None).await;
    let c = client(&s, &token);
    let mut sub = c.subscribe(Feed::Events).start().await.unwrap();
    let r = call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let end = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Err(ClientError::Rejected { status: 401, .. }))),
        "{end:?}"
    );
    assert!(sub.next().await.is_none(), "the subscription ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_backs_off_and_gives_up_after_max_attempts() {
    // A server that answers every request with 503: each attempt is a transient failure.
    let busy = FaultProxy::start(None, Mode::Status(503, None)).await;
    let retry = Retry::default()
        .initial(Duration::from_millis(20))
        .max(Duration::from_millis(100));
    let c = Client::builder(busy.url())
        .retry(retry.max_attempts(Some(5)))
        .build()
        .unwrap();
    let err = c.subscribe(Feed::Flushes).start().await.unwrap_err();
    assert!(matches!(err, ClientError::TimedOut { .. }), "{err:?}");
    assert_eq!(
        busy.requests(),
        5,
        "exactly max_attempts connection attempts"
    );

    // `Retry-After` is honoured: two attempts one second apart.
    busy.set(Mode::Status(503, Some(1)));
    let c = Client::builder(busy.url())
        .retry(retry.max_attempts(Some(2)))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    assert!(c.subscribe(Feed::Events).start().await.is_err());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Queries retry within the call timeout, then report the last failure.
    let c = Client::builder(busy.url())
        .retry(retry)
        .call_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    busy.set(Mode::Status(503, None));
    let before = busy.requests();
    match c.events("k").page().await {
        Err(ClientError::TimedOut { last: Some(last) }) => assert!(last.contains("503"), "{last}"),
        other => panic!("{other:?}"),
    }
    let attempts = busy.requests() - before;
    assert!(
        (2..=40).contains(&attempts),
        "retried with backoff: {attempts}"
    );
    // A conditional write is not replayed after an ambiguous failure (500), only after a refusal.
    busy.set(Mode::Status(500, None));
    let before = busy.requests();
    assert!(c.kv("ns").put_if("k", &1, 0).await.is_err());
    assert_eq!(busy.requests() - before, 1);
    // Settings that cannot work are refused before any I/O.
    assert!(matches!(
        c.subscribe(Feed::Flushes).after(3).start().await,
        Err(ClientError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_back_the_metrics_it_wrote() {
    let s = secured_with(|b| {
        b.flush_interval(Duration::from_millis(50))
            .granularities(["1h", "1d"])
    })
    .await;
    let (_, writer) = create_key(s.addr, &["write"], None).await;
    let (_, reader) = create_key(s.addr, &["read"], None).await;
    let w = client(&s, &writer);
    let r = client(&s, &reader);
    post(&w, "orders", 0, 90).await; // 10:00 .. 11:29, seq 0..89
    let hour = "1h".parse::<accrue::time::Granularity>().unwrap();
    let read = || {
        r.values("orders")
            .from(minute(0))
            .to(minute(179))
            .granularity(hour)
            .send()
    };
    let timeline = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let t = read().await.unwrap();
            if t.counts().sum::<u64>() == 90 {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the metrics flush lands within seconds");
    assert_eq!(timeline.at, vec![minute(0), minute(60), minute(120)]);
    assert_eq!(timeline.counts().collect::<Vec<_>>(), vec![60, 30, 0]);
    assert_eq!(timeline.values[0]["data"]["seq"], (0..60).sum::<i64>());
    assert!(timeline.values[2].is_empty(), "an empty bucket is listed");
    let skipped = r
        .values("orders")
        .from(minute(0))
        .to(minute(179))
        .granularity(hour)
        .blanks(accrue::time::Blanks::Skip)
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.at, vec![minute(0), minute(60)]);
    match w.values("orders").send().await {
        Err(ClientError::Rejected { status: 403, .. }) => {}
        other => panic!("a write-only key cannot read metrics: {other:?}"),
    }
    match r.values("").send().await {
        Err(ClientError::Rejected {
            status: 400,
            message,
        }) => {
            assert!(message.contains("key"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_client_pages_through_view_newest_first_within_its_namespace() {
    let s = secured().await;
    let (_, writer) = create_key(s.addr, &["write"], None).await;
    let (_, reader) = create_key(s.addr, &["read"], None).await;
    let (_, shop) = create_key(s.addr, &["read"], Some("shop/")).await;
    let w = client(&s, &writer);
    post(&w, "shop/orders", 0, 25).await;
    post(&w, "billing", 100, 3).await;
    let r = client(&s, &reader);

    let first = r
        .view()
        .key("shop/orders")
        .page_size(10)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (first.page, first.page_size, first.total, first.total_pages),
        (1, 10, 25, 3)
    );
    let newest: Vec<i64> = first
        .events
        .iter()
        .map(|e| e.data["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(newest, (15..25).rev().collect::<Vec<_>>());
    assert_eq!(first.events[0].at().unwrap(), minute(24));
    assert!(first.events.iter().all(|e| e.key == "shop/orders"));
    let last = r
        .view()
        .key("shop/orders")
        .page_size(10)
        .page(3)
        .send()
        .await
        .unwrap();
    assert_eq!(last.events.len(), 5);
    assert_eq!(r.view().send().await.unwrap().total, 28, "every key");

    let namespaced = client(&s, &shop);
    assert_eq!(namespaced.view().send().await.unwrap().total, 25);
    match namespaced.view().key("billing").send().await {
        Err(ClientError::Rejected { status: 403, .. }) => {}
        other => panic!("a key outside the namespace is refused: {other:?}"),
    }
    match w.view().send().await {
        Err(ClientError::Rejected { status: 403, .. }) => {}
        other => panic!("a write-only key cannot read events: {other:?}"),
    }
}
