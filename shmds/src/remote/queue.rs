//! Remote queues and stacks: a Redis list of element bytes, pushed on the
//! right; a queue pops on the left (oldest first), a stack on the right
//! (top first). Every push and pop is one script, so the capacity holds
//! exactly whatever number of processes on whatever machines push.
//!
//! Keys of entry `E` of generation `G`: `d:G:E` the list, `i:G:E` the
//! number of taken-but-unacknowledged elements (they count against the
//! capacity), `c:G:E` a hash of consumer → lease deadline (ms, server
//! clock), `p:G:E:C` consumer `C`'s pending elements, and the signal lists
//! `s:G:E` (elements arrived) and `r:G:E` (room freed).

use super::entry::{bytes_of, from_bytes, Entry, Shape};
use super::{scripts, Deadline, Segment};
use crate::element::Element;
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Elements per script call of a batch (Lua's stack bounds one call).
const BATCH: usize = 1000;

/// A remote queue or stack whatever its element type: elements are byte
/// strings of [`elem_size`](RawQueue::elem_size) bytes, packed one after the
/// other in slices (what the typed [`Queue`] and [`Stack`], and the other
/// languages, are built on). Cheap to clone.
#[derive(Clone)]
pub struct RawQueue {
    ring: Arc<Ring>,
}

impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.ring.entry;
        f.debug_struct(if self.ring.side == "L" {
            "remote::RawQueue"
        } else {
            "remote::RawStack"
        })
        .field("segment", &e.seg.name())
        .field("name", &e.name)
        .field("capacity", &e.record.capacity)
        .finish()
    }
}

struct Ring {
    entry: Entry,
    /// "L" (queue) or "R" (stack).
    side: &'static str,
    elem_size: usize,
    consumer: String,
    data: String,
    items: String,
    room: String,
    in_flight: String,
    consumers: String,
    pending_prefix: String,
}

impl RawQueue {
    fn new(entry: Entry, side: &'static str) -> Result<RawQueue> {
        let elem_size =
            crate::element::TypeDescriptor::parse(&entry.record.elem_type)?.size() as usize;
        let pending_prefix = format!("{}:", entry.key("p"));
        Ok(RawQueue {
            ring: Arc::new(Ring {
                data: entry.key("d"),
                items: entry.key("s"),
                room: entry.key("r"),
                in_flight: entry.key("i"),
                consumers: entry.key("c"),
                consumer: consumer_name(),
                pending_prefix,
                elem_size,
                entry,
                side,
            }),
        })
    }

    fn pending(&self) -> String {
        format!("{}{}", self.ring.pending_prefix, self.ring.consumer)
    }

