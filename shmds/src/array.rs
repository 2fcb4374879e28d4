//! `Array<T>`: a fixed-length array of elements in a segment.
//!
//! # Concurrency
//! [`get`](Array::get), [`set`](Array::set) and the bulk copies are plain,
//! unsynchronised copies. Two processes touching the *same* element at the
//! same time, at least one writing, may see a torn value (a mix of old and
//! new bytes) for elements wider than the machine's atomic width; nothing
//! worse happens, since every bit pattern is a valid element. For counters and
//! flags use the atomic methods ([`load`](Array::load),
//! [`store`](Array::store), [`fetch_add`](Array::fetch_add),
//! [`compare_exchange`](Array::compare_exchange)), which are sequentially
//! consistent; to hand data over between processes, use a `Queue`.
//!
//! # Crashes
//! An array has no internal state beyond its elements: a process killed at
//! any instruction leaves every element either old, new, or (mid-copy) torn.

use crate::element::{AtomicElement, Element};
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, ArrayHeader, ARRAY_HEADER_SIZE};
use crate::segment::Segment;
use std::marker::PhantomData;
use std::mem::offset_of;

/// A fixed-length array of `T` in shared memory, addressed by name.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-array-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let hits = seg.create_array::<u64>("hits", 8)?;
/// hits.fetch_add(2, 5)?;
/// hits.write(4, &[1, 2, 3])?;
/// assert_eq!(hits.to_vec()?, [0, 0, 5, 0, 1, 2, 3, 0]);
/// assert!(hits.get(8).is_err());
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Array<T: Element> {
    handle: Handle,
    data: *mut T,
    len: u64,
    _t: PhantomData<T>,
}

// SAFETY: T is Send + Sync (Element); the data lives in the shared mapping
// kept alive by the handle, and concurrent access is documented above.
unsafe impl<T: Element> Send for Array<T> {}
// SAFETY: as above.
unsafe impl<T: Element> Sync for Array<T> {}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("name", &self.handle.name())
            .field("type", &self.handle.info.elem_type)
            .field("len", &self.len)
            .finish()
    }
}

impl Segment {
    /// Create a zeroed array of `len` elements named `name`.
    pub fn create_array<T: Element>(&self, name: &str, len: usize) -> Result<Array<T>> {
        Array::create(self, name, len as u64, false)
    }

    /// Open the array `name`; fails with [`Error::TypeMismatch`] if it holds another type.
    pub fn open_array<T: Element>(&self, name: &str) -> Result<Array<T>> {
        Array::from_handle(Typed::of::<T>(kind::ARRAY).open(self, name)?)
    }

    /// Open the array `name`, creating it with `len` elements if it does not
    /// exist. An existing array of another length is
    /// [`Error::ShapeMismatch`] (use [`open_array`](Segment::open_array) to
    /// open whatever length it has).
    pub fn open_or_create_array<T: Element>(&self, name: &str, len: usize) -> Result<Array<T>> {
        Array::create(self, name, len as u64, true)
    }
}

impl<T: Element> Array<T> {
    fn create(seg: &Segment, name: &str, len: u64, existing_ok: bool) -> Result<Array<T>> {
        let typed = Typed::of::<T>(kind::ARRAY);
        Array::from_handle(create_block(seg, &typed, name, len, existing_ok)?)
    }

    fn from_handle(handle: Handle) -> Result<Array<T>> {
        let header = handle.fresh(validate_header(&handle))?;
        // SAFETY: data_offset is within the block (checked just above).
        let data = unsafe { handle.block.add(ARRAY_HEADER_SIZE as usize) }.cast::<T>();
        Ok(Array {
            len: header.len,
            handle,
            data,
            _t: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.handle.info.elem_type
    }

    fn range(&self, start: u64, count: usize) -> Result<()> {
        self.handle.check()?;
        let end = start.checked_add(count as u64);
        match end {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::IndexOutOfBounds {
                index: start
                    .saturating_add(count as u64)
                    .saturating_sub(1)
                    .max(start),
                len: self.len,
            }),
        }
    }

    /// Element `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.range(index as u64, 1)?;
        // SAFETY: index < len, and the element lies in the block; a volatile
        // read because other processes may write it concurrently.
        let value = unsafe { self.data.add(index).read_volatile() };
        self.handle.recheck()?;
        Ok(value)
    }

