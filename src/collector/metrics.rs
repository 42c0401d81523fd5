//! The server's own counters, served by `GET /metrics` in the Prometheus text format
//! (version 0.0.4). Hand-written: a dozen fixed series need no registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Counters updated by the handlers, the writer and the metrics pipeline.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// `(route, status)` → requests answered.
    pub(crate) requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Events in requests answered with 200.
    pub(crate) events_accepted: AtomicU64,
    /// Rejected requests by error message.
    pub(crate) rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Events written to the store.
    pub(crate) events_stored: AtomicU64,
    /// Events skipped because their `id` was already stored.
    pub(crate) events_duplicate: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) commit_latency: Histogram,
    /// Failed store operations (each is retried).
    pub(crate) store_errors: AtomicU64,
    pub(crate) retention_deleted: AtomicU64,
    pub(crate) metrics_flushes: AtomicU64,
    pub(crate) metrics_flush_latency: Histogram,
    pub(crate) metrics_flush_errors: AtomicU64,
    /// Events whose metrics could not be computed (kept in the event store, not aggregated).
    pub(crate) metrics_skipped: AtomicU64,
    /// Stored events aggregated again at start-up because the metrics store had not got them.
    pub(crate) metrics_replayed: AtomicU64,
    /// `data` fields left out of a flush because their sum left the range of `f64`.
    pub(crate) metrics_overflowed_fields: AtomicU64,
    /// Connections being served.
    pub(crate) connections_open: AtomicU64,
    /// Connections answered `503` (or closed) because the connection cap was reached.
    pub(crate) connections_refused: AtomicU64,
    /// Failed accepts (out of file descriptors or memory), each followed by a backoff.
    pub(crate) accept_errors: AtomicU64,
}