    fn elements<'a>(&self, packed: &'a [u8]) -> Result<std::slice::ChunksExact<'a, u8>> {
        crate::payload::count(packed.len(), self.ring.elem_size, &self.ring.entry.name)?;
        Ok(packed.chunks_exact(self.ring.elem_size))
    }

    /// Push the packed elements of `packed` that fit now, in order; returns
    /// how many (a prefix).
    pub fn try_push_bytes(&self, packed: &[u8]) -> Result<usize> {
        let elems: Vec<&[u8]> = self.elements(packed)?.collect();
        let r = &self.ring;
        let mut pushed = 0;
        for chunk in elems.chunks(BATCH) {
            let n: usize = r.entry.run(false, |con| {
                let mut inv = r.entry.invocation(&scripts::PUSH);
                inv.key(&r.data)
                    .key(&r.items)
                    .key(&r.in_flight)
                    .arg(r.entry.record.capacity);
                for v in chunk {
                    inv.arg(*v);
                }
                inv.invoke(con)
            })?;
            pushed += n;
            if n < chunk.len() {
                break;
            }
        }
        Ok(pushed)
    }

    /// Push all of `packed` in order, waiting for room as needed (forever
    /// when `timeout` is `None`); returns how many were pushed: all, unless
    /// `timeout` passed first.
    pub fn push_bytes(&self, packed: &[u8], timeout: Option<Duration>) -> Result<usize> {
        let total = self.elements(packed)?.len();
        let size = self.ring.elem_size;
        let deadline = Deadline::after(timeout);
        let mut pushed = 0;
        loop {
            pushed += self.try_push_bytes(&packed[pushed * size..])?;
            if pushed == total {
                return Ok(pushed);
            }
            let Some(left) = deadline.left() else {
                return Ok(pushed);
            };
            let r = &self.ring;
            r.entry.seg.wait_signal(&r.entry.name, &r.room, left)?;
        }
    }

    /// Pop up to `max` elements that are there now (a queue's oldest, a
    /// stack's top first), packed; at most once (see the module docs).
    pub fn try_pop_bytes(&self, max: usize) -> Result<Vec<u8>> {
        let r = &self.ring;
        let mut out = Vec::new();
        while out.len() < max * r.elem_size {
            let want = max - out.len() / r.elem_size;
            let got: Vec<Vec<u8>> = r.entry.run(false, |con| {
                r.entry
                    .invocation(&scripts::POP)
                    .key(&r.data)
                    .key(&r.room)
                    .arg(want.min(BATCH))
                    .arg(r.side)
                    .invoke(con)
            })?;
            if got.is_empty() {
                break;
            }
            for b in &got {
                if b.len() != r.elem_size {
                    return Err(self.wrong_size(b.len()));
                }
                out.extend_from_slice(b);
            }
        }
        Ok(out)
    }

    /// Pop up to `max` elements, waiting for at least one (forever when
    /// `timeout` is `None`). [`Error::Timeout`] if none came in time.
    pub fn pop_bytes(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<u8>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Deadline::after(timeout);
        loop {
            let got = self.try_pop_bytes(max)?;
            if !got.is_empty() {
                return Ok(got);
            }
            let Some(left) = deadline.left() else {
                return Err(self.timeout());
            };
            let r = &self.ring;
            r.entry.seg.wait_signal(&r.entry.name, &r.items, left)?;
        }
    }

    /// Take one element now, **at least once** (see [`Delivery`]); also
    /// returns to the structure the elements of consumers whose lease ran
    /// out.
    pub fn try_take_bytes(&self) -> Result<Option<Delivery<Vec<u8>>>> {
        let r = &self.ring;
        let lease = r.entry.seg.options().lease.as_millis() as u64;
        let reply: Vec<redis::Value> = r.entry.run(false, |con| {
            r.entry
                .invocation(&scripts::TAKE)
                .key(&r.data)
                .key(&r.items)
                .key(&r.in_flight)
                .key(&r.consumers)
                .key(self.pending())
                .arg(r.side)
                .arg(&r.consumer)
                .arg(lease)
                .arg(&r.pending_prefix)
                .invoke(con)
        })?;
        let Some(v) = reply.get(1) else {
            return Ok(None);
        };
        let bytes: Vec<u8> = redis::from_redis_value_ref(v)
            .map_err(|_| r.entry.corrupt("a taken element is not bytes"))?;
        if bytes.len() != r.elem_size {
            return Err(self.wrong_size(bytes.len()));
        }
        Ok(Some(Delivery {
            value: bytes.clone(),
            bytes,
            queue: self.clone(),
        }))
    }

    /// [`try_take_bytes`](Self::try_take_bytes), waiting while there is
    /// nothing (forever when `timeout` is `None`).
    pub fn take_bytes(&self, timeout: Option<Duration>) -> Result<Delivery<Vec<u8>>> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(d) = self.try_take_bytes()? {
                return Ok(d);
            }
            let Some(left) = deadline.left() else {
                return Err(self.timeout());
            };
            let r = &self.ring;
            r.entry.seg.wait_signal(&r.entry.name, &r.items, left)?;
        }
    }

    /// Return to the structure every element taken by a consumer whose
    /// lease ran out (any take does this too); returns how many.
    pub fn recover(&self) -> Result<usize> {
        let r = &self.ring;
        r.entry.run(false, |con| {
            r.entry
                .invocation(&scripts::RECOVER)
                .key(&r.data)
                .key(&r.items)
                .key(&r.in_flight)
                .key(&r.consumers)
                .key(self.pending())
                .arg(r.side)
                .arg(&r.consumer)
                .arg(0)
                .arg(&r.pending_prefix)
                .invoke(con)
        })
    }

    fn counts(&self) -> Result<(usize, usize)> {
        let r = &self.ring;
        r.entry.run(true, |con| {
            r.entry
                .invocation(&scripts::LEN)
                .key(&r.data)
                .key(&r.in_flight)
                .invoke(con)
        })
    }

    /// Elements waiting (not counting taken ones not yet acknowledged).
    pub fn len(&self) -> Result<usize> {
        Ok(self.counts()?.0)
    }

    /// Elements taken and not yet acknowledged (they count against the
    /// capacity).
    pub fn in_flight(&self) -> Result<usize> {
        Ok(self.counts()?.1)
    }

    /// Whether no element is waiting.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether waiting plus in-flight elements fill the capacity.
    pub fn is_full(&self) -> Result<bool> {
        let (waiting, flying) = self.counts()?;
        Ok((waiting + flying) as u64 >= self.ring.entry.record.capacity)
    }

    /// `Ok(())` while it exists, [`Error::Stale`] once it was erased.
    pub fn check(&self) -> Result<()> {
        self.counts().map(|_| ())
    }

    /// The capacity (exactly as created).
    pub fn capacity(&self) -> usize {
        self.ring.entry.record.capacity as usize
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.ring.elem_size
    }

    /// "queue" or "stack".
    pub fn kind(&self) -> &'static str {
        self.ring.entry.record.kind
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.ring.entry.name
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.ring.entry.record.elem_type
    }

    /// The segment name.
    pub fn segment_name(&self) -> &str {
        self.ring.entry.seg.name()
    }

    fn wrong_size(&self, len: usize) -> Error {
        self.ring.entry.corrupt(&format!(
            "an element has {len} bytes, not the {} of its type",
            self.ring.elem_size
        ))
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            name: self.ring.entry.name.clone(),
        }
    }
}

