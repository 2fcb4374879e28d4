//! [`Set<K>`] and [`RawSet`]: a concurrent set of keys, the map's sibling.
//!
//! A set's block is a map block whose header says kind SET and whose values
//! have 0 bytes (its slots are the three control words and the key). The
//! algorithm is the map's, run by the same code: an insert is the map's
//! "get or insert" with an empty value, so it never rewrites a slot that
//! holds its key. Progress and what a crashed process leaves behind are as
//! for maps (see `mod.rs`); with no value, nothing is ever torn.

use super::*;

/// A set of keys whose type is known at run time only, by its type
/// descriptor: keys go in and out as byte slices of
/// [`key_size`](RawSet::key_size) bytes. Python and C use this; [`Set<K>`]
/// is the same set with a Rust type. Padding bytes of record keys are
/// zeroed before use, so keys compare by their data.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawset-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_set_raw("seen", "<Q", 100)?;
/// assert!(raw.insert(&7u64.to_ne_bytes())?);
/// let seen = seg.open_set::<u64>("seen")?;
/// assert!(seen.contains(&7)?);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct RawSet {
    map: RawMap,
}

impl std::fmt::Debug for RawSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Set")
            .field("name", &self.name())
            .field("key_type", &self.key_type())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Segment {
    /// Create the set `name` holding at most `capacity` keys. Key types
    /// must be at most [`MAX_KEY_SIZE`] bytes.
    pub fn create_set<K: Element>(&self, name: &str, capacity: usize) -> Result<Set<K>> {
        RawSet::create(self, Typed::set::<K>(), name, capacity as u64, false).map(Set::new)
    }

    /// Open the existing set `name`, checking its key type. A map (or any
    /// other kind) of that name is [`Error::KindMismatch`].
    pub fn open_set<K: Element>(&self, name: &str) -> Result<Set<K>> {
        RawSet::from_handle(Typed::set::<K>().open(self, name)?).map(Set::new)
    }

    /// Open the set `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_set<K: Element>(&self, name: &str, capacity: usize) -> Result<Set<K>> {
        RawSet::create(self, Typed::set::<K>(), name, capacity as u64, true).map(Set::new)
    }

    /// Create the set `name` of keys of type `key` (a type descriptor, see
    /// [`TypeDescriptor`]).
    pub fn create_set_raw(&self, name: &str, key: &str, capacity: usize) -> Result<RawSet> {
        RawSet::create(
            self,
            Typed::described_set(key)?,
            name,
            capacity as u64,
            false,
        )
    }

    /// Open the set `name`, creating it if it does not exist. An existing
    /// set must have this key type.
    pub fn open_or_create_set_raw(&self, name: &str, key: &str, capacity: usize) -> Result<RawSet> {
        RawSet::create(
            self,
            Typed::described_set(key)?,
            name,
            capacity as u64,
            true,
        )
    }

    /// Open the set `name` whatever its key type.
    pub fn open_set_raw(&self, name: &str) -> Result<RawSet> {
        RawSet::from_handle(Typed::stored(self, kind::SET, name)?.open(self, name)?)
    }
}

/// Insert `key` (canonical bytes) into the set `map` with `core`; whether
/// it is new. A set's values have 0 bytes: "get or insert" with an empty
/// value is "insert unless present", and never rewrites a slot.
fn add(map: &RawMap, core: &MapCore<'_>, key: &[u8]) -> Result<bool> {
    map.get_or_insert_in(core, key, &[], &mut [])
        .map(|present| !present)
}

impl RawSet {
    fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawSet> {
        RawMap::create(seg, typed, name, capacity, existing_ok).map(|map| RawSet { map })
    }

    fn from_handle(handle: Handle) -> Result<RawSet> {
        RawMap::from_handle(handle).map(|map| RawSet { map })
    }

    /// Add `key` (exactly [`key_size`](RawSet::key_size) bytes). `true` if
    /// it was not in the set; [`Error::Full`] when it is new and every slot
    /// is taken.
    pub fn insert(&self, key: &[u8]) -> Result<bool> {
        self.map
            .with_key(key, |k| add(&self.map, &self.map.core(), k))
    }

