//! memcpy bandwidth of 4 MiB buffers, in one process: the reference of the
//! goal "4 MiB messages via reserve/commit: >= 50 % of memcpy bandwidth".
//!
//! The copy is glibc's `memcpy` (called through `libc::memcpy`, as a user's
//! `copy_from_slice` of this size would end up doing). Buffers are
//! allocated and written once before timing, so no page fault is timed.
//! Bandwidth is bytes copied / time, in GB/s (10^9 bytes/s); each byte is
//! read once and written once.
//!
//! Two figures:
//! - **warm** (the reference): the same 4 MiB source copied into the same
//!   4 MiB destination again and again. 8 MiB in all, so the working set is
//!   in the last-level cache on machines with >= 8 MiB of it.
//! - **cold** (context): 4 MiB copies walking over 32 different source and
//!   32 different destination buffers (256 MiB in all), so that every copy
//!   comes from and goes to memory: closer to a ring much larger than the
//!   cache.

use std::time::Instant;

pub const SIZE: usize = 4 << 20;

fn buffers(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut v = vec![0u8; SIZE];
            v.iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (i + j) as u8); // fault every page in
            v
        })
        .collect()
}

/// GB/s per timed sample; `pairs` source/destination buffers are used in turn.
pub fn bandwidth(pairs: usize, copies_per_sample: usize, samples: usize) -> Vec<f64> {
    let src = buffers(pairs);
    let mut dst = buffers(pairs);
    let mut out = Vec::with_capacity(samples);
    // one untimed pass
    for k in 0..pairs {
        copy(&mut dst[k], &src[k]);
    }
    for _ in 0..samples {
        let t = Instant::now();
        for c in 0..copies_per_sample {
            let k = c % pairs;
            copy(&mut dst[k], &src[k]);
        }
        let secs = t.elapsed().as_secs_f64();
        out.push((copies_per_sample * SIZE) as f64 / secs / 1e9);
    }
    std::hint::black_box(&dst);
    out
}

pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: both slices are valid for `len` bytes and do not overlap
    // (distinct allocations).
    unsafe {
        libc::memcpy(
            dst.as_mut_ptr().cast(),
            std::hint::black_box(src.as_ptr()).cast(),
            src.len(),
        );
    }
    std::hint::black_box(dst.as_ptr());
}
