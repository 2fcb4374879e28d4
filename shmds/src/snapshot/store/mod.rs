//! A content-addressed store of segment snapshots.
//!
//! A store is a directory:
//!
//! - `SHMDS-STORE`: the marker, one line `shmds-store 1`.
//! - `chunks/HH/REST`: one file per distinct [`CHUNK_SIZE`] piece of an
//!   image, named by the lowercase hex BLAKE3 hash of its bytes (`HH` is the
//!   first two hex digits, `REST` the other 62).
//! - `snapshots/ID.manifest`: one text manifest per snapshot, `ID` being the
//!   snapshot's root hash in hex. It lists the image's entries and chunks.
//!
//! Every file is written to a temporary name in its directory, synced, and
//! renamed into place, and a manifest is renamed in only after all of its
//! chunks are durable, so a crash never leaves a manifest naming a missing
//! chunk, nor a half-written file under a hash name.
//!
//! The root hash is `blake3("shmds-snapshot-root-1" || meta || merkle)`, where
//! `meta` is the BLAKE3 hash of the manifest text before its first `chunk`
//! line and `merkle` is the root of a binary Merkle tree over the chunk hashes
//! (`parent = blake3(0x01 || left || right)`, an odd last node is promoted
//! unchanged, no leaves give `blake3("")`, one leaf is that leaf).
//!
//! The store's files are treated as untrusted input: damage is reported as
//! [`Error::Damaged`], never a panic. [`Store::gc`] takes an exclusive lock
//! on the marker file and [`Store::write`] a shared one, so a collection never
//! deletes a chunk that a concurrent write relies on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Bytes per chunk (the last chunk of an image may be shorter).
pub const CHUNK_SIZE: usize = 64 * 1024;

const MARKER_NAME: &str = "SHMDS-STORE";
const MARKER: &str = "shmds-store 1\n";
const CHUNKS_DIR: &str = "chunks";
const SNAPSHOTS_DIR: &str = "snapshots";
const MANIFEST_SUFFIX: &str = ".manifest";
const TMP_PREFIX: &str = ".tmp-";
/// A manifest larger than this is damaged (about 940,000 chunks: 60 GiB).
const MAX_MANIFEST: u64 = 64 << 20;
const ROOT_DOMAIN: &[u8] = b"shmds-snapshot-root-1";
/// Hash on two threads only above this many bytes.
const PARALLEL_MIN: u64 = 4 << 20;

type Hash = [u8; 32];

/// A chunk to write: its hash and bytes of the image, its temporary file
/// and its final path.
type ChunkJob = ((Hash, Range<usize>), (PathBuf, PathBuf));

/// What the caller says about an image passed to [`Store::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The name of the segment the image was taken from.
    pub source: String,
    /// The segment's format version.
    pub segment_format: u32,
    /// When the image was taken, in nanoseconds since the Unix epoch. It is
    /// part of the snapshot id: the same image at the same time gives the
    /// same id.
    pub created_unix_ns: u64,
    /// The named entries of the segment, in the order they are to be listed.
    pub entries: Vec<SnapshotEntry>,
}

/// One named entry of a segment: where its block lies in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The entry name.
    pub name: String,
    /// The kind of structure ("array", "queue", ...).
    pub kind: String,
    /// The element type descriptor.
    pub type_descriptor: String,
    /// The key type descriptor, for structures that have keys.
    pub key_descriptor: Option<String>,
    /// Offset of the entry's block in the image.
    pub offset: u64,
    /// Length of the entry's block in bytes.
    pub size: u64,
    /// BLAKE3 hash of `image[offset..offset + size]`. Filled by
    /// [`Store::write`]: callers pass `[0; 32]`.
    pub hash: [u8; 32],
}

/// A parsed, root-checked manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The snapshot id: its root hash in lowercase hex.
    pub id: String,
    /// The name of the segment the image was taken from.
    pub source: String,
    /// The segment's format version.
    pub segment_format: u32,
    /// When the image was taken, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// The image length in bytes.
    pub size: u64,
    /// The entries, in the order they were given.
    pub entries: Vec<SnapshotEntry>,
    /// The chunk hashes, in image order.
    pub chunks: Vec<[u8; 32]>,
}

/// One snapshot as [`Store::list`] shows it, or what [`Store::write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot id (root hash in hex).
    pub id: String,
    /// The name of the segment the image was taken from.
    pub source: String,
    /// When the image was taken, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// The image length in bytes.
    pub size: u64,
    /// Number of entries.
    pub entries: usize,
    /// Number of chunks.
    pub chunks: usize,
    /// Number of distinct chunks.
    pub distinct_chunks: usize,
    /// From [`Store::write`]: chunks this snapshot wrote that the store did
    /// not hold. From [`Store::list`]: distinct chunks no older snapshot uses.
    pub new_chunks: usize,
    /// The bytes of the `new_chunks`.
    pub new_bytes: u64,
}