    /// Set element `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.range(index as u64, 1)?;
        // SAFETY: as in `get`.
        unsafe { self.data.add(index).write_volatile(value) };
        Ok(())
    }

    /// Copy `out.len()` elements starting at `start` into `out`.
    pub fn read(&self, start: usize, out: &mut [T]) -> Result<()> {
        self.range(start as u64, out.len())?;
        // SAFETY: the range is in bounds; `out` is a distinct local buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.data.add(start), out.as_mut_ptr(), out.len()) };
        self.handle.recheck()
    }

    /// Copy `values` into the array starting at `start`.
    pub fn write(&self, start: usize, values: &[T]) -> Result<()> {
        self.range(start as u64, values.len())?;
        // SAFETY: the range is in bounds; `values` is not in the segment's
        // block (a caller cannot borrow the block as a slice safely).
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.data.add(start), values.len())
        };
        Ok(())
    }

    /// Copy the whole array out.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.range(0, self.len as usize)?;
        // SAFETY: `len` elements are readable; we set the length only after
        // copying them into the fresh allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data, out.as_mut_ptr(), self.len as usize);
            out.set_len(self.len as usize);
        }
        self.handle.recheck()?;
        Ok(out)
    }

    /// Pointer to element 0, for zero-copy access (numpy, C).
    pub fn as_ptr(&self) -> *mut T {
        self.data
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// No process may write the array while the slice is in use (Rust assumes
    /// the bytes behind a `&[T]` do not change), and the array must not be
    /// erased meanwhile.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: in bounds; immutability is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.data, self.len as usize) }
    }
}

impl<T: AtomicElement> Array<T> {
    fn atomic(&self, index: usize) -> Result<&T::Atomic> {
        self.range(index as u64, 1)?;
        // SAFETY: in bounds; elements are size_of::<T>() apart from a 64-aligned
        // base, so each is aligned for T and therefore for T::Atomic (same layout).
        Ok(unsafe { &*self.data.add(index).cast::<T::Atomic>() })
    }

    /// Atomically load element `index`.
    pub fn load(&self, index: usize) -> Result<T> {
        Ok(T::load(self.atomic(index)?))
    }

    /// Atomically store element `index`.
    pub fn store(&self, index: usize, value: T) -> Result<()> {
        T::store(self.atomic(index)?, value);
        Ok(())
    }

    /// Atomically add to element `index` (wrapping); returns the old value.
    pub fn fetch_add(&self, index: usize, delta: T) -> Result<T> {
        Ok(T::fetch_add(self.atomic(index)?, delta))
    }

    /// Atomically replace element `index` with `new` if it equals `current`.
    /// `Ok(Ok(old))` on success, `Ok(Err(actual))` if it held another value.
    pub fn compare_exchange(&self, index: usize, current: T, new: T) -> Result<Result<T, T>> {
        Ok(T::compare_exchange(self.atomic(index)?, current, new))
    }
}

/// Read an array's block header and check it against its table entry.
/// Returns the header's fields as copied once (the shape to use from now on).
fn validate_header(handle: &Handle) -> Result<ArrayHeader> {
    // A private copy of the header, which fills the block's first line
    // (Handle::at checked the block holds one).
    let line = handle.first_line();
    let header = ArrayHeader {
        kind: line.u32_at(offset_of!(ArrayHeader, kind)),
        elem_size: line.u32_at(offset_of!(ArrayHeader, elem_size)),
        len: line.u64_at(offset_of!(ArrayHeader, len)),
        data_offset: line.u64_at(offset_of!(ArrayHeader, data_offset)),
        reserved: [0; 5],
    };
    let info = &handle.info;
    let needed = block_size(ARRAY_HEADER_SIZE, header.len, header.elem_size as u64);
    if header.kind != kind::ARRAY
        || header.elem_size != info.elem_size
        || header.len != info.capacity
        || header.data_offset != ARRAY_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("array header disagrees with its table entry or overruns its block")
        );
    }
    Ok(header)
}

/// Create (or with `existing_ok` open) the array entry `name` of `len`
/// elements of the type `typed` describes.
fn create_block(
    seg: &Segment,
    typed: &Typed,
    name: &str,
    len: u64,
    existing_ok: bool,
) -> Result<Handle> {
    let elem_size = typed.elem_size() as u64;
    if elem_size == 0 {
        return Err(Error::InvalidArgument(
            "element size must be 1..2^32 bytes".into(),
        ));
    }
    let size = block_size(ARRAY_HEADER_SIZE, len, elem_size)?;
    typed.create(seg, name, len, size, existing_ok, |block| {
        let header = ArrayHeader {
            kind: kind::ARRAY,
            elem_size: elem_size as u32,
            len,
            data_offset: ARRAY_HEADER_SIZE,
            reserved: [0; 5],
        };
        // SAFETY: the block is fresh, 64-aligned, at least ARRAY_HEADER_SIZE
        // bytes, and unpublished: nobody else can see it yet.
        unsafe { block.cast::<ArrayHeader>().write(header) };
        Ok(())
    })
}

