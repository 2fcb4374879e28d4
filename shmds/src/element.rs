//! Element types and their language-neutral descriptors.
//!
//! Every entry in a segment records the type of its elements as a descriptor
//! string in the syntax of Python's `struct` module / PEP 3118 buffer formats,
//! so Rust, Python (numpy) and C agree on what the bytes mean:
//!
//! | Rust | descriptor | numpy |
//! |---|---|---|
//! | `u8` `i8` `u16` `i16` | `B` `b` `<H` `<h` | `u1` `i1` `<u2` `<i2` |
//! | `u32` `i32` `u64` `i64` | `<I` `<i` `<Q` `<q` | `<u4` `<i4` `<u8` `<i8` |
//! | `f32` `f64` | `<f` `<d` | `<f4` `<f8` |
//! | `[u8; 16]` | `16s` | `V16` (raw bytes, every byte kept) |
//! | [`FixedStr<16>`](FixedStr) | `T{B:len:16s:bytes:}` | `[('len', 'u1'), ('bytes', 'V16')]` (Python spelling `"S16"`, a str) |
//! | `[f64; 3]` | `(3)<d` | `('<f8', (3,))` |
//! | a [`record!`](crate::record) struct | `T{<Q:ts:<d:price:}` | structured dtype |
//!
//! How Python and C see strings and raw bytes is set out once, in the
//! README section "Strings and bytes".
//!
//! (`<` is `>` on a big-endian machine.) Descriptors are stored in a
//! *canonical* form ([`TypeDescriptor::parse`]): explicit byte order on every
//! scalar, padding written as `Nx`, so two spellings of one layout compare
//! equal. Padding bytes inside records are part of the layout (`4x`).

use crate::error::{Error, Result};
use std::fmt::Write as _;

/// A plain-old-data type that can live in shared memory.
///
/// # Safety
/// Implementors promise that the type is `#[repr(C)]` (or a primitive), has no
/// pointers or references, that **every bit pattern** of `size_of::<Self>()`
/// bytes is a valid value (another process may have written anything), and
/// that [`Element::descriptor`] describes exactly its bytes. Use the
/// [`record!`](crate::record) macro for structs instead of implementing this
/// by hand.
pub unsafe trait Element: Copy + Send + Sync + 'static {
    /// The canonical type descriptor (see the module docs).
    fn descriptor() -> String;
}

/// The byte-order character of this machine in descriptors.
pub const NATIVE_ORDER: char = if cfg!(target_endian = "little") {
    '<'
} else {
    '>'
};

macro_rules! scalar_element {
    ($($t:ty => $code:literal),* $(,)?) => {$(
        // SAFETY: a primitive number; every bit pattern is a valid value.
        unsafe impl Element for $t {
            fn descriptor() -> String {
                // Byte order means nothing for one-byte scalars: none is written.
                if std::mem::size_of::<$t>() == 1 {
                    String::from($code)
                } else {
                    format!("{}{}", NATIVE_ORDER, $code)
                }
            }
        }
    )*};
}

scalar_element! {
    u8 => 'B', i8 => 'b', u16 => 'H', i16 => 'h', u32 => 'I', i32 => 'i',
    u64 => 'Q', i64 => 'q', f32 => 'f', f64 => 'd',
}

// SAFETY: an array of elements is as valid as its elements; byte arrays are
// described as a fixed-size byte string (`Ns`), others as a sub-array.
unsafe impl<T: Element, const N: usize> Element for [T; N] {
    fn descriptor() -> String {
        let inner = T::descriptor();
        if inner == "B" {
            format!("{N}s")
        } else {
            // Let the parser merge nested shapes: [[u32; 2]; 3] is (3,2)<I.
            let text = format!("({N}){inner}");
            TypeDescriptor::parse(&text).map_or(text, |d| d.canonical)
        }
    }
}