/// A consumer name unique to this handle: host, pid and a random part.
pub(super) fn consumer_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{host}-{}-{:016x}", std::process::id(), h.finish())
}

/// An element taken with [`Queue::take`] (or [`Stack::take`],
/// [`RawQueue::take_bytes`]): it stays on the server, in this consumer's
/// pending list, until [`ack`](Delivery::ack). Dropped without an ack, it
/// goes back to the structure once this consumer's lease runs out, and is
/// delivered again.
pub struct Delivery<T> {
    value: T,
    bytes: Vec<u8>,
    queue: RawQueue,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("value", &self.value)
            .finish()
    }
}

impl<T> Delivery<T> {
    /// The element.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Acknowledge the element: it is done with and leaves the server.
    /// `Ok(false)` if it was not pending any more: this consumer's lease ran
    /// out and the element went back (it is, or will be, delivered again).
    pub fn ack(self) -> Result<bool> {
        let q = &self.queue;
        let r = &q.ring;
        let lease = r.entry.seg.options().lease.as_millis() as u64;
        let n: i64 = r.entry.run(false, |con| {
            r.entry
                .invocation(&scripts::ACK)
                .key(q.pending())
                .key(&r.in_flight)
                .key(&r.room)
                .key(&r.consumers)
                .arg(self.bytes.as_slice())
                .arg(&r.consumer)
                .arg(lease)
                .invoke(con)
        })?;
        Ok(n == 1)
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Delivery<U> {
        Delivery {
            value: f(self.value),
            bytes: self.bytes,
            queue: self.queue,
        }
    }
}

/// The typed methods queues and stacks share, over their [`RawQueue`]
/// (`$take` names the element a pop takes).
macro_rules! ring_methods {
    ($what:literal, $take:literal) => {
        #[doc = concat!("Push `value` if there is room now: `Ok(false)` if the ", $what, " is full.")]
        pub fn try_push(&self, value: T) -> Result<bool> {
            Ok(self.raw.try_push_bytes(&bytes_of(&value))? == 1)
        }

        /// Push as many of `values` as fit now, in order; returns how many.
        pub fn try_push_slice(&self, values: &[T]) -> Result<usize> {
            self.raw.try_push_bytes(&packed(values))
        }

        #[doc = concat!("Push `value`, waiting while the ", $what, " is full: forever when")]
        /// `timeout` is `None`, else at most `timeout` ([`Error::Timeout`]).
        pub fn push(&self, value: T, timeout: Option<Duration>) -> Result<()> {
            match self.raw.push_bytes(&bytes_of(&value), timeout)? {
                1 => Ok(()),
                _ => Err(self.raw.timeout()),
            }
        }

        /// Push all of `values` in order, waiting for room as needed; returns
        /// how many were pushed: all, unless `timeout` passed first.
        pub fn push_slice(&self, values: &[T], timeout: Option<Duration>) -> Result<usize> {
            self.raw.push_bytes(&packed(values), timeout)
        }

        #[doc = concat!("Take the ", $take, " element if there is one now (at most once: see")]
        /// the module docs; [`take`](Self::take) is at least once).
        pub fn try_pop(&self) -> Result<Option<T>> {
            let got = self.raw.try_pop_bytes(1)?;
            Ok(if got.is_empty() { None } else { from_bytes(&got) })
        }

        #[doc = concat!("Pop up to `out.len()` elements that are there now (", $take, " first);")]
        /// returns how many.
        pub fn try_pop_into(&self, out: &mut [T]) -> Result<usize> {
            Ok(unpack(&self.raw.try_pop_bytes(out.len())?, out))
        }

        #[doc = concat!("Take the ", $take, " element, waiting while the ", $what, " is empty:")]
        /// forever when `timeout` is `None`, else at most `timeout`.
        pub fn pop(&self, timeout: Option<Duration>) -> Result<T> {
            let got = self.raw.pop_bytes(1, timeout)?;
            from_bytes(&got).ok_or_else(|| self.raw.wrong_size(got.len()))
        }

        /// Pop up to `out.len()` elements, waiting for at least one;
        /// returns how many. [`Error::Timeout`] if none came in time.
        pub fn pop_into(&self, out: &mut [T], timeout: Option<Duration>) -> Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            Ok(unpack(&self.raw.pop_bytes(out.len(), timeout)?, out))
        }

        #[doc = concat!("Take the ", $take, " element if there is one now, **at least once**: it")]
        /// stays on the server as this consumer's until acknowledged (see
        /// [`Delivery`]). Also returns to the structure the elements of
        /// consumers whose lease ran out.
        pub fn try_take(&self) -> Result<Option<Delivery<T>>> {
            Ok(self.raw.try_take_bytes()?.map(typed))
        }

        /// [`try_take`](Self::try_take), waiting while there is nothing
        /// (forever when `timeout` is `None`).
        pub fn take(&self, timeout: Option<Duration>) -> Result<Delivery<T>> {
            self.raw.take_bytes(timeout).map(typed)
        }

        /// Return to the structure every element taken by a consumer whose
        /// lease ran out (any take does this too); returns how many.
        pub fn recover(&self) -> Result<usize> {
            self.raw.recover()
        }

        /// Elements waiting (not counting taken ones not yet acknowledged).
        pub fn len(&self) -> Result<usize> {
            self.raw.len()
        }

        /// Elements taken with `take` and not yet acknowledged (they count
        /// against the capacity).
        pub fn in_flight(&self) -> Result<usize> {
            self.raw.in_flight()
        }

        #[doc = concat!("Whether the ", $what, " holds no waiting elements.")]
        pub fn is_empty(&self) -> Result<bool> {
            self.raw.is_empty()
        }

        #[doc = concat!("Whether the ", $what, " is full (waiting plus in-flight elements).")]
        pub fn is_full(&self) -> Result<bool> {
            self.raw.is_full()
        }

        #[doc = concat!("`Ok(())` while the ", $what, " exists, [`Error::Stale`] once it was erased.")]
        pub fn check(&self) -> Result<()> {
            self.raw.check()
        }

        /// The capacity (exactly as created).
        pub fn capacity(&self) -> usize {
            self.raw.capacity()
        }

        /// The entry name.
        pub fn name(&self) -> &str {
            self.raw.name()
        }

        /// The element type descriptor.
        pub fn type_descriptor(&self) -> &str {
            self.raw.type_descriptor()
        }

        /// The untyped handle.
        pub fn raw(&self) -> &RawQueue {
            &self.raw
        }
    };
}

