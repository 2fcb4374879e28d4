//! Type descriptors as people read them: `<Q` is `u64`, `T{B:len:16s:bytes:}`
//! is `str16` (Rust's `FixedStr<16>`), `(3)<d` is `[f64; 3]`,
//! `T{<Q:ts:<d:price:}` is `record{ts: u64, price: f64}` (padding left
//! out). A descriptor this does not understand is shown as it is.
//!
//! The same reading gives a [`TypeShape`]: where each field of an element lies
//! and what it is, which the `shmds` command uses to print and parse
//! values.

use std::fmt;

/// `u64 ("<Q")`: the human name with the descriptor, or the descriptor
/// alone when it has no other name (for messages).
pub(crate) fn named(d: &str) -> String {
    let human = human_type(d);
    if human == d {
        format!("{d:?}")
    } else {
        format!("{human} ({d:?})")
    }
}

/// The human name of the canonical type descriptor `d`: `u64` for `<Q`,
/// `str16` for `T{B:len:16s:bytes:}` (a `FixedStr<16>`), `[f64; 3]` for
/// `(3)<d`, `record{ts: u64, price: f64}` for `T{<Q:ts:<d:price:}`; a
/// descriptor it does not understand comes back as it is.
///
/// ```
/// assert_eq!(shmds::human_type("<Q"), "u64");
/// assert_eq!(shmds::human_type("T{<Q:ts:<d:price:}"), "record{ts: u64, price: f64}");
/// ```
pub fn human_type(d: &str) -> String {
    match TypeShape::of(d) {
        Some(shape) => shape.to_string(),
        None => d.to_owned(),
    }
}

/// What an element is, field by field, as a descriptor describes it (for
/// tools that print and parse values; see [`human_type`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeShape {
    /// An integer of `size` bytes (1, 2, 4 or 8), little-endian.
    Int {
        /// Width in bytes.
        size: usize,
        /// Two's complement signed.
        signed: bool,
    },
    /// An IEEE float of `size` bytes (2, 4 or 8).
    Float {
        /// Width in bytes.
        size: usize,
    },
    /// One byte, 0 or 1.
    Bool,
    /// One byte, a character.
    Char,
    /// `n` raw bytes.
    Bytes(usize),
    /// A string of up to `n` UTF-8 bytes: a length byte, then `n` bytes
    /// (Rust's `FixedStr<n>`).
    Str(usize),
    /// `count` elements of `elem`, one after the other (the dimensions of
    /// a multi-dimensional array, outermost first).
    Array {
        /// The dimensions.
        dims: Vec<usize>,
        /// One element.
        elem: Box<TypeShape>,
    },
    /// Named fields at byte offsets; `size` includes the padding.
    Record {
        /// `(name, offset, shape)` in offset order.
        fields: Vec<(String, usize, TypeShape)>,
        /// The record's size in bytes.
        size: usize,
    },
}

impl TypeShape {
    /// The shape of canonical descriptor `d`, if this reader understands it.
    pub fn of(d: &str) -> Option<TypeShape> {
        if d.len() > MAX_TEXT {
            return None;
        }
        let mut p = Reader {
            s: d.as_bytes(),
            i: 0,
            depth: 0,
        };
        let (mut items, size) = p.items(None)?;
        if p.i != p.s.len() {
            return None;
        }
        match items.len() {
            1 if items[0].1 == 0 && items[0].2.size() == size => items.pop().map(|(_, _, s)| s),
            _ => None,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        match self {
            TypeShape::Int { size, .. } | TypeShape::Float { size } => *size,
            TypeShape::Bool | TypeShape::Char => 1,
            TypeShape::Bytes(n) => *n,
            TypeShape::Str(n) => n + 1,
            TypeShape::Array { dims, elem } => dims.iter().product::<usize>() * elem.size(),
            TypeShape::Record { size, .. } => *size,
        }
    }
}

impl fmt::Display for TypeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeShape::Int { size, signed } => {
                write!(f, "{}{}", if *signed { 'i' } else { 'u' }, size * 8)
            }
            TypeShape::Float { size } => write!(f, "f{}", size * 8),
            TypeShape::Bool => f.write_str("bool"),
            TypeShape::Char => f.write_str("char"),
            TypeShape::Bytes(n) => write!(f, "bytes{n}"),
            TypeShape::Str(n) => write!(f, "str{n}"),
            TypeShape::Array { dims, elem } => {
                let mut text = elem.to_string();
                for d in dims.iter().rev() {
                    text = format!("[{text}; {d}]");
                }
                f.write_str(&text)
            }
            TypeShape::Record { fields, .. } => {
                f.write_str("record{")?;
                for (k, (name, _, shape)) in fields.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {shape}")?;
                }
                f.write_str("}")
            }
        }
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    /// Records and arrays open around the current item.
    depth: u32,
}

