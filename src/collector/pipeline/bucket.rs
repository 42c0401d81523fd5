//! The aggregation bucket of an event: one instant that lies in the same bucket as the event
//! for every configured granularity, in Unix seconds (bucket starts are whole seconds, and a
//! bucket of an event near the edges of the nanosecond range, such as the year starting
//! 1677-01-01 for an event in September 1677, starts outside that range).
//!
//! For an event at `t`, each granularity `g` has a bucket `[floor_g(t), next_g(t))`. Their
//! intersection is `[max floor, min next)`, and every instant in it floors to the same bucket
//! as `t` under every `g`. So `max floor` is a canonical representative: two events share an
//! aggregator key exactly when they share every bucket, and tracking the merged sample at that
//! instant writes into the same buckets as tracking each event at its own time would. Events
//! arriving together usually fall in the same intersection, so it is cached and most events
//! cost two comparisons.

use jiff::Timestamp;

use crate::time::{Calendar, Granularity, TimeError};

/// Computes representatives for one calendar and granularity list.
#[derive(Debug, Clone)]
pub(crate) struct Bucketer {
    calendar: Calendar,
    granularities: Vec<Granularity>,
}

/// The last intersection computed: `[start, end)` in Unix nanoseconds, saturated to the
/// `i64` range (which holds every event time), and its representative in Unix seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BucketCache(Option<(i64, i64, i64)>);

impl Bucketer {
    pub(crate) fn new(calendar: Calendar, granularities: Vec<Granularity>) -> Self {
        Self {
            calendar,
            granularities,
        }
    }

    /// The representative of the event time `unix_ns` (Unix nanoseconds), in Unix seconds.
    ///
    /// # Errors
    ///
    /// [`TimeError`] when a bucket boundary falls outside the supported years.
    pub(crate) fn bucket(&self, unix_ns: i64, cache: &mut BucketCache) -> Result<i64, TimeError> {
        if let Some((start, end, rep)) = cache.0
            && start <= unix_ns
            && unix_ns < end
        {
            return Ok(rep);
        }
        let t = Timestamp::from_nanosecond(i128::from(unix_ns))
            .expect("i64 nanoseconds are within jiff's range");
        if self.granularities.is_empty() {
            // No granularity: nothing is written, any representative will do.
            return Ok(t.as_second());
        }
        let (mut start, mut end) = (Timestamp::MIN, Timestamp::MAX);
        for &g in &self.granularities {
            start = start.max(self.calendar.floor(t, g)?);
            // A next bucket beyond the supported years leaves the end open.
            if let Ok(next) = self.calendar.next_bucket(t, g) {
                end = end.min(next);
            }
        }
        cache.0 = Some((nanos(start), nanos(end), start.as_second()));
        Ok(start.as_second())
    }
}

/// Unix nanoseconds, saturated to the `i64` range.
fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        nanos(s.parse::<Timestamp>().unwrap())
    }

    fn secs(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn grans(list: &[&str]) -> Vec<Granularity> {
        list.iter().map(|g| g.parse().unwrap()).collect()
    }

    #[test]
    fn representative_is_the_latest_bucket_start() {
        let b = Bucketer::new(
            Calendar::utc(),
            grans(&["1m", "1h", "1d", "1w", "1mo", "1q", "1y"]),
        );
        let mut c = BucketCache::default();
        assert_eq!(
            b.bucket(ns("2025-08-25T10:17:42.5Z"), &mut c).unwrap(),
            secs("2025-08-25T10:17:00Z")
        );
        // Cached: same minute, same answer.
        assert_eq!(
            b.bucket(ns("2025-08-25T10:17:59Z"), &mut c).unwrap(),
            secs("2025-08-25T10:17:00Z")
        );
        assert_eq!(
            b.bucket(ns("2025-08-25T10:18:00Z"), &mut c).unwrap(),
            secs("2025-08-25T10:18:00Z")
        );
    }

    #[test]
    fn non_nested_granularities_split_buckets_where_either_does() {
        // 1w (Monday) and 1mo do not nest: 2025-09-01 is a Monday and a month start, 2025-08-25
        // a Monday inside August.
        let b = Bucketer::new(Calendar::utc(), grans(&["1w", "1mo"]));
        let mut c = BucketCache::default();
        assert_eq!(
            b.bucket(ns("2025-08-30T12:00:00Z"), &mut c).unwrap(),
            secs("2025-08-25T00:00:00Z")
        );
        assert_eq!(
            b.bucket(ns("2025-09-03T12:00:00Z"), &mut c).unwrap(),
            secs("2025-09-01T00:00:00Z")
        );
        assert_eq!(
            b.bucket(ns("2025-10-02T12:00:00Z"), &mut c).unwrap(),
            secs("2025-10-01T00:00:00Z")
        );
        assert_eq!(
            b.bucket(ns("2025-10-07T12:00:00Z"), &mut c).unwrap(),
            secs("2025-10-06T00:00:00Z")
        );
    }

    #[test]
    fn every_representative_floors_like_its_event() {
        let cal = Calendar::from_name("America/New_York").unwrap();
        let gs = grans(&["15m", "1h", "1d", "1w", "1mo"]);
        let b = Bucketer::new(cal.clone(), gs.clone());
        let mut c = BucketCache::default();
        // Every 7 minutes over two months that include the November DST change.
        let start = ns("2025-10-20T00:00:00Z");
        for i in 0..(60 * 24 * 60 / 7) {
            let t = start + i * 7 * 60 * 1_000_000_000 + 123;
            let rep = b.bucket(t, &mut c).unwrap();
            let (tt, rt) = (
                Timestamp::from_nanosecond(t.into()).unwrap(),
                Timestamp::from_second(rep).unwrap(),
            );
            for &g in &gs {
                assert_eq!(
                    cal.floor(tt, g).unwrap(),
                    cal.floor(rt, g).unwrap(),
                    "{tt} {g}"
                );
            }
        }
    }

    #[test]
    fn buckets_at_the_edges_of_the_nanosecond_range_keep_their_real_start() {
        let b = Bucketer::new(Calendar::utc(), grans(&["1m", "1d", "1y"]));
        let mut c = BucketCache::default();
        // The earliest event time has a year bucket that starts before it can be held in
        // nanoseconds; the latest one a year bucket that ends after.
        let first = b.bucket(i64::MIN, &mut c).unwrap();
        assert_eq!(first, secs("1677-09-21T00:12:00Z"));
        let year = Bucketer::new(Calendar::utc(), grans(&["1y"]));
        let mut c = BucketCache::default();
        assert_eq!(
            year.bucket(i64::MIN, &mut c).unwrap(),
            secs("1677-01-01T00:00:00Z")
        );
        assert_eq!(
            year.bucket(i64::MIN + 1, &mut c).unwrap(),
            secs("1677-01-01T00:00:00Z")
        );
        assert_eq!(
            year.bucket(i64::MAX, &mut c).unwrap(),
            secs("2262-01-01T00:00:00Z")
        );
    }
}