/// How one entry differs between two snapshots ([`Store::diff`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryChange {
    /// Only in the second snapshot.
    Added(SnapshotEntry),
    /// Only in the first snapshot.
    Removed(SnapshotEntry),
    /// In both, with another hash, kind, type or key descriptor.
    Changed {
        /// The entry in the first snapshot.
        before: SnapshotEntry,
        /// The entry in the second snapshot.
        after: SnapshotEntry,
    },
    /// In both with the same contents (it may have moved in the image).
    Unchanged(SnapshotEntry),
}

impl EntryChange {
    /// The entry name.
    pub fn name(&self) -> &str {
        match self {
            EntryChange::Added(e) | EntryChange::Removed(e) | EntryChange::Unchanged(e) => &e.name,
            EntryChange::Changed { after, .. } => &after.name,
        }
    }
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Manifests checked.
    pub snapshots: usize,
    /// Distinct chunks checked.
    pub chunks: usize,
    /// Bytes of chunks re-hashed.
    pub bytes: u64,
    /// One line per problem, naming the snapshot and the chunk.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Store::gc`] did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Chunk files deleted.
    pub chunks_removed: usize,
    /// Bytes of the deleted chunk files.
    pub bytes_freed: u64,
    /// Chunk files kept because a manifest names them.
    pub chunks_kept: usize,
}

