//! Converting Python objects to element bytes and back.
//!
//! Numbers (native-order integers and floats), strings (`FixedStr<N>`,
//! `T{B:len:Ns:bytes:}`, the `"S<n>"` of the Python API) and raw bytes
//! (`Ns`, Rust `[u8; N]`, numpy `V<n>`) are converted here, in Rust, so a
//! queue `put` or a map lookup makes no detour through numpy, and a batch
//! converts each element exactly as a single call does. Every other type
//! (records, sub-arrays, other byte orders) is converted by two Python
//! callables the package passes in (numpy-based). README, "Strings and
//! bytes", is the model these follow.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};
use shmds::Scalar;

/// How the elements of one structure are converted.
pub(crate) enum Codec {
    Int {
        size: usize,
        signed: bool,
    },
    Float {
        size: usize,
    },
    /// A Rust `FixedStr<N>`: a length byte, then up to N bytes of UTF-8.
    Str {
        n: usize,
    },
    /// `Ns` (Rust `[u8; N]`, numpy `V<N>`): exactly N raw bytes in, the
    /// same N bytes out, NULs included.
    Bytes {
        n: usize,
    },
    /// Anything else: `encode(obj) -> bytes`, `decode(bytes) -> obj`.
    Other {
        size: usize,
        encode: Py<PyAny>,
        decode: Py<PyAny>,
    },
}

/// The N of a `FixedStr<N>` descriptor.
pub(crate) fn fixed_str_len(descriptor: &str) -> Option<usize> {
    let n: usize = descriptor
        .strip_prefix("T{B:len:")?
        .strip_suffix("s:bytes:}")?
        .parse()
        .ok()?;
    (1..=255).contains(&n).then_some(n)
}

impl Codec {
    /// The codec for elements of `descriptor` (`size` bytes). `encode` and
    /// `decode` are required for types that are neither numbers nor strings.
    pub(crate) fn new(
        descriptor: &str,
        size: usize,
        encode: Option<Py<PyAny>>,
        decode: Option<Py<PyAny>>,
    ) -> PyResult<Codec> {
        let parsed = shmds::TypeDescriptor::parse(descriptor).map_err(crate::to_py)?;
        if let Some(n) = fixed_str_len(parsed.as_str()) {
            return Ok(Codec::Str { n });
        }
        if let Some(n) = parsed
            .as_str()
            .strip_suffix('s')
            .and_then(|n| n.parse::<usize>().ok())
        {
            return Ok(Codec::Bytes { n });
        }
        match parsed.scalar() {
            Some(Scalar::Int { size, signed }) => Ok(Codec::Int { size, signed }),
            Some(Scalar::Float { size }) => Ok(Codec::Float { size }),
            _ => match (encode, decode) {
                (Some(encode), Some(decode)) => Ok(Codec::Other {
                    size,
                    encode,
                    decode,
                }),
                _ => Err(PyValueError::new_err(format!(
                    "elements of type {descriptor:?} need encode and decode functions"
                ))),
            },
        }
    }

    /// Whether elements are integers.
    pub(crate) fn is_int(&self) -> bool {
        matches!(self, Codec::Int { .. })
    }

