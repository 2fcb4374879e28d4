//! A map on the heap for loom models: same algorithm, loom atomics.
use super::*;

pub(crate) struct Model {
    header: Box<MapHeader>,
    words: Box<[AtomicU64]>,
    ctrl: Box<[AtomicU8]>,
    shape: MapShape,
}

impl Model {
    /// A map of `capacity` slots from u64 keys to values of
    /// `value_size` bytes (0: a set), hash seed 0.
    pub(crate) fn new(capacity: u64, value_size: usize) -> Model {
        let shape = MapShape::new(capacity, 8, value_size, 0);
        let header = Box::new(MapHeader {
            kind: if value_size == 0 {
                kind::SET
            } else {
                kind::MAP
            },
            value_size: value_size as u32,
            capacity,
            key_size: 8,
            reserved0: 0,
            slot_stride: slot_stride(8, value_size as u64),
            slots_offset: MAP_HEADER_SIZE,
            hash_seed: 0,
            ctrl_offset: 0,
            reserved1: 0,
            len: AtomicU64::new(0),
            reserved2: [0; 7],
        });
        let words = (0..capacity as usize * shape.stride)
            .map(|_| AtomicU64::new(0))
            .collect();
        let ctrl = (0..capacity as usize * 2)
            .map(|_| AtomicU8::new(0))
            .collect();
        Model {
            header,
            words,
            ctrl,
            shape,
        }
    }

    pub(crate) fn core(&self) -> MapCore<'_> {
        // SAFETY: `words` holds capacity * stride initialised words.
        unsafe {
            MapCore::new(
                &self.header,
                self.words.as_ptr(),
                self.ctrl.as_ptr(),
                self.shape,
                Duration::from_secs(3600),
            )
        }
    }

    /// The home slot of key `k`.
    pub(crate) fn home(&self, k: u64) -> u64 {
        let core = self.core();
        core.home_of(core.key(&k.to_ne_bytes()).hash)
    }

    pub(crate) fn get(&self, k: u64) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.shape.value_size];
        self.core()
            .get(&self.core().key(&k.to_ne_bytes()), Some(&mut out))
            .unwrap()
            .then_some(out)
    }

    pub(crate) fn insert(&self, k: u64, v: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let core = self.core();
        let bytes = k.to_ne_bytes();
        let key = core.key(&bytes);
        let mut g = core.lock(&key).unwrap();
        let mut old = vec![0u8; self.shape.value_size];
        match g.find(Some(&mut old)).unwrap() {
            Some((slot, _)) => {
                g.set_value(slot, v);
                Ok(Some(old))
            }
            None => match g.insert_new(v) {
                Ok(()) => Ok(None),
                Err(Fault::Full) => Err(()),
                Err(e) => panic!("{e:?}"),
            },
        }
    }

    /// A set's insert (`set.rs`): add `k` unless present; whether it was new.
    pub(crate) fn add(&self, k: u64) -> Result<bool, ()> {
        let core = self.core();
        let bytes = k.to_ne_bytes();
        let key = core.key(&bytes);
        let mut g = core.lock(&key).unwrap();
        match g.find(None).unwrap() {
            Some(_) => Ok(false),
            None => match g.insert_new(&[]) {
                Ok(()) => Ok(true),
                Err(Fault::Full) => Err(()),
                Err(e) => panic!("{e:?}"),
            },
        }
    }

    pub(crate) fn remove(&self, k: u64) -> bool {
        let core = self.core();
        let bytes = k.to_ne_bytes();
        let key = core.key(&bytes);
        let mut g = core.lock(&key).unwrap();
        match g.find(None).unwrap() {
            Some((slot, d)) => {
                g.remove_at(slot, d);
                true
            }
            None => false,
        }
    }

    /// (live slots holding k, len counter)
    pub(crate) fn census(&self, k: u64) -> (usize, u64) {
        let core = self.core();
        let key = k.to_ne_bytes();
        let n = (0..self.shape.capacity)
            .filter(|&s| {
                core.word(s, STATE).load(Ordering::SeqCst) & PHASE_MASK == LIVE
                    && core.key_matches(s, &core.key(&key))
            })
            .count();
        (n, core.len())
    }
}
