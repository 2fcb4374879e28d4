//! Channels: attaching senders and receivers, sending (copied, or written
//! in place between a reserve and a commit) and receiving (into a buffer,
//! or read in place until a release). The entry functions are written with
//! the topic's in `message.rs`; each try call and its waiting twin come
//! from one template (`try_and_wait!`).

use super::message::{close_guard, derive, discard, message, GuardText, Held, Room, RESERVATION};
use super::{call, handle, invalid, release, timeout, Fail, Named, SHMDS_OK};
use crate::core_lib;
use std::ffi::{c_int, c_void};

/// A bounded channel of variable-length messages; attach senders and
/// receivers to move them.
pub struct ShmdsChannel(pub(crate) core_lib::Channel);

/// An attached sending end of a channel, with at most one reservation open.
pub struct ShmdsSender {
    channel: core_lib::Channel,
    held: Held<core_lib::Sender, core_lib::Reservation<'static>>,
}

/// An attached receiving end of a channel, with at most one message held in
/// place.
pub struct ShmdsReceiver {
    channel: core_lib::Channel,
    held: Held<core_lib::Receiver, core_lib::Message<'static>>,
}

/// A message received in place.
const IN_PLACE: GuardText = GuardText {
    open: "holds a message in place",
    busy: "release it first: shmds_receiver_release",
    none: "holds no message in place (shmds_receiver_recv_ref first)",
};

/// "this sender of channel "events"".
fn holder(end: &str, ch: &core_lib::Channel) -> String {
    format!("this {end} of {}", Named("channel", ch.name()))
}

impl ShmdsSender {
    fn attach(ch: &ShmdsChannel) -> Result<Self, Fail> {
        let held = Held::new(ch.0.sender()?, holder("sender", &ch.0), &RESERVATION);
        Ok(ShmdsSender {
            held,
            channel: ch.0.clone(),
        })
    }
}

impl ShmdsReceiver {
    fn attach(ch: &ShmdsChannel) -> Result<Self, Fail> {
        let held = Held::new(ch.0.receiver()?, holder("receiver", &ch.0), &IN_PLACE);
        Ok(ShmdsReceiver {
            held,
            channel: ch.0.clone(),
        })
    }
}

/// Attach a sender to `channel`: `SHMDS_E_ALREADY_ATTACHED` on an SPSC
/// channel that has a live one, `SHMDS_E_TOO_MANY_ATTACHED` when 32
/// processes are attached. `shmds_sender_close` detaches it; once every
/// sender is gone, receivers that find the channel empty get
/// `SHMDS_E_DISCONNECTED`.
#[no_mangle]
pub unsafe extern "C" fn shmds_channel_attach_sender(
    channel: *const ShmdsChannel,
    out: *mut *mut ShmdsSender,
) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { derive(channel, out, ShmdsSender::attach) }
}

/// Attach a receiver to `channel` (refusals as for a sender).
/// `shmds_receiver_close` detaches it; once every receiver is gone,
/// senders that find the channel full get `SHMDS_E_DISCONNECTED`.
#[no_mangle]
pub unsafe extern "C" fn shmds_channel_attach_receiver(
    channel: *const ShmdsChannel,
    out: *mut *mut ShmdsReceiver,
) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { derive(channel, out, ShmdsReceiver::attach) }
}

/// Shut the channel down for every process: sends fail with
/// `SHMDS_E_SHUT_DOWN` from now on, receivers get the messages still held
/// and then the same code. Wakes every waiter.
#[no_mangle]
pub unsafe extern "C" fn shmds_channel_shutdown(channel: *const ShmdsChannel) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { super::liveness(channel, |ch| ch.0.shutdown()) }
}

/// Whether the channel was shut down (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_channel_is_shut_down(channel: *const ShmdsChannel) -> bool {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { super::attribute(channel, |ch| ch.0.is_shut_down()) }
}

/// Whether the ring has no free cell, so that not even an empty message
/// fits (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_channel_is_full(channel: *const ShmdsChannel) -> bool {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { super::attribute(channel, |ch| ch.0.is_full()) }
}

/// Detach and release a sender; an open reservation is aborted.
#[no_mangle]
pub unsafe extern "C" fn shmds_sender_close(sender: *mut ShmdsSender) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(sender) }
}

/// Publish the reserved message (SHMDS_E_INVALID if none is open). Its
/// data pointer is invalid from now on.
#[no_mangle]
pub unsafe extern "C" fn shmds_sender_commit(sender: *const ShmdsSender) -> c_int {
    let commit = |r: core_lib::Reservation<'_>| {
        r.commit();
        Ok(())
    };
    // SAFETY: the header's pointer rules, passed on.
    unsafe { close_guard(sender, |tx| &tx.held, commit) }
}

/// Drop the reserved message unsent (receivers pass over its room;
/// SHMDS_E_INVALID if none is open). Its data pointer is invalid from now
/// on.
#[no_mangle]
pub unsafe extern "C" fn shmds_sender_abort(sender: *const ShmdsSender) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { close_guard(sender, |tx| &tx.held, discard) }
}

/// Detach and release a receiver; a message it holds in place is released
/// (it was received: it is not delivered again).
#[no_mangle]
pub unsafe extern "C" fn shmds_receiver_close(receiver: *mut ShmdsReceiver) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(receiver) }
}

/// Free the message held in place, making its room available to senders
/// (SHMDS_E_INVALID if none is held). Its data pointer is invalid from now
/// on.
#[no_mangle]
pub unsafe extern "C" fn shmds_receiver_release(receiver: *const ShmdsReceiver) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { close_guard(receiver, |rx| &rx.held, discard) }
}

