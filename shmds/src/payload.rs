//! Moving elements in and out of slot payloads, typed (`T: Element`) or as
//! raw bytes. Queue and stack share these: their algorithms hand each
//! element's payload pointer to a closure made here.

use crate::element::Element;
use crate::error::{Error, Result};

/// The number of `elem_size`-byte elements in `bytes` bytes, or an error
/// naming `name` when `bytes` is not a whole number of them.
pub(crate) fn count(bytes: usize, elem_size: usize, name: &str) -> Result<usize> {
    if elem_size == 0 || bytes % elem_size != 0 {
        return Err(Error::InvalidArgument(format!(
            "{bytes} bytes are not a whole number of {elem_size}-byte elements of {name:?}"
        )));
    }
    Ok(bytes / elem_size)
}

/// Exactly one element of `elem_size` bytes in `bytes`, or an error.
pub(crate) fn one(bytes: usize, elem_size: usize, name: &str) -> Result<()> {
    if bytes != elem_size {
        return Err(Error::InvalidArgument(format!(
            "an element of {name:?} has {elem_size} bytes, not {bytes}"
        )));
    }
    Ok(())
}

/// Writes element `i` of the packed elements in `src` into a payload.
/// `src` must hold at least `(i + 1) * size` bytes for every `i` asked for.
#[inline]
pub(crate) fn copy_in(src: &[u8], size: usize) -> impl FnMut(usize, *mut u8) + '_ {
    move |i, p| {
        let elem = &src[i * size..(i + 1) * size];
        // SAFETY: a payload has room for `size` bytes and is the caller's
        // while its slot is claimed; `elem` has exactly `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(elem.as_ptr(), p, size) }
    }
}

/// Reads a payload into element `i` of the packed elements in `dst`.
#[inline]
pub(crate) fn copy_out(dst: &mut [u8], size: usize) -> impl FnMut(usize, *const u8) + '_ {
    move |i, p| {
        let elem = &mut dst[i * size..(i + 1) * size];
        // SAFETY: a payload holds `size` bytes written by a push; `elem`
        // has exactly `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(p, elem.as_mut_ptr(), size) }
    }
}

/// Writes `values[i]` into a payload of `size_of::<T>()` bytes.
#[inline]
pub(crate) fn write_typed<T: Element>(values: &[T]) -> impl FnMut(usize, *mut u8) + '_ {
    move |i, p| {
        let v = values[i];
        // SAFETY: the payload has size_of::<T>() bytes and is the caller's
        // while its slot is claimed; unaligned because payloads are only
        // 8-aligned.
        unsafe { p.cast::<T>().write_unaligned(v) }
    }
}

/// Writes `value` into a payload of `size_of::<T>()` bytes.
#[inline(always)]
pub(crate) fn write_one<T: Element>(value: T) -> impl FnMut(*mut u8) {
    move |p| {
        // SAFETY: as in `write_typed`.
        unsafe { p.cast::<T>().write_unaligned(value) }
    }
}

/// Reads a payload holding a `T` into `out`.
#[inline(always)]
pub(crate) fn read_one<T: Element>(out: &mut T) -> impl FnMut(*const u8) + '_ {
    move |p| {
        // SAFETY: as in `read_typed`.
        *out = unsafe { p.cast::<T>().read_unaligned() }
    }
}

/// Reads a payload holding a `T` into `out[i]`.
#[inline]
pub(crate) fn read_typed<T: Element>(out: &mut [T]) -> impl FnMut(usize, *const u8) + '_ {
    move |i, p| {
        // SAFETY: the payload holds size_of::<T>() bytes written by a push,
        // and every bit pattern is a valid T (Element).
        out[i] = unsafe { p.cast::<T>().read_unaligned() }
    }
}

/// An all-zero `T`, a valid placeholder (every bit pattern is a `T`).
#[inline]
pub(crate) fn zeroed<T: Element>() -> T {
    // SAFETY: Element types accept every bit pattern, zero included.
    unsafe { std::mem::zeroed() }
}

