//! Opening a table entry as a structure: kind and type checks, block
//! validation, and the generation check that turns use-after-erase into
//! [`Error::Stale`].

use crate::error::{Error, Result};
use crate::layout::kind;
use crate::segment::{check_block, Segment};
use crate::sync::{AtomicU64, Ordering};
use crate::table::{EntryInfo, NewEntry};

/// An open entry: which one, which generation, where its block is.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) seg: Segment,
    pub(crate) info: EntryInfo,
    pub(crate) block: *mut u8,
    /// The entry's generation word, for the per-operation stale check.
    generation: *const AtomicU64,
}

// SAFETY: `block` points into the reference-counted mapping held by `seg`;
// the structures built on a Handle synchronise all access to it.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

/// [`Error::KindMismatch`]: `info` is not of kind `expected`.
fn kind_mismatch(info: &EntryInfo, expected: u32) -> Error {
    Error::KindMismatch {
        name: info.name.clone(),
        expected: kind::name(expected),
        found: kind::name(info.kind),
    }
}

/// What an opener expects of an entry.
pub(crate) struct Expect<'a> {
    pub kind: u32,
    pub elem_type: &'a str,
    pub elem_size: u32,
    pub key_type: &'a str,
    pub key_size: u32,
}

impl Handle {
    fn from_info(seg: &Segment, info: EntryInfo, expect: &Expect<'_>) -> Result<Handle> {
        if info.kind != expect.kind {
            return Err(kind_mismatch(&info, expect.kind));
        }
        if info.elem_type != expect.elem_type || info.elem_size != expect.elem_size {
            return Err(Error::TypeMismatch {
                name: info.name.clone(),
                expected: expect.elem_type.to_owned(),
                found: info.elem_type.clone(),
            });
        }
        if info.key_type != expect.key_type || info.key_size != expect.key_size {
            return Err(Error::TypeMismatch {
                name: info.name.clone(),
                expected: format!("key {}", expect.key_type),
                found: format!("key {}", info.key_type),
            });
        }
        Handle::at(seg, info)
    }

