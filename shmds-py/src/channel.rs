//! `Channel` handles: variable-length messages as bytes (`send`, `recv`,
//! `recv_into`, zero-copy `recv_view`) or pickled objects (`get`; the
//! package adds `put`), with the `multiprocessing.Queue` method shapes.
//!
//! # Ends
//!
//! A handle attaches the crate's `Sender` and `Receiver` lazily: the first
//! send attaches a sender, the first receive a receiver. Each side keeps a
//! pool of ends behind a lock held for nanoseconds (never while waiting):
//! a call borrows an idle end, or attaches another when all are busy in
//! other threads, and gives it back when done. On an SPSC channel a side
//! has at most one end (the channel refuses a second one, in this or any
//! process): a call that finds it busy in another thread waits for it.
//!
//! A received message stays in the ring, unreleased, while Python looks at
//! it ([`Held`]: the receiver and the message guard borrowing it); it is
//! freed when the `Held` is dropped: after the copy of `recv`, at the end
//! of `get`'s unpickling, or when a [`MessageView`] is released.
//!
//! # Waiting
//!
//! Non-blocking attempts run holding the GIL (they take nanoseconds); every
//! blocking one goes through [`crate::wait::wait`] (no GIL, Ctrl-C, close).

use crate::buffer::{fill_view, Export, RawBuf};
use crate::pickled;
use crate::queue::wait_time;
use crate::wait::{fork_generation, wait, wait_cancellable, CancelToken, Closing, Fail, Waiting};
use crate::{closed, to_py, AlreadyAttachedError, Segment, MESSAGE_TOO_LARGE, SHUT_DOWN};
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmds::{ChannelOptions, Message, Receiver, Sender};
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

/// Messages up to this size are copied holding the GIL (it takes less than
/// giving the GIL up); larger ones without it.
pub(crate) const COPY_WITH_GIL: usize = 64 << 10;

/// Who has an SPSC side's one end (only tracked when there is one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// Nobody, or a message kept for the next receive.
    Nobody,
    /// A call running in this thread.
    Thread(ThreadId),
    /// An open `MessageView`.
    View,
}

struct Pool<T> {
    idle: Vec<Box<T>>,
    lent: usize,
    holder: Holder,
    /// The fork generation the ends belong to.
    generation: u64,
    /// Calls waiting for an end to come back (a notify costs a system
    /// call, so it is made only when someone waits).
    sleepers: usize,
}

/// One side's ends of a handle (see the module docs).
struct Ends<T> {
    pool: Mutex<Pool<T>>,
    returned: Condvar,
    closing: Arc<Closing>,
    /// At most one end (SPSC).
    one: bool,
}

