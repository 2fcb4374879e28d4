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

/// What a queue and a stack share: the entry, which end pops, and this
/// handle's consumer name for [`Queue::take`].
struct Ring {
    entry: Entry,
    /// "L" (queue) or "R" (stack).
    side: &'static str,
    consumer: String,
    data: String,
    items: String,
    room: String,
    in_flight: String,
    consumers: String,
    pending_prefix: String,
}

impl Ring {
    fn new(entry: Entry, side: &'static str) -> Ring {
        let pending_prefix = format!("{}:", entry.key("p"));
        Ring {
            data: entry.key("d"),
            items: entry.key("s"),
            room: entry.key("r"),
            in_flight: entry.key("i"),
            consumers: entry.key("c"),
            consumer: consumer_name(),
            pending_prefix,
            entry,
            side,
        }
    }

    fn pending(&self) -> String {
        format!("{}{}", self.pending_prefix, self.consumer)
    }

    fn push_bytes(&self, values: &[Vec<u8>]) -> Result<usize> {
        let mut pushed = 0;
        for chunk in values.chunks(BATCH) {
            let n: usize = self.entry.run(false, |con| {
                let mut inv = self.entry.invocation(&scripts::PUSH);
                inv.key(&self.data)
                    .key(&self.items)
                    .key(&self.in_flight)
                    .arg(self.entry.record.capacity);
                for v in chunk {
                    inv.arg(v.as_slice());
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

    fn pop_bytes(&self, max: usize) -> Result<Vec<Vec<u8>>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.entry.run(false, |con| {
            self.entry
                .invocation(&scripts::POP)
                .key(&self.data)
                .key(&self.room)
                .arg(max.min(BATCH))
                .arg(self.side)
                .invoke(con)
        })
    }

    fn take_bytes(&self) -> Result<Option<Vec<u8>>> {
        let lease = self.entry.seg.options().lease.as_millis() as u64;
        let reply: Vec<redis::Value> = self.entry.run(false, |con| {
            self.entry
                .invocation(&scripts::TAKE)
                .key(&self.data)
                .key(&self.items)
                .key(&self.in_flight)
                .key(&self.consumers)
                .key(self.pending())
                .arg(self.side)
                .arg(&self.consumer)
                .arg(lease)
                .arg(&self.pending_prefix)
                .invoke(con)
        })?;
        match reply.get(1) {
            None => Ok(None),
            Some(v) => redis::from_redis_value_ref(v)
                .map(Some)
                .map_err(|_| self.entry.corrupt("a taken element is not bytes")),
        }
    }

    fn recover(&self) -> Result<usize> {
        self.entry.run(false, |con| {
            self.entry
                .invocation(&scripts::RECOVER)
                .key(&self.data)
                .key(&self.items)
                .key(&self.in_flight)
                .key(&self.consumers)
                .key(self.pending())
                .arg(self.side)
                .arg(&self.consumer)
                .arg(0)
                .arg(&self.pending_prefix)
                .invoke(con)
        })
    }

    fn counts(&self) -> Result<(usize, usize)> {
        self.entry.run(true, |con| {
            self.entry
                .invocation(&scripts::LEN)
                .key(&self.data)
                .key(&self.in_flight)
                .invoke(con)
        })
    }

    fn decode<T: Element>(&self, bytes: &[u8]) -> Result<T> {
        from_bytes(bytes).ok_or_else(|| {
            self.entry.corrupt(&format!(
                "an element has {} bytes, not the {} of its type",
                bytes.len(),
                std::mem::size_of::<T>()
            ))
        })
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            name: self.entry.name.clone(),
        }
    }
}

/// A consumer name unique to this handle: host, pid and a random part.
fn consumer_name() -> String {
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

/// An element taken with [`Queue::take`] (or [`Stack::take`]): it stays on
/// the server, in this consumer's pending list, until [`ack`](Delivery::ack).
/// Dropped without an ack, it goes back to the structure once this
/// consumer's lease runs out, and is delivered again.
pub struct Delivery<T: Element> {
    value: T,
    bytes: Vec<u8>,
    ring: Arc<Ring>,
}

impl<T: Element + std::fmt::Debug> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("value", &self.value)
            .finish()
    }
}

impl<T: Element> Delivery<T> {
    /// The element.
    pub fn value(&self) -> T {
        self.value
    }

    /// Acknowledge the element: it is done with and leaves the server.
    /// `Ok(false)` if it was not pending any more: this consumer's lease ran
    /// out and the element went back (it is, or will be, delivered again).
    pub fn ack(self) -> Result<bool> {
        let ring = &self.ring;
        let lease = ring.entry.seg.options().lease.as_millis() as u64;
        let n: i64 = ring.entry.run(false, |con| {
            ring.entry
                .invocation(&scripts::ACK)
                .key(ring.pending())
                .key(&ring.in_flight)
                .key(&ring.room)
                .key(&ring.consumers)
                .arg(self.bytes.as_slice())
                .arg(&ring.consumer)
                .arg(lease)
                .invoke(con)
        })?;
        Ok(n == 1)
    }
}

/// The methods queues and stacks share, written once (`$take` names the
/// element a pop takes).
macro_rules! ring_methods {
    ($what:literal, $take:literal) => {
        #[doc = concat!("Push `value` if there is room now: `Ok(false)` if the ", $what, " is full.")]
        pub fn try_push(&self, value: T) -> Result<bool> {
            Ok(self.ring.push_bytes(&[bytes_of(&value)])? == 1)
        }

        /// Push as many of `values` as fit now, in order; returns how many.
        pub fn try_push_slice(&self, values: &[T]) -> Result<usize> {
            let bytes: Vec<Vec<u8>> = values.iter().map(bytes_of).collect();
            self.ring.push_bytes(&bytes)
        }

        #[doc = concat!("Push `value`, waiting while the ", $what, " is full: forever when")]
        /// `timeout` is `None`, else at most `timeout` ([`Error::Timeout`]).
        pub fn push(&self, value: T, timeout: Option<Duration>) -> Result<()> {
            match self.push_slice(&[value], timeout)? {
                1 => Ok(()),
                _ => Err(self.ring.timeout()),
            }
        }

        /// Push all of `values` in order, waiting for room as needed; returns
        /// how many were pushed: all, unless `timeout` passed first.
        pub fn push_slice(&self, values: &[T], timeout: Option<Duration>) -> Result<usize> {
            let bytes: Vec<Vec<u8>> = values.iter().map(bytes_of).collect();
            let deadline = Deadline::after(timeout);
            let mut pushed = 0;
            loop {
                pushed += self.ring.push_bytes(&bytes[pushed..])?;
                if pushed == bytes.len() {
                    return Ok(pushed);
                }
                let Some(left) = deadline.left() else {
                    return Ok(pushed);
                };
                let ring = &self.ring;
                ring.entry.seg.wait_signal(&ring.entry.name, &ring.room, left)?;
            }
        }

        #[doc = concat!("Take the ", $take, " element if there is one now (at most once: see")]
        /// the module docs; [`take`](Self::take) is at least once).
        pub fn try_pop(&self) -> Result<Option<T>> {
            match self.ring.pop_bytes(1)?.first() {
                Some(b) => self.ring.decode(b).map(Some),
                None => Ok(None),
            }
        }

        #[doc = concat!("Pop up to `out.len()` elements that are there now (", $take, " first);")]
        /// returns how many.
        pub fn try_pop_into(&self, out: &mut [T]) -> Result<usize> {
            let mut n = 0;
            while n < out.len() {
                let got = self.ring.pop_bytes(out.len() - n)?;
                if got.is_empty() {
                    break;
                }
                for b in &got {
                    out[n] = self.ring.decode(b)?;
                    n += 1;
                }
            }
            Ok(n)
        }

        #[doc = concat!("Take the ", $take, " element, waiting while the ", $what, " is empty:")]
        /// forever when `timeout` is `None`, else at most `timeout`.
        pub fn pop(&self, timeout: Option<Duration>) -> Result<T> {
            let mut out = [crate::payload::zeroed::<T>()];
            self.pop_into(&mut out, timeout)?;
            Ok(out[0])
        }

        /// Pop up to `out.len()` elements, waiting for at least one;
        /// returns how many. [`Error::Timeout`] if none came in time.
        pub fn pop_into(&self, out: &mut [T], timeout: Option<Duration>) -> Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            let deadline = Deadline::after(timeout);
            loop {
                let n = self.try_pop_into(out)?;
                if n > 0 {
                    return Ok(n);
                }
                let Some(left) = deadline.left() else {
                    return Err(self.ring.timeout());
                };
                let ring = &self.ring;
                ring.entry.seg.wait_signal(&ring.entry.name, &ring.items, left)?;
            }
        }

        #[doc = concat!("Take the ", $take, " element if there is one now, **at least once**: it")]
        /// stays on the server as this consumer's until acknowledged (see
        /// [`Delivery`]). Also returns to the structure the elements of
        /// consumers whose lease ran out.
        pub fn try_take(&self) -> Result<Option<Delivery<T>>> {
            match self.ring.take_bytes()? {
                Some(bytes) => Ok(Some(Delivery {
                    value: self.ring.decode(&bytes)?,
                    bytes,
                    ring: Arc::clone(&self.ring),
                })),
                None => Ok(None),
            }
        }

        /// [`try_take`](Self::try_take), waiting while there is nothing
        /// (forever when `timeout` is `None`).
        pub fn take(&self, timeout: Option<Duration>) -> Result<Delivery<T>> {
            let deadline = Deadline::after(timeout);
            loop {
                if let Some(d) = self.try_take()? {
                    return Ok(d);
                }
                let Some(left) = deadline.left() else {
                    return Err(self.ring.timeout());
                };
                let ring = &self.ring;
                ring.entry.seg.wait_signal(&ring.entry.name, &ring.items, left)?;
            }
        }

        /// Return to the structure every element taken by a consumer whose
        /// lease ran out (any take does this too); returns how many.
        pub fn recover(&self) -> Result<usize> {
            self.ring.recover()
        }

        /// Elements waiting (not counting taken ones not yet acknowledged).
        pub fn len(&self) -> Result<usize> {
            Ok(self.ring.counts()?.0)
        }

        /// Elements taken with `take` and not yet acknowledged (they count
        /// against the capacity).
        pub fn in_flight(&self) -> Result<usize> {
            Ok(self.ring.counts()?.1)
        }

        #[doc = concat!("Whether the ", $what, " holds no waiting elements.")]
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        #[doc = concat!("Whether the ", $what, " is full (waiting plus in-flight elements).")]
        pub fn is_full(&self) -> Result<bool> {
            let (waiting, flying) = self.ring.counts()?;
            Ok((waiting + flying) as u64 >= self.ring.entry.record.capacity)
        }

        #[doc = concat!("`Ok(())` while the ", $what, " exists, [`Error::Stale`] once it was erased.")]
        pub fn check(&self) -> Result<()> {
            self.ring.counts().map(|_| ())
        }

        /// The capacity (exactly as created).
        pub fn capacity(&self) -> usize {
            self.ring.entry.record.capacity as usize
        }

        /// The entry name.
        pub fn name(&self) -> &str {
            &self.ring.entry.name
        }

        /// The element type descriptor.
        pub fn type_descriptor(&self) -> &str {
            &self.ring.entry.record.elem_type
        }
    };
}

/// A bounded FIFO queue of `T` on a Redis server (see the module docs of
/// [`remote`](super)).
pub struct Queue<T: Element> {
    ring: Arc<Ring>,
    _t: PhantomData<T>,
}

/// A bounded LIFO stack of `T` on a Redis server.
pub struct Stack<T: Element> {
    ring: Arc<Ring>,
    _t: PhantomData<T>,
}

impl<T: Element> Queue<T> {
    ring_methods!("queue", "oldest");
}

impl<T: Element> Stack<T> {
    ring_methods!("stack", "top");
}

macro_rules! ring_handle {
    ($Typed:ident, $what:literal, $kind:literal, $side:literal,
     $create:ident, $open:ident, $open_or_create:ident) => {
        impl<T: Element> Clone for $Typed<T> {
            fn clone(&self) -> Self {
                $Typed {
                    ring: Arc::clone(&self.ring),
                    _t: PhantomData,
                }
            }
        }

        impl<T: Element> std::fmt::Debug for $Typed<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(concat!("remote::", stringify!($Typed)))
                    .field("segment", &self.ring.entry.seg.name())
                    .field("name", &self.ring.entry.name)
                    .field("capacity", &self.ring.entry.record.capacity)
                    .finish()
            }
        }