/// A string of at most `N` bytes (`N <= 255`) stored inline with its length:
/// the usual key type of a [`Map`](crate::Map).
///
/// Its bytes are a length byte followed by `N` data bytes, of which the first
/// `len` count and the rest are zero; its descriptor is `T{B:len:Ns:bytes:}`.
/// Unlike a NUL-padded byte string (numpy's `S`), it keeps trailing zero
/// bytes: `b"a\0"` and `b"a"` are different strings.
///
/// ```
/// use shmds::{Element, FixedStr};
/// let k = FixedStr::<16>::new("AAPL").unwrap();
/// assert_eq!(k.as_str(), Ok("AAPL"));
/// assert_eq!(FixedStr::<16>::descriptor(), "T{B:len:16s:bytes:}");
/// assert!(FixedStr::<2>::new("long").is_err());
/// assert_ne!(FixedStr::<4>::from_bytes(b"a\0").unwrap(), FixedStr::<4>::from_bytes(b"a").unwrap());
/// // Display, comparison with text, byte order, parsing:
/// assert_eq!(k.to_string(), "AAPL");
/// assert_eq!(k, "AAPL");
/// assert!(FixedStr::<16>::new("A").unwrap() < k && k < FixedStr::<16>::new("AB").unwrap());
/// let parsed: FixedStr<16> = "MSFT".parse().unwrap();
/// assert_eq!(format!("[{parsed:>6}]"), "[  MSFT]");
/// assert_eq!(FixedStr::<16>::default().len(), 0);
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    const FITS: () = assert!(N <= 255, "FixedStr holds at most 255 bytes");

    /// The string `bytes`; `InvalidArgument` when longer than `N` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        if bytes.len() > N {
            return Err(Error::InvalidArgument(format!(
                "{} bytes do not fit in a FixedStr<{N}>",
                bytes.len()
            )));
        }
        let mut out = FixedStr {
            len: bytes.len() as u8,
            bytes: [0; N],
        };
        out.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(out)
    }

    /// The UTF-8 string `s`; `InvalidArgument` when longer than `N` bytes.
    #[allow(clippy::should_implement_trait)]
    pub fn new(s: &str) -> Result<Self> {
        Self::from_bytes(s.as_bytes())
    }

    /// The string's bytes. (A length byte above `N`, which only a damaged
    /// segment can hold, reads as `N`.)
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(N)]
    }

    /// The string, if it is UTF-8.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.as_bytes())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<const N: usize> PartialEq for FixedStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for FixedStr<N> {}

impl<const N: usize> std::hash::Hash for FixedStr<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl<const N: usize> std::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_str() {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        FixedStr::new(s)
    }
}

impl<const N: usize> TryFrom<&[u8]> for FixedStr<N> {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Self> {
        FixedStr::from_bytes(bytes)
    }
}

impl<const N: usize> std::str::FromStr for FixedStr<N> {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        FixedStr::new(s)
    }
}

/// The empty string.
impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr {
            len: 0,
            bytes: [0; N],
        }
    }
}

/// The text, with invalid UTF-8 shown as U+FFFD.
impl<const N: usize> std::fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Byte order, as for `str` (shorter first when one is a prefix).
impl<const N: usize> Ord for FixedStr<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl<const N: usize> PartialOrd for FixedStr<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> PartialEq<str> for FixedStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> PartialEq<&str> for FixedStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> AsRef<[u8]> for FixedStr<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// What a lookup (`Map::get`, `contains_key`, `remove`; `Set::contains`,
/// `remove`) accepts for a key of type `K`: the key itself, or, for a
/// [`FixedStr<N>`] key, a `str` (like `Borrow<str>` for std's maps):
///
/// ```
/// # let seg = shmds::Segment::create(&format!("shmds-doc-lookup-{}", std::process::id()), 1 << 20)?;
/// use shmds::FixedStr;
/// let prices = seg.create_map::<FixedStr<16>, f64>("prices", 8)?;
/// prices.insert(FixedStr::new("AAPL")?, 189.5)?;
/// assert_eq!(prices.get("AAPL")?, Some(189.5));
/// assert_eq!(prices.get("a string longer than sixteen bytes")?, None);
/// # shmds::Segment::remove(seg.name())?;
/// # Ok::<(), shmds::Error>(())
/// ```
pub trait Lookup<K> {
    /// The key this names, or `None` if it names none that the structure
    /// can hold (a string longer than the key's `N`).
    fn to_key(&self) -> Option<K>;
}

impl<K: Element> Lookup<K> for K {
    fn to_key(&self) -> Option<K> {
        Some(*self)
    }
}

