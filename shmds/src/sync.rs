//! The atomics shim.
//!
//! Every lock-free algorithm in this crate is written once, against the types
//! re-exported here. A normal build uses `core`'s atomics, which are plain
//! words in memory and therefore valid inside a shared mapping. A build with
//! `RUSTFLAGS="--cfg loom"` swaps in [loom](https://docs.rs/loom)'s atomics so
//! the very same code can be model-checked (`make loom`).
//!
//! Under loom the structures live on the heap (loom's atomics are not plain
//! words and can't be placed in a file mapping); that is the only difference.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Tell the CPU (or loom) that we are spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Run a loom model with the crate's settings: a bounded number of
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides, default 2) and a branch
/// budget large enough for the table's many-word entries.
#[cfg(all(test, loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 1_000_000;
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}
