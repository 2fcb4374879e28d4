//! [`RawMap`]: a map whose key and value types are known at run time only,
//! and the `Segment` functions that create and open maps.

use super::*;

/// How to turn a typed key or value into the canonical bytes stored in a
/// slot: its bytes with every padding byte zero.
#[derive(Clone, Debug)]
pub(super) struct Canon {
    size: usize,
    /// Data byte ranges, or `None` when the type has no padding.
    ranges: Option<Vec<(usize, usize)>>,
}

impl Canon {
    /// For values of `size` bytes described by `descriptor`.
    pub(super) fn described(descriptor: &str, size: usize) -> Canon {
        // Descriptors were parsed at open; were one not to parse, copying
        // every byte (as the queue does) is the safe reading.
        let ranges = TypeDescriptor::parse(descriptor)
            .map(|d| d.data_ranges())
            .unwrap_or_else(|_| vec![(0, size as u64)]);
        let plain = ranges.len() == 1 && ranges[0] == (0, size as u64);
        Canon {
            size,
            ranges: (!plain).then(|| {
                ranges
                    .into_iter()
                    .map(|(o, l)| (o as usize, l as usize))
                    .filter(|&(o, l)| o + l <= size)
                    .collect()
            }),
        }
    }

    /// Call `f` with the canonical form of `bytes` (`size` bytes).
    #[inline(always)]
    pub(super) fn with_bytes<R>(&self, bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert_eq!(bytes.len(), self.size);
        // One call of `f` (not one per arm), so that it is inlined.
        let buf;
        let canonical = match &self.ranges {
            None => bytes,
            Some(_) => {
                buf = self.canonical(|off, len| &bytes[off..off + len]);
                &buf[..]
            }
        };
        f(canonical)
    }

    /// The canonical bytes: zeros, with the data ranges from `range(off, len)`.
    #[cold]
    fn canonical<'b>(&self, range: impl Fn(usize, usize) -> &'b [u8]) -> Vec<u8> {
        let mut buf = vec![0u8; self.size];
        for &(off, len) in self.ranges.iter().flatten() {
            buf[off..off + len].copy_from_slice(range(off, len));
        }
        buf
    }

    /// Call `f` with the canonical bytes of `v`.
    #[inline(always)]
    pub(super) fn with<T: Element, R>(&self, v: &T, f: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert_eq!(self.size, std::mem::size_of::<T>());
        let buf;
        let canonical = match &self.ranges {
            None => {
                // SAFETY: T has no padding (its descriptor says so), so all
                // size_of::<T>() bytes of `v` are initialised. The length is
                // the constant size_of::<T>() (equal to `self.size`, checked
                // at open), so the hash and the key compare are unrolled.
                unsafe {
                    std::slice::from_raw_parts(
                        (v as *const T).cast::<u8>(),
                        std::mem::size_of::<T>(),
                    )
                }
            }
            Some(_) => {
                let base = (v as *const T).cast::<u8>();
                // SAFETY: data ranges lie inside T and hold initialised
                // field bytes (padding is excluded).
                buf = self.canonical(|off, len| unsafe {
                    std::slice::from_raw_parts(base.add(off), len)
                });
                &buf[..]
            }
        };
        f(canonical)
    }
}

/// Fill a `T` from bytes written by `fill` (every bit pattern is a `T`).
#[inline(always)]
pub(super) fn read_typed<T: Element, E>(
    fill: impl FnOnce(&mut [u8]) -> std::result::Result<bool, E>,
) -> std::result::Result<Option<T>, E> {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: zeroed memory is initialised bytes; the slice covers exactly v.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of::<T>())
    };
    if fill(bytes)? {
        // SAFETY: all bytes are initialised and Element types accept any bits.
        Ok(Some(unsafe { v.assume_init() }))
    } else {
        Ok(None)
    }
}

