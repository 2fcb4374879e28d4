//! Remote maps: a Redis hash from key bytes to value bytes (`d:G:E`),
//! bounded to its capacity by the insert scripts.

use super::entry::{bytes_of, from_bytes, Entry, Shape};
use super::{scripts, Segment};
use crate::element::{AtomicElement, Element, Lookup};
use crate::error::Result;
use std::marker::PhantomData;
use std::sync::Arc;

/// A bounded hash map from `K` to `V` on a Redis server.
pub struct Map<K: Element, V: Element> {
    entry: Arc<Entry>,
    data: Arc<str>,
    _t: PhantomData<(K, V)>,
}

impl<K: Element, V: Element> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Map {
            entry: Arc::clone(&self.entry),
            data: Arc::clone(&self.data),
            _t: PhantomData,
        }
    }
}

impl<K: Element, V: Element> std::fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Map")
            .field("segment", &self.entry.seg.name())
            .field("name", &self.entry.name)
            .field("capacity", &self.entry.record.capacity)
            .finish()
    }
}

impl<K: Element, V: Element> Map<K, V> {
    fn value(&self, bytes: Option<Vec<u8>>) -> Result<Option<V>> {
        bytes.map(|b| self.decode::<V>(&b)).transpose()
    }

    fn decode<X: Element>(&self, b: &[u8]) -> Result<X> {
        from_bytes(b).ok_or_else(|| {
            self.entry.corrupt(&format!(
                "a key or value has {} bytes, not the {} of its type",
                b.len(),
                std::mem::size_of::<X>()
            ))
        })
    }

    fn call<R: redis::FromRedisValue>(
        &self,
        idempotent: bool,
        script: &redis::Script,
        args: &[&[u8]],
    ) -> Result<R> {
        self.entry.run(idempotent, |con| {
            let mut inv = self.entry.invocation(script);
            inv.key(&*self.data);
            for a in args {
                inv.arg(*a);
            }
            inv.invoke(con)
        })
    }

    fn capacity_arg(&self) -> Vec<u8> {
        self.entry.record.capacity.to_string().into_bytes()
    }

    /// The value of `key`, if it is there.
    pub fn get<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        let got = self.call(true, &scripts::MAP_GET, &[&bytes_of(&key)])?;
        self.value(got)
    }

    /// Whether `key` is there.
    pub fn contains_key<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Set `key` to `value`; returns the value it had.
    /// [`Error::Full`](crate::Error::Full) if `key` is new and the map
    /// holds `capacity` keys.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let got = self.call(
            true,
            &scripts::MAP_INSERT,
            &[&self.capacity_arg(), &bytes_of(&key), &bytes_of(&value)],
        )?;
        self.value(got)
    }

    /// The value of `key`, inserting `value` first if it is absent.
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V> {
        let got: Vec<u8> = self.call(
            true,
            &scripts::MAP_GET_OR_INSERT,
            &[&self.capacity_arg(), &bytes_of(&key), &bytes_of(&value)],
        )?;
        self.decode(&got)
    }

    /// Remove `key`; returns the value it had.
    pub fn remove<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        let got = self.call(false, &scripts::MAP_REMOVE, &[&bytes_of(&key)])?;
        self.value(got)
    }

    /// The number of keys.
    pub fn len(&self) -> Result<usize> {
        self.call(true, &scripts::MAP_LEN, &[])
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Remove every key.
    pub fn clear(&self) -> Result<()> {
        self.call::<i64>(true, &scripts::MAP_CLEAR, &[]).map(|_| ())
    }

    /// Every key and value, in no particular order (one atomic read).
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        let all: Vec<(Vec<u8>, Vec<u8>)> = self.call(true, &scripts::MAP_ALL, &[])?;
        all.iter()
            .map(|(k, v)| Ok((self.decode(k)?, self.decode(v)?)))
            .collect()
    }

    /// `Ok(())` while the map exists, [`Error::Stale`](crate::Error::Stale)
    /// once it was erased.
    pub fn check(&self) -> Result<()> {
        self.len().map(|_| ())
    }

    /// The capacity (exactly as created).
    pub fn capacity(&self) -> usize {
        self.entry.record.capacity as usize
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        &self.entry.record.key_type
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        &self.entry.record.elem_type
    }
}

impl<K: Element, V: AtomicElement> Map<K, V> {
    /// Add `delta` (wrapping) to the value of `key` and return the previous
    /// value; an absent key counts as zero and is inserted with `delta`.
    /// Atomic across every client of the server.
    pub fn fetch_add(&self, key: &K, delta: V) -> Result<V> {
        let zero = crate::payload::zeroed::<V>();
        let got: Vec<u8> = self.call(
            false,
            &scripts::MAP_FETCH_ADD,
            &[
                &self.capacity_arg(),
                &bytes_of(key),
                &bytes_of(&delta),
                &bytes_of(&zero),
            ],
        )?;
        self.decode(&got)
    }

    /// If `key`'s value is `current`, set it to `new`: `Ok(previous)` on
    /// success, `Err(Some(actual))` when it differs, `Err(None)` when the key
    /// is absent.
    pub fn compare_exchange(
        &self,
        key: &K,
        current: V,
        new: V,
    ) -> Result<std::result::Result<V, Option<V>>> {
        let reply: Vec<redis::Value> = self.call(
            false,
            &scripts::MAP_COMPARE_EXCHANGE,
            &[&bytes_of(key), &bytes_of(&current), &bytes_of(&new)],
        )?;
        let code = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
        let value = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok());
        match (code, value) {
            (Some(0), _) => Ok(Err(None)),
            (Some(1), Some(old)) => Ok(Ok(self.decode(&old)?)),
            (Some(2), Some(actual)) => Ok(Err(Some(self.decode(&actual)?))),
            _ => Err(self
                .entry
                .corrupt("compare_exchange got an answer it cannot read")),
        }
    }
}

impl Segment {
    fn map_entry<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
        create: Option<bool>,
    ) -> Result<Map<K, V>> {
        let (kd, vd) = (K::descriptor(), V::descriptor());
        let shape = Shape {
            kind: "map",
            elem_type: &vd,
            key_type: &kd,
            capacity: capacity as u64,
            bytes: 0,
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        Ok(Map {
            data: entry.key("d").into(),
            entry: Arc::new(entry),
            _t: PhantomData,
        })
    }

    /// Create a map of at most `capacity` keys.
    pub fn create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Map<K, V>> {
        self.map_entry(name, capacity, Some(false))
    }

    /// Open the map `name`, which must map `K` to `V`.
    pub fn open_map<K: Element, V: Element>(&self, name: &str) -> Result<Map<K, V>> {
        self.map_entry(name, 0, None)
    }

    /// Open the map `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Map<K, V>> {
        self.map_entry(name, capacity, Some(true))
    }
}
