//! Type descriptors as people read them: `<Q` is `u64`, `T{B:len:16s:bytes:}`
//! is `str16` (Rust's `FixedStr<16>`), `(3)<d` is `[f64; 3]`,
//! `T{<Q:ts:<d:price:}` is `record{ts: u64, price: f64}` (padding left
//! out). A descriptor this does not understand is shown as it is.

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
    let mut p = Reader {
        s: d.as_bytes(),
        i: 0,
    };
    match p.items(None) {
        Some(items) if p.i == p.s.len() => match items.as_slice() {
            [one] => one.clone(),
            _ => d.to_owned(),
        },
        _ => d.to_owned(),
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    /// Items up to `end` (or the end of the text); inside a record each
    /// is followed by `:name:` and becomes `name: type`. Padding is left out.
    fn items(&mut self, end: Option<u8>) -> Option<Vec<String>> {
        let mut out = Vec::new();
        while self.peek().is_some() && self.peek() != end {
            let item = self.item()?;
            let named = if end.is_some() && self.peek() == Some(b':') {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|c| c != b':') {
                    self.i += 1;
                }
                let name = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_owned();
                self.i += 1;
                item.map(|t| format!("{name}: {t}"))
            } else {
                item
            };
            out.extend(named);
        }
        Some(out)
    }

    /// One item: `Some(None)` for padding.
    fn item(&mut self) -> Option<Option<String>> {
        let order = matches!(self.peek(), Some(b'<' | b'>' | b'=' | b'!' | b'@'));
        if order {
            self.i += 1;
        }
        let c = self.peek()?;
        if c.is_ascii_digit() {
            let n = self.number()?;
            return match self.peek()? {
                b's' => {
                    self.i += 1;
                    Some(Some(format!("bytes{n}")))
                }
                b'x' => {
                    self.i += 1;
                    Some(None)
                }
                _ => None,
            };
        }
        self.i += 1;
        let name = match c {
            b'B' => "u8",
            b'b' => "i8",
            b'?' => "bool",
            b'c' => "char",
            b'H' => "u16",
            b'h' => "i16",
            b'e' => "f16",
            b'I' | b'L' => "u32",
            b'i' | b'l' => "i32",
            b'f' => "f32",
            b'Q' => "u64",
            b'q' => "i64",
            b'd' => "f64",
            b'x' => return Some(None),
            b'(' => {
                let mut dims = vec![self.number()?];
                while self.peek() == Some(b',') {
                    self.i += 1;
                    dims.push(self.number()?);
                }
                if self.peek() != Some(b')') {
                    return None;
                }
                self.i += 1;
                let mut inner = self.item()??;
                for d in dims.iter().rev() {
                    inner = format!("[{inner}; {d}]");
                }
                return Some(Some(inner));
            }
            b'T' => {
                if self.peek() != Some(b'{') {
                    return None;
                }
                self.i += 1;
                let fields = self.items(Some(b'}'))?;
                if self.peek() != Some(b'}') {
                    return None;
                }
                self.i += 1;
                // Rust's FixedStr<N>: a length byte, then N bytes.
                if let [len, bytes] = fields.as_slice() {
                    if len == "len: u8" {
                        if let Some(n) = bytes.strip_prefix("bytes: bytes") {
                            return Some(Some(format!("str{n}")));
                        }
                    }
                }
                return Some(Some(format!("record{{{}}}", fields.join(", "))));
            }
            _ => return None,
        };
        Some(Some(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::human_type;

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
        ] {
            assert_eq!(human_type(d), want, "{d}");
        }
    }
}