/// A map whose key and value types are known at run time only, by their
/// type descriptors: keys and values go in and out as byte slices of
/// [`key_size`](RawMap::key_size) and [`value_size`](RawMap::value_size)
/// bytes. Python and C use this; [`Map<K, V>`] is the same map with Rust
/// types. Padding bytes of record keys are zeroed before use, so keys
/// compare by their data.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawmap-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_map_raw("hits", "<Q", "<q", 100)?;
/// raw.insert(&7u64.to_ne_bytes(), &(-3i64).to_ne_bytes(), None)?;
/// let hits = seg.open_map::<u64, i64>("hits")?;
/// assert_eq!(hits.get(&7)?, Some(-3));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct RawMap {
    pub(super) handle: Handle,
    pub(super) header: *const MapHeader,
    pub(super) shape: MapShape,
    pub(super) key: Canon,
    pub(super) value: Canon,
}

// SAFETY: all shared state is reached through atomics and the slot protocol;
// key and value bytes carry no Rust invariants.
unsafe impl Send for RawMap {}
// SAFETY: as above; every method takes &self and is safe to call concurrently.
unsafe impl Sync for RawMap {}

impl std::fmt::Debug for RawMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("name", &self.handle.name())
            .field("key_type", &self.handle.info.key_type)
            .field("value_type", &self.handle.info.elem_type)
            .field("capacity", &self.shape.capacity)
            .finish()
    }
}

impl Segment {
    /// Create the map `name` holding at most `capacity` keys. Key types
    /// must be at most [`MAX_KEY_SIZE`] bytes.
    pub fn create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Map<K, V>> {
        RawMap::create(self, Typed::map::<K, V>(), name, capacity as u64, false).map(Map::new)
    }

    /// Open the existing map `name`, checking its key and value types.
    pub fn open_map<K: Element, V: Element>(&self, name: &str) -> Result<Map<K, V>> {
        RawMap::from_handle(Typed::map::<K, V>().open(self, name)?).map(Map::new)
    }

    /// Open the map `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Map<K, V>> {
        RawMap::create(self, Typed::map::<K, V>(), name, capacity as u64, true).map(Map::new)
    }

    /// Create the map `name` from keys of type `key` to values of type
    /// `value` (type descriptors, see [`TypeDescriptor`]).
    pub fn create_map_raw(
        &self,
        name: &str,
        key: &str,
        value: &str,
        capacity: usize,
    ) -> Result<RawMap> {
        RawMap::create(
            self,
            Typed::described_map(key, value)?,
            name,
            capacity as u64,
            false,
        )
    }

    /// Open the map `name`, creating it if it does not exist. An existing
    /// map must have these key and value types.
    pub fn open_or_create_map_raw(
        &self,
        name: &str,
        key: &str,
        value: &str,
        capacity: usize,
    ) -> Result<RawMap> {
        RawMap::create(
            self,
            Typed::described_map(key, value)?,
            name,
            capacity as u64,
            true,
        )
    }

    /// Open the map `name` whatever its key and value types.
    pub fn open_map_raw(&self, name: &str) -> Result<RawMap> {
        RawMap::from_handle(Typed::stored(self, kind::MAP, name)?.open(self, name)?)
    }
}