/// A snapshot store directory (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store in `dir`, creating it if `dir` is missing or empty.
    ///
    /// Refuses ([`Error::InvalidArgument`]) a non-empty directory without
    /// the `SHMDS-STORE` marker, or with the marker of another version.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("creating the snapshot store directory"))?;
        let marker = dir.join(MARKER_NAME);
        match read_capped(&marker, 1024) {
            Ok(bytes) => check_marker(&dir, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let listing =
                    fs::read_dir(&dir).map_err(io_err("listing the snapshot store directory"))?;
                for entry in listing {
                    let entry = entry.map_err(io_err("listing the snapshot store directory"))?;
                    // A marker being written by a concurrent `open` (or left by a crashed one).
                    if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                        return Err(Error::InvalidArgument(format!(
                            "{} is not empty and has no {MARKER_NAME} marker, so it is not a shmds snapshot store (give an empty or new directory, or the directory of an existing store)",
                            dir.display()
                        )));
                    }
                }
                write_atomic(&dir, &marker, MARKER.as_bytes())
                    .map_err(io_err("writing the store marker"))?;
            }
            Err(e) => return Err(Error::io("reading the store marker", e)),
        }
        for sub in [CHUNKS_DIR, SNAPSHOTS_DIR] {
            match fs::create_dir(dir.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("creating the snapshot store directory", e)),
            }
        }
        sync_dir(&dir).map_err(io_err("syncing the snapshot store directory"))?;
        Ok(Store { dir })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `image` as a snapshot: hashes its chunks, stores the ones the
    /// store lacks, fills each entry's hash and writes the manifest.
    ///
    /// Writing the same image with the same meta (including the created
    /// time) twice gives the same id and writes no chunk the second time.
    /// A manifest with that id that exists already is left as it is, unless
    /// its bytes differ from what this write would put there (it is damaged):
    /// then it is replaced. A chunk file of the wrong length is rewritten.
    ///
    /// Fails with [`Error::InvalidArgument`] if an entry lies outside the image.
    pub fn write(&self, image: &[u8], mut meta: SnapshotMeta) -> Result<SnapshotInfo> {
        let len = image.len();
        let chunk_count = len.div_ceil(CHUNK_SIZE);
        let mut ranges: Vec<Range<usize>> = (0..chunk_count)
            .map(|i| i * CHUNK_SIZE..len.min((i + 1) * CHUNK_SIZE))
            .collect();
        for e in &meta.entries {
            let end = e
                .offset
                .checked_add(e.size)
                .filter(|&end| end <= len as u64);
            match end {
                // Both fit in usize: they are at most `len`.
                Some(end) => ranges.push(e.offset as usize..end as usize),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "entry {:?} claims bytes {}..{} but the image is {len} bytes long (pass the entries of this image)",
                        e.name,
                        e.offset,
                        e.offset as u128 + e.size as u128
                    )))
                }
            }
        }
        let hashes = hash_ranges(image, &ranges);
        let (chunk_hashes, entry_hashes) = hashes.split_at(chunk_count);
        for (e, h) in meta.entries.iter_mut().zip(entry_hashes) {
            e.hash = *h;
        }

        let _lock = self.lock(false)?;
        let mut distinct = HashSet::with_capacity(chunk_count);
        let mut missing: Vec<(Hash, Range<usize>)> = Vec::new();
        for (h, r) in chunk_hashes.iter().zip(&ranges) {
            if !distinct.insert(*h) {
                continue;
            }
            match fs::metadata(self.chunk_path(h)) {
                Ok(m) if m.is_file() && m.len() == r.len() as u64 => {}
                _ => missing.push((*h, r.clone())),
            }
        }
        self.write_chunks(image, &missing)?;

        let meta_text = render_meta(&meta, len as u64);
        let root = root_hash(meta_text.as_bytes(), chunk_hashes);
        let id = hex(&root);
        let text = render_manifest(meta_text, chunk_hashes, &root);
        let path = self.manifest_path(&id);
        let existing = match read_capped(&path, MAX_MANIFEST) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("reading a snapshot manifest", e)),
        };
        if existing.as_deref() != Some(text.as_bytes()) {
            let snapshots = self.dir.join(SNAPSHOTS_DIR);
            write_atomic(&snapshots, &path, text.as_bytes())
                .map_err(io_err("writing a snapshot manifest"))?;
            sync_dir(&snapshots).map_err(io_err("syncing the snapshots directory"))?;
        }
        Ok(SnapshotInfo {
            id,
            source: meta.source,
            created_unix_ns: meta.created_unix_ns,
            size: len as u64,
            entries: meta.entries.len(),
            chunks: chunk_count,
            distinct_chunks: distinct.len(),
            new_chunks: missing.len(),
            new_bytes: missing.iter().map(|(_, r)| r.len() as u64).sum(),
        })
    }

    /// All snapshots, oldest first (by created time, then id).
    ///
    /// `new_chunks` and `new_bytes` count the distinct chunks that no older
    /// snapshot in the store uses. A manifest that fails to parse is skipped
    /// ([`Store::verify`] reports it).
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut manifests: Vec<Manifest> = self
            .manifest_ids()?
            .iter()
            .filter_map(|id| self.load(id).ok())
            .collect();
        manifests.sort_by(|a, b| (a.created_unix_ns, &a.id).cmp(&(b.created_unix_ns, &b.id)));
        let mut older: HashSet<Hash> = HashSet::new();
        let mut out = Vec::with_capacity(manifests.len());
        for m in manifests {
            let mut distinct = HashSet::new();
            let (mut new_chunks, mut new_bytes) = (0, 0);
            for (i, h) in m.chunks.iter().enumerate() {
                if distinct.insert(*h) && !older.contains(h) {
                    new_chunks += 1;
                    new_bytes += chunk_len(m.size, i) as u64;
                }
            }
            out.push(SnapshotInfo {
                id: m.id,
                source: m.source,
                created_unix_ns: m.created_unix_ns,
                size: m.size,
                entries: m.entries.len(),
                chunks: m.chunks.len(),
                distinct_chunks: distinct.len(),
                new_chunks,
                new_bytes,
            });
            older.extend(distinct);
        }
        Ok(out)
    }

    /// The full id of the snapshot whose id starts with `id_or_prefix` (at
    /// least 4 hex digits, or the full id).
    ///
    /// Fails with [`Error::SnapshotNotFound`] if no snapshot matches and
    /// with [`Error::InvalidArgument`] if several do (listing them) or the
    /// prefix is not 4 to 64 hex digits.
    pub fn resolve(&self, id_or_prefix: &str) -> Result<String> {
        let want = id_or_prefix.to_ascii_lowercase();
        if want.len() < 4 || want.len() > 64 || !want.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!(
                "snapshot id {id_or_prefix:?} is not 4 to 64 hex digits (give a snapshot id or a unique prefix of one, as `shmds snapshots` lists them)"
            )));
        }
        let mut found: Vec<String> = self
            .manifest_ids()?
            .into_iter()
            .filter(|id| id.starts_with(&want))
            .collect();
        match found.len() {
            0 => Err(Error::SnapshotNotFound { store: self.dir.display().to_string(), id: id_or_prefix.to_owned() }),
            1 => Ok(found.remove(0)),
            n => Err(Error::InvalidArgument(format!(
                "snapshot id prefix {want:?} is ambiguous: {n} snapshots match ({}); give more digits",
                found.join(", ")
            ))),
        }
    }

    /// The manifest of a snapshot, parsed and with its root hash checked
    /// against its text (the chunks are not read).
    pub fn manifest(&self, id_or_prefix: &str) -> Result<Manifest> {
        let id = self.resolve(id_or_prefix)?;
        self.load(&id)
    }

    /// The manifest and image of a snapshot. Every chunk is re-hashed as it
    /// is read; a missing, wrong-length or damaged chunk gives
    /// [`Error::Damaged`] naming the chunk and the bytes of the image it holds.
    pub fn read(&self, id_or_prefix: &str) -> Result<(Manifest, Vec<u8>)> {
        let m = self.manifest(id_or_prefix)?;
        let want = |i| chunk_len(m.size, i);
        // First check that every chunk file is there with the right length,
        // so the allocation below is backed by files, not by a number.
        let mut seen: HashSet<(Hash, usize)> = HashSet::new();
        for (i, h) in m.chunks.iter().enumerate() {
            if seen.insert((*h, want(i))) {
                match fs::metadata(self.chunk_path(h)) {
                    Ok(md) if md.len() == want(i) as u64 => {}
                    Ok(md) => {
                        return Err(self.chunk_damage(&m, i, format!("it is {} bytes", md.len())))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(self.chunk_damage(&m, i, "it is missing"))
                    }
                    Err(e) => return Err(Error::io("reading a snapshot chunk", e)),
                }
            }
        }
        let mut image: Vec<u8> = Vec::new();
        usize::try_from(m.size)
            .ok()
            .and_then(|size| image.try_reserve_exact(size).ok())
            .ok_or_else(|| Error::io("allocating a snapshot image", io::ErrorKind::OutOfMemory))?;
        let mut first: HashMap<(Hash, usize), usize> = HashMap::new();
        for (i, h) in m.chunks.iter().enumerate() {
            let len = want(i);
            if let Some(&start) = first.get(&(*h, len)) {
                image.extend_from_within(start..start + len);
                continue;
            }
            let start = image.len();
            let mut file =
                File::open(self.chunk_path(h)).map_err(io_err("reading a snapshot chunk"))?;
            image.resize(start + len, 0);
            let got = read_full(&mut file, &mut image[start..])
                .map_err(io_err("reading a snapshot chunk"))?;
            let more =
                read_full(&mut file, &mut [0]).map_err(io_err("reading a snapshot chunk"))?;
            if got != len || more != 0 {
                return Err(self.chunk_damage(&m, i, "its length changed while it was read"));
            }
            let actual = blake3::hash(&image[start..]);
            if actual.as_bytes() != h {
                return Err(self.chunk_damage(
                    &m,
                    i,
                    format!("its bytes hash to {}", actual.to_hex()),
                ));
            }
            first.insert((*h, len), start);
        }
        Ok((m, image))
    }

    /// Re-hashes one snapshot (or all of them, for `None`): its manifest and
    /// every chunk it names, each distinct chunk once.
    ///
    /// Damage goes into [`VerifyReport::problems`], one line each naming the
    /// snapshot and the chunk. Fails only for an unknown id or an I/O error
    /// on the store directory itself.
    pub fn verify(&self, id_or_prefix: Option<&str>) -> Result<VerifyReport> {
        let ids = match id_or_prefix {
            Some(p) => vec![self.resolve(p)?],
            None => self.manifest_ids()?,
        };
        let mut report = VerifyReport::default();
        let mut good = Vec::new();
        for id in ids {
            report.snapshots += 1;
            match self.load(&id) {
                Ok(m) => good.push(m),
                Err(e) => report.problems.push(format!("snapshot {id}: {e}")),
            }
        }
        let mut state: HashMap<Hash, std::result::Result<u64, String>> = HashMap::new();
        let mut buf = vec![0u8; CHUNK_SIZE + 1];
        for m in &good {
            let mut reported = HashSet::new();
            for (i, h) in m.chunks.iter().enumerate() {
                let r = chunk_range(m.size, i);
                let st = state.entry(*h).or_insert_with(|| {
                    let st = self.check_chunk(h, &mut buf);
                    report.chunks += 1;
                    if let Ok(n) = st {
                        report.bytes += n;
                    }
                    st
                });
                let problem = match st {
                    Ok(n) if *n == r.end - r.start => continue,
                    Ok(n) => format!("is {n} bytes, not {}", r.end - r.start),
                    Err(p) => p.clone(),
                };
                if reported.insert(*h) {
                    report.problems.push(format!(
                        "snapshot {}: chunk {} (bytes {}..{} of the image) {problem}",
                        m.id,
                        hex(h),
                        r.start,
                        r.end
                    ));
                }
            }
        }
        Ok(report)
    }

    /// How the entries of snapshot `b` differ from those of snapshot `a`,
    /// matched by name and sorted by name. (If a snapshot has two entries of
    /// one name, the last one counts.)
    pub fn diff(&self, a: &str, b: &str) -> Result<Vec<EntryChange>> {
        let by_name = |m: Manifest| {
            m.entries
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect::<BTreeMap<_, _>>()
        };
        let mut before = by_name(self.manifest(a)?);
        let after = by_name(self.manifest(b)?);
        let mut out = Vec::with_capacity(before.len().max(after.len()));
        for (name, new) in after {
            out.push(match before.remove(&name) {
                None => EntryChange::Added(new),
                Some(old)
                    if old.hash != new.hash
                        || old.kind != new.kind
                        || old.type_descriptor != new.type_descriptor
                        || old.key_descriptor != new.key_descriptor =>
                {
                    EntryChange::Changed {
                        before: old,
                        after: new,
                    }
                }
                Some(_) => EntryChange::Unchanged(new),
            });
        }
        out.extend(before.into_values().map(EntryChange::Removed));
        out.sort_by(|x, y| x.name().cmp(y.name()));
        Ok(out)
    }

    /// Removes one snapshot's manifest. Its chunks stay until [`Store::gc`].
    pub fn remove(&self, id_or_prefix: &str) -> Result<()> {
        let id = self.resolve(id_or_prefix)?;
        fs::remove_file(self.manifest_path(&id)).map_err(io_err("removing a snapshot manifest"))?;
        sync_dir(&self.dir.join(SNAPSHOTS_DIR)).map_err(io_err("syncing the snapshots directory"))
    }

    /// Deletes the chunk files no manifest names, and stray temporary files.
    ///
    /// Refuses ([`Error::Damaged`], deleting nothing) if any manifest is
    /// damaged, so damage never causes the chunks of a snapshot to go.
    /// Waits for writes in progress (in any process) to finish.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let mut used: HashSet<Hash> = HashSet::new();
        for id in self.manifest_ids()? {
            match self.load(&id) {
                Ok(m) => used.extend(m.chunks),
                Err(e @ Error::Damaged { .. }) => {
                    return Err(Error::Damaged {
                        what: format!("snapshot {id} in store {}", self.dir.display()),
                        detail: format!("{e}; gc deleted nothing (run `shmds verify`, then repair or remove that snapshot)"),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        let listing = |dir: &Path| -> Result<Vec<fs::DirEntry>> {
            fs::read_dir(dir)
                .and_then(|it| it.collect::<io::Result<Vec<_>>>())
                .map_err(io_err("listing the snapshot store"))
        };
        let remove = |path: &Path| match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("removing a file from the snapshot store", e))
            }
            _ => Ok(()),
        };
        for dir in [self.dir.clone(), self.dir.join(SNAPSHOTS_DIR)] {
            for entry in listing(&dir)? {
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    remove(&entry.path())?;
                }
            }
        }
        let mut report = GcReport::default();
        let chunks = self.dir.join(CHUNKS_DIR);
        for sub in listing(&chunks)? {
            let head = sub.file_name().to_string_lossy().into_owned();
            if head.len() != 2 || unhex(&head).is_none() || !sub.path().is_dir() {
                continue;
            }
            let mut changed = false;
            for entry in listing(&sub.path())? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) {
                    remove(&entry.path())?;
                    changed = true;
                    continue;
                }
                let Some(h) = unhex_hash(&format!("{head}{name}")) else {
                    continue;
                };
                if used.contains(&h) {
                    report.chunks_kept += 1;
                } else {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    remove(&entry.path())?;
                    report.chunks_removed += 1;
                    report.bytes_freed += len;
                    changed = true;
                }
            }
            if changed {
                // Fails (harmlessly) unless the directory is now empty.
                if fs::remove_dir(sub.path()).is_err() {
                    sync_dir(&sub.path()).map_err(io_err("syncing the chunks directory"))?;
                }
            }
        }
        sync_dir(&chunks).map_err(io_err("syncing the chunks directory"))?;
        Ok(report)
    }

    fn chunk_path(&self, h: &Hash) -> PathBuf {
        let name = hex(h);
        self.dir.join(CHUNKS_DIR).join(&name[..2]).join(&name[2..])
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir
            .join(SNAPSHOTS_DIR)
            .join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    /// Ids of the `snapshots/ID.manifest` files, sorted.
    fn manifest_ids(&self) -> Result<Vec<String>> {
        let listing = fs::read_dir(self.dir.join(SNAPSHOTS_DIR))
            .map_err(io_err("listing the snapshots directory"))?;
        let mut ids = Vec::new();
        for entry in listing {
            let entry = entry.map_err(io_err("listing the snapshots directory"))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(MANIFEST_SUFFIX)) else {
                continue;
            };
            if unhex_hash(id).is_some() {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads, parses and checks the manifest of the full id `id`.
    fn load(&self, id: &str) -> Result<Manifest> {
        let path = self.manifest_path(id);
        let damaged = |detail: String| Error::Damaged {
            what: format!("manifest {}", path.display()),
            detail,
        };
        let bytes = match read_capped(&path, MAX_MANIFEST) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::SnapshotNotFound {
                    store: self.dir.display().to_string(),
                    id: id.to_owned(),
                })
            }
            Err(e) => return Err(Error::io("reading a snapshot manifest", e)),
        };
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(damaged(format!("it is larger than {MAX_MANIFEST} bytes")));
        }
        let m = parse_manifest(&bytes, &path)?;
        if m.id != id {
            return Err(damaged(format!(
                "its root hash is {} but its file name says {id} (it was renamed or edited; remove it)",
                m.id
            )));
        }
        Ok(m)
    }

    /// Hashes one chunk file: its length, or what is wrong with it.
    fn check_chunk(&self, h: &Hash, buf: &mut [u8]) -> std::result::Result<u64, String> {
        let mut file = match File::open(self.chunk_path(h)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("is missing".to_owned()),
            Err(e) => return Err(format!("cannot be read ({e})")),
        };
        let n = read_full(&mut file, buf).map_err(|e| format!("cannot be read ({e})"))?;
        if n > CHUNK_SIZE {
            return Err(format!("is longer than a chunk ({CHUNK_SIZE} bytes)"));
        }
        let actual = blake3::hash(&buf[..n]);
        if actual.as_bytes() != h {
            return Err(format!("is damaged: its bytes hash to {}", actual.to_hex()));
        }
        Ok(n as u64)
    }

    /// The error for chunk `i` of `m` being damaged.
    fn chunk_damage(&self, m: &Manifest, i: usize, problem: impl std::fmt::Display) -> Error {
        let r = chunk_range(m.size, i);
        Error::Damaged {
            what: format!("chunk {} of snapshot {}", hex(&m.chunks[i]), m.id),
            detail: format!(
                "{problem}, but it should hold the {} bytes {}..{} of the image (run `shmds verify {}` to check the whole store)",
                r.end - r.start, r.start, r.end, self.dir.display()
            ),
        }
    }

    /// Locks the store (shared for writes, exclusive for gc) until the file drops.
    fn lock(&self, exclusive: bool) -> Result<File> {
        let file =
            File::open(self.dir.join(MARKER_NAME)).map_err(io_err("opening the store marker"))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(io_err("locking the snapshot store"))?;
        Ok(file)
    }

    /// Writes the missing chunks durably, on two threads when there are many.
    fn write_chunks(&self, image: &[u8], missing: &[(Hash, Range<usize>)]) -> Result<()> {
        let chunks = self.dir.join(CHUNKS_DIR);
        let mut heads: Vec<u8> = missing.iter().map(|(h, _)| h[0]).collect();
        heads.sort_unstable();
        heads.dedup();
        let mut new_dir = false;
        for &head in &heads {
            match fs::create_dir(chunks.join(hex(&[head]))) {
                Ok(()) => new_dir = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("creating a chunks directory", e)),
            }
        }
        // Every chunk goes to a temporary file first; one `syncfs` makes them
        // all durable (a sync per file costs a disk flush each), and only
        // then are they renamed to their hash names, so a crash never leaves
        // a partial chunk under a hash name.
        let temps: Vec<(PathBuf, PathBuf)> = missing
            .iter()
            .map(|(h, _)| {
                let path = self.chunk_path(h);
                let dir = path.parent().unwrap_or(&chunks).to_path_buf();
                (dir.join(temp_name()), path)
            })
            .collect();
        let work = |part: &[ChunkJob]| -> Result<()> {
            for ((_, r), (tmp, _)) in part {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(tmp)
                    .map_err(io_err("writing a snapshot chunk"))?;
                f.write_all(&image[r.clone()])
                    .map_err(io_err("writing a snapshot chunk"))?;
            }
            Ok(())
        };
        let jobs: Vec<ChunkJob> = missing.iter().cloned().zip(temps.iter().cloned()).collect();
        let missing = &jobs[..];
        let cleanup = || {
            for (tmp, _) in &temps {
                let _ = fs::remove_file(tmp);
            }
        };
        let written = if missing.len() < 8 || !two_cores() {
            work(missing)
        } else {
            let (a, b) = missing.split_at(missing.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| work(b));
                let mine = work(a);
                let theirs = other
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                mine.and(theirs)
            })
        };
        let synced = written.and_then(|()| {
            let dir = File::open(&chunks).map_err(io_err("opening the chunks directory"))?;
            rustix::fs::syncfs(&dir).map_err(io_err("syncing the snapshot store (syncfs)"))
        });
        if let Err(e) = synced {
            cleanup();
            return Err(e);
        }
        for (tmp, path) in &temps {
            if let Err(e) = fs::rename(tmp, path) {
                cleanup();
                return Err(Error::io("naming a snapshot chunk", e));
            }
        }
        for &head in &heads {
            sync_dir(&chunks.join(hex(&[head]))).map_err(io_err("syncing a chunks directory"))?;
        }
        if new_dir {
            sync_dir(&chunks).map_err(io_err("syncing the chunks directory"))?;
        }
        Ok(())
    }
}

