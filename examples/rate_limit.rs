//! An API rate limiter with `Retry-After`: per-client limits at two scales, a login
//! prerequisite, a password-reset cooldown, a maintenance window, and a reserved slot for an
//! expensive export that is released when the export fails.
//!
//! The clock is a `TestClock` so the run is deterministic and every answer is asserted; in a
//! server, build the store with the default system clock and share it in an `Arc`.
//!
//! Run: `cargo run --example rate_limit`

use std::time::Duration;

use accrue::{
    time::Unit,
    window::{Schedule, TestClock, WindowError, WindowStore},
};

/// What an HTTP handler would send back.
#[derive(Debug, PartialEq)]
enum Response {
    Ok,
    /// 429 with a `Retry-After` header in whole seconds (rounded up), when a wait helps.
    TooManyRequests {
        retry_after_secs: Option<u64>,
    },
    /// 403: a prerequisite is missing (no wait fixes it).
    Forbidden,
}

fn respond(result: Result<(), WindowError>) -> Response {
    match result {
        Ok(()) => Response::Ok,
        Err(WindowError::LimitExceeded(denied)) => match denied.retry_after {
            Some(wait) => Response::TooManyRequests {
                retry_after_secs: Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            },
            None => Response::Forbidden,
        },
        Err(other) => panic!("configuration error: {other}"),
    }
}

/// `GET /api/...` for one client: 3 requests per minute and 20 per hour, only after a login
/// in the last hour.
fn api_call(store: &WindowStore, client: &str) -> Response {
    let calls = format!("api:{client}");
    let login = format!("login:{client}");
    respond(
        store
            .limit()
            .within(&login, Duration::from_secs(3600))
            .at_most(&calls, 3, Unit::Minute)
            .at_most(&calls, 20, Unit::Hour)
            .check_and_record(&calls),
    )
}

fn main() -> Result<(), WindowError> {
    let clock = TestClock::at("2025-03-05T09:00:10Z".parse().unwrap());
    let store = WindowStore::builder()
        .for_rate_limiting() // 60 minute + 72 hour buckets per key
        .with_clock(clock.clone())
        .build()?;

    // No login yet: forbidden, and nothing is counted.
    assert_eq!(api_call(&store, "alice"), Response::Forbidden);
    store.record("login:alice");

    // Three calls in the minute pass; the fourth waits for the 09:00 bucket to leave the
    // one-minute window, at 09:01:00: 50 seconds.
    for _ in 0..3 {
        assert_eq!(api_call(&store, "alice"), Response::Ok);
    }
    let denied = api_call(&store, "alice");
    println!("alice, 4th call at 09:00:10 -> {denied:?}");
    assert_eq!(
        denied,
        Response::TooManyRequests {
            retry_after_secs: Some(50)
        }
    );

    // Other clients are limited separately.
    store.record("login:bob");
    assert_eq!(api_call(&store, "bob"), Response::Ok);

    // Retrying when told to succeeds. Keep going until the hourly limit bites.
    let mut minute = 1;
    let answer = loop {
        clock.set(format!("2025-03-05T09:{minute:02}:00Z").parse().unwrap());
        let r = api_call(&store, "alice");
        if r != Response::Ok {
            break r;
        }
        minute += 1;
    };
    // 3 in the first minute, then one per minute: the 20th passes at 09:17, the 21st is refused
    // at 09:18 by the hourly limit, whose window frees at 10:00:00.
    println!("alice at 09:{minute:02}:00 -> {answer:?}");
    assert_eq!(minute, 17 + 1);
    assert_eq!(
        store.query("api:alice").last_hours(1).sum(),
        Some(20),
        "exactly the limit was recorded"
    );
    assert_eq!(
        answer,
        Response::TooManyRequests {
            retry_after_secs: Some(42 * 60)
        }
    );

    // A password reset at most every 15 minutes, measured from the exact last reset.
    let reset = |store: &WindowStore| {
        respond(
            store
                .limit()
                .cooldown("reset:alice", Duration::from_secs(15 * 60))
                .check_and_record("reset:alice"),
        )
    };
    assert_eq!(reset(&store), Response::Ok);
    clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        reset(&store),
        Response::TooManyRequests {
            retry_after_secs: Some(300)
        }
    );

    // Batch jobs only outside office hours (in the store's zone, UTC here).
    let batch = respond(
        store
            .limit()
            .outside_of(Schedule::hours(9, 17)?)
            .check("batch"),
    );
    println!("batch job at {} -> {batch:?}", clock_now(&store));
    assert_eq!(
        batch,
        Response::TooManyRequests {
            retry_after_secs: Some(7 * 3600 + 32 * 60)
        }
    );

    // One export per hour: reserve the slot before the expensive work; a failed export gives
    // the slot back, a successful one records it. Concurrent callers never get two.
    let exports = store.limit().at_most("export:alice", 1, Unit::Hour);
    let slot = exports.reserve("export:alice")?;
    assert!(
        respond(exports.check("export:alice")) != Response::Ok,
        "slot is held"
    );
    drop(slot); // the export failed: dropping cancels
    let slot = exports.reserve("export:alice")?;
    slot.commit(); // this one succeeded
    assert_eq!(store.query("export:alice").last_hours(1).sum(), Some(1));
    let usage = exports.usage("export:alice")?;
    println!(
        "exports this hour: {}/{} ({} left)",
        usage.count, usage.limit, usage.remaining
    );
    assert_eq!((usage.count, usage.remaining), (1, 0));
    Ok(())
}

fn clock_now(store: &WindowStore) -> String {
    store.clock_now().to_string()
}