impl RawMap {
    pub(super) fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawMap> {
        let (key_size, value_size) = (typed.key_size() as u64, typed.elem_size() as u64);
        let (map_kind, what) = (typed.kind(), kind::name(typed.kind()));
        if capacity == 0 || capacity > MAX_MAP_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "{what} capacity must be 1..={MAX_MAP_CAPACITY}, not {capacity}"
            )));
        }
        if key_size == 0 || key_size as usize > MAX_KEY_SIZE {
            return Err(Error::InvalidArgument(format!(
                "{what} keys must be 1..={MAX_KEY_SIZE} bytes, not {key_size}"
            )));
        }
        let stride = slot_stride(key_size, value_size);
        let (ctrl_offset, size) = block_layout(capacity, stride)?;
        let seed = crate::segment::random_seed() ^ seg.seed().rotate_left(17);
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe {
                init(
                    block,
                    map_kind,
                    capacity,
                    key_size,
                    value_size,
                    seed,
                    ctrl_offset,
                )
            };
            Ok(())
        })?;
        RawMap::from_handle(handle)
    }

    pub(super) fn from_handle(handle: Handle) -> Result<RawMap> {
        let (header, shape) = handle.fresh(validate(&handle))?;
        let header: *const MapHeader = header;
        let key = Canon::described(&handle.info.key_type, shape.key_size);
        let value = Canon::described(&handle.info.elem_type, shape.value_size);
        Ok(RawMap {
            handle,
            header,
            shape,
            key,
            value,
        })
    }

    /// The algorithm over this map, with the sizes of `shape`.
    #[inline]
    pub(super) fn core_with(&self, shape: MapShape) -> MapCore<'_> {
        // SAFETY: the header was validated at open and lives as long as the
        // mapping, which self.handle keeps alive.
        core_of(&self.handle, unsafe { &*self.header }, shape)
    }

    #[inline]
    pub(super) fn core(&self) -> MapCore<'_> {
        self.core_with(self.shape)
    }

    /// The algorithm with keys of `key_size` and values of `value_size`
    /// bytes, the sizes of a typed handle's types (the open checked the
    /// entry against them): spelt as constants there, they let the compiler
    /// specialise the algorithm for those types.
    #[inline]
    pub(super) fn core_sized(&self, key_size: usize, value_size: usize) -> MapCore<'_> {
        let shape = MapShape {
            capacity: self.shape.capacity,
            seed: self.shape.seed,
            ..MapShape::new(0, key_size, value_size, 0)
        };
        debug_assert_eq!(shape.stride, self.shape.stride);
        self.core_with(shape)
    }

    /// "map" or "set", for messages.
    pub(super) fn what(&self) -> &'static str {
        kind::name(self.handle.info.kind)
    }

    pub(super) fn fault(&self, fault: Fault) -> Error {
        match fault {
            Fault::Corrupt(detail) => self.handle.corrupt(detail),
            Fault::Full => self.handle.full(),
            Fault::Busy(pid) => Error::Busy {
                name: self.handle.name().to_owned(),
                pid,
                seconds: self.handle.seg.map.lock_timeout().as_secs(),
            },
        }
    }

    /// Run `op` holding the lock of the home slot of `key` (canonical bytes).
    #[inline]
    pub(super) fn locked<R>(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        op: impl FnOnce(&mut Locked<'_, '_>) -> std::result::Result<R, Fault>,
    ) -> Result<R> {
        self.handle.check()?;
        let key = core.key(key);
        let result = core.lock(&key).and_then(|mut guard| op(&mut guard));
        result.map_err(|f| self.fault(f))
    }

    // The operations below take canonical key and value bytes and a core;
    // the typed Map passes a core specialised to its sizes.

    #[inline(always)]
    pub(super) fn get_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        out: Option<&mut [u8]>,
    ) -> Result<bool> {
        self.handle.check()?;
        core.get(&core.key(key), out).map_err(|f| self.fault(f))
    }

    pub(super) fn insert_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        value: &[u8],
        old: Option<&mut [u8]>,
    ) -> Result<bool> {
        self.locked(core, key, |g| match g.find(old)? {
            Some((slot, _)) => {
                g.set_value(slot, value);
                Ok(true)
            }
            None => g.insert_new(value).map(|()| false),
        })
    }

    pub(super) fn get_or_insert_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        value: &[u8],
        out: &mut [u8],
    ) -> Result<bool> {
        self.locked(core, key, |g| match g.find(Some(&mut *out))? {
            Some(_) => Ok(true),
            None => {
                g.insert_new(value)?;
                out.copy_from_slice(value);
                Ok(false)
            }
        })
    }

    pub(super) fn remove_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        old: Option<&mut [u8]>,
    ) -> Result<bool> {
        self.locked(core, key, |g| match g.find(old)? {
            Some((slot, d)) => {
                g.remove_at(slot, d);
                Ok(true)
            }
            None => Ok(false),
        })
    }

    /// Atomic arithmetic needs native-order integer values.
    pub(super) fn require_word_value(&self) -> Result<()> {
        let integer = TypeDescriptor::parse(self.value_type())
            .ok()
            .and_then(|d| d.scalar())
            .is_some_and(|s| matches!(s, crate::element::Scalar::Int { .. }));
        if !integer {
            return Err(Error::InvalidArgument(format!(
                "map {:?} has values of type {:?}; atomic arithmetic needs integer values",
                self.handle.name(),
                self.value_type()
            )));
        }
        Ok(())
    }

    pub(super) fn fetch_add_in(&self, core: &MapCore<'_>, key: &[u8], delta: u64) -> Result<u64> {
        let size = self.shape.value_size;
        self.locked(core, key, |g| match g.find(None)? {
            Some((slot, _)) => {
                let old = int_of(&g.value_word(slot).to_ne_bytes()[..size]);
                g.set_value(slot, int_bytes(old.wrapping_add(delta), size).as_slice());
                Ok(old)
            }
            None => {
                g.insert_new(int_bytes(delta, size).as_slice())?;
                Ok(0)
            }
        })
    }

    pub(super) fn compare_exchange_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, Option<u64>>> {
        let size = self.shape.value_size;
        self.locked(core, key, |g| match g.find(None)? {
            Some((slot, _)) => {
                let old = int_of(&g.value_word(slot).to_ne_bytes()[..size]);
                if old == truncate(current, size) {
                    g.set_value(slot, int_bytes(new, size).as_slice());
                    Ok(Ok(old))
                } else {
                    Ok(Err(Some(old)))
                }
            }
            None => Ok(Err(None)),
        })
    }

    /// Check the length of a key and run `f` with its canonical bytes.
    pub(super) fn with_key<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        crate::payload::one(key.len(), self.shape.key_size, self.name()).map_err(|_| {
            Error::InvalidArgument(format!(
                "keys of {} {:?} have {} bytes, not {}",
                self.what(),
                self.name(),
                self.shape.key_size,
                key.len()
            ))
        })?;
        self.key.with_bytes(key, f)
    }

    /// Check the length of a value and run `f` with its canonical bytes.
    pub(super) fn with_value<R>(
        &self,
        value: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        crate::payload::one(value.len(), self.shape.value_size, self.name())?;
        self.value.with_bytes(value, f)
    }

    /// The value of `key` into `out` (`value_size` bytes); `false` when the
    /// key is absent. Never blocks writers.
    pub fn get(&self, key: &[u8], out: &mut [u8]) -> Result<bool> {
        crate::payload::one(out.len(), self.shape.value_size, self.name())?;
        let found = self.with_key(key, |k| self.get_in(&self.core(), k, Some(out)))?;
        // Erased meanwhile: the value may be another structure's bytes.
        self.handle.recheck()?;
        Ok(found)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.with_key(key, |k| self.get_in(&self.core(), k, None))
    }

    /// Set `key` to `value`. Returns whether the key was present, and then
    /// copies its previous value into `old` if given. [`Error::Full`] when
    /// the key is new and every slot is taken.
    pub fn insert(&self, key: &[u8], value: &[u8], old: Option<&mut [u8]>) -> Result<bool> {
        if let Some(old) = &old {
            crate::payload::one(old.len(), self.shape.value_size, self.name())?;
        }
        self.with_key(key, |k| {
            self.with_value(value, |v| self.insert_in(&self.core(), k, v, old))
        })
    }

    /// Copy `key`'s value into `out`, inserting `value` first if the key is
    /// absent. Returns whether the key was already present.
    pub fn get_or_insert(&self, key: &[u8], value: &[u8], out: &mut [u8]) -> Result<bool> {
        crate::payload::one(out.len(), self.shape.value_size, self.name())?;
        self.with_key(key, |k| {
            self.with_value(value, |v| self.get_or_insert_in(&self.core(), k, v, out))
        })
    }

    /// Remove `key`; returns whether it was present, and then copies its
    /// value into `old` if given.
    pub fn remove(&self, key: &[u8], old: Option<&mut [u8]>) -> Result<bool> {
        if let Some(old) = &old {
            crate::payload::one(old.len(), self.shape.value_size, self.name())?;
        }
        self.with_key(key, |k| self.remove_in(&self.core(), k, old))
    }

    /// For integer values (at most 8 bytes): add `delta` to the value of
    /// `key`, wrapping at the value's width, and return the previous value
    /// zero-extended to 64 bits (sign-extend it yourself for signed types;
    /// a negative `delta` is its two's complement). An absent key counts as
    /// zero and is inserted with `delta`.
    pub fn fetch_add(&self, key: &[u8], delta: u64) -> Result<u64> {
        self.require_word_value()?;
        self.with_key(key, |k| self.fetch_add_in(&self.core(), k, delta))
    }

    /// For integer values (at most 8 bytes): if `key`'s value is `current`
    /// (truncated to the value's width), set it to `new`. `Ok(previous)` on
    /// success, `Err(Some(actual))` when the value differs, `Err(None)` when
    /// the key is absent.
    pub fn compare_exchange(
        &self,
        key: &[u8],
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, Option<u64>>> {
        self.require_word_value()?;
        self.with_key(key, |k| {
            self.compare_exchange_in(&self.core(), k, current, new)
        })
    }

    /// Copy slot `slot`'s key and value out if it holds a live key
    /// (`Ok(false)` for a free slot or `slot >= capacity`). Iterating slots
    /// `0..capacity` visits every key present throughout exactly once (keys
    /// never move); this is what [`RawMap::iter`] does, for cursors that
    /// cannot hold a borrow.
    pub fn read_slot(&self, slot: usize, key: &mut [u8], value: &mut [u8]) -> Result<bool> {
        crate::payload::one(value.len(), self.shape.value_size, self.name())?;
        if key.len() != self.shape.key_size {
            return Err(Error::InvalidArgument(format!(
                "keys of {} {:?} have {} bytes, not {}",
                self.what(),
                self.name(),
                self.shape.key_size,
                key.len()
            )));
        }
        self.handle.check()?;
        let slot = slot as u64;
        if slot >= self.shape.capacity {
            return Ok(false);
        }
        self.core()
            .read_slot(slot, key, value)
            .map_err(|f| self.fault(f))
    }

    /// A weakly consistent iterator over `(key, value)` byte pairs; see
    /// [`Map::iter`]. Unreadable (damaged) slots are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
        // Ends once the map is erased (its memory may hold another
        // structure then).
        (0..self.shape.capacity as usize)
            .take_while(move |_| self.handle.check().is_ok())
            .filter_map(move |slot| {
                let mut key = vec![0; self.shape.key_size];
                let mut value = vec![0; self.shape.value_size];
                let read = matches!(self.read_slot(slot, &mut key, &mut value), Ok(true));
                (read && self.handle.check().is_ok()).then_some((key, value))
            })
    }

    /// Remove every key (keys inserted concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.handle.check()?;
        for (k, _) in self.iter() {
            self.remove(&k, None)?;
        }
        Ok(())
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write);
    /// 0 once the map was erased.
    pub fn len(&self) -> usize {
        if self.handle.check().is_err() {
            return 0;
        }
        self.core().len() as usize
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Ok(())` while the map behind this handle exists; [`Error::Stale`]
    /// once it was erased. Every key operation checks this itself; `len` and
    /// `is_empty` do not (they stay infallible), so call this first where a
    /// stale handle must not read as a count.
    pub fn check(&self) -> Result<()> {
        self.handle.check()
    }

    /// [`check`](RawMap::check) after copying a value out (see
    /// `Handle::recheck`).
    pub(crate) fn recheck(&self) -> Result<()> {
        self.handle.recheck()
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        self.shape.capacity as usize
    }

    /// Size of a key in bytes.
    pub fn key_size(&self) -> usize {
        self.shape.key_size
    }

    /// Size of a value in bytes.
    pub fn value_size(&self) -> usize {
        self.shape.value_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        &self.handle.info.key_type
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        &self.handle.info.elem_type
    }

    /// The name of the segment the map lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }
}

/// The unsigned integer whose native-order bytes are `bytes` (at most 8).
pub(super) fn int_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if cfg!(target_endian = "little") {
        b[..bytes.len()].copy_from_slice(bytes);
    } else {
        b[8 - bytes.len()..].copy_from_slice(bytes);
    }
    u64::from_ne_bytes(b)
}

/// The low `size` bytes of `v`, in native order.
pub(super) fn int_bytes(v: u64, size: usize) -> Vec<u8> {
    let b = v.to_ne_bytes();
    if cfg!(target_endian = "little") {
        b[..size].to_vec()
    } else {
        b[8 - size..].to_vec()
    }
}

/// `v` truncated to `size` bytes.
pub(super) fn truncate(v: u64, size: usize) -> u64 {
    if size >= 8 {
        v
    } else {
        v & ((1u64 << (size * 8)) - 1)
    }
}