impl<const N: usize> Lookup<FixedStr<N>> for str {
    fn to_key(&self) -> Option<FixedStr<N>> {
        FixedStr::new(self).ok()
    }
}

impl<const N: usize> Lookup<FixedStr<N>> for &str {
    fn to_key(&self) -> Option<FixedStr<N>> {
        FixedStr::new(self).ok()
    }
}

// SAFETY: repr(C) of a u8 and a byte array (alignment 1, no padding); every
// bit pattern is valid (an out-of-range length is clamped on read).
unsafe impl<const N: usize> Element for FixedStr<N> {
    fn descriptor() -> String {
        format!("T{{B:len:{N}s:bytes:}}")
    }
}

/// Integer element types with atomic operations in place (see
/// [`Array::fetch_add`](crate::Array::fetch_add)).
///
/// # Safety
/// `Atomic` must be the core atomic type with the same size and alignment as `Self`.
pub unsafe trait AtomicElement: Element + Eq {
    /// The matching `core::sync::atomic` type.
    #[doc(hidden)]
    type Atomic;
    #[doc(hidden)]
    fn load(a: &Self::Atomic) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Atomic, v: Self);
    #[doc(hidden)]
    fn fetch_add(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn compare_exchange(a: &Self::Atomic, current: Self, new: Self) -> Result<Self, Self>;
    #[doc(hidden)]
    fn wrapping_add(self, other: Self) -> Self;
}

macro_rules! atomic_element {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        // SAFETY: `$a` is the core atomic type of `$t`: same size and alignment.
        unsafe impl AtomicElement for $t {
            type Atomic = $a;
            fn load(a: &$a) -> $t { a.load(core::sync::atomic::Ordering::SeqCst) }
            fn store(a: &$a, v: $t) { a.store(v, core::sync::atomic::Ordering::SeqCst) }
            fn fetch_add(a: &$a, v: $t) -> $t { a.fetch_add(v, core::sync::atomic::Ordering::SeqCst) }
            fn compare_exchange(a: &$a, current: $t, new: $t) -> Result<$t, $t> {
                a.compare_exchange(current, new, core::sync::atomic::Ordering::SeqCst, core::sync::atomic::Ordering::SeqCst)
            }
            fn wrapping_add(self, other: $t) -> $t { <$t>::wrapping_add(self, other) }
        }
    )*};
}

atomic_element! {
    u8 => core::sync::atomic::AtomicU8, i8 => core::sync::atomic::AtomicI8,
    u16 => core::sync::atomic::AtomicU16, i16 => core::sync::atomic::AtomicI16,
    u32 => core::sync::atomic::AtomicU32, i32 => core::sync::atomic::AtomicI32,
    u64 => core::sync::atomic::AtomicU64, i64 => core::sync::atomic::AtomicI64,
}

/// Declare a `#[repr(C)]` struct that can be stored in shared memory, with its
/// record descriptor derived from its fields.
///
/// Every field must itself be an [`Element`]; padding between fields is
/// recorded in the descriptor as `Nx`. The struct and its fields may carry
/// doc comments and attributes; `#[repr(C)]` is added (do not write another
/// `repr`: the descriptor states the C layout).
///
/// ```
/// shmds::record! {
///     /// One trade.
///     #[derive(Debug, Clone, Copy, PartialEq)]
///     pub struct Tick {
///         /// Nanoseconds since the epoch.
///         pub ts: u64,
///         pub price: f64,
///         #[allow(dead_code)]
///         pub flags: u32,
///     }
/// }
/// use shmds::Element;
/// assert_eq!(Tick::descriptor(), "T{<Q:ts:<d:price:<I:flags:4x}");
/// ```
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $fty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $fty),*
        }

        // SAFETY: the struct is #[repr(C)] and every field is an `Element`
        // (checked by the calls below), so every bit pattern of its fields is
        // valid; padding bytes carry no validity requirement.
        unsafe impl $crate::Element for $name {
            fn descriptor() -> ::std::string::String {
                let fields: &[(&str, usize, usize, ::std::string::String)] = &[
                    $((
                        stringify!($field),
                        ::core::mem::offset_of!($name, $field),
                        ::core::mem::size_of::<$fty>(),
                        <$fty as $crate::Element>::descriptor(),
                    )),*
                ];
                $crate::element::record_descriptor(fields, ::core::mem::size_of::<$name>())
            }
        }
    };
}