    /// Whether `key` is in the set. Never blocks writers.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.map.contains_key(key)
    }

    /// Remove `key`; `true` if it was in the set.
    pub fn remove(&self, key: &[u8]) -> Result<bool> {
        self.map.remove(key, None)
    }

    /// Copy slot `slot`'s key out if it holds one (`Ok(false)` for a free
    /// slot or `slot >= capacity`): a cursor over slots `0..capacity` (see
    /// [`RawMap::read_slot`]).
    pub fn read_slot(&self, slot: usize, key: &mut [u8]) -> Result<bool> {
        self.map.read_slot(slot, key, &mut [])
    }

    /// A weakly consistent iterator over the keys' bytes; see [`Set::iter`].
    pub fn iter(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.map.iter().map(|(key, _)| key)
    }

    /// Remove every key (keys inserted concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.map.clear()
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write);
    /// 0 once the set was erased.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `Ok(())` while the set exists, [`Error::Stale`] once it was erased
    /// (see [`RawMap::check`]; `len` and `is_empty` do not check).
    pub fn check(&self) -> Result<()> {
        self.map.check()
    }

    /// The most keys the set holds.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Size of a key in bytes.
    pub fn key_size(&self) -> usize {
        self.map.key_size()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.map.name()
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        self.map.key_type()
    }

    /// The name of the segment the set lives in.
    pub fn segment_name(&self) -> &str {
        self.map.segment_name()
    }
}

/// A fixed-capacity concurrent set of keys of type `K` in shared memory:
/// the [`Map`]'s sibling, with the same key types and the same algorithm.
///
/// Keys are compared by their bytes (with padding zeroed); string keys use
/// [`FixedStr`](crate::FixedStr). Every method takes `&self` and may run
/// concurrently with any other, in any process: two processes inserting the
/// same key make it present once, and exactly one of them is told it was new.
///
/// ```
/// use shmds::{FixedStr, Segment};
/// # let name = format!("doc-set-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let seen = seg.create_set::<u64>("seen", 100)?;
/// assert!(seen.insert(7)?); // new
/// assert!(!seen.insert(7)?); // already there
/// assert!(seen.contains(&7)?);
/// assert_eq!(seen.len(), 1);
///
/// // Another handle (in another process, typically) sees the same keys.
/// let again = seg.open_set::<u64>("seen")?;
/// assert_eq!(again.iter().collect::<Vec<_>>(), vec![7]);
/// assert!(again.remove(&7)?);
/// assert!(seen.is_empty());
///
/// let symbols = seg.create_set::<FixedStr<8>>("symbols", 10)?;
/// symbols.insert(FixedStr::new("AAPL")?)?;
/// assert!(symbols.contains(&FixedStr::new("AAPL")?)?);
/// // A set is not a map.
/// assert!(matches!(
///     seg.open_map::<u64, u64>("seen"),
///     Err(shmds::Error::KindMismatch { .. })
/// ));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Set<K: Element> {
    raw: RawSet,
    _t: PhantomData<K>,
}

impl<K: Element> std::fmt::Debug for Set<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<K: Element> Set<K> {
    fn new(raw: RawSet) -> Set<K> {
        debug_assert_eq!(raw.key_size(), std::mem::size_of::<K>());
        Set {
            raw,
            _t: PhantomData,
        }
    }