    /// The bits of a Python int as a wrapping delta: any int from -2^63 to
    /// 2^64 - 1, two's complement.
    pub(crate) fn delta_bits(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
        match obj.extract::<i64>() {
            Ok(v) => Ok(v as u64),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => obj
                .extract::<u64>()
                .map_err(|_| PyOverflowError::new_err(format!("{obj} does not fit in 64 bits"))),
            Err(_) => Err(PyTypeError::new_err(format!(
                "expected an integer, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))),
        }
    }

    /// The integer value of `obj`, checked against the element's range, as
    /// zero-extended bits.
    pub(crate) fn int_bits(&self, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
        let Codec::Int { size, signed } = *self else {
            return Err(PyTypeError::new_err("elements are not integers"));
        };
        let bits = 8 * size as u32;
        let out_of_range = || {
            PyOverflowError::new_err(format!(
                "{obj} is out of range for a{} {}-bit integer",
                if signed { " signed" } else { "n unsigned" },
                bits
            ))
        };
        if signed {
            let v: i64 = obj.extract().map_err(|e| int_error(obj, e, out_of_range))?;
            let half = 1i128 << (bits - 1);
            if (v as i128) < -half || (v as i128) >= half {
                return Err(out_of_range());
            }
            Ok(truncate(v as u64, size))
        } else {
            let v: u64 = obj.extract().map_err(|e| int_error(obj, e, out_of_range))?;
            if bits < 64 && v >> bits != 0 {
                return Err(out_of_range());
            }
            Ok(v)
        }
    }

    /// The Python int for zero-extended `bits` of an element.
    pub(crate) fn int_object<'py>(
        &self,
        py: Python<'py>,
        bits: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        match *self {
            Codec::Int { size, signed: true } => {
                let shift = 64 - 8 * size as u32;
                Ok(((bits << shift) as i64 >> shift)
                    .into_pyobject(py)?
                    .into_any())
            }
            Codec::Int { .. } => Ok(bits.into_pyobject(py)?.into_any()),
            _ => Err(PyTypeError::new_err("elements are not integers")),
        }
    }

    /// Write `obj` as an element into `out` (exactly the element size).
    pub(crate) fn encode(&self, obj: &Bound<'_, PyAny>, out: &mut [u8]) -> PyResult<()> {
        match self {
            Codec::Int { size, .. } => {
                let bits = self.int_bits(obj)?;
                write_int(bits, &mut out[..*size]);
            }
            Codec::Float { size: 4 } => {
                let v: f64 = obj.extract()?;
                out.copy_from_slice(&(v as f32).to_ne_bytes());
            }
            Codec::Float { .. } => {
                let v: f64 = obj.extract()?;
                out.copy_from_slice(&v.to_ne_bytes());
            }
            Codec::Str { n } => {
                let bytes: &[u8] = if let Ok(s) = obj.cast::<PyString>() {
                    s.to_str()?.as_bytes()
                } else if let Ok(b) = obj.cast::<PyBytes>() {
                    // The raw content: what a non-UTF-8 string reads back as.
                    b.as_bytes()
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "expected a str, not {}",
                        type_name(obj)
                    )));
                };
                if bytes.len() > *n {
                    return Err(PyValueError::new_err(format!(
                        "{:?} is {} bytes in UTF-8; these strings hold at most {n}",
                        obj.str()?.to_str()?.chars().take(80).collect::<String>(),
                        bytes.len()
                    )));
                }
                out.fill(0);
                out[0] = bytes.len() as u8;
                out[1..1 + bytes.len()].copy_from_slice(bytes);
            }
            Codec::Bytes { n } => {
                let owned;
                let bytes: &[u8] = if let Ok(b) = obj.cast::<PyBytes>() {
                    b.as_bytes()
                } else if obj.is_instance_of::<PyString>()
                    || !(obj.is_instance_of::<PyByteArray>() || has_buffer(obj))
                {
                    // Not bytes(obj): bytes(16) would be 16 zeros.
                    return Err(PyTypeError::new_err(format!(
                        "expected {n} bytes (bytes, bytearray or a buffer), not {}",
                        type_name(obj)
                    )));
                } else {
                    owned = PyMemoryView::from(obj)?
                        .call_method0("tobytes")?
                        .cast_into::<PyBytes>()?;
                    owned.as_bytes()
                };
                if bytes.len() != *n {
                    return Err(PyValueError::new_err(format!(
                        "elements of this type are exactly {n} bytes, not {} \
                         (pad or cut the value yourself, e.g. value.ljust({n}, b\"\\0\"))",
                        bytes.len()
                    )));
                }
                out.copy_from_slice(bytes);
            }
            Codec::Other { size, encode, .. } => {
                let encoded = encode.bind(obj.py()).call1((obj,))?;
                let bytes = encoded.cast::<PyBytes>()?.as_bytes();
                if bytes.len() != *size {
                    return Err(PyValueError::new_err(format!(
                        "encoded element has {} bytes, not {size}",
                        bytes.len()
                    )));
                }
                out.copy_from_slice(bytes);
            }
        }
        Ok(())
    }

    /// The Python object for the element bytes `bytes`.
    pub(crate) fn decode<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Codec::Int { .. } => self.int_object(py, int_of(bytes)),
            Codec::Float { size: 4 } => {
                let v = f32::from_ne_bytes(bytes.try_into().expect("4 bytes"));
                Ok((v as f64).into_pyobject(py)?.into_any())
            }
            Codec::Float { .. } => {
                let v = f64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
                Ok(v.into_pyobject(py)?.into_any())
            }
            Codec::Str { n } => {
                // The length byte comes from shared memory: never trust it.
                let len = bytes[0] as usize;
                if len > *n {
                    return Err(crate::CorruptError::new_err(format!(
                        "a string's length byte says {len} but it holds at most {n} bytes"
                    )));
                }
                let text = &bytes[1..1 + len];
                match std::str::from_utf8(text) {
                    Ok(s) => Ok(PyString::new(py, s).into_any()),
                    Err(_) => Ok(PyBytes::new(py, text).into_any()),
                }
            }
            Codec::Bytes { .. } => Ok(PyBytes::new(py, bytes).into_any()),
            Codec::Other { decode, .. } => decode.bind(py).call1((PyBytes::new(py, bytes),)),
        }
    }

    /// Whether the native layer converts these elements itself (numbers,
    /// strings and raw bytes).
    pub(crate) fn is_native(&self) -> bool {
        !matches!(self, Codec::Other { .. })
    }

    /// Every element of the iterable `items`, converted by [`Codec::encode`]
    /// (the rules of a single element), packed into `size`-byte elements.
    pub(crate) fn encode_many(&self, items: &Bound<'_, PyAny>, size: usize) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        for item in items.try_iter()? {
            let at = out.len();
            out.resize(at + size, 0);
            self.encode(&item?, &mut out[at..])?;
        }
        Ok(out)
    }
}