// ------------------------------------------------- the try and wait calls

unsafe fn send(
    sender: *const ShmdsSender,
    msg: *const c_void,
    len: usize,
    wait: Option<i64>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let tx = unsafe { handle(sender)? };
        // SAFETY: pointer rules of the header.
        let msg = unsafe { message(tx.channel.name(), tx.channel.max_message(), msg, len)? };
        tx.held.with(|s| {
            match wait {
                None => s.try_send(msg)?,
                Some(ns) => s.send_interruptible(msg, timeout(ns), None)?,
            }
            Ok(SHMDS_OK)
        })
    })
}

unsafe fn reserve(
    sender: *const ShmdsSender,
    len: usize,
    data: *mut *mut c_void,
    wait: Option<i64>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let tx = unsafe { handle(sender)? };
        if data.is_null() {
            return Err(invalid("data output pointer is NULL"));
        }
        let p = tx.held.open(
            |s| {
                Ok(match wait {
                    None => s.try_reserve(len)?,
                    Some(ns) => s.reserve_interruptible(len, timeout(ns), None)?,
                })
            },
            |r| r.as_mut_ptr(),
        )?;
        // SAFETY: data is non-NULL and writable (header contract).
        unsafe { *data = p.cast() };
        Ok(SHMDS_OK)
    })
}

unsafe fn recv(
    receiver: *const ShmdsReceiver,
    buf: *mut c_void,
    buf_size: usize,
    len: *mut usize,
    wait: Option<i64>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let (rx, room) = unsafe { (handle(receiver)?, Room::new(buf, buf_size, len)?) };
        let owner = Named("channel", rx.channel.name());
        let kept = "it stays first in the channel";
        rx.held.with(|r| {
            let t = wait.and_then(timeout);
            match r.recv_ref_within(room.size(), wait.is_some(), t, None)? {
                Ok(m) => room.fill(&m, &owner, kept)?,
                Err(needed) => return Err(room.too_small(needed, &owner, kept)),
            }
            Ok(SHMDS_OK)
        })
    })
}

unsafe fn recv_ref(
    receiver: *const ShmdsReceiver,
    data: *mut *const c_void,
    len: *mut usize,
    wait: Option<i64>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let rx = unsafe { handle(receiver)? };
        if data.is_null() || len.is_null() {
            return Err(invalid("data or length output pointer is NULL"));
        }
        let (p, n) = rx.held.open(
            |r| Ok(r.recv_ref_interruptible(wait.is_some(), wait.and_then(timeout), None)?),
            |m| (m.as_ptr(), m.len()),
        )?;
        // SAFETY: data and len are non-NULL and writable (header contract).
        unsafe {
            *data = p.cast();
            *len = n;
        }
        Ok(SHMDS_OK)
    })
}

try_and_wait! { CHANNEL_CALLS;
    /// Send `len` bytes at `msg` (NULL allowed for 0) if there is room now,
    /// else SHMDS_E_FULL; SHMDS_E_MESSAGE_TOO_LARGE beyond the channel's
    /// `max_message`, SHMDS_E_DISCONNECTED when no receiver is left,
    /// SHMDS_E_SHUT_DOWN after a shutdown. Never sleeps.
    try shmds_sender_try_send,
    /// `shmds_sender_try_send`, waiting for room up to `timeout_ns`
    /// (negative: forever; SHMDS_E_TIMEOUT when it passes).
    wait shmds_sender_send,
    (sender: *const ShmdsSender, msg: *const c_void, len: usize) => send;

    /// Reserve room for a message of `len` bytes in the ring if there is
    /// room now (else SHMDS_E_FULL): `*data` points to `len` writable bytes,
    /// valid until `shmds_sender_commit` publishes them or
    /// `shmds_sender_abort` drops them. One reservation per sender at a
    /// time: its other calls are refused until then. Never sleeps.
    try shmds_sender_try_reserve,
    /// `shmds_sender_try_reserve`, waiting for room up to `timeout_ns`
    /// (negative: forever).
    wait shmds_sender_reserve,
    (sender: *const ShmdsSender, len: usize, data: *mut *mut c_void) => reserve;

    /// Receive the next message into `buf`, `buf_size` bytes (NULL allowed
    /// for 0), its length into `*len`, if one is there now (else
    /// SHMDS_E_EMPTY; SHMDS_E_DISCONNECTED when no sender is left,
    /// SHMDS_E_SHUT_DOWN once a shut-down channel is drained). A message
    /// longer than `buf_size`: SHMDS_E_BUFFER_TOO_SMALL, its length in
    /// `*len`, and it stays first in the channel. Never sleeps.
    try shmds_receiver_try_recv,
    /// `shmds_receiver_try_recv`, waiting for a message up to `timeout_ns`
    /// (negative: forever; SHMDS_E_TIMEOUT when it passes).
    wait shmds_receiver_recv,
    (receiver: *const ShmdsReceiver, buf: *mut c_void, buf_size: usize, len: *mut usize) => recv;

    /// The next message in place, if one is there now (codes as for
    /// `shmds_receiver_try_recv`): `*data` points to its `*len` bytes in the
    /// ring, valid until `shmds_receiver_release` (or closing the receiver)
    /// frees them. One message held per receiver at a time: its other calls
    /// are refused until then. Never sleeps.
    try shmds_receiver_try_recv_ref,
    /// `shmds_receiver_try_recv_ref`, waiting for a message up to
    /// `timeout_ns` (negative: forever).
    wait shmds_receiver_recv_ref,
    (receiver: *const ShmdsReceiver, data: *mut *const c_void, len: *mut usize) => recv_ref;
}
