//! Remote maps: a Redis hash from key bytes to value bytes (`d:G:E`),
//! bounded to its capacity by the insert scripts.

use super::entry::{bytes_of, from_bytes, Entry, Shape};
use super::{scripts, Segment};
use crate::element::{AtomicElement, Element, Lookup, TypeDescriptor};
use crate::error::Result;
use std::marker::PhantomData;
use std::sync::Arc;

/// A remote map whatever its key and value types: keys and values are
/// byte strings of [`key_size`](RawMap::key_size) and
/// [`value_size`](RawMap::value_size) bytes. Cheap to clone.
#[derive(Clone)]
pub struct RawMap {
    inner: Arc<Inner>,
}

struct Inner {
    entry: Entry,
    data: String,
    key_size: usize,
    value_size: usize,
}

impl std::fmt::Debug for RawMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.inner.entry;
        f.debug_struct("remote::Map")
            .field("segment", &e.seg.name())
            .field("name", &e.name)
            .field("capacity", &e.record.capacity)
            .finish()
    }
}

/// The value bytes of a reply, checked for size.
type Bytes = Vec<u8>;

impl RawMap {
    fn call<R: redis::FromRedisValue>(
        &self,
        idempotent: bool,
        script: &redis::Script,
        args: &[&[u8]],
    ) -> Result<R> {
        let m = &self.inner;
        let reads = [&*scripts::MAP_GET, &*scripts::MAP_LEN, &*scripts::MAP_ALL];
        let writes = !reads.iter().any(|r| std::ptr::eq(*r, script));
        let cache = m.entry.seg.cache().filter(|_| writes);
        // Before and after: a read racing this write caches neither side.
        cache.inspect(|c| c.invalidate(&m.data));
        let result = m.entry.run(idempotent, |con| {
            let mut inv = m.entry.invocation(script);
            inv.key(&m.data);
            for a in args {
                inv.arg(*a);
            }
            inv.invoke(con)
        });
        cache.inspect(|c| c.invalidate(&m.data));
        result
    }

    fn capacity_arg(&self) -> Vec<u8> {
        self.inner.entry.record.capacity.to_string().into_bytes()
    }

    fn sized(&self, b: &[u8], size: usize, what: &str) -> Result<()> {
        if b.len() == size {
            return Ok(());
        }
        Err(crate::Error::InvalidArgument(format!(
            "a {what} of map {:?} has {size} bytes, not {}",
            self.inner.entry.name,
            b.len()
        )))
    }

    fn value(&self, got: Option<Bytes>) -> Result<Option<Bytes>> {
        match got {
            Some(v) if v.len() != self.inner.value_size => Err(self.inner.entry.corrupt(&format!(
                "a value has {} bytes, not the {} of its type",
                v.len(),
                self.inner.value_size
            ))),
            other => Ok(other),
        }
    }

    /// The value of `key`, if it is there.
    pub fn get_bytes(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.sized(key, self.inner.key_size, "key")?;
        let Some(cache) = self.inner.entry.seg.cache() else {
            let got = self.call(true, &scripts::MAP_GET, &[key])?;
            return self.value(got);
        };
        let data = &self.inner.data;
        if let Some(hit) = cache.get(data, key) {
            return Ok(hit);
        }
        let ticket = cache.ticket(data);
        let got = self.call(true, &scripts::MAP_GET, &[key])?;
        let got = self.value(got)?;
        cache.put(ticket, data, key, got.clone());
        Ok(got)
    }

    /// Set `key` to `value`; returns the value it had.
    /// [`Error::Full`](crate::Error::Full) if `key` is new and the map holds
    /// `capacity` keys.
    pub fn insert_bytes(&self, key: &[u8], value: &[u8]) -> Result<Option<Bytes>> {
        self.sized(key, self.inner.key_size, "key")?;
        self.sized(value, self.inner.value_size, "value")?;
        let got = self.call(
            true,
            &scripts::MAP_INSERT,
            &[&self.capacity_arg(), key, value],
        )?;
        self.value(got)
    }

    /// The value of `key`, inserting `value` first if it is absent.
    pub fn get_or_insert_bytes(&self, key: &[u8], value: &[u8]) -> Result<Bytes> {
        self.sized(key, self.inner.key_size, "key")?;
        self.sized(value, self.inner.value_size, "value")?;
        let got: Bytes = self.call(
            true,
            &scripts::MAP_GET_OR_INSERT,
            &[&self.capacity_arg(), key, value],
        )?;
        Ok(self.value(Some(got))?.unwrap_or_default())
    }