/// The byte-level element methods of [`RawQueue`](crate::RawQueue) and
/// [`RawStack`](crate::RawStack), written once. The type needs `handle`,
/// `elem_size`, `push_n` and `pop_n`; `$take` names the element a pop
/// takes ("oldest", "top").
macro_rules! raw_ring_methods {
    ($raw:ident, $take:literal) => {
        #[doc = concat!("Copies of up to `max` elements, the ", $take, " first, without taking any")]
        /// (for inspection, such as `shmds dump`): weakly consistent, since
        /// other processes push and pop meanwhile, but never a torn element.
        /// Empty once the structure was erased.
        pub fn peek(&self, max: usize) -> Vec<Vec<u8>> {
            if self.handle.check().is_err() {
                return Vec::new();
            }
            let items = self.core().peek(max, self.elem_size);
            // Erased meanwhile: its memory may hold something else now.
            if self.handle.check().is_err() {
                return Vec::new();
            }
            items
        }

        /// `Ok(())` while the entry behind this handle exists;
        /// [`Error::Stale`](crate::Error::Stale) once it was erased. Every
        /// element method checks this itself; the approximate `len`,
        /// `is_empty` and `is_full` do not (they stay infallible and cheap),
        /// so call this first where a stale handle must not read as a count.
        pub fn check(&self) -> $crate::Result<()> {
            self.handle.check()
        }

        /// Push one element (`elem_size` bytes) if there is room now:
        /// `Ok(true)`, or `Ok(false)` if it is full (a miss is not an error,
        /// and costs no allocation). Never sleeps.
        /// Every push and pop fails with
        /// [`Error::ShutDown`](crate::Error::ShutDown) once the structure
        /// was shut down (a pop only when nothing is left), and a batch
        /// stopped by it returns the count moved so far. (A queue's pop
        /// that finds it shut down and empty first waits for pushes that
        /// were already under way, so that none lands after it: usually
        /// microseconds, at most the lock timeout for a stopped pusher.)
        pub fn try_push(&self, elem: &[u8]) -> $crate::Result<bool> {
            $crate::payload::one(elem.len(), self.elem_size, self.name())?;
            let size = self.elem_size;
            // SAFETY: the payload has room for `elem_size` bytes, `elem` has them.
            self.push_one(&mut |p| unsafe { std::ptr::copy_nonoverlapping(elem.as_ptr(), p, size) })
        }

        #[doc = concat!("Pop the ", $take, " element into `out` (`elem_size` bytes): `Ok(true)`,")]
        /// or `Ok(false)` if there is none (`out` is left alone). Never sleeps.
        pub fn try_pop(&self, out: &mut [u8]) -> $crate::Result<bool> {
            $crate::payload::one(out.len(), self.elem_size, self.name())?;
            let size = self.elem_size;
            // SAFETY: the payload holds `elem_size` bytes, `out` has room for them.
            self.pop_one(&mut |p| unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), size) })
        }

        /// Push as many of the elements packed in `elems` as fit now, in
        /// order; returns how many (a prefix).
        pub fn try_push_slice(&self, elems: &[u8]) -> $crate::Result<usize> {
            let n = $crate::payload::count(elems.len(), self.elem_size, self.name())?;
            self.push_n(n, &mut $crate::payload::copy_in(elems, self.elem_size), None)
        }

        #[doc = concat!("Pop as many elements as are there (", $take, " first), up to what")]
        /// fits in `out`; returns how many.
        pub fn try_pop_into(&self, out: &mut [u8]) -> $crate::Result<usize> {
            let n = $crate::payload::count(out.len(), self.elem_size, self.name())?;
            let size = self.elem_size;
            self.pop_n(n, &mut $crate::payload::copy_out(out, size), None)
        }

        /// Push all the elements packed in `elems`, in order, waiting for
        /// room as needed: forever when `timeout` is `None`. Returns how
        /// many were pushed: all, unless `timeout` passed first.
        ///
        /// While it sleeps, `interrupt` (if given) is called at least every
        /// 100 ms and after each signal the thread receives; when it returns
        /// `true` the call stops with
        /// [`Error::Interrupted`](crate::Error::Interrupted) (elements
        /// pushed so far stay pushed). Bindings use it to honour Ctrl-C.
        pub fn push_slice(
            &self,
            elems: &[u8],
            timeout: Option<std::time::Duration>,
            interrupt: Option<&mut dyn FnMut() -> bool>,
        ) -> $crate::Result<usize> {
            let n = $crate::payload::count(elems.len(), self.elem_size, self.name())?;
            let mut wait = $crate::wait::Wait::new(timeout, interrupt);
            let mut write = $crate::payload::copy_in(elems, self.elem_size);
            self.push_n(n, &mut write, Some(&mut wait))
        }

        #[doc = concat!("Pop up to `out.len() / elem_size` elements (", $take, " first),")]
        /// waiting for the first (forever when `timeout` is `None`);
        /// returns how many. [`Error::Timeout`](crate::Error::Timeout) if
        #[doc = concat!("none came. `interrupt` as for [`push_slice`](", stringify!($raw), "::push_slice).")]
        pub fn pop_into(
            &self,
            out: &mut [u8],
            timeout: Option<std::time::Duration>,
            interrupt: Option<&mut dyn FnMut() -> bool>,
        ) -> $crate::Result<usize> {
            let n = $crate::payload::count(out.len(), self.elem_size, self.name())?;
            if n == 0 {
                return Ok(0);
            }
            let mut wait = $crate::wait::Wait::new(timeout, interrupt);
            let size = self.elem_size;
            let mut read = $crate::payload::copy_out(out, size);
            match self.pop_n(n, &mut read, Some(&mut wait))? {
                0 => Err(self.handle.timeout()),
                got => Ok(got),
            }
        }
    };
}

