//! The core: a sharded, loss-free concurrent aggregator. No async runtime needed.
//!
//! * `core` – [`Aggregator`]: shards, add path, flush passes, shutdown.
//! * `bell` – how an async consumer is woken when a batch is sent.
//! * `builder` – [`Builder`] and the constructors.
//! * `config` – the [`Config`] snapshot of the effective settings.
//! * `merge` – the [`Merge`] trait and the built-in merges.
//! * `local` – [`LocalHandle`], a producer thread's private table in front of the shards.
//! * `receiver` – [`Batch`] and [`BatchReceiver`], the consumer side.
//! * `shard` – one shard's table and the order-preserving re-insertion.
//! * `flusher` – the periodic flusher thread (not under loom).
//! * `shutdown` – [`ShutdownHandle`], a clonable handle that shuts the aggregator down (not under loom).
#![doc = include_str!("aggregator/reference.md")]

mod bell;
mod builder;
mod config;
mod core;
mod error;
#[cfg(not(accrue_loom))]
mod flusher;
mod local;
mod merge;
mod receiver;
mod shard;
#[cfg(not(accrue_loom))]
mod shutdown;

#[cfg(all(test, accrue_loom))]
mod loom_tests;
#[cfg(all(test, not(accrue_loom)))]
mod tests;

pub use self::builder::Builder;
pub use self::config::Config;
pub use self::core::{Aggregator, Counters, FlushReport};
pub use self::error::{AddError, BuildError, ShutdownError};
pub use self::local::LocalHandle;
pub use self::merge::{Count, First, Last, Max, Merge, Min, Sum};
pub use self::receiver::{Batch, BatchReceiver, Recv, RecvTimeoutError, TryRecvError};
#[cfg(not(accrue_loom))]
pub use self::shutdown::ShutdownHandle;
