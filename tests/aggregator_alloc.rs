//! Zero allocations per add for an existing key, counted with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use accrue::Aggregator;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measured thread counts: the test harness allocates on its own threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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
    let before = ALLOCS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::SeqCst) - before
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