    /// Remove `key`; returns the value it had.
    pub fn remove_bytes(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.sized(key, self.inner.key_size, "key")?;
        let got = self.call(false, &scripts::MAP_REMOVE, &[key])?;
        self.value(got)
    }

    /// Add the little-endian integer `delta` (wrapping) to the value of
    /// `key`, an absent key counting as zero; returns the previous value.
    pub fn fetch_add_bytes(&self, key: &[u8], delta: &[u8]) -> Result<Bytes> {
        self.sized(key, self.inner.key_size, "key")?;
        self.sized(delta, self.inner.value_size, "value")?;
        let zero = vec![0u8; self.inner.value_size];
        let got: Bytes = self.call(
            false,
            &scripts::MAP_FETCH_ADD,
            &[&self.capacity_arg(), key, delta, &zero],
        )?;
        Ok(self.value(Some(got))?.unwrap_or_default())
    }

    /// If `key`'s value is `current`, set it to `new`: `Ok(previous)` on
    /// success, `Err(Some(actual))` when it differs, `Err(None)` when the key
    /// is absent.
    pub fn compare_exchange_bytes(
        &self,
        key: &[u8],
        current: &[u8],
        new: &[u8],
    ) -> Result<std::result::Result<Bytes, Option<Bytes>>> {
        self.sized(key, self.inner.key_size, "key")?;
        self.sized(current, self.inner.value_size, "value")?;
        self.sized(new, self.inner.value_size, "value")?;
        let reply: Vec<redis::Value> =
            self.call(false, &scripts::MAP_COMPARE_EXCHANGE, &[key, current, new])?;
        let code = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
        let value = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<Bytes>(v).ok());
        let value = self.value(value)?;
        match (code, value) {
            (Some(0), _) => Ok(Err(None)),
            (Some(1), Some(old)) => Ok(Ok(old)),
            (Some(2), Some(actual)) => Ok(Err(Some(actual))),
            _ => Err(self
                .inner
                .entry
                .corrupt("compare_exchange got an answer it cannot read")),
        }
    }

    /// Every key and value, in no particular order (one atomic read).
    pub fn items_bytes(&self) -> Result<Vec<(Bytes, Bytes)>> {
        let all: Vec<(Bytes, Bytes)> = self.call(true, &scripts::MAP_ALL, &[])?;
        let m = &self.inner;
        if all
            .iter()
            .any(|(k, v)| k.len() != m.key_size || v.len() != m.value_size)
        {
            return Err(m.entry.corrupt("a key or value has the wrong size"));
        }
        Ok(all)
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

    /// `Ok(())` while the map exists, [`Error::Stale`](crate::Error::Stale)
    /// once it was erased.
    pub fn check(&self) -> Result<()> {
        self.len().map(|_| ())
    }

    /// The capacity (exactly as created).
    pub fn capacity(&self) -> usize {
        self.inner.entry.record.capacity as usize
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.inner.entry.name
    }

    /// The segment name.
    pub fn segment_name(&self) -> &str {
        self.inner.entry.seg.name()
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        &self.inner.entry.record.key_type
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        &self.inner.entry.record.elem_type
    }

    /// Bytes per key.
    pub fn key_size(&self) -> usize {
        self.inner.key_size
    }

    /// Bytes per value.
    pub fn value_size(&self) -> usize {
        self.inner.value_size
    }
}

/// A bounded hash map from `K` to `V` on a Redis server.
pub struct Map<K: Element, V: Element> {
    raw: RawMap,
    _t: PhantomData<(K, V)>,
}

impl<K: Element, V: Element> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Map {
            raw: self.raw.clone(),
            _t: PhantomData,
        }
    }
}

impl<K: Element, V: Element> std::fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

fn decode<X: Element>(b: Option<Bytes>) -> Option<X> {
    // RawMap checked every size.
    b.and_then(|b| from_bytes(&b))
}

