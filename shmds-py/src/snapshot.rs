//! Snapshots and durable segments: `shmds.Store` (over
//! `shmds::snapshot::Store`), the immutable records its calls return
//! (`SnapshotInfo`, `SnapshotEntry`, `EntryChange`, `VerifyReport`,
//! `GcReport`), and how a segment name is read from Python (a `str`, or an
//! `os.PathLike`, which always names a durable segment's file).
//!
//! Every store call does file I/O (and the snapshots and checks hash whole
//! images), so each runs without the GIL.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::to_py;
use shmds::snapshot as snap;

/// A segment name given from Python (the `from_py_with` of every parameter
/// naming a segment). A `str` is taken as it is: a /dev/shm name, or, with
/// a `/` past its first character, the path of a durable segment's file.
/// An `os.PathLike` (`pathlib.Path`...) always names a file, so one whose
/// text has no `/` past its start is made into a path that has:
/// `state.shmds` becomes `./state.shmds`, `/state.shmds` `//state.shmds`
/// (the same file).
pub(crate) fn segment_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    let wrong = || -> PyResult<PyErr> {
        Ok(PyTypeError::new_err(format!(
            "a segment name is a str or an os.PathLike (a file path), not {}",
            obj.get_type().name()?
        )))
    };
    if obj.is_instance_of::<PyBytes>() {
        return Err(wrong()?);
    }
    let path: PathBuf = match obj.extract() {
        Ok(path) => path,
        Err(_) => return Err(wrong()?),
    };
    let text = path.into_os_string().into_string().map_err(|p| {
        PyValueError::new_err(format!("segment file path {p:?} is not valid UTF-8"))
    })?;
    Ok(if text.bytes().skip(1).any(|b| b == b'/') {
        text
    } else if text.starts_with('/') {
        format!("/{text}")
    } else {
        format!("./{text}")
    })
}

/// Restore snapshot `id` of `store` as the new segment `name` (for
/// `Segment(name, _snapshot=(store, id))`, the one way a restore gives the
/// package's own `shmds.Segment`).
pub(crate) fn restore(
    py: Python<'_>,
    store: &Bound<'_, Store>,
    id: &str,
    name: &str,
) -> PyResult<shmds::Segment> {
    let store = &store.get().store;
    py.detach(|| store.restore(id, name)).map_err(to_py)
}

/// A snapshot store: a directory of content-addressed snapshots of
/// segments (64 KiB chunks stored once each, named by their BLAKE3 hash,
/// and one manifest per snapshot, named by its root hash: the snapshot
/// id). Native base of ``shmds.Store``.
#[pyclass(module = "shmds._shmds", name = "Store", subclass, frozen)]
pub(crate) struct Store {
    store: snap::Store,
}

#[pymethods]
impl Store {
    /// Open the store in the directory `path`, creating it if the
    /// directory is missing or empty (ValueError for a non-empty directory
    /// that is not a store).
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Store> {
        let store = py.detach(|| snap::Store::open(&path)).map_err(to_py)?;
        Ok(Store { store })
    }

    /// The store directory, a `pathlib.Path`.
    #[getter]
    fn path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// Write a consistent snapshot of `segment` into the store and return
    /// what it took: the other processes attached to the segment are paused
    /// while its bytes are copied, then the copy is hashed and its new
    /// chunks written while they run again. Take it from a thread whose
    /// process does not change the segment meanwhile (this process's other
    /// threads are not paused).
    fn snapshot(
        &self,
        py: Python<'_>,
        segment: PyRef<'_, crate::Segment>,
    ) -> PyResult<SnapshotInfo> {
        let seg = segment.get()?.clone();
        drop(segment);
        let taken = py.detach(|| seg.snapshot(&self.store)).map_err(to_py)?;
        Ok(SnapshotInfo::new(
            taken.info,
            taken.paused_processes,
            taken.paused_for,
        ))
    }

    /// Every snapshot in the store, oldest first (by creation time, then
    /// id). Here `new_chunks` and `new_bytes` count the distinct chunks no
    /// older snapshot uses, and `paused_processes` and `paused_for` are 0.
    fn snapshots(&self, py: Python<'_>) -> PyResult<Vec<SnapshotInfo>> {
        let list = py.detach(|| self.store.list()).map_err(to_py)?;
        Ok(list
            .into_iter()
            .map(|info| SnapshotInfo::new(info, 0, Duration::ZERO))
            .collect())
    }

