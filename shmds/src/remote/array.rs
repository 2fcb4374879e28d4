//! Remote arrays: one Redis string of `len × size_of::<T>()` bytes
//! (`d:G:E`), element `i` at byte `i × size`, zeroed at creation. Every
//! index is checked here against the length of the record the handle
//! opened, and every reply's size against what was asked for.

use super::entry::{bytes_of, from_bytes, Entry, Shape, MAX_BYTES};
use super::{scripts, Segment};
use crate::element::TypeDescriptor;
use crate::element::{AtomicElement, Element};
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;

/// A remote array whatever its element type: elements are byte strings of
/// [`elem_size`](RawArray::elem_size) bytes. Cheap to clone.
#[derive(Clone)]
pub struct RawArray {
    inner: Arc<Inner>,
}

struct Inner {
    entry: Entry,
    data: String,
    elem_size: usize,
}

impl std::fmt::Debug for RawArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.inner.entry;
        f.debug_struct("remote::Array")
            .field("segment", &e.seg.name())
            .field("name", &e.name)
            .field("len", &e.record.capacity)
            .finish()
    }
}

impl RawArray {
    /// The byte offset of elements `start..start + n`, checked against the
    /// length.
    fn offset(&self, start: usize, n: usize) -> Result<usize> {
        let len = self.len();
        match start.checked_add(n) {
            Some(end) if end <= len => Ok(start * self.inner.elem_size),
            _ => Err(Error::IndexOutOfBounds {
                index: start.saturating_add(n.max(1) - 1) as u64,
                len: len as u64,
            }),
        }
    }

    fn call<R: redis::FromRedisValue>(
        &self,
        idempotent: bool,
        script: &redis::Script,
        offset: usize,
        args: &[&[u8]],
    ) -> Result<R> {
        let a = &self.inner;
        let writes = !std::ptr::eq(script, &*scripts::ARRAY_READ);
        let cache = a.entry.seg.cache().filter(|_| writes);
        // Before and after: a read racing this write caches neither side.
        cache.inspect(|c| c.invalidate(&a.data));
        let result = a.entry.run(idempotent, |con| {
            let mut inv = a.entry.invocation(script);
            inv.key(&a.data).arg(offset);
            for x in args {
                inv.arg(*x);
            }
            inv.invoke(con)
        });
        cache.inspect(|c| c.invalidate(&a.data));
        result
    }

    fn short(&self) -> Error {
        self.inner
            .entry
            .corrupt("the array's string is shorter than its length says")
    }

    fn one(&self, b: &[u8]) -> Result<()> {
        crate::payload::one(b.len(), self.inner.elem_size, &self.inner.entry.name)
    }

    /// `n` elements from `start`, packed (one atomic read).
    pub fn read_bytes(&self, start: usize, n: usize) -> Result<Vec<u8>> {
        let off = self.offset(start, n)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes = n * self.inner.elem_size;
        let fetch = || -> Result<Vec<u8>> {
            let got: Vec<u8> = self.call(
                true,
                &scripts::ARRAY_READ,
                off,
                &[bytes.to_string().as_bytes()],
            )?;
            if got.len() != bytes {
                return Err(self.short());
            }
            Ok(got)
        };
        let Some(cache) = self.inner.entry.seg.cache() else {
            return fetch();
        };
        let data = &self.inner.data;
        let field = [(off as u64).to_le_bytes(), (bytes as u64).to_le_bytes()].concat();
        if let Some(Some(hit)) = cache.get(data, &field) {
            return Ok(hit);
        }
        let ticket = cache.ticket(data);
        let got = fetch()?;
        cache.put(ticket, data, &field, Some(got.clone()));
        Ok(got)
    }

    /// Write the packed elements of `packed` from `start` (one atomic write).
    pub fn write_bytes(&self, start: usize, packed: &[u8]) -> Result<()> {
        let n = crate::payload::count(packed.len(), self.inner.elem_size, &self.inner.entry.name)?;
        let off = self.offset(start, n)?;
        if n == 0 {
            return Ok(());
        }
        self.call::<i64>(true, &scripts::ARRAY_WRITE, off, &[packed])
            .map(|_| ())
    }

    /// Add the little-endian integer `delta` (wrapping) to element `index`;
    /// returns its old bytes.
    pub fn fetch_add_bytes(&self, index: usize, delta: &[u8]) -> Result<Vec<u8>> {
        self.one(delta)?;
        let off = self.offset(index, 1)?;
        let got: Vec<u8> = self.call(false, &scripts::ARRAY_FETCH_ADD, off, &[delta])?;
        if got.len() != delta.len() {
            return Err(self.short());
        }
        Ok(got)
    }

    /// Replace element `index` with `new` if it holds `current`:
    /// `Ok(Ok(old))` on success, `Ok(Err(actual))` if not.
    pub fn compare_exchange_bytes(
        &self,
        index: usize,
        current: &[u8],
        new: &[u8],
    ) -> Result<std::result::Result<Vec<u8>, Vec<u8>>> {
        self.one(current)?;
        self.one(new)?;
        let off = self.offset(index, 1)?;
        let (swapped, old): (i64, Vec<u8>) = self.call(
            false,
            &scripts::ARRAY_COMPARE_EXCHANGE,
            off,
            &[current, new],
        )?;
        if old.len() != current.len() {
            return Err(self.short());
        }
        Ok(if swapped == 1 { Ok(old) } else { Err(old) })
    }