fn packed<T: Element>(values: &[T]) -> Vec<u8> {
    values.iter().flat_map(bytes_of).collect()
}

/// Decode packed elements into `out`; returns how many.
fn unpack<T: Element>(packed: &[u8], out: &mut [T]) -> usize {
    let mut n = 0;
    for (slot, chunk) in out
        .iter_mut()
        .zip(packed.chunks_exact(std::mem::size_of::<T>()))
    {
        if let Some(v) = from_bytes(chunk) {
            *slot = v;
            n += 1;
        }
    }
    n
}

fn typed<T: Element>(d: Delivery<Vec<u8>>) -> Delivery<T> {
    // take_bytes checked the size: from_bytes cannot fail.
    d.map(|b| from_bytes(&b).unwrap_or_else(crate::payload::zeroed::<T>))
}

/// A bounded FIFO queue of `T` on a Redis server (see the module docs of
/// [`remote`](super)).
pub struct Queue<T: Element> {
    raw: RawQueue,
    _t: PhantomData<T>,
}

/// A bounded LIFO stack of `T` on a Redis server.
pub struct Stack<T: Element> {
    raw: RawQueue,
    _t: PhantomData<T>,
}

impl<T: Element> Queue<T> {
    ring_methods!("queue", "oldest");
}

impl<T: Element> Stack<T> {
    ring_methods!("stack", "top");
}