/// Point-in-time values owned by other parts of the server.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) queue_events: u64,
    pub(crate) queue_capacity_events: u64,
    pub(crate) queue_bytes: u64,
    pub(crate) queue_capacity_bytes: u64,
    pub(crate) stored_events: i64,
    pub(crate) store_healthy: bool,
    pub(crate) metrics_watermark: i64,
    pub(crate) aggregator: Option<crate::aggregator::Counters>,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Escapes a label value (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

impl Metrics {
    pub(crate) fn count_request(&self, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    pub(crate) fn count_rejected(&self, error: &'static str) {
        *self.rejected.lock().entry(error).or_default() += 1;
    }

    /// The exposition text.
    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP accrue_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE accrue_http_requests_total counter"
        );
        for ((route, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "accrue_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        counter(
            &mut out,
            "accrue_events_accepted_total",
            "Events in POST requests answered with 200.",
            load(&self.events_accepted),
        );
        let _ = writeln!(
            out,
            "# HELP accrue_requests_rejected_total POST requests refused, by error.\n\
             # TYPE accrue_requests_rejected_total counter"
        );
        for (error, n) in self.rejected.lock().iter() {
            let _ = writeln!(
                out,
                "accrue_requests_rejected_total{{error=\"{}\"}} {n}",
                label(error)
            );
        }
        counter(
            &mut out,
            "accrue_events_stored_total",
            "Events committed to the event store.",
            load(&self.events_stored),
        );
        counter(
            &mut out,
            "accrue_events_duplicate_total",
            "Events skipped because an event with the same id was already stored.",
            load(&self.events_duplicate),
        );
        counter(
            &mut out,
            "accrue_store_commits_total",
            "Event-store transactions committed (one per group of requests).",
            load(&self.commits),
        );
        self.commit_latency.render(
            &mut out,
            "accrue_store_commit_seconds",
            "Time to write and commit one group, retries included.",
        );
        counter(
            &mut out,
            "accrue_store_errors_total",
            "Failed event-store operations; each one is retried, nothing is dropped.",
            load(&self.store_errors),
        );
        counter(
            &mut out,
            "accrue_retention_deleted_total",
            "Events deleted by the retention policy.",
            load(&self.retention_deleted),
        );
        gauge(
            &mut out,
            "accrue_ingest_queue_events",
            "Events accepted but not yet committed.",
            g.queue_events as i64,
        );
        gauge(
            &mut out,
            "accrue_ingest_queue_capacity_events",
            "Events the ingest queue holds before answering 503.",
            g.queue_capacity_events as i64,
        );
        gauge(
            &mut out,
            "accrue_ingest_queue_bytes",
            "Bytes of accepted events not yet committed.",
            g.queue_bytes as i64,
        );
        gauge(
            &mut out,
            "accrue_ingest_queue_capacity_bytes",
            "Bytes the ingest queue holds before answering 503.",
            g.queue_capacity_bytes as i64,
        );
        gauge(
            &mut out,
            "accrue_stored_events",
            "Events in the event store.",
            g.stored_events,
        );
        gauge(
            &mut out,
            "accrue_store_healthy",
            "1 while the last event-store operation succeeded.",
            i64::from(g.store_healthy),
        );
        counter(
            &mut out,
            "accrue_metrics_flushes_total",
            "Flushes of aggregated metrics into the metrics store.",
            load(&self.metrics_flushes),
        );
        self.metrics_flush_latency.render(
            &mut out,
            "accrue_metrics_flush_seconds",
            "Time to write one aggregated flush into the metrics store.",
        );
        counter(
            &mut out,
            "accrue_metrics_flush_errors_total",
            "Failed metrics-store flushes; each one is retried with the same data.",
            load(&self.metrics_flush_errors),
        );
        counter(
            &mut out,
            "accrue_metrics_skipped_events_total",
            "Stored events the metrics store refused (for example a reserved key).",
            load(&self.metrics_skipped),
        );
        gauge(
            &mut out,
            "accrue_http_connections",
            "Connections being served.",
            i64::try_from(load(&self.connections_open)).unwrap_or(i64::MAX),
        );
        counter(
            &mut out,
            "accrue_http_connections_refused_total",
            "Connections refused with 503 because the connection cap was reached.",
            load(&self.connections_refused),
        );
        counter(
            &mut out,
            "accrue_http_accept_errors_total",
            "Failed accepts (no file descriptors or memory left), each followed by a backoff.",
            load(&self.accept_errors),
        );
        counter(
            &mut out,
            "accrue_metrics_overflowed_fields_total",
            "Data fields left out of a flush window's metrics because their sum left the range \
             of a 64-bit float (the count and the other fields were written).",
            load(&self.metrics_overflowed_fields),
        );
        counter(
            &mut out,
            "accrue_metrics_replayed_events_total",
            "Stored events replayed into the metrics pipeline at start-up (after a crash).",
            load(&self.metrics_replayed),
        );
        gauge(
            &mut out,
            "accrue_metrics_watermark",
            "Highest event id whose metrics are in the metrics store.",
            g.metrics_watermark,
        );
        if let Some(c) = &g.aggregator {
            counter(
                &mut out,
                "accrue_aggregator_adds_total",
                "Events added to the aggregator.",
                c.adds,
            );
            counter(
                &mut out,
                "accrue_aggregator_flushes_total",
                "Aggregator flush passes.",
                c.flushes,
            );
            counter(
                &mut out,
                "accrue_aggregator_items_sent_total",
                "Aggregated (key, bucket) items handed to the metrics store.",
                c.items_sent,
            );
            gauge(
                &mut out,
                "accrue_aggregator_pending_keys",
                "(key, bucket) pairs waiting for the next flush.",
                c.pending_keys as i64,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_labels() {
        let m = Metrics::default();
        m.count_request("/events", 200);
        m.count_request("/events", 200);
        m.count_rejected("Invalid \"JSON\"");
        m.commit_latency.observe(Duration::from_micros(700));
        m.commit_latency.observe(Duration::from_secs(60));
        let text = m.render(&Gauges {
            queue_events: 3,
            ..Gauges::default()
        });
        assert!(text.contains("accrue_http_requests_total{route=\"/events\",status=\"200\"} 2\n"));
        assert!(text.contains("accrue_requests_rejected_total{error=\"Invalid \\\"JSON\\\"\"} 1"));
        assert!(text.contains("accrue_store_commit_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("accrue_store_commit_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("accrue_store_commit_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("accrue_store_commit_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("accrue_store_commit_seconds_count 2\n"));
        assert!(text.contains("accrue_ingest_queue_events 3\n"));
        // Every sample line is `name[{labels}] value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