    /// The full id of the one snapshot whose id starts with `prefix` (4 to
    /// 64 hex digits): FileNotFoundError if none does, ValueError if
    /// several do or `prefix` is not 4 to 64 hex digits.
    fn resolve(&self, py: Python<'_>, prefix: &str) -> PyResult<String> {
        py.detach(|| self.store.resolve(prefix)).map_err(to_py)
    }

    /// Re-hash one snapshot (an id or unique prefix) or, with None, every
    /// snapshot: each manifest and each distinct chunk it names. Damage is
    /// reported in the result (`ok` false, one line per problem in
    /// `problems`), not raised.
    #[pyo3(signature = (snapshot_id=None))]
    fn verify(&self, py: Python<'_>, snapshot_id: Option<&str>) -> PyResult<VerifyReport> {
        let report = py
            .detach(|| self.store.verify(snapshot_id))
            .map_err(to_py)?;
        Ok(VerifyReport {
            ok: report.is_ok(),
            snapshots: report.snapshots,
            chunks: report.chunks,
            bytes: report.bytes,
            problems: report.problems,
        })
    }

    /// How the entries of snapshot `b` differ from those of snapshot `a`
    /// (ids or unique prefixes): one EntryChange per entry name in either,
    /// sorted by name.
    fn diff(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<Vec<EntryChange>> {
        py.detach(|| -> shmds::Result<Vec<EntryChange>> {
            let changes = self.store.diff(a, b)?;
            // The crate gives an unchanged entry as it is in `b`; its
            // `before` is the entry as it is in `a` (it may have moved).
            let mut old: HashMap<String, snap::SnapshotEntry> = HashMap::new();
            if changes
                .iter()
                .any(|c| matches!(c, snap::EntryChange::Unchanged(_)))
            {
                for e in self.store.manifest(a)?.entries {
                    old.insert(e.name.clone(), e); // the last of a name counts, as in diff
                }
            }
            Ok(changes
                .into_iter()
                .map(|c| match c {
                    snap::EntryChange::Added(e) => EntryChange::new("added", None, Some(e)),
                    snap::EntryChange::Removed(e) => EntryChange::new("removed", Some(e), None),
                    snap::EntryChange::Changed { before, after } => {
                        EntryChange::new("changed", Some(before), Some(after))
                    }
                    snap::EntryChange::Unchanged(e) => {
                        let before = old.remove(&e.name).unwrap_or_else(|| e.clone());
                        EntryChange::new("unchanged", Some(before), Some(e))
                    }
                })
                .collect())
        })
        .map_err(to_py)
    }

    /// Remove the snapshot `snapshot_id` (an id or unique prefix). Its
    /// chunks stay until `gc()`.
    fn remove(&self, py: Python<'_>, snapshot_id: &str) -> PyResult<()> {
        py.detach(|| self.store.remove(snapshot_id)).map_err(to_py)
    }

    /// Delete the chunks no snapshot uses (and stray temporary files).
    /// Refuses (CorruptError, deleting nothing) if a manifest is damaged;
    /// waits for snapshots being written, in any process, to finish.
    fn gc(&self, py: Python<'_>) -> PyResult<GcReport> {
        let report = py.detach(|| self.store.gc()).map_err(to_py)?;
        Ok(GcReport {
            chunks_removed: report.chunks_removed,
            bytes_freed: report.bytes_freed,
            chunks_kept: report.chunks_kept,
        })
    }
}

/// A snapshot in a store: what `Store.snapshot` (and `Segment.snapshot`)
/// took, or one of `Store.snapshots()`. Immutable; equal when every field
/// is.
#[pyclass(module = "shmds._shmds", name = "SnapshotInfo", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SnapshotInfo {
    /// The snapshot id: 64 lowercase hex digits (its root hash). Any unique
    /// prefix of 4 or more digits names it too.
    #[pyo3(get)]
    id: String,
    /// The name of the segment it was taken from.
    #[pyo3(get)]
    source: String,
    /// When it was taken, in nanoseconds since the Unix epoch.
    #[pyo3(get)]
    created_unix_ns: u64,
    /// The image length in bytes (the segment's size).
    #[pyo3(get)]
    size: u64,
    /// Number of structures in the segment's table.
    #[pyo3(get)]
    entries: usize,
    /// Number of 64 KiB chunks of the image.
    #[pyo3(get)]
    chunks: usize,
    /// Number of distinct chunks (equal chunks are stored once).
    #[pyo3(get)]
    distinct_chunks: usize,
    /// From a snapshot: the chunks it wrote that the store did not hold
    /// (0 for an unchanged segment). From `Store.snapshots()`: its distinct
    /// chunks that no older snapshot uses.
    #[pyo3(get)]
    new_chunks: usize,
    /// The bytes of the `new_chunks`.
    #[pyo3(get)]
    new_bytes: u64,
    /// From a snapshot: how many other processes were paused for the copy
    /// (0 in `Store.snapshots()`).
    #[pyo3(get)]
    paused_processes: usize,
    paused_for: Duration,
}