impl<T> Ends<T> {
    fn new(closing: Arc<Closing>, one: bool) -> Ends<T> {
        Ends {
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                lent: 0,
                holder: Holder::Nobody,
                generation: fork_generation(),
                sleepers: 0,
            }),
            returned: Condvar::new(),
            closing,
            one,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool<T>> {
        // A panic while holding the lock leaves the pool consistent (every
        // update is one assignment), so a poisoned lock is used as it is.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An end to use: an idle one, else a new one from `attach`; on an
    /// SPSC side whose end is busy, [`Fail::Busy`] (or why waiting for it
    /// would be wrong).
    fn try_lend(&self, attach: impl FnOnce() -> shmds::Result<T>) -> Result<Box<T>, Fail> {
        let mut pool = self.lock();
        if self.closing.is_closed() {
            return Err(Fail::Closed);
        }
        if pool.generation != fork_generation() {
            // A forked child: the ends are the parent's (dropping them is
            // harmless: detaching matches the parent's pid, so it does
            // nothing here), and those lent out, and the calls waiting,
            // were in threads that do not exist here.
            pool.idle.clear();
            pool.lent = 0;
            pool.sleepers = 0;
            pool.holder = Holder::Nobody;
            pool.generation = fork_generation();
        }
        let end = match pool.idle.pop() {
            Some(end) => end,
            None if !self.one || pool.lent == 0 => Box::new(attach()?),
            None => {
                return Err(match pool.holder {
                    Holder::View => Fail::ViewOpen,
                    Holder::Thread(t) if t == std::thread::current().id() => Fail::Reentrant,
                    _ => Fail::Busy,
                })
            }
        };
        pool.lent += 1;
        if self.one {
            pool.holder = Holder::Thread(std::thread::current().id());
        }
        Ok(end)
    }

    /// Wait (up to a nap) for an SPSC end to come back.
    fn wait_turn(&self, w: &mut Waiting<'_>) -> Result<(), Fail> {
        let mut pool = self.lock();
        if pool.lent == 0 || self.closing.is_closed() {
            return Ok(());
        }
        pool.sleepers += 1;
        w.nap(&self.returned, pool, |pool| pool.sleepers -= 1)
    }

    /// Wake the calls waiting for an end (the lock is held: whoever
    /// checked the pool before sleeping is asleep by now).
    fn wake(&self, pool: &Pool<T>) {
        if pool.sleepers > 0 {
            self.returned.notify_all();
        }
    }

    fn give_back(&self, end: Box<T>) {
        let mut pool = self.lock();
        if pool.generation != fork_generation() {
            return; // lent before a fork (dropped: see try_lend)
        }
        pool.lent = pool.lent.saturating_sub(1);
        pool.holder = Holder::Nobody;
        // Pushed under the lock: close() sets the flag, then empties the
        // pool under the lock, so no end stays behind.
        let gone = if self.closing.is_closed() {
            Some(end)
        } else {
            pool.idle.push(end);
            None
        };
        self.wake(&pool);
        drop(pool);
        drop(gone); // detaches, outside the lock
    }

    fn set_holder(&self, holder: Holder) {
        if self.one {
            self.lock().holder = holder;
        }
    }

    /// Detach the idle ends and wake the in-process waiters (close).
    fn close(&self) {
        let mut pool = self.lock();
        let idle = std::mem::take(&mut pool.idle);
        self.wake(&pool);
        drop(pool);
        drop(idle);
    }
}

/// An end borrowed for one call, given back on drop.
struct Lent<'a, T> {
    ends: &'a Ends<T>,
    end: Option<Box<T>>,
}

impl<T> std::ops::Deref for Lent<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.end.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.end.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            self.ends.give_back(end);
        }
    }
}

/// A received message still in the ring, with the receiver it was taken
/// by; dropping it frees the message and gives the receiver back.
pub(crate) struct Held {
    /// Borrows `*receiver`; dropped first (in `drop`).
    message: ManuallyDrop<Message<'static>>,
    /// From `Box::into_raw`; owned by this value.
    receiver: NonNull<Receiver>,
    home: Arc<Ends<Receiver>>,
    /// The fork generation it was taken in.
    generation: u64,
}

// SAFETY: the message guard and the receiver are Send and Sync (the crate
// asserts Send; both hold only atomics-backed shared state and plain
// data), and the pointer is uniquely owned: nothing else reaches the
// receiver until drop, after the message borrowing it is gone.
unsafe impl Send for Held {}
// SAFETY: as above; shared access only reads the message bytes.
unsafe impl Sync for Held {}

impl Held {
    fn bytes(&self) -> &[u8] {
        &self.message
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.generation != fork_generation() {
            // Inherited through a fork: the message is the parent's to
            // release. Leak the guard and the receiver instead.
            return;
        }
        // SAFETY: dropped exactly once, here, and nothing uses it after.
        unsafe { ManuallyDrop::drop(&mut self.message) };
        // SAFETY: the pointer came from Box::into_raw (take) and the only
        // reference made from it, the one the message held, is gone.
        let receiver = unsafe { Box::from_raw(self.receiver.as_ptr()) };
        self.home.give_back(receiver);
    }
}

/// Everything a channel handle's calls share.
struct Shared {
    channel: shmds::Channel,
    closing: Arc<Closing>,
    senders: Ends<Sender>,
    receivers: Arc<Ends<Receiver>>,
    /// Messages a too-small `recv_into` buffer left, delivered first.
    pending: Mutex<VecDeque<Held>>,
}