    /// The length (exactly as created).
    pub fn len(&self) -> usize {
        self.inner.entry.record.capacity as usize
    }

    /// Whether the length is zero (never: arrays have at least one element).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Ok(())` while the array exists, [`Error::Stale`] once it was erased.
    pub fn check(&self) -> Result<()> {
        self.read_bytes(0, 1).map(|_| ())
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.inner.elem_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.inner.entry.name
    }

    /// The segment name.
    pub fn segment_name(&self) -> &str {
        self.inner.entry.seg.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.inner.entry.record.elem_type
    }
}

/// A fixed-length array of `T` on a Redis server.
pub struct Array<T: Element> {
    raw: RawArray,
    _t: PhantomData<T>,
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Element> Array<T> {
    fn decode(b: &[u8]) -> T {
        // RawArray checked every size.
        from_bytes(b).unwrap_or_else(crate::payload::zeroed::<T>)
    }

    /// Element `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        Ok(Self::decode(&self.raw.read_bytes(index, 1)?))
    }

    /// Set element `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.raw.write_bytes(index, &bytes_of(&value))
    }

    /// Read `out.len()` elements from `start` (one atomic read).
    pub fn read(&self, start: usize, out: &mut [T]) -> Result<()> {
        let got = self.raw.read_bytes(start, out.len())?;
        for (slot, chunk) in out
            .iter_mut()
            .zip(got.chunks_exact(std::mem::size_of::<T>()))
        {
            *slot = Self::decode(chunk);
        }
        Ok(())
    }

    /// Write `values` from `start` (one atomic write).
    pub fn write(&self, start: usize, values: &[T]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(bytes_of).collect();
        if values.is_empty() {
            return self.raw.offset(start, 0).map(|_| ());
        }
        self.raw.write_bytes(start, &bytes)
    }

    /// The whole array.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = vec![crate::payload::zeroed::<T>(); self.len()];
        self.read(0, &mut out)?;
        Ok(out)
    }

    /// The length (exactly as created).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the length is zero (never: arrays have at least one element).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `Ok(())` while the array exists, [`Error::Stale`] once it was erased.
    pub fn check(&self) -> Result<()> {
        self.raw.check()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        self.raw.type_descriptor()
    }

    /// The untyped handle.
    pub fn raw(&self) -> &RawArray {
        &self.raw
    }
}

impl<T: AtomicElement> Array<T> {
    /// Read element `index` (every remote read is atomic).
    pub fn load(&self, index: usize) -> Result<T> {
        self.get(index)
    }

    /// Store element `index`.
    pub fn store(&self, index: usize, value: T) -> Result<()> {
        self.set(index, value)
    }

    /// Add `delta` to element `index` (wrapping); returns the old value.
    pub fn fetch_add(&self, index: usize, delta: T) -> Result<T> {
        Ok(Self::decode(
            &self.raw.fetch_add_bytes(index, &bytes_of(&delta))?,
        ))
    }

    /// Replace element `index` with `new` if it equals `current`:
    /// `Ok(Ok(old))` on success, `Ok(Err(actual))` if it held another value.
    pub fn compare_exchange(&self, index: usize, current: T, new: T) -> Result<Result<T, T>> {
        let got = self
            .raw
            .compare_exchange_bytes(index, &bytes_of(&current), &bytes_of(&new))?;
        Ok(got.map(|b| Self::decode(&b)).map_err(|b| Self::decode(&b)))
    }
}

impl Segment {
    /// Create (`Some(open_ok)`) or open (`None`) an array of the type
    /// `descriptor` (`None`: whatever it holds).
    fn array(
        &self,
        name: &str,
        descriptor: Option<&str>,
        len: usize,
        create: Option<bool>,
    ) -> Result<RawArray> {
        let desc = descriptor.map(TypeDescriptor::parse).transpose()?;
        let size = desc.as_ref().map_or(0, |d| d.size());
        let bytes = (len as u64).saturating_mul(size);
        let shape = Shape {
            kind: "array",
            elem_type: desc.as_ref().map(|d| d.as_str()),
            key_type: Some(""),
            capacity: len as u64,
            bytes: bytes.min(MAX_BYTES + 1),
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        Ok(RawArray {
            inner: Arc::new(Inner {
                data: entry.key("d"),
                elem_size: TypeDescriptor::parse(&entry.record.elem_type)?.size() as usize,
                entry,
            }),
        })
    }

    fn typed_array<T: Element>(
        &self,
        name: &str,
        len: usize,
        create: Option<bool>,
    ) -> Result<Array<T>> {
        let raw = self.array(name, Some(&T::descriptor()), len, create)?;
        Ok(Array {
            raw,
            _t: PhantomData,
        })
    }

    /// Open the array `name`, creating it with `len` zero elements of type
    /// `descriptor` if it does not exist.
    pub fn open_or_create_array_raw(
        &self,
        name: &str,
        descriptor: &str,
        len: usize,
    ) -> Result<RawArray> {
        self.array(name, Some(descriptor), len, Some(true))
    }

    /// Open the array `name` whatever its element type.
    pub fn open_array_raw(&self, name: &str) -> Result<RawArray> {
        self.array(name, None, 0, None)
    }
}

super::entry_methods!(
    "an array of `len` elements of `T`, all zero", Array<T>, [T: Element], typed_array,
    create_array, open_array, open_or_create_array, (len: usize), (0)
);
