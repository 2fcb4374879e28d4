//! `Queue<T>`: the typed face of a [`RawQueue`].

use super::*;

/// A bounded multi-producer multi-consumer FIFO queue of `T` in shared memory.
///
/// ```
/// use shmds::Segment;
/// use std::time::Duration;
/// # let name = format!("doc-queue-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let jobs = seg.create_queue::<u64>("jobs", 3)?;
/// assert!(jobs.try_push(1)?);
/// jobs.push_slice(&[2, 3], None)?;
/// assert!(!jobs.try_push(4)?, "full: a miss, not an error");
/// assert_eq!(jobs.try_pop()?, Some(1));
/// let mut out = [0; 8];
/// assert_eq!(jobs.try_pop_into(&mut out)?, 2);
/// assert_eq!(&out[..2], &[2, 3]);
/// assert!(matches!(jobs.pop(Some(Duration::from_millis(1))), Err(shmds::Error::Timeout { .. })));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/queue/` and FORMAT.md for the algorithm, the progress
/// guarantee and what a crashed process leaves behind.
#[derive(Clone)]
pub struct Queue<T: Element> {
    pub(super) raw: RawQueue,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Element> Queue<T> {
    pub(super) fn new(raw: RawQueue) -> Queue<T> {
        debug_assert_eq!(raw.elem_size, std::mem::size_of::<T>());
        Queue {
            raw,
            _t: PhantomData,
        }
    }

    payload::typed_ring_methods!("queue", "oldest");
}