impl SnapshotInfo {
    fn new(info: snap::SnapshotInfo, paused_processes: usize, paused_for: Duration) -> Self {
        SnapshotInfo {
            id: info.id,
            source: info.source,
            created_unix_ns: info.created_unix_ns,
            size: info.size,
            entries: info.entries,
            chunks: info.chunks,
            distinct_chunks: info.distinct_chunks,
            new_chunks: info.new_chunks,
            new_bytes: info.new_bytes,
            paused_processes,
            paused_for,
        }
    }
}

/// `text` as Python's `repr` writes it.
fn py_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_str()?.to_owned())
}

/// `datetime.datetime` (UTC) of `ns` nanoseconds after the Unix epoch, to
/// the microsecond (truncated).
fn utc_datetime(py: Python<'_>, ns: u64) -> PyResult<Bound<'_, PyAny>> {
    let datetime = py.import("datetime")?;
    let utc = datetime.getattr("timezone")?.getattr("utc")?;
    let epoch = datetime
        .getattr("datetime")?
        .call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("microseconds", ns / 1000)?;
    let delta = datetime.getattr("timedelta")?.call((), Some(&kwargs))?;
    epoch.add(delta)
}

#[pymethods]
impl SnapshotInfo {
    /// From a snapshot: how long the other processes were paused, in
    /// seconds (0.0 in `Store.snapshots()`).
    #[getter]
    fn paused_for(&self) -> f64 {
        self.paused_for.as_secs_f64()
    }

    /// When it was taken: a timezone-aware `datetime.datetime` in UTC (to
    /// the microsecond; `created_unix_ns` has the nanoseconds).
    #[getter]
    fn created<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        utc_datetime(py, self.created_unix_ns)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<shmds.SnapshotInfo {} source={} size={} entries={}>",
            &self.id[..self.id.len().min(12)],
            py_repr(py, &self.source)?,
            self.size,
            self.entries
        ))
    }
}

/// One structure of a snapshot's segment (the `before` and `after` of an
/// EntryChange). Immutable; equal when every field is.
#[pyclass(module = "shmds._shmds", name = "SnapshotEntry", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SnapshotEntry {
    /// The entry name.
    #[pyo3(get)]
    name: String,
    /// The kind of structure: "array", "queue", "map"...
    #[pyo3(get)]
    kind: String,
    /// The element (for a map: value) type descriptor.
    #[pyo3(get, name = "type")]
    type_descriptor: String,
    /// The key type descriptor of a map or set; None for other kinds.
    #[pyo3(get)]
    key_type: Option<String>,
    /// Where the structure's block starts in the image, in bytes.
    #[pyo3(get)]
    offset: u64,
    /// The block's length in bytes.
    #[pyo3(get)]
    size: u64,
    /// BLAKE3 hash of the block, 64 lowercase hex digits: equal blocks
    /// have equal hashes.
    #[pyo3(get)]
    hash: String,
}