impl<K: Element, V: Element> Map<K, V> {
    /// The value of `key`, if it is there.
    pub fn get<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        Ok(decode(self.raw.get_bytes(&bytes_of(&key))?))
    }

    /// Whether `key` is there.
    pub fn contains_key<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Set `key` to `value`; returns the value it had.
    /// [`Error::Full`](crate::Error::Full) if `key` is new and the map holds
    /// `capacity` keys.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        Ok(decode(
            self.raw.insert_bytes(&bytes_of(&key), &bytes_of(&value))?,
        ))
    }

    /// The value of `key`, inserting `value` first if it is absent.
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V> {
        let got = self
            .raw
            .get_or_insert_bytes(&bytes_of(&key), &bytes_of(&value))?;
        Ok(decode(Some(got)).unwrap_or(value))
    }

    /// Remove `key`; returns the value it had.
    pub fn remove<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>> {
        let Some(key) = key.to_key() else {
            return Ok(None);
        };
        Ok(decode(self.raw.remove_bytes(&bytes_of(&key))?))
    }

    /// Every key and value, in no particular order (one atomic read).
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        Ok(self
            .raw
            .items_bytes()?
            .into_iter()
            .filter_map(|(k, v)| Some((from_bytes(&k)?, from_bytes(&v)?)))
            .collect())
    }

    /// The number of keys.
    pub fn len(&self) -> Result<usize> {
        self.raw.len()
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> Result<bool> {
        self.raw.is_empty()
    }

    /// Remove every key.
    pub fn clear(&self) -> Result<()> {
        self.raw.clear()
    }

    /// `Ok(())` while the map exists, [`Error::Stale`](crate::Error::Stale)
    /// once it was erased.
    pub fn check(&self) -> Result<()> {
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

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        self.raw.key_type()
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        self.raw.value_type()
    }

    /// The untyped handle.
    pub fn raw(&self) -> &RawMap {
        &self.raw
    }
}

impl<K: Element, V: AtomicElement> Map<K, V> {
    /// Add `delta` (wrapping) to the value of `key` and return the previous
    /// value; an absent key counts as zero and is inserted with `delta`.
    /// Atomic across every client of the server.
    pub fn fetch_add(&self, key: &K, delta: V) -> Result<V> {
        let got = self
            .raw
            .fetch_add_bytes(&bytes_of(key), &bytes_of(&delta))?;
        Ok(decode(Some(got)).unwrap_or(delta))
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
        let got = self.raw.compare_exchange_bytes(
            &bytes_of(key),
            &bytes_of(&current),
            &bytes_of(&new),
        )?;
        Ok(match got {
            Ok(old) => Ok(decode(Some(old)).unwrap_or(current)),
            Err(actual) => Err(decode(actual)),
        })
    }
}

impl Segment {
    /// Create (`Some(open_ok)`) or open (`None`) a map of these types
    /// (`None`: whatever types it holds).
    fn map(
        &self,
        name: &str,
        key_type: Option<&str>,
        value_type: Option<&str>,
        capacity: usize,
        create: Option<bool>,
    ) -> Result<RawMap> {
        let canon = |d: Option<&str>| {
            d.map(|d| TypeDescriptor::parse(d).map(|t| t.as_str().to_owned()))
                .transpose()
        };
        let (kd, vd) = (canon(key_type)?, canon(value_type)?);
        let shape = Shape {
            kind: "map",
            elem_type: vd.as_deref(),
            key_type: kd.as_deref(),
            capacity: capacity as u64,
            bytes: 0,
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        let size = |d: &str| TypeDescriptor::parse(d).map(|t| t.size() as usize);
        Ok(RawMap {
            inner: Arc::new(Inner {
                data: entry.key("d"),
                key_size: size(&entry.record.key_type)?,
                value_size: size(&entry.record.elem_type)?,
                entry,
            }),
        })
    }

    fn typed_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: usize,
        create: Option<bool>,
    ) -> Result<Map<K, V>> {
        let raw = self.map(
            name,
            Some(&K::descriptor()),
            Some(&V::descriptor()),
            capacity,
            create,
        )?;
        Ok(Map {
            raw,
            _t: PhantomData,
        })
    }

    /// Open the map `name`, creating it with `capacity` keys of the type
    /// `key_type` and values of `value_type` if it does not exist.
    pub fn open_or_create_map_raw(
        &self,
        name: &str,
        key_type: &str,
        value_type: &str,
        capacity: usize,
    ) -> Result<RawMap> {
        self.map(name, Some(key_type), Some(value_type), capacity, Some(true))
    }

    /// Open the map `name` whatever its types.
    pub fn open_map_raw(&self, name: &str) -> Result<RawMap> {
        self.map(name, None, None, 0, None)
    }
}

super::entry_methods!(
    "a map from `K` to `V` of at most `capacity` keys", Map<K, V>, [K: Element, V: Element],
    typed_map, create_map, open_map, open_or_create_map, (capacity: usize), (0)
);