fn check_marker(dir: &Path, bytes: &[u8]) -> Result<()> {
    if bytes == MARKER.as_bytes() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(bytes);
    let line: String = text.lines().next().unwrap_or("").chars().take(60).collect();
    let what = match line.starts_with("shmds-store ") {
        true => "is a snapshot store of another version",
        false => "has a marker file that is not a shmds store marker",
    };
    Err(Error::InvalidArgument(format!(
        "{} {what} ({MARKER_NAME} says {line:?}, this build reads \"shmds-store 1\"; use the shmds that made it, or another directory)",
        dir.display()
    )))
}

/// Length of chunk `i` of an image of `size` bytes (at most [`CHUNK_SIZE`]).
fn chunk_len(size: u64, i: usize) -> usize {
    let r = chunk_range(size, i);
    (r.end - r.start) as usize
}

/// Bytes of the image that chunk `i` holds.
fn chunk_range(size: u64, i: usize) -> Range<u64> {
    let start = (i as u64).saturating_mul(CHUNK_SIZE as u64).min(size);
    start..size.min(start.saturating_add(CHUNK_SIZE as u64))
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// BLAKE3 of each range of `image`, in order; on two threads for big inputs.
fn hash_ranges(image: &[u8], ranges: &[Range<usize>]) -> Vec<Hash> {
    let hash_all = |part: &[Range<usize>]| {
        part.iter()
            .map(|r| *blake3::hash(&image[r.clone()]).as_bytes())
            .collect::<Vec<_>>()
    };
    let total: u64 = ranges.iter().map(|r| r.len() as u64).sum();
    if total < PARALLEL_MIN || ranges.len() < 2 || !two_cores() {
        return hash_all(ranges);
    }
    let mut acc = 0u64;
    let split = ranges.iter().position(|r| {
        let half_done = acc >= total / 2;
        acc += r.len() as u64;
        half_done
    });
    let (a, b) = ranges.split_at(split.unwrap_or(ranges.len()));
    std::thread::scope(|s| {
        let other = s.spawn(|| hash_all(b));
        let mut out = hash_all(a);
        out.extend(
            other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        );
        out
    })
}

fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return *blake3::hash(b"").as_bytes();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut h = blake3::Hasher::new();
                    h.update(&[1]).update(l).update(r);
                    *h.finalize().as_bytes()
                }
                _ => pair[0],
            })
            .collect();
    }
    level[0]
}