/// The name of `obj`'s type, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Whether `obj` exports the buffer protocol.
fn has_buffer(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: PyObject_CheckBuffer only reads the type of a live object,
    // which `obj` (a bound reference, GIL held) is.
    unsafe { pyo3::ffi::PyObject_CheckBuffer(obj.as_ptr()) == 1 }
}

/// A TypeError for non-integers, an OverflowError for integers too big.
fn int_error(obj: &Bound<'_, PyAny>, e: PyErr, out_of_range: impl Fn() -> PyErr) -> PyErr {
    if e.is_instance_of::<PyOverflowError>(obj.py()) {
        out_of_range()
    } else {
        PyTypeError::new_err(format!(
            "expected an integer, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    }
}

/// `bits` truncated to `size` bytes.
fn truncate(bits: u64, size: usize) -> u64 {
    if size >= 8 {
        bits
    } else {
        bits & ((1u64 << (8 * size)) - 1)
    }
}

/// The unsigned integer whose native-order bytes are `bytes` (at most 8).
pub(crate) fn int_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if cfg!(target_endian = "little") {
        b[..bytes.len()].copy_from_slice(bytes);
    } else {
        b[8 - bytes.len()..].copy_from_slice(bytes);
    }
    u64::from_ne_bytes(b)
}

/// Write the low `out.len()` bytes of `bits` into `out`, in native order.
pub(crate) fn write_int(bits: u64, out: &mut [u8]) {
    let b = bits.to_ne_bytes();
    if cfg!(target_endian = "little") {
        out.copy_from_slice(&b[..out.len()]);
    } else {
        out.copy_from_slice(&b[8 - out.len()..]);
    }
}

/// Room for one key, value or element: on the stack up to 64 bytes.
pub(crate) struct Scratch {
    small: [u8; 64],
    large: Vec<u8>,
    len: usize,
}

impl Scratch {
    pub(crate) fn new(len: usize) -> Scratch {
        Scratch {
            small: [0; 64],
            large: if len > 64 { vec![0; len] } else { Vec::new() },
            len,
        }
    }

    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        if self.len > 64 {
            &mut self.large
        } else {
            &mut self.small[..self.len]
        }
    }
}
