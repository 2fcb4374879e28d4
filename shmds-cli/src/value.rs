//! Element values as JSON, by the entry's type: integers and floats are
//! numbers, `str16` a string, raw bytes a string with `\xNN` escapes for
//! anything not printable, arrays JSON arrays and records objects of their
//! fields. Reading goes the other way, refusing what does not fit the type.

use serde_json::{Map, Number, Value};
use shmds::TypeShape;

/// The value of `bytes` (exactly `shape.size()` of them) as JSON.
pub fn decode(shape: &TypeShape, bytes: &[u8]) -> Value {
    match shape {
        TypeShape::Int { size, signed } => {
            let mut word = [0u8; 8];
            word[..*size].copy_from_slice(&bytes[..*size]);
            let raw = u64::from_le_bytes(word);
            if *signed {
                let shift = 64 - 8 * *size as u32;
                Value::from(((raw << shift) as i64) >> shift)
            } else {
                Value::from(raw)
            }
        }
        TypeShape::Float { size } => {
            let x = match size {
                2 => f16_to_f64(u16::from_le_bytes([bytes[0], bytes[1]])),
                4 => f32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as f64,
                _ => f64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            };
            Number::from_f64(x).map_or_else(|| Value::from(x.to_string()), Value::Number)
        }
        TypeShape::Bool => Value::Bool(bytes[0] != 0),
        TypeShape::Char => Value::from(escaped(&bytes[..1])),
        TypeShape::Bytes(n) => Value::from(escaped(&bytes[..*n])),
        TypeShape::Str(n) => {
            // The length byte is untrusted: bound it by the capacity.
            let len = (bytes[0] as usize).min(*n);
            Value::from(String::from_utf8_lossy(&bytes[1..1 + len]).into_owned())
        }
        TypeShape::Array { dims, elem } => decode_array(dims, elem, bytes),
        TypeShape::Record { fields, .. } => {
            let mut out = Map::new();
            for (name, at, field) in fields {
                out.insert(name.clone(), decode(field, &bytes[*at..*at + field.size()]));
            }
            Value::Object(out)
        }
    }
}

fn decode_array(dims: &[usize], elem: &TypeShape, bytes: &[u8]) -> Value {
    let Some((&n, inner)) = dims.split_first() else {
        return decode(elem, bytes);
    };
    let step = inner.iter().product::<usize>() * elem.size();
    Value::Array(
        (0..n)
            .map(|k| decode_array(inner, elem, &bytes[k * step..(k + 1) * step]))
            .collect(),
    )
}

/// `value` as the bytes of one element of `shape`.
pub fn encode(shape: &TypeShape, value: &Value) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; shape.size()];
    put(shape, value, &mut out)?;
    Ok(out)
}

