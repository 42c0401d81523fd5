//! Named defaults, with the reasoning behind each, in one place.

use std::time::Duration;

/// Shards per CPU for the default shard count. The shard sweep in the design notes: on two
/// threads, 8 → 64 shards took 1k-key adds from 56 to 81 Mops/s; 512 was no better.
pub(crate) const SHARDS_PER_CPU: usize = 16;
/// Floor of the default shard count (2 CPUs × 16 = 32 would be below the sweet spot).
pub(crate) const MIN_DEFAULT_SHARDS: usize = 64;
/// Ceiling of the default shard count: each shard costs a cache-padded lock and one batch per
/// flush; beyond this, flush cost grows with no contention left to remove.
pub(crate) const MAX_DEFAULT_SHARDS: usize = 4096;
/// Default period of the flusher thread.
pub(crate) const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long `Drop` waits for the consumer before logging and dropping what is left.
pub(crate) const DEFAULT_DROP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity, in keys, of a [`LocalHandle`](crate::aggregator::LocalHandle)'s private table: at this
/// size it spills into the shards. 16,384 `u64` pairs take about 0.6 MB per handle and hold the
/// whole working set of the 1k-key workloads; size it to your key count when that is larger.
pub(crate) const DEFAULT_LOCAL_CAPACITY: usize = 16_384;
/// Emptied tables of dropped [`LocalHandle`](crate::aggregator::LocalHandle)s kept for the next handle, so
/// a handle per short-lived thread or task does not allocate and regrow its table each time
/// (in the 1,000-thread stress run, a fresh table per thread cost more than its adds). Bounds
/// the memory kept: at most this many tables of at most `local_capacity` slots.
pub(crate) const SPARE_LOCAL_TABLES: usize = 8;
/// Spill scratch buffers (a `Vec` per shard, see `LocalHandle`) an aggregator keeps for the
/// next spill. One is in use per spill running at once; more than this are let go.
pub(crate) const SPARE_SPILL_SCRATCH: usize = 8;