/// An array whose element type is known only at run time, by its
/// descriptor: the form other languages' bindings use. Elements are bytes
/// here; [`RawArray::as_ptr`] gives the data for zero-copy views.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawarray-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.open_or_create_array_raw("xs", "<d", 4)?;
/// assert_eq!((raw.len(), raw.elem_size(), raw.type_descriptor()), (4, 8, "<d"));
/// // The same bytes, typed:
/// let xs = seg.open_array::<f64>("xs")?;
/// xs.set(1, 2.5)?;
/// let mut b = [0u8; 8];
/// raw.read_bytes(1, &mut b)?;
/// assert_eq!(f64::from_ne_bytes(b), 2.5);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct RawArray {
    handle: Handle,
    data: *mut u8,
    len: u64,
    elem_size: usize,
    /// The width of an integer element type (`None` for other types).
    int_size: Option<usize>,
}

// SAFETY: the data lives in the shared mapping kept alive by the handle; the
// bytes carry no Rust invariants, and concurrent access is as for Array.
unsafe impl Send for RawArray {}
// SAFETY: as above.
unsafe impl Sync for RawArray {}

impl std::fmt::Debug for RawArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray")
            .field("name", &self.handle.name())
            .field("type", &self.handle.info.elem_type)
            .field("len", &self.len)
            .finish()
    }
}

impl Segment {
    /// Open the array `name`, creating it with `len` elements of the type
    /// `descriptor` describes (see [`TypeDescriptor`](crate::TypeDescriptor))
    /// if it does not exist. An existing array must hold that type.
    pub fn open_or_create_array_raw(
        &self,
        name: &str,
        descriptor: &str,
        len: usize,
    ) -> Result<RawArray> {
        let typed = Typed::described(kind::ARRAY, descriptor)?;
        RawArray::from_handle(create_block(self, &typed, name, len as u64, true)?)
    }

    /// Create the array `name` of `len` elements of type `descriptor`.
    pub fn create_array_raw(&self, name: &str, descriptor: &str, len: usize) -> Result<RawArray> {
        let typed = Typed::described(kind::ARRAY, descriptor)?;
        RawArray::from_handle(create_block(self, &typed, name, len as u64, false)?)
    }

    /// Open the array `name` whatever its element type.
    pub fn open_array_raw(&self, name: &str) -> Result<RawArray> {
        RawArray::from_handle(Typed::stored(self, kind::ARRAY, name)?.open(self, name)?)
    }
}