    /// A handle on `info` after checking its block (no kind or type checks).
    pub(crate) fn at(seg: &Segment, info: EntryInfo) -> Result<Handle> {
        check_block(&seg.map, &info)?;
        if info.size < crate::layout::CACHE_LINE {
            return Err(Error::Corrupt {
                name: seg.name().to_owned(),
                detail: format!(
                    "entry {:?}: its {}-byte block is smaller than any structure's header",
                    info.name, info.size
                ),
            });
        }
        // `info` may come from a caller (`Segment::inspect`): bound its index
        // by our own copy of the table size.
        let generation = match seg.map.table().entry(info.index) {
            Some(entry) => &entry.generation as *const AtomicU64,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "entry index {} is past the end of the {}-entry table",
                    info.index,
                    seg.table_capacity()
                )))
            }
        };
        // SAFETY: check_block proved offset + size lies inside the mapping.
        let block = unsafe { seg.map.base().add(info.offset as usize) };
        Ok(Handle {
            seg: seg.clone(),
            info,
            block,
            generation,
        })
    }

    /// Open the live entry `name`, checking kind and types.
    pub(crate) fn open(seg: &Segment, name: &str, expect: &Expect<'_>) -> Result<Handle> {
        seg.require_writable()?;
        let info = seg
            .map
            .table()
            .find(name)?
            .ok_or_else(|| Error::EntryNotFound {
                segment: seg.name().to_owned(),
                name: name.to_owned(),
            })?;
        Handle::from_info(seg, info, expect)
    }

    /// Create an entry (or with `existing_ok` open the existing one, checked
    /// against `expect`). `init` gets a pointer to the fresh, zeroed block.
    pub(crate) fn create(
        seg: &Segment,
        new: &NewEntry<'_>,
        expect: &Expect<'_>,
        existing_ok: bool,
        init: impl FnOnce(*mut u8) -> Result<()>,
    ) -> Result<(Handle, bool)> {
        seg.require_writable()?;
        let base = seg.map.base();
        let (info, created) = seg.map.table().create(new, existing_ok, |offset| {
            // SAFETY: `allocate` returned a zeroed block of at least
            // block_size bytes inside the mapping, which no other entry uses.
            let block = unsafe { base.add(offset as usize) };
            init(block)
        })?;
        Ok((Handle::from_info(seg, info, expect)?, created))
    }

    /// The first cache line of the block, where every kind keeps the fields
    /// fixed at creation: a private copy (see [`Line`](crate::layout::Line)),
    /// to validate and use instead of the shared bytes.
    pub(crate) fn first_line(&self) -> crate::layout::Line {
        // SAFETY: `at` checked that the block lies in the mapping, is
        // 64-aligned and holds at least CACHE_LINE bytes.
        unsafe { crate::layout::Line::read(self.block) }
    }

    /// `Err(Stale)` once the entry was erased after we opened it.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        // SAFETY: the word is in the table of the mapping that self.seg keeps alive.
        let generation = unsafe { &*self.generation };
        if generation.load(Ordering::Acquire) == self.info.generation {
            Ok(())
        } else {
            Err(self.stale())
        }
    }

    /// After copying data out of the block: `Err(Stale)` if the entry was
    /// erased meanwhile, so a copy that may come from a block another
    /// structure reused is never returned (the sequence-lock reader's
    /// second look; the fence keeps the copy's loads before it).
    #[inline]
    pub(crate) fn recheck(&self) -> Result<()> {
        crate::sync::fence(Ordering::Acquire);
        self.check()
    }

    /// The outcome of validating this entry's structure at open: a failure
    /// is [`Error::Stale`] when the entry was erased meanwhile (its block
    /// may already hold another structure, whose header then disagrees),
    /// not damage.
    pub(crate) fn fresh<T>(&self, validated: Result<T>) -> Result<T> {
        match validated {
            Err(Error::Corrupt { .. }) if self.recheck().is_err() => Err(self.stale()),
            other => other,
        }
    }

    #[cold]
    fn stale(&self) -> Error {
        Error::Stale {
            name: self.info.name.clone(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.name
    }

    /// [`Error::Full`] for this entry.
    #[cold]
    pub(crate) fn full(&self) -> Error {
        Error::Full {
            name: self.info.name.clone(),
        }
    }

    /// [`Error::Timeout`] for this entry.
    #[cold]
    pub(crate) fn timeout(&self) -> Error {
        Error::Timeout {
            name: self.info.name.clone(),
        }
    }

    /// [`Error::ShutDown`] for this entry.
    #[cold]
    pub(crate) fn shut_down(&self) -> Error {
        Error::ShutDown {
            name: self.info.name.clone(),
        }
    }

    pub(crate) fn corrupt(&self, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            name: self.seg.name().to_owned(),
            detail: format!("entry {:?}: {}", self.info.name, detail.into()),
        }
    }
}

/// The kind and element type of a typed structure (`Array<T>`, `Queue<T>`,
/// ...): everything needed to create or open its entry.
pub(crate) struct Typed {
    kind: u32,
    descriptor: String,
    elem_size: u32,
    key_descriptor: String,
    key_size: u32,
}

impl Typed {
    pub(crate) fn of<T: crate::element::Element>(kind: u32) -> Typed {
        Typed {
            kind,
            descriptor: T::descriptor(),
            elem_size: std::mem::size_of::<T>() as u32,
            key_descriptor: String::new(),
            key_size: 0,
        }
    }

    /// A structure whose element type is given by a descriptor at run time.
    pub(crate) fn described(kind: u32, descriptor: &str) -> Result<Typed> {
        let parsed = crate::element::TypeDescriptor::parse(descriptor)?;
        let elem_size = u32::try_from(parsed.size()).map_err(|_| {
            Error::InvalidArgument(format!(
                "elements of {} bytes are too large (at most 2^32 - 1)",
                parsed.size()
            ))
        })?;
        Ok(Typed {
            kind,
            descriptor: parsed.as_str().to_owned(),
            elem_size,
            key_descriptor: String::new(),
            key_size: 0,
        })
    }

    /// The types stored in the table for the entry `name`, to open it
    /// whatever it holds (run-time typed handles). The descriptors are
    /// re-parsed: the table is shared memory, so they are untrusted.
    pub(crate) fn stored(seg: &Segment, kind: u32, name: &str) -> Result<Typed> {
        let info = seg.entry(name)?.ok_or_else(|| Error::EntryNotFound {
            segment: seg.name().to_owned(),
            name: name.to_owned(),
        })?;
        if info.kind != kind {
            // Before parsing: another kind's types may not parse as ours
            // (a set has no element type).
            return Err(kind_mismatch(&info, kind));
        }
        if kind == crate::layout::kind::SET {
            return Typed::described_set(&info.key_type);
        }
        let mut typed = Typed::described(kind, &info.elem_type)?;
        if kind == crate::layout::kind::MAP {
            let key = Typed::described(kind, &info.key_type)?;
            typed.key_descriptor = key.descriptor;
            typed.key_size = key.elem_size;
        }
        Ok(typed)
    }