/// The most records and arrays nested in one another (the core accepts
/// fewer), so that a hostile text cannot exhaust the stack.
const MAX_DEPTH: u32 = 16;
/// The most dimensions of one array.
const MAX_DIMS: usize = 32;
/// The longest text read (descriptors in a table are far shorter).
const MAX_TEXT: usize = 64 << 10;

/// One item of a descriptor: a field name (inside a record), its offset,
/// and its shape.
type Item = (String, usize, TypeShape);

/// The largest element this reader accepts (the core refuses larger ones).
const MAX_SIZE: usize = 1 << 30;

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        (n <= MAX_SIZE).then_some(n)
    }

    /// Items up to `end` (or the end of the text), laid out one after the
    /// other; inside a record each is followed by `:name:`. Padding moves
    /// the offset on and yields no item. Returns the items and the size.
    fn items(&mut self, end: Option<u8>) -> Option<(Vec<Item>, usize)> {
        let mut out = Vec::new();
        let mut at = 0usize;
        while self.peek().is_some() && self.peek() != end {
            let item = self.item()?;
            let size = match &item {
                Ok(shape) => shape.size(),
                Err(pad) => *pad,
            };
            let mut name = String::new();
            if end.is_some() && self.peek() == Some(b':') {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|c| c != b':') {
                    self.i += 1;
                }
                name = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_owned();
                self.i += 1;
            }
            if let Ok(shape) = item {
                out.push((name, at, shape));
            }
            at = at.checked_add(size).filter(|&a| a <= MAX_SIZE)?;
        }
        Some((out, at))
    }

    /// One item: `Err(n)` for `n` bytes of padding.
    fn item(&mut self) -> Option<Result<TypeShape, usize>> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let item = self.item_inner();
        self.depth -= 1;
        item
    }

    fn item_inner(&mut self) -> Option<Result<TypeShape, usize>> {
        if matches!(self.peek(), Some(b'<' | b'>' | b'=' | b'!' | b'@')) {
            self.i += 1;
        }
        let c = self.peek()?;
        if c.is_ascii_digit() {
            let n = self.number()?;
            let kind = self.peek()?;
            self.i += 1;
            return match kind {
                b's' => Some(Ok(TypeShape::Bytes(n))),
                b'x' => Some(Err(n)),
                _ => None,
            };
        }
        self.i += 1;
        let int = |size, signed| Some(Ok(TypeShape::Int { size, signed }));
        match c {
            b'B' => int(1, false),
            b'b' => int(1, true),
            b'H' => int(2, false),
            b'h' => int(2, true),
            b'I' | b'L' => int(4, false),
            b'i' | b'l' => int(4, true),
            b'Q' => int(8, false),
            b'q' => int(8, true),
            b'e' => Some(Ok(TypeShape::Float { size: 2 })),
            b'f' => Some(Ok(TypeShape::Float { size: 4 })),
            b'd' => Some(Ok(TypeShape::Float { size: 8 })),
            b'?' => Some(Ok(TypeShape::Bool)),
            b'c' => Some(Ok(TypeShape::Char)),
            b'x' => Some(Err(1)),
            b'(' => {
                let mut dims = vec![self.number()?];
                while self.peek() == Some(b',') && dims.len() < MAX_DIMS {
                    self.i += 1;
                    dims.push(self.number()?);
                }
                if self.peek() != Some(b')') {
                    return None;
                }
                self.i += 1;
                let elem = self.item()?.ok()?;
                let count = dims
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .and_then(|n| n.checked_mul(elem.size()))
                    .filter(|&n| n <= MAX_SIZE);
                count?;
                Some(Ok(TypeShape::Array {
                    dims,
                    elem: Box::new(elem),
                }))
            }
            b'T' => {
                if self.peek() != Some(b'{') {
                    return None;
                }
                self.i += 1;
                let (fields, size) = self.items(Some(b'}'))?;
                if self.peek() != Some(b'}') {
                    return None;
                }
                self.i += 1;
                // Rust's FixedStr<N>: a length byte, then N bytes.
                if let [(
                    len,
                    0,
                    TypeShape::Int {
                        size: 1,
                        signed: false,
                    },
                ), (bytes, 1, TypeShape::Bytes(n))] = fields.as_slice()
                {
                    if len == "len" && bytes == "bytes" && size == n + 1 {
                        return Some(Ok(TypeShape::Str(*n)));
                    }
                }
                Some(Ok(TypeShape::Record { fields, size }))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{human_type, TypeShape};

    #[test]
    fn names() {
        for (d, want) in [
            ("<Q", "u64"),
            ("b", "i8"),
            ("<d", "f64"),
            ("16s", "bytes16"),
            ("(3)<d", "[f64; 3]"),
            ("(2,3)<f", "[[f32; 3]; 2]"),
            ("T{B:len:16s:bytes:}", "str16"),
            (
                "T{<Q:ts:<d:price:<I:size:4x}",
                "record{ts: u64, price: f64, size: u32}",
            ),
            ("T{B:venue:7x<d:price:}", "record{venue: u8, price: f64}"),
            (
                "T{<d:x:T{<i:y:}:inner:}",
                "record{x: f64, inner: record{y: i32}}",
            ),
            ("(2)T{B:len:8s:bytes:}", "[str8; 2]"),
            ("", ""),
            ("Z", "Z"),
            ("T{<Q", "T{<Q"),
            ("(3", "(3"),
            ("<Q<Q", "<Q<Q"),
            ("(99999999999)<Q", "(99999999999)<Q"),
        ] {
            assert_eq!(human_type(d), want, "{d}");
        }
        // Hostile texts: too deep, too long; shown as they are, the stack intact.
        let deep = "(1)".repeat(20) + "B";
        assert_eq!(human_type(&deep), deep);
        assert_eq!(
            human_type(&("(1)".repeat(10) + "B")),
            "[[[[[[[[[[u8; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]; 1]"
        );
        let long = "T{".repeat(100_000);
        assert_eq!(human_type(&long), long);
    }

    #[test]
    fn offsets_and_sizes() {
        let s = TypeShape::of("T{B:venue:7x<d:price:<I:size:4x}").unwrap();
        let TypeShape::Record { fields, size } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(*size, 24);
        let at: Vec<(&str, usize)> = fields.iter().map(|(n, o, _)| (n.as_str(), *o)).collect();
        assert_eq!(at, [("venue", 0), ("price", 8), ("size", 16)]);
        assert_eq!(TypeShape::of("(2,3)<f").unwrap().size(), 24);
        assert_eq!(
            TypeShape::of("T{B:len:16s:bytes:}").unwrap(),
            TypeShape::Str(16)
        );
        // A bare padding item is no element.
        assert_eq!(TypeShape::of("4x"), None);
    }
}
