//! Memory per key, measured with a counting allocator: under tiny-counter's measured 2665 B,
//! and `memory_usage()` reports the real figure (tiny-counter reported its counts only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use accrue::window::{TestClock, WindowStore};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn memory_per_key_is_under_tiny_counters_and_reported_exactly() {
    const KEYS: usize = 10_000;
    let names: Vec<String> = (0..KEYS).map(|i| format!("event.{i}")).collect();
    let clock = TestClock::at("2025-03-05T12:00:00Z".parse().unwrap());
    for (preset, buckets) in [("default", 256usize), ("rate limiting", 132)] {
        let before = LIVE.load(Ordering::SeqCst);
        let b = WindowStore::builder().with_clock(clock.clone());
        let store = if buckets == 256 {
            b
        } else {
            b.for_rate_limiting()
        }
        .build()
        .unwrap();
        let empty = store.memory_usage();
        for n in &names {
            store.record(n);
        }
        store.reset_dirty();
        let measured = (LIVE.load(Ordering::SeqCst) - before) as f64;
        let reported = store.memory_usage() as f64;
        let per_key = measured / KEYS as f64;
        println!("{preset}: {per_key:.0} B per key measured, {reported:.0} B reported in all");
        assert!(per_key >= (buckets * 8) as f64, "{preset}: {per_key}");
        assert!(per_key <= 2665.0, "{preset}: {per_key}");
        // The report counts every byte we own (allocator overhead aside): within 3%.
        assert!(
            (reported - measured).abs() / measured < 0.03,
            "{preset}: reported {reported}, measured {measured}"
        );
        assert!(empty > 0);
        drop(store);
    }
}