    /// A set of keys of type `key` (a descriptor): a map's entry whose
    /// values have no type and 0 bytes.
    pub(crate) fn described_set(key: &str) -> Result<Typed> {
        let key = Typed::described(crate::layout::kind::SET, key)?;
        Ok(Typed::keys(key.descriptor, key.elem_size))
    }

    /// A set of `K`.
    pub(crate) fn set<K: crate::element::Element>() -> Typed {
        Typed::keys(K::descriptor(), std::mem::size_of::<K>() as u32)
    }

    fn keys(key_descriptor: String, key_size: u32) -> Typed {
        Typed {
            kind: crate::layout::kind::SET,
            descriptor: String::new(),
            elem_size: 0,
            key_descriptor,
            key_size,
        }
    }

    pub(crate) fn kind(&self) -> u32 {
        self.kind
    }

    /// A map whose key and value types are given by descriptors at run time.
    pub(crate) fn described_map(key: &str, value: &str) -> Result<Typed> {
        let key = Typed::described(crate::layout::kind::MAP, key)?;
        Ok(Typed {
            key_descriptor: key.descriptor,
            key_size: key.elem_size,
            ..Typed::described(crate::layout::kind::MAP, value)?
        })
    }

    pub(crate) fn elem_size(&self) -> u32 {
        self.elem_size
    }

    pub(crate) fn key_size(&self) -> u32 {
        self.key_size
    }

    /// A map from `K` to `V`.
    pub(crate) fn map<K: crate::element::Element, V: crate::element::Element>() -> Typed {
        Typed {
            key_descriptor: K::descriptor(),
            key_size: std::mem::size_of::<K>() as u32,
            ..Typed::of::<V>(crate::layout::kind::MAP)
        }
    }

    fn expect(&self) -> Expect<'_> {
        Expect {
            kind: self.kind,
            elem_type: &self.descriptor,
            elem_size: self.elem_size,
            key_type: &self.key_descriptor,
            key_size: self.key_size,
        }
    }

    /// Open the live entry `name`, checking its kind and element type.
    pub(crate) fn open(&self, seg: &Segment, name: &str) -> Result<Handle> {
        Handle::open(seg, name, &self.expect())
    }

    /// Create the entry `name` (or with `existing_ok` open it) with a block
    /// of `block_size` bytes that `init` initialises.
    pub(crate) fn create(
        &self,
        seg: &Segment,
        name: &str,
        capacity: u64,
        block_size: u64,
        existing_ok: bool,
        init: impl FnOnce(*mut u8) -> Result<()>,
    ) -> Result<Handle> {
        let shape = if self.kind == crate::layout::kind::ARRAY {
            "length"
        } else {
            "capacity"
        };
        self.create_shaped(seg, name, capacity, block_size, existing_ok, shape, init)
    }

    /// [`create`](Typed::create) for a kind whose `Entry::capacity` is
    /// called `shape` in errors ("parties", "initial value").
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_shaped(
        &self,
        seg: &Segment,
        name: &str,
        capacity: u64,
        block_size: u64,
        existing_ok: bool,
        shape: &'static str,
        init: impl FnOnce(*mut u8) -> Result<()>,
    ) -> Result<Handle> {
        let new = NewEntry {
            name,
            kind: self.kind,
            elem_type: &self.descriptor,
            key_type: &self.key_descriptor,
            elem_size: self.elem_size,
            key_size: self.key_size,
            capacity,
            block_size,
        };
        let (handle, created) = Handle::create(seg, &new, &self.expect(), existing_ok, init)?;
        // Opening an existing entry while stating a shape: it must be that
        // shape (a silently different length or capacity hides bugs).
        if !created && handle.info.capacity != capacity {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                what: shape,
                expected: capacity,
                found: handle.info.capacity,
            });
        }
        Ok(handle)
    }
}

/// Bytes needed for `header` bytes plus `count` items of `item` bytes.
pub(crate) fn block_size(header: u64, count: u64, item: u64) -> Result<u64> {
    count
        .checked_mul(item)
        .and_then(|b| b.checked_add(header))
        .and_then(crate::alloc::align_up)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{count} elements of {item} bytes do not fit in a 64-bit size"
            ))
        })
}