macro_rules! ring_handle {
    ($Typed:ident, $what:literal, $side:literal,
     $create:ident, $open:ident, $open_or_create:ident,
     $create_raw:ident, $open_raw:ident, $open_or_create_raw:ident) => {
        impl<T: Element> Clone for $Typed<T> {
            fn clone(&self) -> Self {
                $Typed {
                    raw: self.raw.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T: Element> std::fmt::Debug for $Typed<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.raw.fmt(f)
            }
        }

        impl Segment {
            #[doc = concat!("Create a ", $what, " of `capacity` elements of `T`.")]
            pub fn $create<T: Element>(&self, name: &str, capacity: usize) -> Result<$Typed<T>> {
                self.ring(name, $what, $side, Some(&T::descriptor()), capacity, Some(false))
                    .map(|raw| $Typed { raw, _t: PhantomData })
            }

            #[doc = concat!("Open the ", $what, " `name`, which must hold `T`.")]
            pub fn $open<T: Element>(&self, name: &str) -> Result<$Typed<T>> {
                self.ring(name, $what, $side, Some(&T::descriptor()), 0, None)
                    .map(|raw| $Typed { raw, _t: PhantomData })
            }

            #[doc = concat!("Open the ", $what, " `name`, creating it with `capacity` if it does not exist.")]
            pub fn $open_or_create<T: Element>(
                &self,
                name: &str,
                capacity: usize,
            ) -> Result<$Typed<T>> {
                self.ring(name, $what, $side, Some(&T::descriptor()), capacity, Some(true))
                    .map(|raw| $Typed { raw, _t: PhantomData })
            }

            #[doc = concat!("Create a ", $what, " of `capacity` elements of the type `descriptor` describes.")]
            pub fn $create_raw(&self, name: &str, descriptor: &str, capacity: usize) -> Result<RawQueue> {
                self.ring(name, $what, $side, Some(descriptor), capacity, Some(false))
            }

            #[doc = concat!("Open the ", $what, " `name` whatever its element type.")]
            pub fn $open_raw(&self, name: &str) -> Result<RawQueue> {
                self.ring(name, $what, $side, None, 0, None)
            }

            #[doc = concat!("Open the ", $what, " `name`, creating it with `capacity` elements of type")]
            /// `descriptor` if it does not exist.
            pub fn $open_or_create_raw(&self, name: &str, descriptor: &str, capacity: usize) -> Result<RawQueue> {
                self.ring(name, $what, $side, Some(descriptor), capacity, Some(true))
            }
        }
    };
}

ring_handle!(
    Queue,
    "queue",
    "L",
    create_queue,
    open_queue,
    open_or_create_queue,
    create_queue_raw,
    open_queue_raw,
    open_or_create_queue_raw
);
ring_handle!(
    Stack,
    "stack",
    "R",
    create_stack,
    open_stack,
    open_or_create_stack,
    create_stack_raw,
    open_stack_raw,
    open_or_create_stack_raw
);

impl Segment {
    /// Create (`Some(open_ok)`) or open (`None`) a queue or stack of the
    /// type `descriptor` (`None`: whatever type it holds).
    fn ring(
        &self,
        name: &str,
        kind: &'static str,
        side: &'static str,
        descriptor: Option<&str>,
        capacity: usize,
        create: Option<bool>,
    ) -> Result<RawQueue> {
        let desc = descriptor
            .map(|d| crate::element::TypeDescriptor::parse(d).map(|t| t.as_str().to_owned()))
            .transpose()?;
        let shape = Shape {
            kind,
            elem_type: desc.as_deref(),
            key_type: Some(""),
            capacity: capacity as u64,
            bytes: 0,
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        RawQueue::new(entry, side)
    }
}
