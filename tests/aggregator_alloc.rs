//! Zero allocations per add for an existing key, counted with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use accrue::Aggregator;

struct Counting;

thread_local! {
    // Only the measured thread counts, into its own counter: the harness allocates on its own
    // threads, and tests run in parallel.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|n| n.set(n.get() + 1));
    }
}

// The test crate (not the library, which forbids unsafe code) wraps the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get) - before
}

#[test]
fn adds_to_existing_keys_allocate_nothing() {
    let (ints, _rx1) = Aggregator::<u64, u64>::builder().build().unwrap();
    let (strings, _rx2) = Aggregator::<String, u64>::builder().build().unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("metric.{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        ints.add(i as u64, 1).unwrap();
        strings.add_ref(name.as_str(), 1).unwrap();
    }

    let n = allocations_during(|| {
        for round in 0..100u64 {
            for i in 0..1000u64 {
                ints.add(i, round).unwrap();
                ints.try_add(i, 1).unwrap();
            }
        }
    });
    assert_eq!(n, 0, "u64 keys: allocations on the hit path");

    let n = allocations_during(|| {
        for _ in 0..100 {
            for name in &names {
                strings.add_ref(name.as_str(), 1).unwrap();
            }
        }
    });
    assert_eq!(n, 0, "String keys via add_ref: allocations on the hit path");
    assert_eq!(strings.get("metric.7"), Some(101));

    // A new key through add_ref allocates (its String, maybe table growth); an existing one
    // through the owned `add` drops the caller's String, which it allocated, not us.
    let n = allocations_during(|| strings.add_ref("metric.new", 1).unwrap());
    assert!(n >= 1);
}

#[test]
fn local_handle_hits_and_steady_state_spills_allocate_nothing() {
    let (agg, _rx) = Aggregator::<String, u64>::builder()
        .local_capacity(256)
        .build()
        .unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("metric.{i}")).collect();
    let local = agg.local();
    for name in &names {
        local.add_ref(name.as_str(), 1).unwrap(); // new to the handle: clones the key
    }
    let n = allocations_during(|| {
        for _ in 0..100 {
            for name in &names {
                local.add_ref(name.as_str(), 1).unwrap();
            }
        }
    });
    assert_eq!(n, 0, "String keys: hits in the handle's table");
    assert_eq!(agg.get("metric.7"), Some(101));

    // Spills move keys into the shards; with keys that need no allocation (u64), a steady state
    // of spills on the add path and explicit ones allocates nothing: the handle's table, its
    // spill scratch and the shard tables are reused. (A `String` key that comes back to a
    // handle after a spill is cloned again, once, as after a flush.)
    let (agg, _rx) = Aggregator::<u64, u64>::builder()
        .local_capacity(256)
        .build()
        .unwrap();
    let local = agg.local();
    let round = || {
        for k in 0..1000u64 {
            local.add(k, 1).unwrap();
        }
        local.spill();
    };
    round();
    round();
    let n = allocations_during(|| (0..20).for_each(|_| round()));
    assert_eq!(n, 0, "u64 keys: spills of known keys");
    assert_eq!(agg.get(&7), Some(22));
}

#[test]
fn a_new_handle_reuses_a_dropped_handles_table() {
    let (agg, _rx) = Aggregator::<u64, u64>::builder().build().unwrap();
    // One handle per short-lived task: the first grows its table, the ones after it reuse it.
    let task = |base: u64| {
        let local = agg.local();
        for k in base..base + 1_000 {
            local.add(k % 1_000, 1).unwrap();
        }
    };
    task(0);
    task(1);
    // Making the handle, its 1,000 adds (new keys to the handle's table) and its spill of keys
    // the shards already hold: nothing allocates.
    let n = allocations_during(|| (2..12).for_each(task));
    assert_eq!(n, 0, "a handle per task reuses the dropped handle's table");
    assert_eq!(agg.get(&7), Some(12));

    // Two handles alive at once: the second gets a fresh table, and both are kept after.
    let (a, b) = (agg.local(), agg.local());
    a.add(1, 1).unwrap();
    b.add(2, 1).unwrap();
    drop((a, b));
    let n = allocations_during(|| {
        let (a, b) = (agg.local(), agg.local());
        a.add(1, 1).unwrap();
        b.add(2, 1).unwrap();
    });
    assert_eq!(n, 0, "both dropped tables are kept");
    assert_eq!(agg.get(&1), Some(14));
}
