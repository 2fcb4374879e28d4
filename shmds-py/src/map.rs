//! `Map` handles: the hot `MutableMapping` methods in Rust (no numpy on
//! the way for number and string keys and values); the package adds the
//! mixin methods.

use crate::codec::{Codec, Scratch};
use crate::{closed, to_py, Segment};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// Optional (key encode, key decode, value encode, value decode) functions.
pub(crate) type Codecs = (
    Option<Py<PyAny>>,
    Option<Py<PyAny>>,
    Option<Py<PyAny>>,
    Option<Py<PyAny>>,
);

/// A map from fixed-size keys to fixed-size values in a segment.
#[pyclass(module = "shmds._shmds", name = "Map", subclass)]
pub(crate) struct Map {
    raw: Option<shmds::RawMap>,
    key: Codec,
    value: Codec,
}

/// `key` as a key of `size` bytes, converted by `codec`.
pub(crate) fn key_bytes(codec: &Codec, size: usize, key: &Bound<'_, PyAny>) -> PyResult<Scratch> {
    let mut buf = Scratch::new(size);
    codec.encode(key, buf.bytes())?;
    Ok(buf)
}

/// [`key_bytes`], or `None` for an object that cannot be such a key (so
/// it is in no map or set of them: `in` says False, `discard` does nothing).
pub(crate) fn key_bytes_if_any(
    codec: &Codec,
    size: usize,
    key: &Bound<'_, PyAny>,
) -> PyResult<Option<Scratch>> {
    match key_bytes(codec, size, key) {
        Ok(k) => Ok(Some(k)),
        Err(e)
            if e.is_instance_of::<PyTypeError>(key.py())
                || e.is_instance_of::<PyValueError>(key.py())
                || e.is_instance_of::<pyo3::exceptions::PyOverflowError>(key.py()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl Map {
    fn raw(&self) -> PyResult<&shmds::RawMap> {
        self.raw.as_ref().ok_or_else(closed)
    }

    fn key_bytes(&self, raw: &shmds::RawMap, key: &Bound<'_, PyAny>) -> PyResult<Scratch> {
        key_bytes(&self.key, raw.key_size(), key)
    }

    fn value_bytes(&self, raw: &shmds::RawMap, value: &Bound<'_, PyAny>) -> PyResult<Scratch> {
        let mut buf = Scratch::new(raw.value_size());
        self.value.encode(value, buf.bytes())?;
        Ok(buf)
    }

    /// The value of `key`, or None when absent.
    fn lookup<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        let mut v = Scratch::new(raw.value_size());
        if raw.get(k.bytes(), v.bytes()).map_err(to_py)? {
            Ok(Some(self.value.decode(key.py(), v.bytes())?))
        } else {
            Ok(None)
        }
    }

    fn require_ints(&self) -> PyResult<()> {
        if self.value.is_int() {
            Ok(())
        } else {
            Err(PyTypeError::new_err(
                "atomic arithmetic needs a map with integer values",
            ))
        }
    }
}

#[pymethods]
impl Map {
    /// Open the map `name` of `segment`. With key and value descriptors and
    /// a `capacity`, create it first if it does not exist; without, open it
    /// whatever its types. The encode/decode functions convert keys or
    /// values that are neither numbers nor strings.
    #[new]
    #[pyo3(signature = (segment, name, key=None, value=None, capacity=None, codecs=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        key: Option<&str>,
        value: Option<&str>,
        capacity: Option<usize>,
        codecs: Option<Codecs>,
    ) -> PyResult<Map> {
        let seg = segment.get()?;
        let raw = match (key, value, capacity) {
            (None, None, _) => seg.open_map_raw(name),
            (Some(k), Some(v), Some(n)) => seg.open_or_create_map_raw(name, k, v, n),
            _ => {
                return Err(PyValueError::new_err(
                    "creating a map needs its key type, value type and capacity",
                ))
            }
        }
        .map_err(to_py)?;
        let (ke, kd, ve, vd) = codecs.unwrap_or((None, None, None, None));
        let key = Codec::new(raw.key_type(), raw.key_size(), ke, kd)?;
        let value = Codec::new(raw.value_type(), raw.value_size(), ve, vd)?;
        Ok(Map {
            raw: Some(raw),
            key,
            value,
        })
    }

    fn __getitem__<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.lookup(key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        let mut v = self.value_bytes(raw, value)?;
        raw.insert(k.bytes(), v.bytes(), None).map_err(to_py)?;
        Ok(())
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        if raw.remove(k.bytes(), None).map_err(to_py)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let raw = self.raw()?;
        match key_bytes_if_any(&self.key, raw.key_size(), key)? {
            Some(mut k) => raw.contains_key(k.bytes()).map_err(to_py),
            // A key that cannot be a key of this map is not in it.
            None => Ok(false),
        }
    }

    fn __len__(&self) -> PyResult<usize> {
        let raw = self.raw()?;
        raw.check().map_err(to_py)?;
        Ok(raw.len())
    }

    /// The value of `key`, or `default` when absent.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.lookup(key)?.or(default))
    }

    /// Remove `key` and return its value; if absent, return `default`, or
    /// raise KeyError when none is given.
    #[pyo3(signature = (key, *default))]
    fn pop<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = self.raw()?;
        if default.len() > 1 {
            return Err(PyTypeError::new_err("pop expected at most 2 arguments"));
        }
        let mut k = self.key_bytes(raw, key)?;
        let mut old = Scratch::new(raw.value_size());
        if raw.remove(k.bytes(), Some(old.bytes())).map_err(to_py)? {
            self.value.decode(key.py(), old.bytes())
        } else if let Ok(d) = default.get_item(0) {
            Ok(d)
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// The value of `key`, inserting `default` first if it is absent.
    fn setdefault<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        let mut v = self.value_bytes(raw, default)?;
        let mut out = Scratch::new(raw.value_size());
        raw.get_or_insert(k.bytes(), v.bytes(), out.bytes())
            .map_err(to_py)?;
        self.value.decode(key.py(), out.bytes())
    }

    /// For integer values: add `delta` (wrapping at the value's width) to
    /// the value of `key`, atomically across processes; an absent key
    /// counts as 0. Returns the previous value.
    #[pyo3(signature = (key, delta=None))]
    fn fetch_add<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        delta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.require_ints()?;
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        let delta = delta.map(Codec::delta_bits).transpose()?.unwrap_or(1);
        let old = raw.fetch_add(k.bytes(), delta).map_err(to_py)?;
        self.value.int_object(key.py(), old)
    }

    /// For integer values: if `key`'s value is `current`, set it to `new`,
    /// atomically. Returns the value before the call (the swap happened if
    /// it equals `current`). KeyError when `key` is absent.
    fn compare_exchange<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        current: &Bound<'py, PyAny>,
        new: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.require_ints()?;
        let raw = self.raw()?;
        let mut k = self.key_bytes(raw, key)?;
        let (current, new) = (self.value.int_bits(current)?, self.value.int_bits(new)?);
        match raw
            .compare_exchange(k.bytes(), current, new)
            .map_err(to_py)?
        {
            Ok(old) | Err(Some(old)) => self.value.int_object(key.py(), old),
            Err(None) => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// A snapshot list of `(key, value)` pairs (weakly consistent: a key
    /// present throughout is listed exactly once).
    fn _items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let raw = self.raw()?;
        let out = PyList::empty(py);
        let mut k = Scratch::new(raw.key_size());
        let mut v = Scratch::new(raw.value_size());
        for slot in 0..raw.capacity() {
            if raw.read_slot(slot, k.bytes(), v.bytes()).map_err(to_py)? {
                let pair = (
                    self.key.decode(py, k.bytes())?,
                    self.value.decode(py, v.bytes())?,
                );
                out.append(pair)?;
            }
        }
        Ok(out)
    }

    /// Remove every key.
    fn clear(&self) -> PyResult<()> {
        self.raw()?.clear().map_err(to_py)
    }

    /// The most keys the map holds.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.raw()?.capacity())
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.raw()?.name().to_owned())
    }

    /// The name of the segment holding the map.
    #[getter]
    fn segment_name(&self) -> PyResult<String> {
        Ok(self.raw()?.segment_name().to_owned())
    }

    /// The key type descriptor.
    #[getter]
    fn key_descriptor(&self) -> PyResult<String> {
        Ok(self.raw()?.key_type().to_owned())
    }

    /// The value type descriptor.
    #[getter]
    fn value_descriptor(&self) -> PyResult<String> {
        Ok(self.raw()?.value_type().to_owned())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.raw.is_none()
    }

    /// Drop this handle (idempotent).
    fn close(&mut self) {
        self.raw = None;
    }
}