    #[inline]
    fn core(&self) -> MapCore<'_> {
        self.raw.map.core_sized(std::mem::size_of::<K>(), 0)
    }

    /// Add `key`: `true` if it was not in the set. [`Error::Full`] when the
    /// key is new and every slot is taken.
    pub fn insert(&self, key: K) -> Result<bool> {
        let core = self.core();
        self.raw
            .map
            .key
            .with(&key, |k| add(&self.raw.map, &core, k))
    }

    /// Whether `key` is in the set. Never blocks writers.
    #[inline]
    pub fn contains<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        let Some(key) = key.to_key() else {
            return Ok(false);
        };
        let core = self.core();
        self.raw
            .map
            .key
            .with(&key, |k| self.raw.map.get_in(&core, k, None))
    }

    /// Remove `key`; `true` if it was in the set. The slot is free for any
    /// key at once.
    pub fn remove<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        let Some(key) = key.to_key() else {
            return Ok(false);
        };
        let core = self.core();
        self.raw
            .map
            .key
            .with(&key, |k| self.raw.map.remove_in(&core, k, None))
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The most keys the set holds.
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
    }

    /// A weakly consistent iterator over the keys, as [`Map::iter`]: every
    /// key present for the whole iteration is yielded exactly once (keys
    /// never move); keys inserted or removed meanwhile may or may not be.
    pub fn iter(&self) -> SetIter<'_, K> {
        SetIter { set: self, next: 0 }
    }

    /// Remove every key (each removal as by [`Set::remove`]; keys inserted
    /// concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.raw.clear()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        self.raw.key_type()
    }

    /// `Ok(())` while the set exists, [`Error::Stale`] once it was erased
    /// (`len` and `is_empty` do not check).
    pub fn check(&self) -> Result<()> {
        self.raw.check()
    }

    /// The home slot of `key` (FORMAT.md), for tests and byte-level tools.
    #[doc(hidden)]
    pub fn home_slot(&self, key: &K) -> usize {
        let core = self.core();
        self.raw
            .map
            .key
            .with(key, |k| core.home_of(core.key(k).hash)) as usize
    }
}

/// Iterator over a [`Set`]'s keys; see [`Set::iter`].
pub struct SetIter<'s, K: Element> {
    set: &'s Set<K>,
    next: u64,
}