impl Shared {
    /// Run `op` with a sender, waiting for an SPSC one that another thread
    /// has (with `w`).
    fn with_sender<R>(
        &self,
        mut w: Option<&mut Waiting<'_>>,
        op: impl FnOnce(&mut Sender, Option<&mut Waiting<'_>>) -> shmds::Result<R>,
    ) -> Result<R, Fail> {
        loop {
            match self.senders.try_lend(|| self.channel.sender()) {
                Ok(end) => {
                    let mut tx = Lent {
                        ends: &self.senders,
                        end: Some(end),
                    };
                    return op(&mut tx, w).map_err(Fail::from);
                }
                Err(Fail::Busy) => match w.as_deref_mut() {
                    Some(w) => self.senders.wait_turn(w)?,
                    None => return Err(Fail::Busy),
                },
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&self, msg: &[u8], w: Option<&mut Waiting<'_>>) -> Result<(), Fail> {
        self.with_sender(w, |tx, w| match w {
            None => tx.try_send(msg),
            Some(w) => tx.send_interruptible(msg, w.left(), Some(w.check())),
        })
    }

    /// Send the concatenation of `parts` as one message, written in place.
    fn send_parts(&self, parts: &[RawBuf], w: Option<&mut Waiting<'_>>) -> Result<(), Fail> {
        let total = parts.iter().map(RawBuf::len).sum();
        self.with_sender(w, |tx, w| {
            let mut room = match w {
                None => tx.try_reserve(total)?,
                Some(w) => tx.reserve_interruptible(total, w.left(), Some(w.check()))?,
            };
            let mut at = 0;
            for part in parts {
                let bytes = part.as_slice();
                room[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }
            room.commit();
            Ok(())
        })
    }

    fn pop_pending(&self) -> Option<Held> {
        let held = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            // Messages kept before a fork are the parent's (dropping them
            // leaks them, see Held).
            pending.retain(|held| held.generation == fork_generation());
            pending.pop_front()?
        };
        self.receivers
            .set_holder(Holder::Thread(std::thread::current().id()));
        Some(held)
    }

    /// Keep `held` for the next receive of this handle.
    fn keep(&self, held: Held) {
        self.receivers.set_holder(Holder::Nobody);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_front(held);
        let pool = self.receivers.lock();
        self.receivers.wake(&pool);
    }

    /// The next message, left in the ring.
    fn take(&self, mut w: Option<&mut Waiting<'_>>) -> Result<Held, Fail> {
        loop {
            if let Some(held) = self.pop_pending() {
                return Ok(held);
            }
            match self.receivers.try_lend(|| {
                // Every Python receive counts as an unfinished task (join).
                self.channel.receiver().map(|mut rx| {
                    rx.count_tasks(true);
                    rx
                })
            }) {
                Ok(end) => return self.take_with(end, w),
                Err(Fail::Busy) => match w.as_deref_mut() {
                    Some(w) => self.receivers.wait_turn(w)?,
                    None => return Err(Fail::Busy),
                },
                Err(e) => return Err(e),
            }
        }
    }

    fn take_with(&self, end: Box<Receiver>, w: Option<&mut Waiting<'_>>) -> Result<Held, Fail> {
        let ptr = Box::into_raw(end);
        // SAFETY: `ptr` is from Box::into_raw just above and this is the
        // only reference to it: it lives in the message guard until the
        // Held drops it, or ends here on error before the Box is rebuilt.
        let receiver: &'static mut Receiver = unsafe { &mut *ptr };
        let got = match w {
            None => receiver.recv_ref_interruptible(false, None, None),
            Some(w) => receiver.recv_ref_interruptible(true, w.left(), Some(w.check())),
        };
        match got {
            Ok(message) => Ok(Held {
                message: ManuallyDrop::new(message),
                receiver: NonNull::new(ptr).expect("from a Box"),
                home: self.receivers.clone(),
                generation: fork_generation(),
            }),
            Err(e) => {
                // SAFETY: as above; the reference made from `ptr` is no
                // longer used (the call failed and returned no guard).
                self.receivers.give_back(unsafe { Box::from_raw(ptr) });
                Err(e.into())
            }
        }
    }

    fn close(&self) -> bool {
        let waiting = self.closing.close();
        self.senders.close();
        self.receivers.close();
        let kept = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        drop(kept);
        if waiting {
            self.channel.wake_waiters();
        }
        waiting
    }
}

/// Which way a call moves messages (for its errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Send,
    Recv,
}

/// A bounded channel of variable-length messages in a segment.
#[pyclass(module = "shmds._shmds", name = "Channel", subclass, frozen)]
pub(crate) struct Channel {
    shared: Shared,
}

impl Channel {
    fn name(&self) -> &str {
        self.shared.channel.name()
    }

    fn check_open(&self) -> PyResult<()> {
        if self.shared.closing.is_closed() {
            return Err(closed());
        }
        Ok(())
    }

    /// The Python exception for a failed call.
    fn py_err(&self, fail: Fail, side: Side) -> PyErr {
        let name = self.name();
        match (fail, side) {
            (Fail::Shmds(shmds::Error::Full { .. }), _) => {
                Full::new_err(format!("{name:?} has no room for the message"))
            }
            (Fail::Busy, Side::Send) => Full::new_err(format!(
                "{name:?}: this handle's one SPSC sender is busy in another thread"
            )),
            (Fail::TimedOut, Side::Send) => Full::new_err(format!(
                "{name:?} stayed without room for the message until the timeout"
            )),
            (Fail::Shmds(shmds::Error::Empty { .. }), _) => {
                Empty::new_err(format!("{name:?} is empty"))
            }
            (Fail::Busy, Side::Recv) => Empty::new_err(format!(
                "{name:?}: this handle's one SPSC receiver is busy in another thread"
            )),
            (Fail::TimedOut, Side::Recv) => {
                Empty::new_err(format!("{name:?} stayed empty until the timeout"))
            }
            (Fail::Shmds(shmds::Error::ShutDown { .. }), Side::Send) => SHUT_DOWN.err(
                format!("{name:?} was shut down (shutdown()): no more messages go in"),
                &[],
            ),
            (Fail::Shmds(shmds::Error::ShutDown { .. }), Side::Recv) => SHUT_DOWN.err(
                format!("{name:?} was shut down (shutdown()) and every message in it was taken"),
                &[],
            ),
            (Fail::Shmds(shmds::Error::AlreadyAttached { role, pid, .. }), _) => {
                let (verb, other) = if role == "sender" {
                    ("sent", "receiver")
                } else {
                    ("received", "sender")
                };
                let who = if pid == std::process::id() {
                    format!("this process ({pid})")
                } else {
                    format!("process {pid}")
                };
                AlreadyAttachedError::new_err(format!(
                    "{name:?} is a single-producer single-consumer channel, and {who} \
                     already has its {role}: one handle there {verb} first (an SPSC channel has \
                     one {role} handle and one {other} handle across all processes; close() that \
                     handle to hand over, or create the channel without spsc=True)"
                ))
            }
            (Fail::Closed, _) => closed(),
            (Fail::ViewOpen, _) => AlreadyAttachedError::new_err(format!(
                "{name:?} is an SPSC channel and its one receiver is held by an open MessageView \
                 of this handle (release it, or leave its with block, first)"
            )),
            (Fail::Reentrant, _) => PyRuntimeError::new_err(format!(
                "{name:?}: a call on this SPSC handle from inside another one in the same thread"
            )),
            (Fail::Interrupted, _) => pyo3::exceptions::PyKeyboardInterrupt::new_err(format!(
                "waiting on {name:?} was interrupted"
            )),
            (Fail::Shmds(e), _) => to_py(e),
        }
    }

    /// Run `op`: first without waiting, holding the GIL (when `gil_first`);
    /// then, if it would block and `block` says wait, through [`wait`].
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        side: Side,
        block: bool,
        timeout: Option<f64>,
        gil_first: bool,
        op: impl Fn(&Shared, Option<&mut Waiting<'_>>) -> Result<T, Fail> + Sync,
    ) -> PyResult<T> {
        let timeout = if block { wait_time(timeout)? } else { None };
        let would_block = |f: &Fail| {
            matches!(
                (f, side),
                (Fail::Busy, _)
                    | (Fail::Shmds(shmds::Error::Full { .. }), Side::Send)
                    | (Fail::Shmds(shmds::Error::Empty { .. }), Side::Recv)
            )
        };
        let shared = &self.shared;
        if gil_first || !block {
            let first = if gil_first {
                op(shared, None)
            } else {
                wait(py, &shared.closing, None, |_| op(shared, None))?
            };
            match first {
                Ok(v) => return Ok(v),
                Err(f) if block && would_block(&f) => {}
                Err(f) => return Err(self.py_err(f, side)),
            }
        }
        wait(py, &shared.closing, timeout, |w| op(shared, Some(w)))?
            .map_err(|f| self.py_err(f, side))
    }

    /// Run a wait of the channel (readiness, join) without the GIL,
    /// stopping when the handle is closed or `cancel` is cancelled.
    fn wait_for(
        &self,
        py: Python<'_>,
        side: Side,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
        op: impl FnOnce(
                &shmds::Channel,
                Option<std::time::Duration>,
                Option<&mut dyn FnMut() -> bool>,
            ) -> shmds::Result<bool>
            + Send,
    ) -> PyResult<bool> {
        self.check_open()?;
        let timeout = wait_time(timeout)?;
        let channel = &self.shared.channel;
        wait_cancellable(py, &self.shared.closing, cancel.as_deref(), timeout, |w| {
            op(channel, w.left(), Some(w.check())).map_err(Fail::Shmds)
        })?
        .map_err(|f| self.py_err(f, side))
    }

    fn take(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Held> {
        self.call(py, Side::Recv, block, timeout, true, |s, w| s.take(w))
    }
}

/// The error for an existing channel or topic that differs from what the
/// caller stated.
pub(crate) fn mismatch(
    kind: &str,
    name: &str,
    what: &str,
    found: impl std::fmt::Display,
    asked: impl std::fmt::Display,
) -> PyErr {
    PyValueError::new_err(format!(
        "{kind} {name:?} exists with {what}={found}, not the {what}={asked} asked for (open it \
         as it is with seg.open({name:?}), or erase it and create it again)"
    ))
}

/// Python's spelling of a bool, for messages.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

#[pymethods]
impl Channel {
    /// Wait until a receive may find a message (`_wait_recv`) or a send of
    /// `nbytes` may find room (`_wait_send`), taking nothing: True, or
    /// False once `timeout` passed. Stops (raising) when the handle is
    /// closed or `cancel` is cancelled and `_wake()` called. For `shmds._aio`.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_recv(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        self.wait_for(py, Side::Recv, timeout, cancel, |ch, left, check| {
            ch.wait_readable(left, check)
        })
    }

