//! Topics: publishing (copied, or written in place between a reserve and a
//! commit), the newest message, and subscribers. The entry functions are
//! written with the channel's in `message.rs`.

use super::message::{close_guard, derive, discard, message, Held, Room, RESERVATION};
use super::{call, handle, invalid, put, release, timeout, Fail, Named, SHMDS_E_EMPTY, SHMDS_OK};
use crate::core_lib;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

/// A broadcast topic of variable-length messages.
pub struct ShmdsTopic {
    topic: core_lib::Topic,
    /// Publishing, with at most one reservation open (it holds the topic's
    /// publish lock).
    publishing: Held<core_lib::Topic, core_lib::TopicReservation<'static>>,
}

/// A reader of a topic with its own position (nothing of it is in the
/// segment).
pub struct ShmdsSubscriber {
    name: String,
    reading: Mutex<Reading>,
}

struct Reading {
    sub: core_lib::Subscriber,
    /// The last message read; with `kept`, not yet delivered (the caller's
    /// buffer was too small): the next receive returns it first.
    buf: Vec<u8>,
    kept: Option<u64>,
}

impl ShmdsTopic {
    pub(crate) fn new(topic: core_lib::Topic) -> Self {
        let holder = format!("this handle of {}", Named("topic", topic.name()));
        ShmdsTopic {
            publishing: Held::new(topic.clone(), holder, &RESERVATION),
            topic,
        }
    }

    pub(crate) fn raw(&self) -> &core_lib::Topic {
        &self.topic
    }

    fn owner(&self) -> Named<'_> {
        Named("topic", self.topic.name())
    }
}

fn nothing_yet(name: &str) -> Fail {
    Fail(
        SHMDS_E_EMPTY,
        format!("nothing was published to topic {name:?} yet"),
    )
}

/// Publish `len` bytes at `msg` (NULL allowed for 0) to every subscriber;
/// its sequence number goes to `*seq` if not NULL.
/// `SHMDS_E_MESSAGE_TOO_LARGE` beyond `max_message`. Waits only for
/// another publisher (never for subscribers), up to `timeout_ns`
/// (negative: forever).
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_publish(
    topic: *const ShmdsTopic,
    msg: *const c_void,
    len: usize,
    seq: *mut u64,
    timeout_ns: i64,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let t = unsafe { handle(topic)? };
        // SAFETY: pointer rules of the header.
        let msg = unsafe { message(t.topic.name(), t.topic.max_message(), msg, len)? };
        let n = t
            .publishing
            .with(|p| Ok(p.publish_interruptible(msg, timeout(timeout_ns), None)?))?;
        // SAFETY: pointer rules of the header.
        unsafe { put(seq, n) };
        Ok(SHMDS_OK)
    })
}

/// Reserve room for a message of `len` bytes: `*data` points to `len`
/// writable bytes, valid until `shmds_topic_commit` publishes them or
/// `shmds_topic_abort` drops them. Holds the topic's publish lock until
/// then (other publishers wait); waits for it up to `timeout_ns`
/// (negative: forever). One reservation per handle at a time: its
/// publishing calls are refused until then.
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_reserve(
    topic: *const ShmdsTopic,
    len: usize,
    data: *mut *mut c_void,
    timeout_ns: i64,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let t = unsafe { handle(topic)? };
        if data.is_null() {
            return Err(invalid("data output pointer is NULL"));
        }
        let p = t.publishing.open(
            |p| Ok(p.reserve_interruptible(len, timeout(timeout_ns), None)?),
            |r| r.as_mut_ptr(),
        )?;
        // SAFETY: data is non-NULL and writable (header contract).
        unsafe { *data = p.cast() };
        Ok(SHMDS_OK)
    })
}

/// Publish the reserved message, its sequence number into `*seq` if not
/// NULL (SHMDS_E_INVALID if no reservation is open).
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_commit(topic: *const ShmdsTopic, seq: *mut u64) -> c_int {
    let commit = |r: core_lib::TopicReservation<'_>| {
        let n = r.commit();
        // SAFETY: pointer rules of the header.
        unsafe { put(seq, n) };
        Ok(())
    };
    // SAFETY: the header's pointer rules, passed on.
    unsafe { close_guard(topic, |t| &t.publishing, commit) }
}

/// Drop the reserved message unpublished and let other publishers go on
/// (SHMDS_E_INVALID if no reservation is open).
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_abort(topic: *const ShmdsTopic) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { close_guard(topic, |t| &t.publishing, discard) }
}

/// Copy the newest message into `buf` (`buf_size` bytes, NULL allowed for
/// 0), its length into `*len` and its sequence number into `*seq` if not
/// NULL; `SHMDS_E_EMPTY` when nothing was published yet,
/// `SHMDS_E_BUFFER_TOO_SMALL` (the length needed in `*len`) when it does
/// not fit.
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_latest(
    topic: *const ShmdsTopic,
    buf: *mut c_void,
    buf_size: usize,
    len: *mut usize,
    seq: *mut u64,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let (t, room) = unsafe { (handle(topic)?, Room::new(buf, buf_size, len)?) };
        let mut msg = Vec::new();
        let n = t
            .topic
            .latest(&mut msg)?
            .ok_or_else(|| nothing_yet(t.topic.name()))?;
        room.fill(
            &msg,
            &t.owner(),
            "a newer one may be there by the next call",
        )?;
        // SAFETY: pointer rules of the header.
        unsafe { put(seq, n) };
        Ok(SHMDS_OK)
    })
}

