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
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Tell the CPU (or loom) that we are spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Run a loom model with the crate's settings: a bounded number of
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides, default 3) and a branch
/// budget large enough for the table's many-word entries.
#[cfg(all(test, loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    model_limited(3, None, f)
}

/// [`model`] with another default preemption bound and, optionally, a cap on
/// the number of interleavings (a bounded search rather than an exhaustive
/// one), for models whose threads make very many relaxed atomic accesses.
#[cfg(all(test, loom))]
pub(crate) fn model_limited<F: Fn() + Sync + Send + 'static>(
    bound: usize,
    max_permutations: Option<usize>,
    f: F,
) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 1_000_000;
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    if builder.max_permutations.is_none() {
        builder.max_permutations = max_permutations;
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n > 0 && n % 10_000 == 0 && std::env::var_os("LOOM_PROGRESS").is_some() {
            eprintln!("loom: {n} interleavings so far");
        }
        f()
    });
    eprintln!(
        "loom: {} interleavings explored",
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

// A loom 0.7 limitation shapes the models in this crate: loom remembers only
// the last access to each atomic, so when thread A only *loads* a word and
// thread B then loads and stores it, B's store is never reordered before A's
// load (compare tokio-rs/loom#392). Loads are always checked against the last
// *store*, so a model explores "reader before writer" when the pure reader
// runs in a spawned thread and the writer in the model's main thread. The
// models are written that way; this test guards the arrangement.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn models_explore_reader_before_and_after_writer() {
        let orders = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let seen = orders.clone();
        model(move || {
            let a = loom::sync::Arc::new(AtomicU64::new(0));
            let b = a.clone();
            let seen = seen.clone();
            let reader = loom::thread::spawn(move || b.load(Ordering::Acquire));
            a.load(Ordering::Relaxed);
            a.store(1, Ordering::Release);
            let value = reader.join().unwrap();
            seen.lock().unwrap().insert(value);
        });
        assert_eq!(
            orders.lock().unwrap().len(),
            2,
            "loom skipped an interleaving"
        );
    }
}