    /// See `_wait_recv`.
    #[pyo3(signature = (nbytes, timeout=None, cancel=None))]
    fn _wait_send(
        &self,
        py: Python<'_>,
        nbytes: usize,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        self.wait_for(py, Side::Send, timeout, cancel, |ch, left, check| {
            ch.wait_writable(nbytes, left, check)
        })
    }

    /// Wake every waiter on the channel (in every process) so that each
    /// looks at its cancellation token again.
    fn _wake(&self) {
        self.shared.channel.wake_waiters();
    }

    /// Mark one message taken by a receive of this package (in any
    /// process) as done, as `multiprocessing.JoinableQueue.task_done`;
    /// ValueError when called more times than messages were taken.
    fn task_done(&self) -> PyResult<()> {
        self.check_open()?;
        self.shared.channel.task_done().map_err(|e| match e {
            shmds::Error::InvalidArgument(m) => PyValueError::new_err(m),
            e => to_py(e),
        })
    }

    /// Messages taken and not yet marked done.
    #[getter]
    fn unfinished_tasks(&self) -> PyResult<u64> {
        self.check_open()?;
        Ok(self.shared.channel.unfinished_tasks())
    }

    /// Wait until the channel is empty and every message taken from it was
    /// marked done (`task_done`), in every process: True, or False once
    /// `timeout` passed.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn join(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        self.wait_for(py, Side::Recv, timeout, cancel, |ch, left, check| {
            ch.join(left, check)
        })
    }

    /// Open the channel `name` of `segment`; with a `capacity` (in bytes),
    /// create it first if it does not exist. The other arguments, when
    /// given, must match an existing channel.
    #[new]
    #[pyo3(signature = (segment, name, capacity=None, max_message=None, spsc=None, checksum=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        capacity: Option<u64>,
        max_message: Option<u64>,
        spsc: Option<bool>,
        checksum: Option<bool>,
    ) -> PyResult<Channel> {
        let seg = segment.get()?;
        let channel = match capacity {
            None => seg.open_channel(name),
            Some(capacity) => {
                let mut options = ChannelOptions::new(capacity)
                    .spsc(spsc.unwrap_or(false))
                    .checksum(checksum.unwrap_or(false));
                if let Some(max) = max_message {
                    options = options.max_message(max);
                }
                seg.open_or_create_channel(name, options)
            }
        }
        .map_err(to_py)?;
        if let Some(s) = spsc.filter(|&s| s != channel.is_spsc()) {
            return Err(mismatch("channel", name, "spsc", py_bool(!s), py_bool(s)));
        }
        if let Some(c) = checksum.filter(|&c| c != channel.has_checksum()) {
            return Err(mismatch(
                "channel",
                name,
                "checksum",
                py_bool(!c),
                py_bool(c),
            ));
        }
        if let Some(m) = max_message.filter(|&m| m != channel.max_message()) {
            return Err(mismatch(
                "channel",
                name,
                "max_message",
                channel.max_message(),
                m,
            ));
        }
        let closing = Arc::new(Closing::default());
        let one = channel.is_spsc();
        Ok(Channel {
            shared: Shared {
                senders: Ends::new(closing.clone(), one),
                receivers: Arc::new(Ends::new(closing.clone(), one)),
                closing,
                channel,
                pending: Mutex::new(VecDeque::new()),
            },
        })
    }

    /// Send the bytes of `data` (any C-contiguous buffer) as one message;
    /// if there is no room, wait (forever when `timeout` is None) unless
    /// `block` is false. Raises `queue.Full` when there is no room,
    /// `MessageTooLargeError` (a ValueError) above `max_message`,
    /// `Disconnected` when no receiver is left, `ShutDown` after shutdown.
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn send(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let buf = RawBuf::get(data, false)?;
        let msg = buf.as_slice();
        let small = msg.len() <= COPY_WITH_GIL;
        self.call(py, Side::Send, block, timeout, small, |s, w| s.send(msg, w))
    }

    /// Send the concatenation of the buffers in `parts` as one message,
    /// each copied once, straight into the ring.
    #[pyo3(signature = (parts, block=true, timeout=None))]
    fn _send_parts(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyList>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let bufs = parts
            .iter()
            .map(|p| RawBuf::get(&p, false))
            .collect::<PyResult<Vec<_>>>()?;
        let small = bufs.iter().map(RawBuf::len).sum::<usize>() <= COPY_WITH_GIL;
        self.call(py, Side::Send, block, timeout, small, |s, w| {
            s.send_parts(&bufs, w)
        })
    }

    /// Receive a message as bytes; if there is none, wait (forever when
    /// `timeout` is None) unless `block` is false. Raises `queue.Empty`
    /// when none came, `Disconnected` once every sender is gone and the
    /// channel is drained, `ShutDown` once it was shut down and drained.
    #[pyo3(signature = (block=true, timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let held = self.take(py, block, timeout)?;
        Ok(PyBytes::new(py, held.bytes()))
    }

    /// Receive a message into the writable buffer `buffer` (a bytearray, a
    /// numpy array...); returns its length. A message longer than the
    /// buffer raises `MessageTooLargeError` (a ValueError, with `.size`)
    /// and is kept: the next receive of this handle returns it.
    #[pyo3(signature = (buffer, block=true, timeout=None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let mut out = RawBuf::get(buffer, true)?;
        let held = self.take(py, block, timeout)?;
        let n = held.bytes().len();
        if n > out.len() {
            let room = out.len();
            self.shared.keep(held);
            return Err(MESSAGE_TOO_LARGE.err(
                format!(
                    "the next message of {:?} is {n} bytes, larger than the {room}-byte buffer \
                     (it is kept for this handle's next receive: pass a buffer of at least {n} \
                     bytes, or use recv())",
                    self.name()
                ),
                &[("size", n as u64), ("limit", room as u64)],
            ));
        }
        if n <= COPY_WITH_GIL {
            out.as_mut_slice()[..n].copy_from_slice(held.bytes());
        } else {
            py.detach(|| out.as_mut_slice()[..n].copy_from_slice(held.bytes()));
        }
        Ok(n)
    }

    /// Receive a message without copying it: a read-only `MessageView` of
    /// its bytes in the ring (buffer protocol: `numpy.frombuffer`,
    /// `memoryview`). The message is freed when the view is released
    /// (`release()`, the end of its `with` block, or garbage collection).
    #[pyo3(signature = (block=true, timeout=None))]
    fn recv_view(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<MessageView> {
        let held = self.take(py, block, timeout)?;
        self.shared.receivers.set_holder(Holder::View);
        Ok(MessageView::new(held))
    }

    /// Receive an object sent by `put` (unpickled in place, from the ring);
    /// like `recv` otherwise. A message that is not a pickle raises
    /// `pickle.UnpicklingError` (it is consumed).
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let held = self.take(py, block, timeout)?;
        unpickle_held(py, held)
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let held = self.take(py, false, None)?;
        unpickle_held(py, held)
    }

    /// Messages held (approximate while others send and receive).
    fn qsize(&self) -> PyResult<usize> {
        self.check_open()?;
        Ok(self.shared.channel.len())
    }

    /// Whether no message is held (approximate).
    fn empty(&self) -> PyResult<bool> {
        self.check_open()?;
        Ok(self.shared.channel.is_empty())
    }

    /// Whether not even an empty message fits now (approximate).
    fn full(&self) -> PyResult<bool> {
        self.check_open()?;
        Ok(self.shared.channel.is_full())
    }

    fn __len__(&self) -> PyResult<usize> {
        self.qsize()
    }

    /// Shut the channel down for every process: sends raise `ShutDown`
    /// from now on, receives get what is left and then raise it; every
    /// waiter wakes. With `immediate`, also discard the messages still
    /// held that this handle can take (all of them, unless another process
    /// holds an SPSC channel's receiver).
    #[pyo3(signature = (immediate=false))]
    fn shutdown(&self, immediate: bool) -> PyResult<()> {
        self.check_open()?;
        self.shared.channel.shutdown().map_err(to_py)?;
        if immediate {
            while let Ok(held) = self.shared.take(None) {
                drop(held);
            }
        }
        Ok(())
    }

    /// Whether `shutdown()` was called (by any process).
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.shared.channel.is_shut_down()
    }

    /// Whether a sender of any process is attached and alive.
    #[getter]
    fn has_senders(&self) -> bool {
        self.shared.channel.has_senders()
    }

    /// Whether a receiver of any process is attached and alive.
    #[getter]
    fn has_receivers(&self) -> bool {
        self.shared.channel.has_receivers()
    }

    /// The ring's data capacity in bytes (each message takes whole 64-byte
    /// cells, at least one).
    #[getter]
    fn capacity(&self) -> u64 {
        self.shared.channel.capacity()
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> u64 {
        self.shared.channel.max_message()
    }

    /// Whether this is a single-producer single-consumer channel.
    #[getter]
    fn spsc(&self) -> bool {
        self.shared.channel.is_spsc()
    }

    /// Whether messages carry a CRC32C, checked on receipt.
    #[getter]
    fn checksum(&self) -> bool {
        self.shared.channel.has_checksum()
    }

    /// The entry name.
    #[getter(name)]
    fn py_name(&self) -> String {
        self.name().to_owned()
    }

    /// The name of the segment holding it.
    #[getter]
    fn segment_name(&self) -> String {
        self.shared.channel.segment_name().to_owned()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.closing.is_closed()
    }

    /// Detach this handle (idempotent): its sender and receiver leave the
    /// channel (the last sender leaving is what receivers see as
    /// `Disconnected`), calls of this handle waiting in other threads
    /// raise `ValueError`, and a message kept by `recv_into` is dropped.
    /// Open `MessageView`s stay valid until released.
    fn close(&self) {
        self.shared.close();
    }
}