/// Build a record descriptor from `(name, offset, size, descriptor)` fields.
#[doc(hidden)]
pub fn record_descriptor(fields: &[(&str, usize, usize, String)], total: usize) -> String {
    let mut sorted: Vec<_> = fields.iter().collect();
    sorted.sort_by_key(|f| f.1);
    let mut out = String::from("T{");
    let mut cursor = 0;
    for (name, offset, size, desc) in sorted {
        if *offset > cursor {
            let _ = write!(out, "{}x", offset - cursor);
        }
        let _ = write!(out, "{desc}:{name}:");
        cursor = offset + size;
    }
    if total > cursor {
        let _ = write!(out, "{}x", total - cursor);
    }
    out.push('}');
    out
}

/// A single number in native byte order: the element types that bindings
/// convert to and from their own numbers directly (see
/// [`TypeDescriptor::scalar`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// An integer of `size` bytes (1, 2, 4 or 8).
    Int {
        /// Width in bytes.
        size: usize,
        /// Whether it is two's-complement signed.
        signed: bool,
    },
    /// An IEEE 754 float of `size` bytes (4 or 8).
    Float {
        /// Width in bytes.
        size: usize,
    },
}

/// A parsed, canonicalised type descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeDescriptor {
    canonical: String,
    size: u64,
    /// The byte ranges `(offset, len)` that are padding, in order.
    padding: Vec<(u64, u64)>,
}

/// Deepest nesting of records and shapes accepted.
const MAX_DEPTH: usize = 8;

impl TypeDescriptor {
    /// Parse and canonicalise a descriptor. [`Error::InvalidType`] when it
    /// is not one, including a record with two fields of the same name
    /// (no language could address them).
    ///
    /// ```
    /// use shmds::TypeDescriptor;
    /// let t = TypeDescriptor::parse("T{<Q:ts:xxxx<i:n:}").unwrap();
    /// assert_eq!(t.as_str(), "T{<Q:ts:4x<i:n:}");
    /// assert_eq!(t.size(), 16);
    /// assert!(TypeDescriptor::parse("<Z").is_err());
    /// ```
    pub fn parse(descriptor: &str) -> Result<TypeDescriptor> {
        let fail = |reason: String| Error::InvalidType {
            descriptor: descriptor.chars().take(200).collect(),
            reason,
        };
        if descriptor.is_empty() {
            return Err(fail("empty descriptor".into()));
        }
        if !descriptor.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(
                "descriptors are printable ASCII without spaces".into(),
            ));
        }
        let mut parser = Parser {
            s: descriptor.as_bytes(),
            pos: 0,
            order: NATIVE_ORDER,
        };
        let items = parser.items(0, false).map_err(fail)?;
        if parser.pos != parser.s.len() {
            return Err(fail(format!(
                "unexpected {:?} at byte {}",
                parser.s[parser.pos] as char, parser.pos
            )));
        }
        let mut canonical = String::new();
        let size = emit(&items, &mut canonical).ok_or_else(|| fail("size overflows".into()))?;
        if size == 0 {
            return Err(fail("elements must have a non-zero size".into()));
        }
        let mut padding = Vec::new();
        collect_padding(&items, 0, &mut padding);
        Ok(TypeDescriptor {
            canonical,
            size,
            padding,
        })
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Size of one element in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The number type, if the descriptor is one native-order number.
    ///
    /// ```
    /// use shmds::{element::Scalar, TypeDescriptor};
    /// let t = TypeDescriptor::parse("i").unwrap(); // native order
    /// assert_eq!(t.scalar(), Some(Scalar::Int { size: 4, signed: true }));
    /// assert_eq!(TypeDescriptor::parse("T{<d:x:}").unwrap().scalar(), None);
    /// ```
    pub fn scalar(&self) -> Option<Scalar> {
        let s = self.canonical.as_str();
        let code = match s.len() {
            1 => s.chars().next()?,
            2 if s.starts_with(NATIVE_ORDER) => s.chars().nth(1)?,
            _ => return None,
        };
        let int = |size, signed| Some(Scalar::Int { size, signed });
        match code {
            'b' => int(1, true),
            'B' => int(1, false),
            'h' => int(2, true),
            'H' => int(2, false),
            'i' => int(4, true),
            'I' => int(4, false),
            'q' => int(8, true),
            'Q' => int(8, false),
            'f' => Some(Scalar::Float { size: 4 }),
            'd' => Some(Scalar::Float { size: 8 }),
            _ => None,
        }
    }

    /// The byte ranges `(offset, len)` of an element that hold data (all but
    /// the padding), merged and in order.
    ///
    /// ```
    /// use shmds::TypeDescriptor;
    /// let t = TypeDescriptor::parse("T{<I:a:4x<Q:b:}").unwrap();
    /// assert_eq!(t.data_ranges(), vec![(0, 4), (8, 8)]);
    /// ```
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cursor = 0;
        for &(offset, len) in &self.padding {
            if offset > cursor {
                out.push((cursor, offset - cursor));
            }
            cursor = offset + len;
        }
        if self.size > cursor {
            out.push((cursor, self.size - cursor));
        }
        out
    }
}

