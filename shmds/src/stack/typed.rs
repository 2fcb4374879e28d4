//! `Stack<T>`: the typed face of a [`RawStack`].

use super::*;

/// A bounded LIFO stack of `T` in shared memory.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-stack-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let undo = seg.create_stack::<i64>("undo", 2)?;
/// assert!(undo.try_push(1)?);
/// assert!(undo.try_push(2)?);
/// assert!(!undo.try_push(3)?, "full");
/// assert_eq!(undo.try_pop()?, Some(2));
/// assert_eq!(undo.len(), 1);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/stack/` and FORMAT.md for the algorithm and what a crashed
/// process leaves behind.
#[derive(Clone)]
pub struct Stack<T: Element> {
    pub(super) raw: RawStack,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Stack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Element> Stack<T> {
    pub(super) fn new(raw: RawStack) -> Stack<T> {
        debug_assert_eq!(raw.elem_size, std::mem::size_of::<T>());
        Stack {
            raw,
            _t: PhantomData,
        }
    }

    payload::typed_ring_methods!("stack", "top");
}