impl From<snap::SnapshotEntry> for SnapshotEntry {
    fn from(e: snap::SnapshotEntry) -> Self {
        SnapshotEntry {
            name: e.name,
            kind: e.kind,
            type_descriptor: e.type_descriptor,
            key_type: e.key_descriptor,
            offset: e.offset,
            size: e.size,
            hash: e.hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

#[pymethods]
impl SnapshotEntry {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let key = match &self.key_type {
            Some(k) => format!(" key_type={}", py_repr(py, k)?),
            None => String::new(),
        };
        Ok(format!(
            "<shmds.SnapshotEntry {} {} type={}{key} offset={} size={}>",
            py_repr(py, &self.name)?,
            self.kind,
            py_repr(py, &self.type_descriptor)?,
            self.offset,
            self.size
        ))
    }
}

/// How one entry differs between two snapshots (`Store.diff(a, b)`).
/// `change` is "added" (only in `b`: `before` is None), "removed" (only in
/// `a`: `after` is None), "changed" (in both, with other contents, kind or
/// types) or "unchanged" (the same contents; its offset may differ).
/// `before` and `after` are SnapshotEntry records, the entry as it is in
/// `a` and in `b`. Immutable; equal when every field is.
#[pyclass(module = "shmds._shmds", name = "EntryChange", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct EntryChange {
    /// "added", "removed", "changed" or "unchanged".
    #[pyo3(get)]
    change: &'static str,
    before: Option<SnapshotEntry>,
    after: Option<SnapshotEntry>,
}

impl EntryChange {
    fn new(
        change: &'static str,
        before: Option<snap::SnapshotEntry>,
        after: Option<snap::SnapshotEntry>,
    ) -> Self {
        EntryChange {
            change,
            before: before.map(SnapshotEntry::from),
            after: after.map(SnapshotEntry::from),
        }
    }

    /// The entry in `b` if it is there, else in `a`.
    fn latest(&self) -> &SnapshotEntry {
        match (&self.after, &self.before) {
            (Some(e), _) | (None, Some(e)) => e,
            (None, None) => unreachable!("an EntryChange has an entry on one side at least"),
        }
    }
}

#[pymethods]
impl EntryChange {
    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        &self.latest().name
    }

    /// The kind of structure, as it is in `b` (in `a` if removed).
    #[getter]
    fn kind(&self) -> &str {
        &self.latest().kind
    }

    /// The element type descriptor, as it is in `b` (in `a` if removed).
    #[getter]
    #[pyo3(name = "type")]
    fn type_descriptor(&self) -> &str {
        &self.latest().type_descriptor
    }

    /// The entry in the first snapshot (None if it was added).
    #[getter]
    fn before(&self) -> Option<SnapshotEntry> {
        self.before.clone()
    }

    /// The entry in the second snapshot (None if it was removed).
    #[getter]
    fn after(&self) -> Option<SnapshotEntry> {
        self.after.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let e = self.latest();
        Ok(format!(
            "<shmds.EntryChange {} {} {} type={}>",
            self.change,
            py_repr(py, &e.name)?,
            e.kind,
            py_repr(py, &e.type_descriptor)?
        ))
    }
}

/// What `Store.verify` found: `ok` (also the truth value) is True when
/// there is no problem; `problems` has one line per damaged manifest or
/// chunk, naming the snapshot and the chunk. Immutable.
#[pyclass(module = "shmds._shmds", name = "VerifyReport", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct VerifyReport {
    /// Whether no problem was found.
    #[pyo3(get)]
    ok: bool,
    /// Snapshots (manifests) checked.
    #[pyo3(get)]
    snapshots: usize,
    /// Distinct chunks checked.
    #[pyo3(get)]
    chunks: usize,
    /// Bytes of chunks re-hashed.
    #[pyo3(get)]
    bytes: u64,
    /// One line per problem (empty when `ok`).
    #[pyo3(get)]
    problems: Vec<String>,
}

#[pymethods]
impl VerifyReport {
    fn __bool__(&self) -> bool {
        self.ok
    }

    fn __repr__(&self) -> String {
        let verdict = if self.ok {
            "ok".to_owned()
        } else {
            format!("problems={}", self.problems.len())
        };
        format!(
            "<shmds.VerifyReport {verdict} snapshots={} chunks={} bytes={}>",
            self.snapshots, self.chunks, self.bytes
        )
    }
}

/// What `Store.gc` did. Immutable.
#[pyclass(module = "shmds._shmds", name = "GcReport", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct GcReport {
    /// Chunk files deleted.
    #[pyo3(get)]
    chunks_removed: usize,
    /// Bytes of the deleted chunk files.
    #[pyo3(get)]
    bytes_freed: u64,
    /// Chunk files kept (a snapshot uses them).
    #[pyo3(get)]
    chunks_kept: usize,
}

#[pymethods]
impl GcReport {
    fn __repr__(&self) -> String {
        format!(
            "<shmds.GcReport chunks_removed={} bytes_freed={} chunks_kept={}>",
            self.chunks_removed, self.bytes_freed, self.chunks_kept
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_class::<SnapshotInfo>()?;
    m.add_class::<SnapshotEntry>()?;
    m.add_class::<EntryChange>()?;
    m.add_class::<VerifyReport>()?;
    m.add_class::<GcReport>()?;
    Ok(())
}