fn put(shape: &TypeShape, value: &Value, out: &mut [u8]) -> Result<(), String> {
    match shape {
        TypeShape::Int { size, signed } => {
            let bits = 8 * *size as u32;
            let word = match (value, *signed) {
                (Value::Number(n), true) => n.as_i64().and_then(|v| {
                    let fits = bits == 64 || (v >= -(1i64 << (bits - 1)) && v < 1i64 << (bits - 1));
                    fits.then_some(v as u64)
                }),
                (Value::Number(n), false) => n.as_u64().filter(|&v| bits == 64 || v < 1u64 << bits),
                _ => None,
            };
            let word = word.ok_or_else(|| format!("{value} is not a {shape}"))?;
            out.copy_from_slice(&word.to_le_bytes()[..*size]);
        }
        TypeShape::Float { size } => {
            let x = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("{value} is not a {shape}"))?;
            match size {
                2 => return Err("f16 values cannot be written from the command line".into()),
                4 => out.copy_from_slice(&(x as f32).to_le_bytes()),
                _ => out.copy_from_slice(&x.to_le_bytes()),
            }
        }
        TypeShape::Bool => {
            out[0] = match value {
                Value::Bool(b) => *b as u8,
                Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                    n.as_u64().unwrap_or(0) as u8
                }
                _ => return Err(format!("{value} is not a bool (true or false)")),
            }
        }
        TypeShape::Char | TypeShape::Bytes(_) => {
            let Value::String(s) = value else {
                return Err(format!("{value} is not a string of bytes for {shape}"));
            };
            let bytes = unescape(s)?;
            if bytes.len() > out.len() {
                return Err(format!(
                    "{} bytes do not fit {shape} ({} bytes)",
                    bytes.len(),
                    out.len()
                ));
            }
            out[..bytes.len()].copy_from_slice(&bytes);
        }
        TypeShape::Str(n) => {
            let Value::String(s) = value else {
                return Err(format!("{value} is not a string for {shape}"));
            };
            if s.len() > *n {
                return Err(format!(
                    "{s:?} is {} bytes of UTF-8, more than {shape} holds ({n})",
                    s.len()
                ));
            }
            out[0] = s.len() as u8;
            out[1..1 + s.len()].copy_from_slice(s.as_bytes());
        }
        TypeShape::Array { dims, elem } => put_array(dims, elem, value, out)?,
        TypeShape::Record { fields, .. } => {
            let Value::Object(given) = value else {
                return Err(format!("{value} is not a JSON object for {shape}"));
            };
            if let Some(extra) = given
                .keys()
                .find(|k| !fields.iter().any(|(name, _, _)| name == *k))
            {
                return Err(format!("{shape} has no field {extra:?}"));
            }
            for (name, at, field) in fields {
                let v = given
                    .get(name)
                    .ok_or_else(|| format!("field {name:?} of {shape} is missing"))?;
                put(field, v, &mut out[*at..*at + field.size()])
                    .map_err(|e| format!("field {name:?}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn put_array(
    dims: &[usize],
    elem: &TypeShape,
    value: &Value,
    out: &mut [u8],
) -> Result<(), String> {
    let Some((&n, inner)) = dims.split_first() else {
        return put(elem, value, out);
    };
    match value {
        Value::Array(items) if items.len() == n => {
            let step = inner.iter().product::<usize>() * elem.size();
            for (k, item) in items.iter().enumerate() {
                put_array(inner, elem, item, &mut out[k * step..(k + 1) * step])?;
            }
            Ok(())
        }
        _ => Err(format!("{value} is not a JSON array of {n} elements")),
    }
}

/// A command-line argument as a value of `shape`: JSON, except that a
/// string type also takes its text as it is (`AAPL` for `"AAPL"`).
pub fn parse_arg(shape: &TypeShape, text: &str) -> Result<Value, String> {
    let stringy = matches!(
        shape,
        TypeShape::Str(_) | TypeShape::Bytes(_) | TypeShape::Char
    );
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::String(_)) => Ok(v),
        Ok(v) if !stringy => Ok(v),
        _ if stringy => Ok(Value::String(text.to_owned())),
        _ => Err(format!(
            "{text:?} is not a {shape} (give JSON: a number, [..] or {{..}})"
        )),
    }
}

/// Bytes as text: printable ASCII as it is, `\\` and `\xNN` for the rest.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The inverse of [`escaped`] (`\xNN` and `\\`; other text as UTF-8).
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', more @ ..] => {
                out.push(b'\\');
                rest = more;
            }
            [b'x', h, l, more @ ..] => {
                let hex = std::str::from_utf8(&[*h, *l])
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or_else(|| format!("bad escape in {s:?}: \\x needs two hex digits"))?;
                out.push(hex);
                rest = more;
            }
            _ => return Err(format!("bad escape in {s:?}: use \\\\ or \\xNN")),
        }
    }
    Ok(out)
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(d: &str) -> TypeShape {
        TypeShape::of(d).unwrap()
    }

    #[test]
    fn round_trips() {
        for (d, v) in [
            ("<Q", json!(18446744073709551615u64)),
            ("<q", json!(-5)),
            ("b", json!(-128)),
            ("<H", json!(65535)),
            ("<d", json!(1.5)),
            ("<f", json!(0.25)),
            ("?", json!(true)),
            ("T{B:len:16s:bytes:}", json!("Zürich")),
            ("8s", json!("ab\\x00\\x00\\x00\\x00\\x00\\x00")),
            ("(2,2)<i", json!([[1, -2], [3, 4]])),
            (
                "T{B:venue:7x<d:price:<I:size:4x}",
                json!({"venue": 3, "price": 101.5, "size": 30}),
            ),
        ] {
            let s = shape(d);
            let bytes = encode(&s, &v).unwrap_or_else(|e| panic!("{d}: {e}"));
            assert_eq!(bytes.len(), s.size());
            assert_eq!(decode(&s, &bytes), v, "{d}");
        }
    }

    #[test]
    fn refusals() {
        for (d, v, says) in [
            ("B", json!(256), "is not a u8"),
            ("b", json!(128), "is not a i8"),
            ("<Q", json!(-1), "is not a u64"),
            ("<Q", json!("x"), "is not a u64"),
            ("T{B:len:4s:bytes:}", json!("hello"), "more than str4 holds"),
            ("(2)<d", json!([1.0]), "not a JSON array of 2"),
            ("T{<Q:a:}", json!({"b": 1}), "has no field \"b\""),
            (
                "T{<Q:a:<Q:b:}",
                json!({"a": 1}),
                "field \"b\" of record{a: u64, b: u64} is missing",
            ),
            ("4s", json!("\\q"), "bad escape"),
        ] {
            let e = encode(&shape(d), &v).unwrap_err();
            assert!(e.contains(says), "{d} {v}: {e}");
        }
    }

    #[test]
    fn arguments_and_untrusted_lengths() {
        let s = shape("T{B:len:8s:bytes:}");
        assert_eq!(parse_arg(&s, "AAPL").unwrap(), json!("AAPL"));
        assert_eq!(parse_arg(&s, "\"12\"").unwrap(), json!("12"));
        assert_eq!(parse_arg(&shape("<Q"), "12").unwrap(), json!(12));
        assert!(parse_arg(&shape("<Q"), "twelve").is_err());
        // A length byte past the capacity (another process's damage) is bounded.
        let mut bytes = vec![200u8];
        bytes.extend_from_slice(b"abcdefgh");
        assert_eq!(decode(&s, &bytes), json!("abcdefgh"));
        assert_eq!(escaped(b"a\\\x01"), "a\\\\\\x01");
    }
}