/// Append the padding ranges of `items`, laid out from `offset`; returns
/// the offset after them. Sizes were checked for overflow by `emit`.
fn collect_padding(items: &[(Item, String)], offset: u64, out: &mut Vec<(u64, u64)>) -> u64 {
    items
        .iter()
        .fold(offset, |at, (item, _)| item_padding(item, at, out))
}

fn item_padding(item: &Item, offset: u64, out: &mut Vec<(u64, u64)>) -> u64 {
    let mut push = |at: u64, len: u64| match out.last_mut() {
        Some(last) if last.0 + last.1 == at => last.1 += len,
        _ => out.push((at, len)),
    };
    match item {
        Item::Scalar { size, .. } => offset + size,
        Item::Bytes(n) => offset + n,
        Item::Pad(n) => {
            push(offset, *n);
            offset + n
        }
        Item::Array { shape, elem } => {
            let count: u64 = shape.iter().product();
            let mut inner = Vec::new();
            let size = item_padding(elem, 0, &mut inner);
            if !inner.is_empty() {
                for k in 0..count {
                    for &(at, len) in &inner {
                        push(offset + k * size + at, len);
                    }
                }
            }
            offset + size * count
        }
        Item::Record(fields) => collect_padding(fields, offset, out),
    }
}

impl std::fmt::Display for TypeDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[derive(Debug)]
enum Item {
    Scalar { order: char, code: char, size: u64 },
    Bytes(u64),
    Pad(u64),
    Array { shape: Vec<u64>, elem: Box<Item> },
    Record(Vec<(Item, String)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    order: char,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn number(&mut self) -> Result<Option<u64>, String> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|e| e.to_string())?;
        text.parse::<u64>()
            .map(Some)
            .map_err(|_| format!("count {text} is too large"))
    }

    /// A sequence of items up to the end or a closing `}`.
    fn items(&mut self, depth: usize, in_record: bool) -> Result<Vec<(Item, String)>, String> {
        if depth > MAX_DEPTH {
            return Err("records nested too deeply".into());
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'}') if in_record => break,
                Some(b'<' | b'>' | b'=' | b'!' | b'@') => {
                    let c = self.s[self.pos];
                    self.pos += 1;
                    self.order = match c {
                        b'<' => '<',
                        b'>' | b'!' => '>',
                        _ => NATIVE_ORDER,
                    };
                    continue;
                }
                Some(_) => {}
            }
            let item = self.item(depth)?;
            let mut name = String::new();
            if self.peek() == Some(b':') {
                if !in_record {
                    return Err("field names are only allowed inside T{...}".into());
                }
                self.pos += 1;
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c == b':' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == b'_') {
                        return Err(format!("field name has a bad character {:?}", c as char));
                    }
                    self.pos += 1;
                }
                if self.peek() != Some(b':') {
                    return Err("field name is not closed by ':'".into());
                }
                name = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                if name.is_empty() {
                    return Err("empty field name".into());
                }
                if out.iter().any(|(_, seen): &(Item, String)| *seen == name) {
                    return Err(format!(
                        "field name {name:?} appears twice in one record (every field needs its own name)"
                    ));
                }
            } else if in_record && !matches!(item, Item::Pad(_)) {
                return Err("every record field needs a name (:name:)".into());
            }
            out.push((item, name));
        }
        if out.is_empty() {
            return Err("no items".into());
        }
        Ok(out)
    }

    fn item(&mut self, depth: usize) -> Result<Item, String> {
        if depth > MAX_DEPTH {
            return Err("types nested too deeply".into());
        }
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let mut shape = Vec::new();
            loop {
                let n = self.number()?.ok_or("expected a dimension inside (...)")?;
                if n == 0 {
                    return Err("zero-sized dimension".into());
                }
                shape.push(n);
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err("unclosed (...) shape".into()),
                }
            }
            while let Some(c @ (b'<' | b'>' | b'=' | b'!' | b'@')) = self.peek() {
                self.pos += 1;
                self.order = match c {
                    b'<' => '<',
                    b'>' | b'!' => '>',
                    _ => NATIVE_ORDER,
                };
            }
            let elem = self.item(depth + 1)?;
            if matches!(elem, Item::Pad(_)) {
                return Err("padding cannot have a shape".into());
            }
            return Ok(Item::Array {
                shape,
                elem: Box::new(elem),
            });
        }
        let mut count = self.number()?;
        if count == Some(0) {
            return Err("zero count".into());
        }
        let code = self
            .peek()
            .ok_or("descriptor ends where a type code was expected")? as char;
        self.pos += 1;
        let base = match code {
            'x' => Item::Pad(count.take().unwrap_or(1)),
            's' => Item::Bytes(count.take().unwrap_or(1)),
            'T' => {
                if self.peek() != Some(b'{') {
                    return Err("expected '{' after 'T'".into());
                }
                self.pos += 1;
                let saved = self.order;
                let fields = self.items(depth + 1, true)?;
                self.order = saved;
                if self.peek() != Some(b'}') {
                    return Err("unclosed T{...}".into());
                }
                self.pos += 1;
                Item::Record(fields)
            }
            _ => {
                let (code, size) = match code {
                    'b' | 'B' | '?' | 'c' => (code, 1),
                    'h' | 'H' | 'e' => (code, 2),
                    'i' | 'I' | 'f' => (code, 4),
                    'l' => ('i', 4),
                    'L' => ('I', 4),
                    'q' | 'Q' | 'd' => (code, 8),
                    other => return Err(format!("unknown type code {other:?}")),
                };
                Item::Scalar {
                    order: self.order,
                    code,
                    size,
                }
            }
        };
        let mut item = base;
        if let Some(n) = count {
            item = Item::Array {
                shape: vec![n],
                elem: Box::new(item),
            };
        }
        Ok(item)
    }
}