/// The typed methods of [`Queue<T>`](crate::Queue) and
/// [`Stack<T>`](crate::Stack), written once over their `raw` structure;
/// `$what` names the structure, `$take` the element a pop takes.
macro_rules! typed_ring_methods {
    ($what:literal, $take:literal) => {
        #[doc = concat!("Push `value` if there is room now: `Ok(true)`, or `Ok(false)` if the ", $what, " is")]
        /// full (a miss is not an error, and costs no allocation). Never
        /// sleeps. Errors are real failures: the structure was erased, shut
        /// down or damaged.
        #[inline(always)]
        pub fn try_push(&self, value: T) -> $crate::Result<bool> {
            self.raw.push_one(&mut $crate::payload::write_one(value))
        }

        #[doc = concat!("Take the ", $take, " element if there is one now: `Ok(Some(value))`, or")]
        #[doc = concat!("`Ok(None)` if the ", $what, " is empty (like crossbeam's `ArrayQueue::pop`;")]
        /// a miss costs no allocation). Never sleeps.
        #[inline(always)]
        pub fn try_pop(&self) -> $crate::Result<Option<T>> {
            let mut out = $crate::payload::zeroed::<T>();
            let got = self.raw.pop_one(&mut $crate::payload::read_one(&mut out))?;
            Ok(got.then_some(out))
        }

        #[doc = concat!("Push `value`, waiting while the ", $what, " is full: forever when")]
        /// `timeout` is `None`, else at most `timeout`
        /// ([`Error::Timeout`](crate::Error::Timeout)).
        pub fn push(&self, value: T, timeout: Option<std::time::Duration>) -> $crate::Result<()> {
            match self.push_slice(&[value], timeout)? {
                1 => Ok(()),
                _ => Err(self.raw.handle.timeout()),
            }
        }

        #[doc = concat!("Take the ", $take, " element, waiting while the ", $what, " is empty:")]
        /// forever when `timeout` is `None`, else at most `timeout`
        /// ([`Error::Timeout`](crate::Error::Timeout)).
        pub fn pop(&self, timeout: Option<std::time::Duration>) -> $crate::Result<T> {
            let mut out = [$crate::payload::zeroed::<T>()];
            self.pop_into(&mut out, timeout)?;
            Ok(out[0])
        }

        /// Push as many of `values` as fit now, in order; returns how many
        /// (a prefix).
        pub fn try_push_slice(&self, values: &[T]) -> $crate::Result<usize> {
            let mut write = $crate::payload::write_typed(values);
            self.raw.push_n(values.len(), &mut write, None)
        }

        /// Push all of `values` in order, waiting for room as needed.
        /// Returns how many were pushed: all, unless `timeout` passed first.
        pub fn push_slice(
            &self,
            values: &[T],
            timeout: Option<std::time::Duration>,
        ) -> $crate::Result<usize> {
            let mut wait = $crate::wait::Wait::new(timeout, None);
            let mut write = $crate::payload::write_typed(values);
            self.raw.push_n(values.len(), &mut write, Some(&mut wait))
        }

        #[doc = concat!("Pop up to `out.len()` elements that are there now (", $take, " first);")]
        /// returns how many.
        pub fn try_pop_into(&self, out: &mut [T]) -> $crate::Result<usize> {
            let n = out.len();
            self.raw.pop_n(n, &mut $crate::payload::read_typed(out), None)
        }

        /// Pop up to `out.len()` elements, waiting for at least one (forever
        /// when `timeout` is `None`); returns how many.
        /// [`Error::Timeout`](crate::Error::Timeout) if none came.
        pub fn pop_into(
            &self,
            out: &mut [T],
            timeout: Option<std::time::Duration>,
        ) -> $crate::Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            let n = out.len();
            let mut wait = $crate::wait::Wait::new(timeout, None);
            match self.raw.pop_n(n, &mut $crate::payload::read_typed(out), Some(&mut wait))? {
                0 => Err(self.raw.handle.timeout()),
                got => Ok(got),
            }
        }

        /// Number of elements (approximate while other processes push and pop).
        pub fn len(&self) -> usize {
            self.raw.len()
        }

        #[doc = concat!("Shut the ", $what, " down for every process: pushes fail with")]
        /// [`Error::ShutDown`](crate::Error::ShutDown), pops take what is
        /// left and then fail with it; blocked calls wake up. With
        /// `immediate` what is left is discarded; returns how many were.
        pub fn shutdown(&self, immediate: bool) -> $crate::Result<usize> {
            self.raw.shutdown(immediate)
        }

        #[doc = concat!("Whether the ", $what, " was shut down (by any process).")]
        pub fn is_shutdown(&self) -> bool {
            self.raw.is_shutdown()
        }

        #[doc = concat!("Whether the ", $what, " holds no elements (approximate under concurrency).")]
        pub fn is_empty(&self) -> bool {
            self.raw.is_empty()
        }

        #[doc = concat!("Whether the ", $what, " is full (approximate under concurrency).")]
        pub fn is_full(&self) -> bool {
            self.raw.is_full()
        }

        #[doc = concat!("`Ok(())` while the ", $what, " exists, [`Error::Stale`](crate::Error::Stale)")]
        /// once it was erased (`len`, `is_empty` and `is_full` do not check).
        pub fn check(&self) -> $crate::Result<()> {
            self.raw.check()
        }

        /// The capacity (exactly as created).
        pub fn capacity(&self) -> usize {
            self.raw.capacity()
        }

        /// The entry name.
        pub fn name(&self) -> &str {
            self.raw.name()
        }

        /// The element type descriptor.
        pub fn type_descriptor(&self) -> &str {
            self.raw.type_descriptor()
        }
    };
}