fn root_hash(meta_text: &[u8], chunks: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(ROOT_DOMAIN)
        .update(blake3::hash(meta_text).as_bytes())
        .update(&merkle_root(chunks));
    *h.finalize().as_bytes()
}

/// The manifest text up to and including the last entry line.
fn render_meta(meta: &SnapshotMeta, size: u64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "shmds-snapshot 1\nsegment-format {}\nsource {}\ncreated {}\nsize {size}\nchunk-size {CHUNK_SIZE}\n",
        meta.segment_format,
        hex(meta.source.as_bytes()),
        meta.created_unix_ns
    );
    for e in &meta.entries {
        let key = e
            .key_descriptor
            .as_ref()
            .map_or_else(|| "-".to_owned(), |k| hex(k.as_bytes()));
        let _ = writeln!(
            s,
            "entry {} {} {} {} {} {} {key}",
            e.offset,
            e.size,
            hex(&e.hash),
            hex(e.kind.as_bytes()),
            hex(e.name.as_bytes()),
            hex(e.type_descriptor.as_bytes())
        );
    }
    s
}

fn render_manifest(mut meta_text: String, chunks: &[Hash], root: &Hash) -> String {
    meta_text.reserve(chunks.len() * 71 + 70);
    for c in chunks {
        let _ = writeln!(meta_text, "chunk {}", hex(c));
    }
    let _ = writeln!(meta_text, "root {}", hex(root));
    meta_text
}