/// Messages published since the topic was created: the next sequence
/// number (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_published(topic: *const ShmdsTopic) -> u64 {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { super::attribute(topic, |t| t.topic.published()) }
}

/// Subscribe: a subscriber that receives the messages published from now
/// on, or with `from_oldest` from the oldest one the topic still holds.
/// `shmds_subscriber_close` unsubscribes.
#[no_mangle]
pub unsafe extern "C" fn shmds_topic_subscribe(
    topic: *const ShmdsTopic,
    from_oldest: bool,
    out: *mut *mut ShmdsSubscriber,
) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe {
        derive(topic, out, |t| {
            let sub = if from_oldest {
                t.topic.subscribe_from_oldest()
            } else {
                t.topic.subscribe()
            };
            Ok(ShmdsSubscriber {
                name: t.topic.name().to_owned(),
                reading: Mutex::new(Reading {
                    sub,
                    buf: Vec::new(),
                    kept: None,
                }),
            })
        })
    }
}

// ------------------------------------------------------------- subscribers

/// Unsubscribe and release a subscriber.
#[no_mangle]
pub unsafe extern "C" fn shmds_subscriber_close(sub: *mut ShmdsSubscriber) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(sub) }
}

/// How a subscriber reads its next message into `Reading::buf`.
enum Next {
    /// The next one; `None`: don't wait, else the timeout in nanoseconds.
    Following(Option<i64>),
    /// The newest one, skipping those before it.
    Latest,
}

impl From<Option<i64>> for Next {
    fn from(wait: Option<i64>) -> Next {
        Next::Following(wait)
    }
}

unsafe fn receive(
    sub: *const ShmdsSubscriber,
    buf: *mut c_void,
    buf_size: usize,
    len: *mut usize,
    seq: *mut u64,
    missed: *mut u64,
    next: impl Into<Next>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let (s, room) = unsafe { (handle(sub)?, Room::new(buf, buf_size, len)?) };
        // SAFETY: pointer rules of the header.
        unsafe { put(missed, 0) };
        let mut guard = s.reading.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut *guard;
        let n = match (r.kept.take(), next.into()) {
            (Some(n), Next::Following(_)) => n,
            (_, Next::Following(wait)) => {
                let got = match wait {
                    None => r.sub.try_recv(&mut r.buf),
                    Some(ns) => r
                        .sub
                        .recv_interruptible(&mut r.buf, true, timeout(ns), None),
                };
                got.map_err(|e| {
                    if let core_lib::Error::Lagged { missed: m, .. } = e {
                        // SAFETY: pointer rules of the header.
                        unsafe { put(missed, m) };
                    }
                    Fail::from(e)
                })?
            }
            (_, Next::Latest) => r
                .sub
                .recv_latest(&mut r.buf)?
                .ok_or_else(|| nothing_yet(&s.name))?,
        };
        let owner = Named("topic", &s.name);
        let kept = "this subscriber keeps it for its next receive";
        if let Err(fail) = room.fill(&r.buf, &owner, kept) {
            r.kept = Some(n);
            return Err(fail);
        }
        // SAFETY: pointer rules of the header.
        unsafe { put(seq, n) };
        Ok(SHMDS_OK)
    })
}

try_and_wait! { TOPIC_CALLS;
    /// Copy the subscriber's next message into `buf` (`buf_size` bytes,
    /// NULL allowed for 0), its length into `*len` and its sequence number
    /// into `*seq` if not NULL, if there is one now (else SHMDS_E_EMPTY).
    /// SHMDS_E_LAGGED when it fell behind: `*missed` (if not NULL) says how
    /// many messages were overwritten before it read them, nothing is
    /// received, and the next call goes on from the oldest one held. A
    /// message longer than `buf_size`: SHMDS_E_BUFFER_TOO_SMALL, its length
    /// in `*len`, and the subscriber keeps it for the next call. Never
    /// sleeps.
    try shmds_subscriber_try_recv,
    /// `shmds_subscriber_try_recv`, waiting for a message up to
    /// `timeout_ns` (negative: forever; SHMDS_E_TIMEOUT when it passes).
    wait shmds_subscriber_recv,
    (sub: *const ShmdsSubscriber, buf: *mut c_void, buf_size: usize, len: *mut usize,
     seq: *mut u64, missed: *mut u64) => receive;
}

/// The newest message, skipping every one before it (the subscriber goes
/// on after it): into `buf` as for `shmds_subscriber_try_recv`;
/// `SHMDS_E_EMPTY` when nothing was published yet. Never sleeps.
#[no_mangle]
pub unsafe extern "C" fn shmds_subscriber_recv_latest(
    sub: *const ShmdsSubscriber,
    buf: *mut c_void,
    buf_size: usize,
    len: *mut usize,
    seq: *mut u64,
) -> c_int {
    let none = std::ptr::null_mut();
    // SAFETY: the header's pointer rules, passed on.
    unsafe { receive(sub, buf, buf_size, len, seq, none, Next::Latest) }
}

/// Messages published that the subscriber has not read yet (an estimate;
/// more than the topic holds means it will lag; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_subscriber_pending(sub: *const ShmdsSubscriber) -> u64 {
    // SAFETY: the header's pointer rules, passed on.
    unsafe {
        super::attribute(sub, |s| {
            let r = s.reading.lock().unwrap_or_else(|e| e.into_inner());
            r.sub.pending() + u64::from(r.kept.is_some())
        })
    }
}