/// The `Segment` methods that create and open a queue or a stack, typed
/// and raw, written once: `$what` names the structure, `$Typed<T>` and
/// `$Raw` are its handles, `$kind` its kind code.
macro_rules! ring_segment_methods {
    ($what:literal, $Typed:ident, $Raw:ident, $kind:expr,
     $create:ident, $open:ident, $open_or_create:ident,
     $create_raw:ident, $open_or_create_raw:ident, $open_raw:ident) => {
        impl Segment {
            #[doc = concat!("Create a ", $what, " of `capacity` elements (exactly; not rounded).")]
            pub fn $create<T: Element>(&self, name: &str, capacity: usize) -> Result<$Typed<T>> {
                $Raw::create(self, Typed::of::<T>($kind), name, capacity as u64, false)
                    .map($Typed::new)
            }

            #[doc = concat!("Open the ", $what, " `name`; fails with [`Error::TypeMismatch`] if it holds another type.")]
            pub fn $open<T: Element>(&self, name: &str) -> Result<$Typed<T>> {
                $Raw::from_handle(Typed::of::<T>($kind).open(self, name)?).map($Typed::new)
            }

            #[doc = concat!("Open the ", $what, " `name`, creating it with `capacity` if it does not exist.")]
            pub fn $open_or_create<T: Element>(
                &self,
                name: &str,
                capacity: usize,
            ) -> Result<$Typed<T>> {
                $Raw::create(self, Typed::of::<T>($kind), name, capacity as u64, true)
                    .map($Typed::new)
            }

            #[doc = concat!("Create a ", $what, " of `capacity` elements of the type `descriptor`")]
            /// describes (see [`TypeDescriptor`](crate::TypeDescriptor)).
            pub fn $create_raw(&self, name: &str, descriptor: &str, capacity: usize) -> Result<$Raw> {
                let typed = Typed::described($kind, descriptor)?;
                $Raw::create(self, typed, name, capacity as u64, false)
            }

            #[doc = concat!("Open the ", $what, " `name`, creating it with `capacity` elements of type")]
            #[doc = concat!("`descriptor` if it does not exist. An existing ", $what, " must hold that type.")]
            pub fn $open_or_create_raw(
                &self,
                name: &str,
                descriptor: &str,
                capacity: usize,
            ) -> Result<$Raw> {
                let typed = Typed::described($kind, descriptor)?;
                $Raw::create(self, typed, name, capacity as u64, true)
            }

            #[doc = concat!("Open the ", $what, " `name` whatever its element type.")]
            pub fn $open_raw(&self, name: &str) -> Result<$Raw> {
                $Raw::from_handle(Typed::stored(self, $kind, name)?.open(self, name)?)
            }
        }
    };
}

pub(crate) use {raw_ring_methods, ring_segment_methods, typed_ring_methods};