/// Unpickle a message taken from the ring, reading it in place.
fn unpickle_held<'py>(py: Python<'py>, held: Held) -> PyResult<Bound<'py, PyAny>> {
    let (ptr, len) = (held.bytes().as_ptr(), held.bytes().len());
    let view = Bound::new(py, MessageView::new(held))?;
    // SAFETY: the bytes are the message the view holds; it holds them (the
    // message unreleased, the mapping alive) until it is released below,
    // after the last use of this slice.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let result = pickled::unpickle(py, bytes, view.as_any());
    let mut v = view.borrow_mut();
    if v.exports == 0 {
        v.held = None;
    } else if let Some(held) = &v.held {
        // Something kept a view of the bytes: they stay held until it
        // goes, as for recv_view.
        held.home.set_holder(Holder::View);
    }
    result
}

/// A received message, still in the channel's ring: a read-only buffer
/// (`numpy.frombuffer(view, dtype)`, `memoryview(view)`, `bytes(view)`)
/// with no copy. Release it (`release()`, or leave its `with` block) to
/// free the message; releasing raises `BufferError` while numpy arrays or
/// memoryviews of it exist (as `memoryview.release` does), and the message
/// is then freed when the last of them goes.
#[pyclass(module = "shmds._shmds", name = "MessageView")]
pub(crate) struct MessageView {
    held: Option<Held>,
    /// Buffers handed out and not yet released.
    exports: usize,
    shape: [isize; 1],
    strides: [isize; 1],
}

