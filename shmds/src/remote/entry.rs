//! Entries of a remote segment: their records in the meta hash, the keys
//! of their data, and the create/open/erase plumbing all kinds share.

use super::{scripts, Segment};
use crate::element::TypeDescriptor;
use crate::error::{Error, Result};

/// The most elements (or bytes of an array) a remote structure may hold:
/// a Redis string is at most 512 MiB.
pub(super) const MAX_BYTES: u64 = 512 << 20;

/// One entry of a remote segment, as [`Segment::entries`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry name.
    pub name: String,
    /// "queue", "stack", "map", "array", "lock", "channel" or "topic".
    pub kind: &'static str,
    /// The element (or value) type descriptor.
    pub elem_type: String,
    /// The key type descriptor of a map, empty otherwise.
    pub key_type: String,
    /// The capacity (the length of an array).
    pub capacity: u64,
}

const KINDS: [&str; 7] = ["queue", "stack", "map", "array", "lock", "channel", "topic"];

/// An entry's record, parsed and checked (the server's bytes are not
/// trusted: anything could have written them).
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub text: String,
    pub kind: &'static str,
    pub gen: u64,
    pub capacity: u64,
    pub elem_type: String,
    pub key_type: String,
}

impl Record {
    fn parse(segment: &str, name: &str, text: &str) -> Result<Record> {
        let corrupt = |why: &str| Error::Corrupt {
            name: segment.to_owned(),
            detail: format!(
                "the record of entry {name:?} ({:?}) {why}; erase the entry and create it again",
                text.chars().take(120).collect::<String>()
            ),
        };
        let parts: Vec<&str> = text.split('|').collect();
        let [version, kind, gen, capacity, elem, key] = parts[..] else {
            return Err(corrupt("does not have six fields"));
        };
        if version != "1" {
            return Err(Error::Incompatible {
                name: segment.to_owned(),
                detail: format!(
                    "entry {name:?} has record version {version:?}, this build reads 1"
                ),
            });
        }
        let kind = KINDS
            .into_iter()
            .find(|k| *k == kind)
            .ok_or_else(|| corrupt("names no kind of structure"))?;
        let gen = gen.parse().map_err(|_| corrupt("has no generation"))?;
        let capacity: u64 = capacity.parse().map_err(|_| corrupt("has no capacity"))?;
        let messages = matches!(kind, "channel" | "topic");
        let elem_size = if elem.is_empty() {
            0
        } else if messages {
            // A channel's or topic's ELEM is its largest message, in bytes.
            match elem.parse::<u64>() {
                Ok(n) if (1..=MAX_BYTES).contains(&n) => 1,
                _ => return Err(corrupt("has no valid largest message size")),
            }
        } else {
            TypeDescriptor::parse(elem)
                .map_err(|_| corrupt("has no valid element type"))?
                .size()
        };
        if !key.is_empty() {
            TypeDescriptor::parse(key).map_err(|_| corrupt("has no valid key type"))?;
        }
        let bytes = capacity.checked_mul(elem_size.max(1));
        if bytes.is_none_or(|b| b > MAX_BYTES) || capacity > MAX_BYTES {
            return Err(corrupt(
                "states a capacity beyond what a remote structure holds",
            ));
        }
        Ok(Record {
            text: text.to_owned(),
            kind,
            gen,
            capacity,
            elem_type: elem.to_owned(),
            key_type: key.to_owned(),
        })
    }
}

/// What a handle keeps of its entry: the segment, the name, the record it
/// opened and the names of its keys.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub seg: Segment,
    pub name: String,
    pub record: Record,
    pub meta: String,
}

impl Entry {
    /// The key `shmds:{S}:<what>:<generation>:<name>` of this entry.
    pub fn key(&self, what: &str) -> String {
        self.seg
            .key(&format!("{what}:{}:{}", self.record.gen, self.name))
    }

    /// A script call with the entry check's KEYS[1], ARGV[1] and ARGV[2].
    pub fn invocation<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.meta).arg(&self.name).arg(&self.record.text);
        inv
    }

    /// Run `f` on a connection, errors naming this entry.
    pub fn run<T>(
        &self,
        idempotent: bool,
        f: impl FnMut(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.seg.run(&self.name, idempotent, f)
    }

    /// The error for bytes of the wrong size in the entry's data.
    pub fn corrupt(&self, what: &str) -> Error {
        Error::Corrupt {
            name: self.seg.name().to_owned(),
            detail: format!(
                "entry {:?}: {what} (something other than shmds changed its Redis keys; erase it and create it again)",
                self.name
            ),
        }
    }
}

/// What to create (or find).
pub(super) struct Shape<'a> {
    pub kind: &'static str,
    /// `None` when opening whatever type it holds.
    pub elem_type: Option<&'a str>,
    pub key_type: Option<&'a str>,
    pub capacity: u64,
    /// Bytes of data to allocate zeroed (arrays).
    pub bytes: u64,
}

