//! Remote arrays: one Redis string of `len × size_of::<T>()` bytes
//! (`d:G:E`), element `i` at byte `i × size`, zeroed at creation. Every
//! index is checked here against the length of the record the handle
//! opened, and every reply's size against what was asked for.

use super::entry::{bytes_of, from_bytes, Entry, Shape, MAX_BYTES};
use super::{scripts, Segment};
use crate::element::{AtomicElement, Element};
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;

/// A fixed-length array of `T` on a Redis server.
pub struct Array<T: Element> {
    entry: Arc<Entry>,
    data: Arc<str>,
    _t: PhantomData<T>,
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            entry: Arc::clone(&self.entry),
            data: Arc::clone(&self.data),
            _t: PhantomData,
        }
    }
}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Array")
            .field("segment", &self.entry.seg.name())
            .field("name", &self.entry.name)
            .field("len", &self.entry.record.capacity)
            .finish()
    }
}

impl<T: Element> Array<T> {
    const SIZE: usize = std::mem::size_of::<T>();

    /// The byte offset of `start..start + n`, checked against the length.
    fn offset(&self, start: usize, n: usize) -> Result<usize> {
        let len = self.len();
        match start.checked_add(n) {
            Some(end) if end <= len => Ok(start * Self::SIZE),
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
        self.entry.run(idempotent, |con| {
            let mut inv = self.entry.invocation(script);
            inv.key(&*self.data).arg(offset);
            for a in args {
                inv.arg(*a);
            }
            inv.invoke(con)
        })
    }

    fn decode(&self, b: &[u8]) -> Result<T> {
        from_bytes(b).ok_or_else(|| self.short())
    }

    fn short(&self) -> Error {
        self.entry
            .corrupt("the array's string is shorter than its length says")
    }

    /// Element `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        let off = self.offset(index, 1)?;
        let got: Vec<u8> = self.call(
            true,
            &scripts::ARRAY_READ,
            off,
            &[Self::SIZE.to_string().as_bytes()],
        )?;
        self.decode(&got)
    }

    /// Set element `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.write(index, &[value])
    }

    /// Read `out.len()` elements from `start` (one atomic read).
    pub fn read(&self, start: usize, out: &mut [T]) -> Result<()> {
        let off = self.offset(start, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let bytes = out.len() * Self::SIZE;
        let got: Vec<u8> = self.call(
            true,
            &scripts::ARRAY_READ,
            off,
            &[bytes.to_string().as_bytes()],
        )?;
        if got.len() != bytes {
            return Err(self.short());
        }
        for (slot, chunk) in out.iter_mut().zip(got.chunks_exact(Self::SIZE)) {
            *slot = self.decode(chunk)?;
        }
        Ok(())
    }

    /// Write `values` from `start` (one atomic write).
    pub fn write(&self, start: usize, values: &[T]) -> Result<()> {
        let off = self.offset(start, values.len())?;
        if values.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| bytes_of(v)).collect();
        self.call::<i64>(true, &scripts::ARRAY_WRITE, off, &[&bytes])
            .map(|_| ())
    }

    /// The whole array.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut out = vec![crate::payload::zeroed::<T>(); self.len()];
        self.read(0, &mut out)?;
        Ok(out)
    }

    /// The length (exactly as created).
    pub fn len(&self) -> usize {
        self.entry.record.capacity as usize
    }

    /// Whether the length is zero (never: arrays have at least one element).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Ok(())` while the array exists, [`Error::Stale`] once it was erased.
    pub fn check(&self) -> Result<()> {
        self.get(0).map(|_| ())
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.entry.record.elem_type
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
        let off = self.offset(index, 1)?;
        let got: Vec<u8> =
            self.call(false, &scripts::ARRAY_FETCH_ADD, off, &[&bytes_of(&delta)])?;
        self.decode(&got)
    }

    /// Replace element `index` with `new` if it equals `current`:
    /// `Ok(Ok(old))` on success, `Ok(Err(actual))` if it held another value.
    pub fn compare_exchange(&self, index: usize, current: T, new: T) -> Result<Result<T, T>> {
        let off = self.offset(index, 1)?;
        let (swapped, old): (i64, Vec<u8>) = self.call(
            false,
            &scripts::ARRAY_COMPARE_EXCHANGE,
            off,
            &[&bytes_of(&current), &bytes_of(&new)],
        )?;
        let old = self.decode(&old)?;
        Ok(if swapped == 1 { Ok(old) } else { Err(old) })
    }
}

impl Segment {
    fn array_entry<T: Element>(
        &self,
        name: &str,
        len: usize,
        create: Option<bool>,
    ) -> Result<Array<T>> {
        let desc = T::descriptor();
        let bytes = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
        let shape = Shape {
            kind: "array",
            elem_type: &desc,
            key_type: "",
            capacity: len as u64,
            bytes: bytes.min(MAX_BYTES + 1),
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        Ok(Array {
            data: entry.key("d").into(),
            entry: Arc::new(entry),
            _t: PhantomData,
        })
    }

    /// Create an array of `len` elements of `T`, all zero.
    pub fn create_array<T: Element>(&self, name: &str, len: usize) -> Result<Array<T>> {
        self.array_entry(name, len, Some(false))
    }

    /// Open the array `name`, which must hold `T`.
    pub fn open_array<T: Element>(&self, name: &str) -> Result<Array<T>> {
        self.array_entry(name, 0, None)
    }

    /// Open the array `name`, creating it with `len` zero elements if it
    /// does not exist.
    pub fn open_or_create_array<T: Element>(&self, name: &str, len: usize) -> Result<Array<T>> {
        self.array_entry(name, len, Some(true))
    }
}