impl MessageView {
    fn new(held: Held) -> MessageView {
        let len = held.bytes().len() as isize;
        MessageView {
            held: Some(held),
            exports: 0,
            shape: [len],
            strides: [1],
        }
    }

    fn held(&self) -> PyResult<&Held> {
        self.held
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("operation on a released message view"))
    }
}

#[pymethods]
impl MessageView {
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    /// Free the message (idempotent). `BufferError` while views of it
    /// (numpy arrays, memoryviews) exist: delete them first.
    fn release(&mut self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of this message (numpy arrays, memoryviews) still exist; delete them \
                 before releasing it (until then the message stays held in the ring)",
                self.exports
            )));
        }
        self.held = None;
        Ok(())
    }

    /// Whether the message was released.
    #[getter]
    fn released(&self) -> bool {
        self.held.is_none()
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.held()?.bytes().len())
    }

    /// A copy of the bytes.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.held()?.bytes()))
    }

    fn __repr__(&self) -> String {
        match &self.held {
            Some(held) => format!("<shmds.MessageView of {} bytes>", held.bytes().len()),
            None => "<shmds.MessageView (released)>".to_owned(),
        }
    }

    /// # Safety
    /// Called by the interpreter with a valid `view` to fill.
    unsafe fn __getbuffer__(
        mut slf: PyRefMut<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        use pyo3::ffi;
        if view.is_null() {
            return Err(PyBufferError::new_err("no view to fill"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err(
                "a received message is read-only (copy it to change it)",
            ));
        }
        let (buf, len) = {
            let bytes = slf.held()?.bytes();
            (bytes.as_ptr(), bytes.len() as isize)
        };
        slf.exports += 1;
        let export = Export {
            buf,
            len,
            itemsize: 1,
            readonly: true,
            format: c"B".as_ptr(),
            shape: slf.shape.as_mut_ptr(),
            strides: slf.strides.as_mut_ptr(),
        };
        // SAFETY: `view` is non-null and ours to fill (buffer protocol).
        // The bytes stay valid while the view holds its reference to
        // `slf`: release() refuses while exports > 0, so the message stays
        // unreleased in the ring (and the mapping alive) until the last
        // view is released; format is static, shape and strides live in
        // the object.
        unsafe { fill_view(view, flags, slf.as_ptr(), export) };
        Ok(())
    }

    /// # Safety
    /// Called by the interpreter when a view from `__getbuffer__` is released.
    unsafe fn __releasebuffer__(mut slf: PyRefMut<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        slf.exports = slf.exports.saturating_sub(1);
    }
}