/// A strict reader of manifest lines.
struct Parser<'a> {
    rest: &'a str,
    /// Bytes consumed so far.
    offset: usize,
    /// Number of the last line read (1-based).
    number: usize,
    path: &'a Path,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        self.rest.split('\n').next()
    }

    fn next_line(&mut self) -> Option<&'a str> {
        let line = self.peek()?;
        self.rest = self.rest.get(line.len() + 1..).unwrap_or("");
        self.offset += line.len() + 1;
        self.number += 1;
        Some(line)
    }

    fn damaged(&self, detail: String) -> Error {
        Error::Damaged {
            what: format!("manifest {}", self.path.display()),
            detail: format!("{detail} (the snapshot cannot be used: remove it, or put back a good copy of the file)"),
        }
    }

    /// The error for the last line read, `line`, not being `expected`.
    fn bad(&self, expected: &str, line: Option<&str>) -> Error {
        self.damaged(match line {
            Some(l) => format!(
                "line {}: expected `{expected}`, found {:?}",
                self.number,
                l.chars().take(80).collect::<String>()
            ),
            None => format!("it ends after line {}, expected `{expected}`", self.number),
        })
    }

    /// The value of the next line, which must be `key value`.
    fn field(&mut self, key: &str, expected: &str) -> Result<&'a str> {
        let line = self.next_line();
        match line
            .and_then(|l| l.strip_prefix(key))
            .and_then(|l| l.strip_prefix(' '))
        {
            Some(v) => Ok(v),
            None => Err(self.bad(expected, line)),
        }
    }

    fn number(&mut self, key: &str, expected: &str) -> Result<u64> {
        let v = self.field(key, expected)?;
        parse_u64(v).ok_or_else(|| self.bad(expected, Some(v)))
    }
}