        impl Segment {
            #[doc = concat!("Create a ", $what, " of `capacity` elements of `T`.")]
            pub fn $create<T: Element>(&self, name: &str, capacity: usize) -> Result<$Typed<T>> {
                self.ring_entry::<T>(name, $kind, capacity, Some(false))
                    .map(|e| $Typed { ring: Arc::new(Ring::new(e, $side)), _t: PhantomData })
            }

            #[doc = concat!("Open the ", $what, " `name`, which must hold `T`.")]
            pub fn $open<T: Element>(&self, name: &str) -> Result<$Typed<T>> {
                self.ring_entry::<T>(name, $kind, 0, None)
                    .map(|e| $Typed { ring: Arc::new(Ring::new(e, $side)), _t: PhantomData })
            }

            #[doc = concat!("Open the ", $what, " `name`, creating it with `capacity` if it does not exist.")]
            pub fn $open_or_create<T: Element>(
                &self,
                name: &str,
                capacity: usize,
            ) -> Result<$Typed<T>> {
                self.ring_entry::<T>(name, $kind, capacity, Some(true))
                    .map(|e| $Typed { ring: Arc::new(Ring::new(e, $side)), _t: PhantomData })
            }
        }
    };
}

ring_handle!(
    Queue,
    "queue",
    "queue",
    "L",
    create_queue,
    open_queue,
    open_or_create_queue
);
ring_handle!(
    Stack,
    "stack",
    "stack",
    "R",
    create_stack,
    open_stack,
    open_or_create_stack
);

impl Segment {
    /// Create (`Some(open_ok)`) or open (`None`) a ring entry of `T`.
    fn ring_entry<T: Element>(
        &self,
        name: &str,
        kind: &'static str,
        capacity: usize,
        create: Option<bool>,
    ) -> Result<Entry> {
        let desc = T::descriptor();
        let shape = Shape {
            kind,
            elem_type: &desc,
            key_type: "",
            capacity: capacity as u64,
            bytes: 0,
        };
        match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok),
            None => self.open_entry(name, shape),
        }
    }
}