impl<K: Element> Iterator for SetIter<'_, K> {
    type Item = K;

    fn next(&mut self) -> Option<K> {
        let core = self.set.core();
        typed::next_live(&self.set.raw.map, &mut self.next, |slot| {
            read_typed::<K, Fault>(|k| core.read_slot(slot, k, &mut []))
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Error, FixedStr, Segment};
    use std::io::{Seek, SeekFrom, Write};

    /// A temporary segment: removed when its last handle is dropped, also
    /// when a test fails (or the process dies).
    fn segment(tag: &str) -> Segment {
        let name = format!("shmds-unit-set-{tag}-{}", std::process::id());
        let options = Segment::options().size(4 << 20).temporary(true);
        options.create(&name).unwrap()
    }

    crate::record! {
        #[derive(Debug, Clone, Copy, PartialEq)]
        struct Padded {
            venue: u8,
            seq: u64,
        }
    }

    #[test]
    fn insert_contains_remove_iterate_clear() {
        let seg = segment("basic");
        let set = seg.create_set::<u64>("s", 10).unwrap();
        assert_eq!((set.capacity(), set.len(), set.is_empty()), (10, 0, true));
        assert!(!set.contains(&1).unwrap());
        assert!(set.insert(1).unwrap());
        assert!(set.insert(2).unwrap());
        assert!(!set.insert(1).unwrap());
        assert!(set.contains(&1).unwrap() && set.contains(&2).unwrap());
        assert_eq!(set.len(), 2);
        let mut keys: Vec<u64> = set.iter().collect();
        keys.sort();
        assert_eq!(keys, [1, 2]);
        assert!(set.remove(&1).unwrap());
        assert!(!set.remove(&1).unwrap());
        assert_eq!(set.len(), 1);
        for k in 10..15 {
            set.insert(k).unwrap();
        }
        set.clear().unwrap();
        assert!(set.is_empty() && set.iter().next().is_none());
        assert_eq!((set.name(), set.key_type()), ("s", "<Q"));
        assert!(format!("{set:?}").contains("Set"));
        let report = seg.check();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    #[test]
    fn the_entry_and_block_are_a_maps_without_values() {
        let seg = segment("entry");
        let set = seg.create_set::<u64>("s", 100).unwrap();
        set.insert(5).unwrap();
        set.insert(6).unwrap();
        let info = seg.entry("s").unwrap().unwrap();
        assert_eq!(info.kind, crate::layout::kind::SET);
        assert_eq!(info.kind_name(), "set");
        assert_eq!((info.elem_type.as_str(), info.elem_size), ("", 0));
        assert_eq!((info.key_type.as_str(), info.key_size), ("<Q", 8));
        // Slots of 24 bytes of control words and one key word, no value.
        assert!(info.size >= crate::layout::MAP_HEADER_SIZE + 100 * 32);
        assert!(info.size < crate::layout::MAP_HEADER_SIZE + 100 * 40);
        assert_eq!(seg.inspect(&info).unwrap(), Some(2));
        let report = seg.check();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    #[test]
    fn full_sets_and_slot_reuse() {
        let seg = segment("full");
        let set = seg.create_set::<u32>("s", 2).unwrap();
        assert!(set.insert(1).unwrap() && set.insert(2).unwrap());
        assert!(matches!(set.insert(3), Err(Error::Full { .. })));
        // A key already there needs no room.
        assert!(!set.insert(2).unwrap());
        assert!(set.remove(&1).unwrap());
        assert!(set.insert(3).unwrap());
        // Freed slots are reused at once: no tombstones to run out of.
        let mut last = 3;
        for k in 100..1100 {
            assert!(set.remove(&last).unwrap());
            assert!(set.insert(k).unwrap());
            last = k;
        }
        assert_eq!(set.len(), 2);
        assert!(set.contains(&2).unwrap() && set.contains(&1099).unwrap());
    }

    #[test]
    fn string_and_padded_record_keys() {
        let seg = segment("keys");
        let symbols = seg.create_set::<FixedStr<8>>("symbols", 16).unwrap();
        let aapl = FixedStr::new("AAPL").unwrap();
        assert!(symbols.insert(aapl).unwrap());
        assert!(symbols.contains(&aapl).unwrap());
        assert!(!symbols.contains(&FixedStr::new("AAP").unwrap()).unwrap());
        let raw = seg.open_set_raw("symbols").unwrap();
        assert_eq!(raw.key_type(), "T{B:len:8s:bytes:}");
        assert_eq!(raw.key_size(), 9);
        assert!(raw.iter().any(|k| k[0] == 4 && &k[1..5] == b"AAPL"));

        let padded = seg.create_set::<Padded>("padded", 16).unwrap();
        let key = Padded { venue: 1, seq: 99 };
        assert!(padded.insert(key).unwrap());
        // The same data with other padding bytes is the same key.
        let raw = seg.open_set_raw("padded").unwrap();
        let mut bytes = [0xaau8; 16];
        bytes[0] = 1;
        bytes[8..].copy_from_slice(&99u64.to_ne_bytes());
        assert!(raw.contains(&bytes).unwrap());
        assert!(!raw.insert(&bytes).unwrap());
        assert_eq!(padded.iter().collect::<Vec<_>>(), [key]);
    }

    #[test]
    fn raw_and_typed_handles_share_keys() {
        let seg = segment("raw");
        let raw = seg.create_set_raw("s", "<q", 8).unwrap();
        assert!(raw.insert(&(-3i64).to_ne_bytes()).unwrap());
        let typed = seg.open_set::<i64>("s").unwrap();
        assert!(typed.contains(&-3).unwrap());
        assert!(typed.insert(4).unwrap());
        let mut key = [0u8; 8];
        let found: Vec<i64> = (0..raw.capacity())
            .filter_map(|slot| {
                let live = raw.read_slot(slot, &mut key).unwrap();
                live.then_some(i64::from_ne_bytes(key))
            })
            .collect();
        assert_eq!(found.len(), 2);
        assert!(!raw.read_slot(raw.capacity(), &mut key).unwrap());
        assert!(matches!(
            raw.insert(&[1, 2, 3]),
            Err(Error::InvalidArgument(m)) if m.contains("keys of set")
        ));
        assert!(matches!(
            raw.read_slot(0, &mut [0; 4]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(raw.remove(&4i64.to_ne_bytes()).unwrap());
        let again = seg.open_or_create_set_raw("s", "<q", 8).unwrap();
        assert_eq!((again.len(), again.segment_name()), (1, seg.name()));
        let fresh = seg.open_or_create_set::<i64>("fresh", 4).unwrap();
        assert!(fresh.is_empty());
    }

    #[test]
    fn kinds_types_shapes_and_erased_sets() {
        let seg = segment("kinds");
        let set = seg.create_set::<u64>("s", 8).unwrap();
        seg.create_map::<u64, u64>("m", 8).unwrap();
        let kind = |e: Error| matches!(e, Error::KindMismatch { .. });
        assert!(kind(seg.open_map::<u64, u64>("s").unwrap_err()));
        assert!(kind(seg.open_map_raw("s").unwrap_err()));
        assert!(kind(seg.open_set::<u64>("m").unwrap_err()));
        assert!(kind(seg.open_set_raw("m").unwrap_err()));
        assert!(kind(seg.open_or_create_set::<u64>("m", 8).unwrap_err()));
        assert!(kind(seg.open_array::<u64>("s").unwrap_err()));
        assert!(matches!(
            seg.open_set::<u32>("s"),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            seg.open_or_create_set_raw("s", "<i", 8),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            seg.open_or_create_set::<u64>("s", 9),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            seg.create_set::<u64>("s", 8),
            Err(Error::EntryExists { .. })
        ));
        assert!(matches!(
            seg.create_set::<[u8; 300]>("big", 8),
            Err(Error::InvalidArgument(m)) if m.contains("set keys")
        ));
        assert!(matches!(
            seg.create_set::<u8>("zero", 0),
            Err(Error::InvalidArgument(m)) if m.contains("set capacity")
        ));
        assert!(matches!(
            seg.create_set_raw("bad", "nonsense", 8),
            Err(Error::InvalidType { .. })
        ));
        set.insert(1).unwrap();
        assert!(set.check().is_ok());
        seg.erase("s").unwrap();
        let stale = |r: crate::Result<bool>| matches!(r, Err(Error::Stale { .. }));
        assert!(matches!(set.check(), Err(Error::Stale { .. })));
        assert!(stale(set.contains(&1)) && stale(set.insert(2)) && stale(set.remove(&1)));
        assert_eq!(set.len(), 0);
        assert!(set.iter().next().is_none());
    }

    #[test]
    fn threads_insert_each_key_exactly_once() {
        let seg = segment("threads");
        let set = seg.create_set::<u64>("s", 512).unwrap();
        let news: Vec<Vec<u64>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let set = &set;
                    scope.spawn(move || {
                        // Overlapping ranges: every key is tried by two threads.
                        (t * 100..t * 100 + 200)
                            .filter(|&k| set.insert(k).unwrap())
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = news.into_iter().flatten().collect();
        all.sort();
        assert_eq!(
            all,
            (0..500).collect::<Vec<u64>>(),
            "a key added twice or lost"
        );
        assert_eq!(set.len(), 500);
        let report = seg.check();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    fn poke(seg: &Segment, offset: u64, bytes: &[u8]) {
        let path = format!("/dev/shm/{}", seg.name());
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn damaged_set_headers_and_entries_are_reported() {
        let seg = segment("damage");
        let set = seg.create_set::<u64>("s", 4).unwrap();
        set.insert(1).unwrap();
        let info = seg.entry("s").unwrap().unwrap();
        let corrupt = |e: Error| matches!(e, Error::Corrupt { .. });
        // A value size: a set's values have none.
        poke(&seg, info.offset + 4, &8u32.to_ne_bytes());
        assert!(corrupt(seg.open_set::<u64>("s").unwrap_err()));
        assert!(!seg.check().is_ok());
        poke(&seg, info.offset + 4, &0u32.to_ne_bytes());
        // The header says map.
        poke(&seg, info.offset, &crate::layout::kind::MAP.to_ne_bytes());
        assert!(corrupt(seg.open_set::<u64>("s").unwrap_err()));
        assert!(!seg.check().is_ok());
        poke(&seg, info.offset, &crate::layout::kind::SET.to_ne_bytes());
        assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
        assert!(set.contains(&1).unwrap());
    }
}
