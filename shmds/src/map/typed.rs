//! [`Map<K, V>`]: the map with Rust key and value types, over [`RawMap`].

use super::*;

/// A fixed-capacity concurrent hash map from `K` to `V` in shared memory.
///
/// Keys are compared by their bytes (with padding zeroed); string keys use
/// [`FixedStr`](crate::FixedStr). Every method takes `&self` and may run
/// concurrently with any other, in any process.
///
/// ```
/// use shmds::{FixedStr, Segment};
/// # let name = format!("doc-map-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let prices = seg.create_map::<FixedStr<8>, f64>("prices", 100)?;
/// let aapl = FixedStr::new("AAPL")?;
/// assert_eq!(prices.insert(aapl, 189.5)?, None);
/// assert_eq!(prices.insert(aapl, 190.0)?, Some(189.5));
/// assert_eq!(prices.get(&aapl)?, Some(190.0));
///
/// let hits = seg.create_map::<u64, u64>("hits", 100)?;
/// hits.fetch_add(&7, 1)?;
/// hits.fetch_add(&7, 1)?;
/// assert_eq!(hits.get(&7)?, Some(2));
/// assert_eq!(hits.compare_exchange(&7, 2, 10)?, Ok(2));
/// assert_eq!(hits.remove(&7)?, Some(10));
/// assert!(hits.is_empty());
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/map.rs` and FORMAT.md for the algorithm, the progress
/// guarantee of each operation and what a crashed process leaves behind.
#[derive(Clone)]
pub struct Map<K: Element, V: Element> {
    pub(super) raw: RawMap,
    pub(super) _t: PhantomData<(K, V)>,
}

impl<K: Element, V: Element> std::fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<K: Element, V: Element> Map<K, V> {
    pub(super) fn new(raw: RawMap) -> Map<K, V> {
        debug_assert_eq!(raw.shape.key_size, std::mem::size_of::<K>());
        debug_assert_eq!(raw.shape.value_size, std::mem::size_of::<V>());
        Map {
            raw,
            _t: PhantomData,
        }
    }

    #[inline(always)]
    pub(super) fn core(&self) -> MapCore<'_> {
        self.raw
            .core_sized(std::mem::size_of::<K>(), std::mem::size_of::<V>())
    }

    /// The value of `key`, if present. Never blocks writers (see the module
    /// docs).
    #[inline]
    pub fn get<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        let core = self.core();
        let value = self.raw.key.with(&key, |k| {
            read_typed::<V, Error>(|out| self.raw.get_in(&core, k, Some(out)))
        })?;
        // Erased meanwhile: the value may be another structure's bytes.
        self.raw.recheck()?;
        Ok(value)
    }

    /// Whether `key` is present.
    pub fn contains_key<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        let Some(key) = key.to_key() else {
            return Ok(false);
        };
        let core = self.core();
        self.raw.key.with(&key, |k| self.raw.get_in(&core, k, None))
    }

    /// Set `key` to `value`; returns the previous value. [`Error::Full`]
    /// when the key is new and every slot is taken.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let core = self.core();
        self.raw.key.with(&key, |k| {
            self.raw.value.with(&value, |v| {
                read_typed::<V, Error>(|old| self.raw.insert_in(&core, k, v, Some(old)))
            })
        })
    }

    /// The value of `key`, inserting `value` first if the key is absent
    /// (Python's `setdefault`).
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V> {
        let core = self.core();
        let found = self.raw.key.with(&key, |k| {
            self.raw.value.with(&value, |v| {
                read_typed::<V, Error>(|out| {
                    self.raw.get_or_insert_in(&core, k, v, out)?;
                    Ok(true)
                })
            })
        })?;
        Ok(found.unwrap_or(value))
    }

    /// Remove `key`; returns its value if it was present. The slot is free
    /// for any key at once.
    pub fn remove<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        let core = self.core();
        self.raw.key.with(&key, |k| {
            read_typed::<V, Error>(|old| self.raw.remove_in(&core, k, Some(old)))
        })
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `Ok(())` while the map exists, [`Error::Stale`] once it was erased
    /// (see [`RawMap::check`]; `len` and `is_empty` do not check).
    pub fn check(&self) -> Result<()> {
        self.raw.check()
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The home slot of `key` (FORMAT.md), for tests and byte-level tools.
    #[doc(hidden)]
    pub fn home_slot(&self, key: &K) -> usize {
        let core = self.core();
        self.raw.key.with(key, |k| core.home_of(core.key(k).hash)) as usize
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        self.raw.key_type()
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        self.raw.value_type()
    }

    /// A weakly consistent iterator over `(key, value)` pairs: every key
    /// present for the whole iteration is yielded exactly once (keys never
    /// move); keys inserted or removed meanwhile may or may not be. Slots
    /// that cannot be read (a damaged segment) are skipped; `Segment::check`
    /// reports them.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter { map: self, next: 0 }
    }

    /// Remove every key (each removal as by [`Map::remove`]; keys inserted
    /// concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.raw.clear()
    }

    pub(super) fn read_slot(&self, slot: u64) -> std::result::Result<Option<(K, V)>, Fault> {
        let core = self.core();
        let mut value = None;
        let key = read_typed::<K, Fault>(|k| {
            value = read_typed::<V, Fault>(|v| core.read_slot(slot, k, v))?;
            Ok(value.is_some())
        })?;
        Ok(key.zip(value))
    }
}

impl<K: Element, V: AtomicElement> Map<K, V> {
    /// Add `delta` (wrapping) to the value of `key` and return the previous
    /// value; an absent key counts as zero and is inserted with `delta`.
    /// Atomic: concurrent `fetch_add`s from any processes all count.
    pub fn fetch_add(&self, key: &K, delta: V) -> Result<V> {
        let core = self.core();
        let old = self
            .raw
            .key
            .with(key, |k| self.raw.fetch_add_in(&core, k, bits_of(delta)))?;
        Ok(from_bits(old))
    }

    /// If `key`'s value is `current`, set it to `new`. Returns `Ok(previous)`
    /// on success, `Err(Some(actual))` when the value differs and
    /// `Err(None)` when the key is absent.
    pub fn compare_exchange(
        &self,
        key: &K,
        current: V,
        new: V,
    ) -> Result<std::result::Result<V, Option<V>>> {
        let core = self.core();
        let result = self.raw.key.with(key, |k| {
            self.raw
                .compare_exchange_in(&core, k, bits_of(current), bits_of(new))
        })?;
        Ok(result.map(from_bits).map_err(|e| e.map(from_bits)))
    }
}

/// An integer element as the unsigned integer of its bytes.
pub(super) fn bits_of<V: AtomicElement>(v: V) -> u64 {
    // SAFETY: integer AtomicElements have no padding; the slice covers v.
    let bytes = unsafe {
        std::slice::from_raw_parts((&v as *const V).cast::<u8>(), std::mem::size_of::<V>())
    };
    int_of(bytes)
}

/// The integer element whose bytes are the low bytes of `bits`.
pub(super) fn from_bits<V: AtomicElement>(bits: u64) -> V {
    read_typed::<V, ()>(|b| {
        b.copy_from_slice(&int_bytes(bits, b.len()));
        Ok(true)
    })
    .ok()
    .flatten()
    .expect("filled")
}

/// Iterator over a [`Map`]'s pairs; see [`Map::iter`].
pub struct Iter<'m, K: Element, V: Element> {
    pub(super) map: &'m Map<K, V>,
    pub(super) next: u64,
}

impl<K: Element, V: Element> Iterator for Iter<'_, K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        next_live(&self.map.raw, &mut self.next, |slot| {
            self.map.read_slot(slot)
        })
    }
}

/// The next key (pair) that `read` finds live in slots `*next ..`, of the
/// map (or set) `raw`; the iterators of `Map` and `Set`.
pub(super) fn next_live<T>(
    raw: &RawMap,
    next: &mut u64,
    mut read: impl FnMut(u64) -> std::result::Result<Option<T>, Fault>,
) -> Option<T> {
    // Ends once the map is erased: its memory may hold another structure
    // then (checked after each read too, so a key read from a reused block
    // is never yielded).
    while *next < raw.shape.capacity && raw.check().is_ok() {
        let slot = *next;
        *next += 1;
        if let Ok(Some(item)) = read(slot) {
            return raw.check().is_ok().then_some(item);
        }
    }
    None
}