/// Parses a manifest strictly and checks its root line (see the module docs).
fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest> {
    let mut p = Parser {
        rest: "",
        offset: 0,
        number: 0,
        path,
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| p.damaged("it is not UTF-8 text".to_owned()))?;
    if !text.ends_with('\n') {
        return Err(p.damaged("it is empty or does not end with a newline (truncated?)".to_owned()));
    }
    p.rest = text;
    let line = p.next_line();
    if line != Some("shmds-snapshot 1") {
        return Err(p.bad("shmds-snapshot 1", line));
    }
    let format_line = "segment-format <u32>";
    let segment_format = u32::try_from(p.number("segment-format", format_line)?).map_err(|_| {
        p.damaged(format!(
            "line {}: the segment format is over 32 bits",
            p.number
        ))
    })?;
    let v = p.field("source", "source <hex>")?;
    let source = unhex_string(v).ok_or_else(|| p.bad("source <hex of UTF-8>", Some(v)))?;
    let created_unix_ns = p.number("created", "created <u64>")?;
    let size = p.number("size", "size <u64>")?;
    if p.number("chunk-size", "chunk-size 65536")? != CHUNK_SIZE as u64 {
        return Err(p.damaged(format!(
            "line {}: the chunk size is not {CHUNK_SIZE}",
            p.number
        )));
    }

    let entry_form = "entry <offset> <size> <hash> <kind> <name> <type> <key or ->";
    let mut entries = Vec::new();
    while let Some(line) = p.peek().filter(|l| l.starts_with("entry ")) {
        p.next_line();
        let mut f = line["entry ".len()..].splitn(7, ' ');
        let mut next = || f.next().unwrap_or("\n");
        let (offset, len, hash, kind, name, ty, key) =
            (next(), next(), next(), next(), next(), next(), next());
        let entry = (|| {
            Some(SnapshotEntry {
                offset: parse_u64(offset)?,
                size: parse_u64(len)?,
                hash: unhex_hash(hash)?,
                kind: unhex_string(kind)?,
                name: unhex_string(name)?,
                type_descriptor: unhex_string(ty)?,
                key_descriptor: if key == "-" {
                    None
                } else {
                    Some(unhex_string(key)?)
                },
            })
        })()
        .ok_or_else(|| p.bad(entry_form, Some(line)))?;
        if entry
            .offset
            .checked_add(entry.size)
            .is_none_or(|end| end > size)
        {
            return Err(p.damaged(format!(
                "line {}: entry {:?} lies outside the {size}-byte image",
                p.number, entry.name
            )));
        }
        entries.push(entry);
    }
    let meta_end = p.offset;

    let expected = size.div_ceil(CHUNK_SIZE as u64);
    let mut chunks = Vec::new();
    while let Some(line) = p.peek().filter(|l| l.starts_with("chunk ")) {
        p.next_line();
        if chunks.len() as u64 >= expected {
            return Err(p.damaged(format!(
                "line {}: more chunk lines than the {expected} of a {size}-byte image",
                p.number
            )));
        }
        chunks.push(
            unhex_hash(&line["chunk ".len()..])
                .ok_or_else(|| p.bad("chunk <64 hex>", Some(line)))?,
        );
    }
    if chunks.len() as u64 != expected {
        return Err(p.damaged(format!(
            "line {}: {} chunk lines, but a {size}-byte image has {expected} chunks",
            p.number + 1,
            chunks.len()
        )));
    }
    let line = p.next_line();
    let root = line
        .and_then(|l| l.strip_prefix("root "))
        .and_then(unhex_hash)
        .ok_or_else(|| p.bad("root <64 hex>", line))?;
    if p.peek().is_some() {
        return Err(p.damaged(format!("line {}: text after the root line", p.number + 1)));
    }
    let actual = root_hash(&bytes[..meta_end], &chunks);
    if actual != root {
        return Err(p.damaged(format!(
            "its root line says {} but its contents hash to {} (it was edited or damaged)",
            hex(&root),
            hex(&actual)
        )));
    }
    Ok(Manifest {
        id: hex(&root),
        source,
        segment_format,
        created_unix_ns,
        size,
        entries,
        chunks,
    })
}

/// A decimal without sign or leading zeros.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Lowercase hex only.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn unhex_hash(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    unhex(s)?.try_into().ok()
}

fn unhex_string(s: &str) -> Option<String> {
    String::from_utf8(unhex(s)?).ok()
}

/// Reads at most `cap + 1` bytes of a file (more than `cap` means too big).
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(cap + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `map_err` for an I/O error of operation `op`.
fn io_err<E: Into<io::Error>>(op: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::io(op, e)
}

/// Writes `data` to a temporary file in `dir`, syncs it, renames it to `path`.
fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(temp_name());
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(all(test, not(loom)))]
mod tests;