impl RawArray {
    fn from_handle(handle: Handle) -> Result<RawArray> {
        let header = handle.fresh(validate_header(&handle))?;
        // SAFETY: the data starts at data_offset, within the block (validated).
        let data = unsafe { handle.block.add(ARRAY_HEADER_SIZE as usize) };
        let int_size = match crate::element::TypeDescriptor::parse(&handle.info.elem_type)
            .ok()
            .and_then(|d| d.scalar())
        {
            Some(crate::element::Scalar::Int { size, .. }) => Some(size),
            _ => None,
        };
        Ok(RawArray {
            int_size,
            len: header.len,
            elem_size: header.elem_size as usize,
            handle,
            data,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of one element in bytes.
    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.handle.info.elem_type
    }

    /// The name of the segment the array lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }

    /// `Err(Stale)` once the array has been erased.
    pub fn check(&self) -> Result<()> {
        self.handle.check()
    }

    /// The first byte of element 0: `len * elem_size` bytes of shared memory,
    /// valid while this handle (or a clone of its segment) lives. Other
    /// processes may write them at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.data
    }

    /// Copy `out.len()` bytes starting at element `start`'s first byte;
    /// `out.len()` must be a multiple of the element size.
    pub fn read_bytes(&self, start: usize, out: &mut [u8]) -> Result<()> {
        let at = self.byte_range(start, out.len())?;
        // SAFETY: byte_range proved [at, at + out.len()) lies in the data.
        unsafe { std::ptr::copy_nonoverlapping(self.data.add(at), out.as_mut_ptr(), out.len()) };
        self.handle.recheck()
    }

    /// Copy `bytes` in, starting at element `start`'s first byte;
    /// `bytes.len()` must be a multiple of the element size.
    pub fn write_bytes(&self, start: usize, bytes: &[u8]) -> Result<()> {
        let at = self.byte_range(start, bytes.len())?;
        // SAFETY: byte_range proved [at, at + bytes.len()) lies in the data.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(at), bytes.len()) };
        Ok(())
    }

    /// The integer element at `index` as an atomic word, with its width.
    fn integer(&self, index: usize) -> Result<(*mut u8, usize)> {
        let Some(size) = self.int_size else {
            return Err(Error::InvalidArgument(format!(
                "array {:?} holds {:?}, not integers: atomic operations need an integer type",
                self.name(),
                self.type_descriptor()
            )));
        };
        let at = self.byte_range(index, size)?;
        // SAFETY: byte_range proved the element lies in the data; elements
        // of 1, 2, 4 or 8 bytes at a 64-aligned base are naturally aligned.
        Ok((unsafe { self.data.add(at) }, size))
    }

    /// For integer arrays: add `delta` to element `index`, wrapping at the
    /// element's width, atomically (across processes); returns the previous
    /// value zero-extended to 64 bits (sign-extend it yourself for signed
    /// types; pass a negative delta as its two's complement).
    pub fn fetch_add(&self, index: usize, delta: u64) -> Result<u64> {
        use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
        let (p, size) = self.integer(index)?;
        // In each arm: `integer` returned a pointer to `size` bytes of the
        // mapping, naturally aligned, that live as long as self; every
        // process accesses them atomically or as plain racy data, never
        // through a Rust reference other than these atomics.
        Ok(match size {
            // SAFETY: see above.
            1 => unsafe { AtomicU8::from_ptr(p) }.fetch_add(delta as u8, SeqCst) as u64,
            // SAFETY: see above.
            2 => unsafe { AtomicU16::from_ptr(p.cast()) }.fetch_add(delta as u16, SeqCst) as u64,
            // SAFETY: see above.
            4 => unsafe { AtomicU32::from_ptr(p.cast()) }.fetch_add(delta as u32, SeqCst) as u64,
            // SAFETY: see above.
            _ => unsafe { AtomicU64::from_ptr(p.cast()) }.fetch_add(delta, SeqCst),
        })
    }

    /// For integer arrays: if element `index` is `current` (truncated to the
    /// element's width), set it to `new`, atomically. `Ok(previous)` on
    /// success, `Err(actual)` otherwise (zero-extended).
    pub fn compare_exchange(
        &self,
        index: usize,
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, u64>> {
        use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
        let (p, size) = self.integer(index)?;
        // Each arm as in fetch_add.
        Ok(match size {
            // SAFETY: see fetch_add.
            1 => unsafe { AtomicU8::from_ptr(p) }
                .compare_exchange(current as u8, new as u8, SeqCst, SeqCst)
                .map(u64::from)
                .map_err(u64::from),
            // SAFETY: see fetch_add.
            2 => unsafe { AtomicU16::from_ptr(p.cast()) }
                .compare_exchange(current as u16, new as u16, SeqCst, SeqCst)
                .map(u64::from)
                .map_err(u64::from),
            // SAFETY: see fetch_add.
            4 => unsafe { AtomicU32::from_ptr(p.cast()) }
                .compare_exchange(current as u32, new as u32, SeqCst, SeqCst)
                .map(u64::from)
                .map_err(u64::from),
            // SAFETY: see fetch_add.
            _ => unsafe { AtomicU64::from_ptr(p.cast()) }
                .compare_exchange(current, new, SeqCst, SeqCst),
        })
    }

    fn byte_range(&self, start: usize, bytes: usize) -> Result<usize> {
        let start = start as u64;
        self.handle.check()?;
        if bytes % self.elem_size != 0 {
            return Err(Error::InvalidArgument(format!(
                "{bytes} bytes are not a whole number of {}-byte elements",
                self.elem_size
            )));
        }
        let count = (bytes / self.elem_size) as u64;
        if start.checked_add(count).is_none_or(|end| end > self.len) {
            return Err(Error::IndexOutOfBounds {
                index: start.saturating_add(count),
                len: self.len,
            });
        }
        Ok(start as usize * self.elem_size)
    }
}

/// Per-kind validation of an array block (for `Segment::check`).
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    handle.fresh(validate_header(handle)).map(|_| None)
}