/// Write the canonical form of `items`; returns the total size.
fn emit(items: &[(Item, String)], out: &mut String) -> Option<u64> {
    let mut total: u64 = 0;
    let mut pending_pad: u64 = 0;
    for (item, name) in items {
        if let Item::Pad(n) = item {
            pending_pad = pending_pad.checked_add(*n)?;
            continue;
        }
        if pending_pad > 0 {
            let _ = write!(out, "{pending_pad}x");
            total = total.checked_add(pending_pad)?;
            pending_pad = 0;
        }
        total = total.checked_add(emit_item(item, out)?)?;
        if !name.is_empty() {
            let _ = write!(out, ":{name}:");
        }
    }
    if pending_pad > 0 {
        let _ = write!(out, "{pending_pad}x");
        total = total.checked_add(pending_pad)?;
    }
    Some(total)
}

fn emit_item(item: &Item, out: &mut String) -> Option<u64> {
    match item {
        Item::Scalar { order, code, size } => {
            if *size == 1 {
                out.push(*code);
            } else {
                out.push(*order);
                out.push(*code);
            }
            Some(*size)
        }
        Item::Bytes(n) => {
            let _ = write!(out, "{n}s");
            Some(*n)
        }
        Item::Pad(n) => {
            let _ = write!(out, "{n}x");
            Some(*n)
        }
        Item::Array { shape, elem } => {
            // Flatten nested shapes: (2)(3)<d == (2,3)<d.
            let mut dims = shape.clone();
            let mut inner = elem.as_ref();
            while let Item::Array { shape, elem } = inner {
                dims.extend_from_slice(shape);
                inner = elem;
            }
            let mut inner_text = String::new();
            let inner_size = emit_item(inner, &mut inner_text)?;
            let count = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d))?;
            let dims_text: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            let _ = write!(out, "({}){}", dims_text.join(","), inner_text);
            inner_size.checked_mul(count)
        }
        Item::Record(fields) => {
            out.push_str("T{");
            let size = emit(fields, out)?;
            out.push('}');
            Some(size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_match_rust_sizes() {
        fn check<T: Element>() {
            let d = TypeDescriptor::parse(&T::descriptor()).unwrap();
            assert_eq!(d.as_str(), T::descriptor());
            assert_eq!(
                d.size() as usize,
                std::mem::size_of::<T>(),
                "{}",
                T::descriptor()
            );
        }
        check::<u8>();
        check::<i8>();
        check::<u16>();
        check::<i16>();
        check::<u32>();
        check::<i32>();
        check::<u64>();
        check::<i64>();
        check::<f32>();
        check::<f64>();
        check::<[u8; 16]>();
        check::<[f64; 3]>();
        check::<[[u32; 2]; 3]>();
    }

    crate::record! {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Padded { a: u8, b: u64, c: [u8; 3] }
    }

    crate::record! {
        #[derive(Clone, Copy)]
        struct Nested { head: Padded, tail: [f32; 2] }
    }

    #[test]
    fn records() {
        assert_eq!(Padded::descriptor(), "T{B:a:7x<Q:b:3s:c:5x}");
        assert_eq!(u8::descriptor(), "B");
        assert_eq!(i8::descriptor(), "b");
        let d = TypeDescriptor::parse(&Padded::descriptor()).unwrap();
        assert_eq!(d.size() as usize, std::mem::size_of::<Padded>());
        let n = TypeDescriptor::parse(&Nested::descriptor()).unwrap();
        assert_eq!(n.size() as usize, std::mem::size_of::<Nested>());
        assert_eq!(n.as_str(), Nested::descriptor());
        assert_eq!(d.data_ranges(), vec![(0, 1), (8, 11)]);
        let arr = TypeDescriptor::parse("(2)T{<I:a:4x}").unwrap();
        assert_eq!(arr.data_ranges(), vec![(0, 4), (8, 4)]);
        assert_eq!(
            TypeDescriptor::parse("<Q").unwrap().data_ranges(),
            vec![(0, 8)]
        );
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("<Q", "<Q"),
            ("<4d", "(4)<d"),
            ("(2)(3)<f", "(2,3)<f"),
            ("T{<I:a:xxxx<Q:b:}", "T{<I:a:4x<Q:b:}"),
            ("=I", &format!("{NATIVE_ORDER}I")),
            ("<l", "<i"),
            ("16s", "16s"),
            (">H", ">H"),
            ("T{<d:x:T{<i:y:}:inner:}", "T{<d:x:T{<i:y:}:inner:}"),
        ];
        for (input, want) in cases {
            assert_eq!(
                TypeDescriptor::parse(input).unwrap().as_str(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_field_names() {
        for (bad, field) in [
            ("T{<I:a:<I:a:}", "a"),
            ("T{<I:a:<d:b:B:a:}", "a"),
            ("T{<I:x:T{B:b:B:b:}:c:}", "b"),
        ] {
            match TypeDescriptor::parse(bad) {
                Err(Error::InvalidType { reason, .. }) => {
                    assert!(reason.contains(&format!("{field:?}")), "{bad}: {reason}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        // One name in two different records is fine.
        assert!(TypeDescriptor::parse("T{<I:a:T{<I:a:}:b:}").is_ok());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "Z",
            "<",
            "T{",
            "T{<Q}",
            "T{<Q:a}",
            "<Q:a:",
            "(0)d",
            "0d",
            "(3",
            "<Q <d",
            "99999999999999999999d",
            "(4294967296,4294967296,4294967296)d",
            "\u{e9}",
            "(1)(1)(1)(1)(1)(1)(1)(1)(1)(1)(1)<d",
        ] {
            assert!(TypeDescriptor::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
