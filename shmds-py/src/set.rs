//! `Set` handles: the `MutableSet` methods that touch the set, in Rust (keys
//! converted as a `Map`'s are); the package adds the mixin methods.

use crate::codec::{Codec, Scratch};
use crate::map::{key_bytes, key_bytes_if_any};
use crate::{closed, to_py, Segment};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Optional (key encode, key decode) functions.
type KeyCodecs = (Option<Py<PyAny>>, Option<Py<PyAny>>);

/// A set of fixed-size keys in a segment.
#[pyclass(module = "shmds._shmds", name = "Set", subclass)]
pub(crate) struct Set {
    raw: Option<shmds::RawSet>,
    key: Codec,
}

impl Set {
    fn raw(&self) -> PyResult<&shmds::RawSet> {
        self.raw.as_ref().ok_or_else(closed)
    }

    /// `op` on the bytes of `key`, or `absent` for an object that cannot be
    /// a key of this set (it is not in it).
    fn with_key<R>(
        &self,
        key: &Bound<'_, PyAny>,
        absent: R,
        op: impl FnOnce(&shmds::RawSet, &[u8]) -> shmds::Result<R>,
    ) -> PyResult<R> {
        let raw = self.raw()?;
        match key_bytes_if_any(&self.key, raw.key_size(), key)? {
            Some(mut k) => op(raw, k.bytes()).map_err(to_py),
            None => Ok(absent),
        }
    }

    /// Call `f` with each key in slot order until it returns true; whether
    /// one did.
    fn scan(&self, mut f: impl FnMut(&shmds::RawSet, &[u8]) -> PyResult<bool>) -> PyResult<bool> {
        let raw = self.raw()?;
        let mut k = Scratch::new(raw.key_size());
        for slot in 0..raw.capacity() {
            if raw.read_slot(slot, k.bytes()).map_err(to_py)? && f(raw, k.bytes())? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[pymethods]
impl Set {
    /// Open the set `name` of `segment`. With a key descriptor and a
    /// `capacity`, create it first if it does not exist; without, open it
    /// whatever its key type. The encode/decode functions convert keys
    /// that are neither numbers nor strings.
    #[new]
    #[pyo3(signature = (segment, name, key=None, capacity=None, codecs=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        key: Option<&str>,
        capacity: Option<usize>,
        codecs: Option<KeyCodecs>,
    ) -> PyResult<Set> {
        let seg = segment.get()?;
        let raw = match (key, capacity) {
            (None, None) => seg.open_set_raw(name),
            (Some(k), Some(n)) => seg.open_or_create_set_raw(name, k, n),
            _ => {
                return Err(PyValueError::new_err(
                    "creating a set needs its key type and capacity",
                ))
            }
        }
        .map_err(to_py)?;
        let (encode, decode) = codecs.unwrap_or((None, None));
        let key = Codec::new(raw.key_type(), raw.key_size(), encode, decode)?;
        Ok(Set {
            raw: Some(raw),
            key,
        })
    }

    /// Add `key`; whether it was not in the set. NoSpaceError when it is
    /// new and the set is full.
    fn insert(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let raw = self.raw()?;
        let mut k = key_bytes(&self.key, raw.key_size(), key)?;
        raw.insert(k.bytes()).map_err(to_py)
    }

    /// Add `key` (nothing happens if it is there).
    fn add(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.insert(key).map(drop)
    }

    /// Remove `key` if it is there.
    fn discard(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.with_key(key, false, |raw, k| raw.remove(k)).map(drop)
    }

    /// Remove `key`; KeyError if it is not there.
    fn remove(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.with_key(key, false, |raw, k| raw.remove(k))? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.with_key(key, false, |raw, k| raw.contains(k))
    }

    fn __len__(&self) -> PyResult<usize> {
        let raw = self.raw()?;
        raw.check().map_err(to_py)?;
        Ok(raw.len())
    }

    /// Remove and return a key (the first in slot order; a scan of the
    /// slots). A key that another process removes first is passed over, so
    /// two processes never pop the same key. KeyError when empty.
    fn pop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut popped = None;
        self.scan(|raw, k| {
            if !raw.remove(k).map_err(to_py)? {
                return Ok(false);
            }
            popped = Some(self.key.decode(py, k)?);
            Ok(true)
        })?;
        popped.ok_or_else(|| PyKeyError::new_err("pop from an empty set"))
    }

    /// A snapshot list of the keys (weakly consistent: a key present
    /// throughout is listed exactly once).
    fn _keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        self.scan(|_, k| {
            out.append(self.key.decode(py, k)?)?;
            Ok(false)
        })?;
        Ok(out)
    }

    /// Remove every key.
    fn clear(&self) -> PyResult<()> {
        self.raw()?.clear().map_err(to_py)
    }

    /// The most keys the set holds.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.raw()?.capacity())
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.raw()?.name().to_owned())
    }

    /// The name of the segment holding the set.
    #[getter]
    fn segment_name(&self) -> PyResult<String> {
        Ok(self.raw()?.segment_name().to_owned())
    }

    /// The key type descriptor.
    #[getter]
    fn key_descriptor(&self) -> PyResult<String> {
        Ok(self.raw()?.key_type().to_owned())
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
