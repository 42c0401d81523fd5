//! The metrics pipeline: every committed event is aggregated per (key, bucket) in the core
//! [`Aggregator`](crate::Aggregator) and flushed into the metrics store.
//!
//! * `sample` – [`Sample`](sample::Sample): the count and numeric `data` sums of one key and
//!   bucket, and its merge.
//! * `bucket` – [`Bucketer`](bucket::Bucketer): one instant per bucket intersection.

//! * `flusher` – [`Pipeline`](flusher::Pipeline): the writer's hook, the periodic exactly-once
//!   flush into the metrics store, and the replay after a crash.

pub(crate) mod bucket;
pub(crate) mod flusher;
pub(crate) mod sample;