impl Segment {
    /// Create the entry `name`, or with `open_ok` open it if it exists with
    /// this shape (kind, types, and capacity).
    pub(super) fn create_entry(
        &self,
        name: &str,
        shape: Shape<'_>,
        open_ok: bool,
    ) -> Result<Entry> {
        crate::table::validate_entry_name(name)?;
        if shape.capacity == 0 && shape.kind != "lock" {
            return Err(Error::InvalidArgument(format!(
                "a {} needs a capacity of at least 1",
                shape.kind
            )));
        }
        if shape.bytes > MAX_BYTES || shape.capacity > MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a remote {} holds at most {MAX_BYTES} bytes (a Redis string's limit); ask for less",
                shape.kind
            )));
        }
        let meta = self.key("meta");
        let (created, text): (i64, String) = self.run(name, false, |con| {
            scripts::CREATE
                .key(&meta)
                .key(self.key("gen"))
                .arg(name)
                .arg(shape.kind)
                .arg(shape.capacity)
                .arg(shape.elem_type.unwrap_or(""))
                .arg(shape.key_type.unwrap_or(""))
                .arg(shape.bytes)
                .arg(&self.inner.prefix)
                .invoke(con)
        })?;
        if created == 0 && !open_ok {
            return Err(Error::EntryExists {
                segment: self.name().to_owned(),
                name: name.to_owned(),
            });
        }
        let entry = self.entry_of(name, &text, &shape)?;
        if created == 0 && entry.record.capacity != shape.capacity && shape.kind != "lock" {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                what: if shape.kind == "array" {
                    "length"
                } else {
                    "capacity"
                },
                expected: shape.capacity,
                found: entry.record.capacity,
            });
        }
        Ok(entry)
    }

    /// Open the entry `name`, which must have this kind and these types.
    pub(super) fn open_entry(&self, name: &str, shape: Shape<'_>) -> Result<Entry> {
        crate::table::validate_entry_name(name)?;
        let meta = self.key("meta");
        let text: Option<String> = self.run(name, true, |con| {
            redis::cmd("HGET").arg(&meta).arg(name).query(con)
        })?;
        let Some(text) = text else {
            return Err(Error::EntryNotFound {
                segment: self.name().to_owned(),
                name: name.to_owned(),
            });
        };
        self.entry_of(name, &text, &shape)
    }

    fn entry_of(&self, name: &str, text: &str, shape: &Shape<'_>) -> Result<Entry> {
        let record = Record::parse(self.name(), name, text)?;
        if record.kind != shape.kind {
            return Err(Error::KindMismatch {
                name: name.to_owned(),
                expected: shape.kind,
                found: record.kind,
            });
        }
        for (found, expected) in [
            (&record.elem_type, shape.elem_type),
            (&record.key_type, shape.key_type),
        ] {
            let Some(expected) = expected else {
                continue;
            };
            if found != expected {
                return Err(Error::TypeMismatch {
                    name: name.to_owned(),
                    expected: expected.to_owned(),
                    found: found.clone(),
                });
            }
        }
        Ok(Entry {
            seg: self.clone(),
            name: name.to_owned(),
            record,
            meta: self.key("meta"),
        })
    }

    /// The entries of the segment, sorted by name. A record that does not
    /// parse is reported as [`Error::Corrupt`].
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        let meta = self.key("meta");
        let all: Vec<(String, String)> =
            self.run("", true, |con| redis::cmd("HGETALL").arg(&meta).query(con))?;
        let mut out = all
            .into_iter()
            .map(|(name, text)| {
                let r = Record::parse(self.name(), &name, &text)?;
                Ok(EntryInfo {
                    name,
                    kind: r.kind,
                    elem_type: r.elem_type,
                    key_type: r.key_type,
                    capacity: r.capacity,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Erase the entry `name` and its data: handles to it fail with
    /// [`Error::Stale`] from now on. [`Error::EntryNotFound`] if there is
    /// none.
    pub fn erase(&self, name: &str) -> Result<()> {
        crate::table::validate_entry_name(name)?;
        let erased: i64 = self.run(name, false, |con| {
            scripts::ERASE
                .key(self.key("meta"))
                .arg(name)
                .arg(&self.inner.prefix)
                .invoke(con)
        })?;
        if erased == 0 {
            return Err(Error::EntryNotFound {
                segment: self.name().to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(())
    }
}

/// The bytes of an element, its padding bytes (uninitialised in a Rust
/// value) sent as zeros, as a local segment's readers expect.
pub(super) fn bytes_of<T: crate::Element>(value: &T) -> Vec<u8> {
    let size = std::mem::size_of::<T>();
    let mut out = vec![0u8; size];
    let ranges = TypeDescriptor::parse(&T::descriptor())
        .map(|d| d.data_ranges())
        .unwrap_or_default();
    let src = (value as *const T).cast::<u8>();
    for (offset, len) in ranges {
        let (offset, len) = (offset as usize, len as usize);
        if offset.checked_add(len).is_some_and(|end| end <= size) {
            // SAFETY: `offset..offset + len` lies inside both `*value` and
            // `out` (checked), and holds one of T's fields, so those bytes
            // are initialised; the two do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(offset), out.as_mut_ptr().add(offset), len)
            }
        }
    }
    out
}

/// The element whose bytes are `bytes`, or `None` if they are not
/// `size_of::<T>()` of them.
pub(super) fn from_bytes<T: crate::Element>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != std::mem::size_of::<T>() {
        return None;
    }
    let mut out = crate::payload::zeroed::<T>();
    crate::payload::read_one(&mut out)(bytes.as_ptr());
    Some(out)
}
