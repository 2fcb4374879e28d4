//! What channels and topics share in the C API: the entry functions (open,
//! create, close, the getters, check), written once by `message_api!` for
//! both kinds (its text goes to the header generator, as in `ring.rs`);
//! [`Held`], an object with a zero-copy guard kept open across C calls; and
//! the checks of a caller's message and receive buffer.

use super::{
    call, handle, invalid, make_handle, need_out, release, Fail, Named, ShmdsSegment,
    SHMDS_E_BUFFER_TOO_SMALL, SHMDS_OK,
};
use crate::channel::ShmdsChannel;
use crate::core_lib;
use crate::topic::ShmdsTopic;
use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

// ------------------------------------------------------------ held guards

/// How messages name a guard kind: "this sender of channel "x" {open}
/// ({busy})" when a call finds one open, "... {none}" when it needs one.
pub(crate) struct GuardText {
    pub(crate) open: &'static str,
    pub(crate) busy: &'static str,
    pub(crate) none: &'static str,
}

/// A reservation (a sender's, a topic handle's).
pub(crate) const RESERVATION: GuardText = GuardText {
    open: "has a reservation open",
    busy: "commit or abort it first",
    none: "has no reservation open (reserve first)",
};

/// An object the C caller holds (a sender, a receiver, a topic's publishing
/// side) with at most one guard open on it across calls: a reservation, or
/// a message received in place. The guard borrows the object, so the
/// object lives on the heap at a fixed address and, while a guard is open,
/// is reached only through it. Calls run one at a time (the lock).
pub(crate) struct Held<T: 'static, G: 'static> {
    state: Mutex<State<T, G>>,
    /// "this sender of channel "x"", for messages.
    holder: String,
    text: &'static GuardText,
}

struct State<T: 'static, G: 'static> {
    /// The open guard; it may borrow `*obj`.
    guard: Option<G>,
    /// The object, owned (from `Box::into_raw`).
    obj: NonNull<T>,
}

// SAFETY: State owns `*obj` as a Box would, and hands out references to it
// only under the lock; the guard is Send itself.
unsafe impl<T: Send, G: Send> Send for State<T, G> {}

impl<T, G> Drop for State<T, G> {
    fn drop(&mut self) {
        // The guard first: it may borrow the object.
        drop(self.guard.take());
        // SAFETY: obj came from Box::into_raw in Held::new and is freed only
        // here, after the one guard that could borrow it.
        drop(unsafe { Box::from_raw(self.obj.as_ptr()) });
    }
}

impl<T: Send, G: Send> Held<T, G> {
    pub(crate) fn new(obj: T, holder: String, text: &'static GuardText) -> Self {
        Held {
            state: Mutex::new(State {
                guard: None,
                obj: NonNull::from(Box::leak(Box::new(obj))),
            }),
            holder,
            text,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, G>> {
        // A panic caught at the boundary may have poisoned the lock; the
        // state is still whole (a guard is stored only once made).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, or `Err` while a guard is open.
    fn idle(&self) -> Result<MutexGuard<'_, State<T, G>>, Fail> {
        let state = self.lock();
        if state.guard.is_some() {
            let (holder, text) = (&self.holder, self.text);
            return Err(invalid(&format!("{holder} {} ({})", text.open, text.busy)));
        }
        Ok(state)
    }

    /// Run `f` on the object (refused while a guard is open).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> Result<R, Fail>) -> Result<R, Fail> {
        let state = self.idle()?;
        // SAFETY: the object is alive (State owns it) and no guard borrows
        // it; the lock makes this the only reference until `f` returns.
        f(unsafe { &mut *state.obj.as_ptr() })
    }

    /// Open a guard that `make` makes from the object (refused if one is
    /// open already), and return what `view` reads of it.
    pub(crate) fn open<R>(
        &self,
        make: impl FnOnce(&'static mut T) -> Result<G, Fail>,
        view: impl FnOnce(&mut G) -> R,
    ) -> Result<R, Fail> {
        let mut state = self.idle()?;
        // SAFETY: as in `with`. The guard may keep the reference: it is
        // stored in `state.guard`, which is dropped before the object is
        // freed (State's Drop), and while it is there no other reference
        // to the object is made (`with` and `open` refuse; `close` runs
        // under the lock).
        let obj: &'static mut T = unsafe { &mut *state.obj.as_ptr() };
        let guard = make(obj)?;
        Ok(view(state.guard.insert(guard)))
    }

    /// Close the open guard with `f` (refused if none is open).
    pub(crate) fn close(&self, f: impl FnOnce(G) -> Result<(), Fail>) -> Result<(), Fail> {
        let mut state = self.lock();
        let Some(guard) = state.guard.take() else {
            return Err(invalid(&format!("{} {}", self.holder, self.text.none)));
        };
        // Under the lock: no `with` may reach the object before the guard
        // is gone.
        f(guard)
    }
}

/// Close the guard open on the handle `p` (its `Held` is `held(handle)`)
/// with `f`.
pub(crate) unsafe fn close_guard<H, T: Send + 'static, G: Send + 'static>(
    p: *const H,
    held: impl FnOnce(&H) -> &Held<T, G>,
    f: impl FnOnce(G) -> Result<(), Fail>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        held(unsafe { handle(p)? }).close(f)?;
        Ok(SHMDS_OK)
    })
}

/// Close a guard without using it: an abort, a release.
pub(crate) fn discard<G>(guard: G) -> Result<(), Fail> {
    drop(guard);
    Ok(())
}

/// Make a handle from the handle `parent` (a sender or receiver from a
/// channel, a subscriber from a topic) and store it in `*out`.
pub(crate) unsafe fn derive<P, T>(
    parent: *const P,
    out: *mut *mut T,
    make: impl FnOnce(&P) -> Result<T, Fail>,
) -> c_int {
    call(|| {
        need_out(out)?;
        // SAFETY: pointer rules of the header.
        let parent = unsafe { handle(parent)? };
        let made = make(parent)?;
        // SAFETY: pointer rules of the header (out checked above).
        unsafe { super::give(out, made) }
    })
}

// ------------------------------------------------------------ buffers

/// The caller's message, `len` bytes at `msg` (NULL allowed when `len` is
/// 0), refused before any slice is made when it is longer than `max`.
pub(crate) unsafe fn message<'a>(
    owner: &str,
    max: u64,
    msg: *const c_void,
    len: usize,
) -> Result<&'a [u8], Fail> {
    if len as u64 > max {
        return Err(core_lib::Error::MessageTooLarge {
            name: owner.to_owned(),
            len: len as u64,
            max,
        }
        .into());
    }
    if len == 0 {
        return Ok(&[]);
    }
    if msg.is_null() {
        return Err(invalid(&format!(
            "message is NULL but its length is {len} (pass NULL only with length 0)"
        )));
    }
    // SAFETY: the caller passes `len` readable bytes (header contract), and
    // `len` is at most `max` (1 GiB).
    Ok(unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) })
}

/// Where a received message goes: the caller's `size` bytes at `buf` (NULL
/// allowed when `size` is 0) and its length, `*len`.
pub(crate) struct Room {
    buf: *mut u8,
    size: usize,
    len: *mut usize,
}

impl Room {
    pub(crate) unsafe fn new(buf: *mut c_void, size: usize, len: *mut usize) -> Result<Room, Fail> {
        if buf.is_null() && size > 0 {
            return Err(invalid(&format!(
                "receive buffer is NULL but its size is {size} (pass NULL only with size 0)"
            )));
        }
        if len.is_null() {
            return Err(invalid("length output pointer is NULL"));
        }
        Ok(Room {
            buf: buf.cast(),
            size,
            len,
        })
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn set_len(&self, n: usize) {
        // SAFETY: len is non-NULL (new) and writable (header contract).
        unsafe { *self.len = n };
    }

    /// Copy `msg` in and set `*len`, or, when it does not fit, fail with
    /// [`Room::too_small`].
    pub(crate) fn fill(&self, msg: &[u8], owner: &Named<'_>, kept: &str) -> Result<(), Fail> {
        if msg.len() > self.size {
            return Err(self.too_small(msg.len(), owner, kept));
        }
        if !msg.is_empty() {
            // SAFETY: buf holds `size >= msg.len()` writable bytes (header
            // contract; non-NULL since size > 0). `copy` allows overlap, in
            // case the caller's buffer lies in the segment itself.
            unsafe { std::ptr::copy(msg.as_ptr(), self.buf, msg.len()) };
        }
        self.set_len(msg.len());
        Ok(())
    }

    /// SHMDS_E_BUFFER_TOO_SMALL for a message of `needed` bytes, with
    /// `*len = needed`; `kept` says where the message stays.
    pub(crate) fn too_small(&self, needed: usize, owner: &Named<'_>, kept: &str) -> Fail {
        self.set_len(needed);
        Fail(
            SHMDS_E_BUFFER_TOO_SMALL,
            format!(
                "the message from {owner} is {needed} bytes, more than the {}-byte buffer; \
                 {kept} (call again with a buffer of at least {needed} bytes, the length now in \
                 *len)",
                self.size
            ),
        )
    }
}

// ------------------------------------------------------------ entries

/// What the shared entry functions need of a channel or topic handle (the
/// getters use its `raw()` and `flags()`).
pub(crate) trait Messages: Sized {
    /// "channel" or "topic", for messages.
    const KIND: &'static str;
    /// The creation flags this kind takes.
    const FLAGS: u32;
    /// The flags, by name, for messages.
    const FLAG_NAMES: &'static str;
    fn open(seg: &core_lib::Segment, name: &str) -> core_lib::Result<Self>;
    fn create(
        seg: &core_lib::Segment,
        name: &str,
        shape: &Shape,
        open_existing: bool,
    ) -> core_lib::Result<Self>;
}

/// What a create states.
pub(crate) struct Shape {
    capacity: u64,
    max_message: Option<u64>,
    flags: u32,
}

impl Shape {
    fn channel(&self) -> core_lib::ChannelOptions {
        let options = core_lib::ChannelOptions::new(self.capacity)
            .spsc(self.flags & super::SHMDS_SPSC != 0)
            .checksum(self.flags & super::SHMDS_CHECKSUM != 0);
        match self.max_message {
            Some(max) => options.max_message(max),
            None => options,
        }
    }

    fn topic(&self) -> core_lib::TopicOptions {
        let options = core_lib::TopicOptions::new(self.capacity)
            .checksum(self.flags & super::SHMDS_CHECKSUM != 0);
        self.max_message
            .map_or(options, |max| options.max_message(max))
    }
}

/// The flag bits of a channel or topic.
fn flag_bits(spsc: bool, checksum: bool) -> u32 {
    (if spsc { super::SHMDS_SPSC } else { 0 }) | if checksum { super::SHMDS_CHECKSUM } else { 0 }
}

/// `Messages` for a handle type: its kind and flags, and the `Segment`
/// functions that make it (`$open`, `$create`, `$open_or_create`, given
/// `shape.$options()`, the result wrapped by `$wrap`).
macro_rules! impl_messages {
    ($H:ident: $kind:literal, $flags:expr, $names:literal, $open:ident, $create:ident,
     $open_or_create:ident, $options:ident, $wrap:expr) => {
        impl Messages for $H {
            const KIND: &'static str = $kind;
            const FLAGS: u32 = $flags;
            const FLAG_NAMES: &'static str = $names;
            fn open(seg: &core_lib::Segment, name: &str) -> core_lib::Result<Self> {
                seg.$open(name).map($wrap)
            }
            fn create(
                seg: &core_lib::Segment,
                name: &str,
                shape: &Shape,
                open_existing: bool,
            ) -> core_lib::Result<Self> {
                let options = shape.$options();
                if open_existing {
                    seg.$open_or_create(name, options)
                } else {
                    seg.$create(name, options)
                }
                .map($wrap)
            }
        }
    };
}

impl_messages!(ShmdsChannel: "channel", super::SHMDS_SPSC | super::SHMDS_CHECKSUM,
    "SHMDS_SPSC and SHMDS_CHECKSUM", open_channel, create_channel, open_or_create_channel, channel,
    ShmdsChannel);
impl_messages!(ShmdsTopic: "topic", super::SHMDS_CHECKSUM, "SHMDS_CHECKSUM", open_topic,
    create_topic, open_or_create_topic, topic, ShmdsTopic::new);

impl ShmdsChannel {
    pub(crate) fn raw(&self) -> &core_lib::Channel {
        &self.0
    }

    fn flags(&self) -> u32 {
        flag_bits(self.0.is_spsc(), self.0.has_checksum())
    }
}

impl ShmdsTopic {
    fn flags(&self) -> u32 {
        flag_bits(false, self.raw().has_checksum())
    }
}

unsafe fn open<M: Messages>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut M,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { make_handle(seg, name, out, |seg, name| Ok(M::open(seg, name)?)) }
}

/// Refuse flags that kind `M` does not take.
fn check_flags<M: Messages>(flags: u32) -> Result<(), Fail> {
    if flags & !M::FLAGS != 0 {
        return Err(invalid(&format!(
            "flags {flags:#x} include bits a {} does not take (it takes {})",
            M::KIND,
            M::FLAG_NAMES
        )));
    }
    Ok(())
}

/// The entry functions of one kind (`H`: its handle type), named by the
/// caller.
macro_rules! message_api {
    ($decls:ident, $H:ident: $open:ident, $create:ident, $close:ident, $len:ident,
     $is_empty:ident, $capacity:ident, $max_message:ident, $flags:ident, $check:ident) => {
        message_items! { $decls, $H: $open, $create, $close, $check;
            /// Messages held (approximate while other processes send and
            /// receive; 0 for NULL).
            $len: usize => |h| h.raw().len();
            /// Whether no message is held (false for NULL).
            $is_empty: bool => |h| h.raw().is_empty();
            /// The ring's data capacity in bytes (0 for NULL).
            $capacity: u64 => |h| h.raw().capacity();
            /// The largest message in bytes (0 for NULL).
            $max_message: u64 => |h| h.raw().max_message();
            /// The flags it was created with (SHMDS_SPSC, SHMDS_CHECKSUM; 0
            /// for NULL).
            $flags: u32 => |h| h.flags();
        }
    };
}

/// `message_api!`'s functions, with each getter `$name: $T => |h| value`
/// written from one template (expanded here, so that the text handed to
/// the header generator holds each function).
macro_rules! message_items {
    ($decls:ident, $H:ident: $open:ident, $create:ident, $close:ident, $check:ident;
     $($(#[$doc:meta])* $name:ident: $T:ty => |$h:ident| $get:expr;)*) => {
        c_items_with_text! { $decls;
            /// Open the existing structure `name`.
            #[no_mangle]
            pub unsafe extern "C" fn $open(
                seg: *const ShmdsSegment,
                name: *const c_char,
                out: *mut *mut $H,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { open(seg, name, out) }
            }

            /// Create the structure `name` with `capacity` bytes of message
            /// data (rounded up to a multiple of 64: each message takes whole
            /// 64-byte cells, at least one), messages of at most `max_message`
            /// bytes (0: the default, a channel's capacity up to 1 GiB, a
            /// topic's half capacity, also its most) and `flags` (SHMDS_SPSC,
            /// channels only; SHMDS_CHECKSUM); with `open_existing`, open it
            /// instead if it exists (SHMDS_E_SHAPE for another capacity; its
            /// own `max_message` and flags apply: read them back).
            #[no_mangle]
            pub unsafe extern "C" fn $create(
                seg: *const ShmdsSegment,
                name: *const c_char,
                capacity: u64,
                max_message: u64,
                flags: u32,
                open_existing: bool,
                out: *mut *mut $H,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe {
                    make_handle(seg, name, out, |seg, name| {
                        check_flags::<$H>(flags)?;
                        let shape = Shape {
                            capacity,
                            max_message: (max_message != 0).then_some(max_message),
                            flags,
                        };
                        Ok(<$H as Messages>::create(seg, name, &shape, open_existing)?)
                    })
                }
            }

            /// Release the handle (senders, receivers and subscribers made
            /// from it stay usable).
            #[no_mangle]
            pub unsafe extern "C" fn $close(handle: *mut $H) {
                // SAFETY: a handle from this library, closed once (header contract).
                unsafe { release(handle) }
            }

            $(
                $(#[$doc])*
                #[no_mangle]
                pub unsafe extern "C" fn $name(handle: *const $H) -> $T {
                    // SAFETY: the header's pointer rules, passed on.
                    unsafe { super::attribute(handle, |$h: &$H| $get) }
                }
            )*

            /// SHMDS_OK while the structure exists; SHMDS_E_STALE once it was
            /// erased.
            #[no_mangle]
            pub unsafe extern "C" fn $check(handle: *const $H) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { super::liveness(handle, |h: &$H| h.raw().check()) }
            }
        }
    };
}

message_api!(CHANNEL_DECLS, ShmdsChannel: shmds_channel_open, shmds_channel_create,
    shmds_channel_close, shmds_channel_len, shmds_channel_is_empty, shmds_channel_capacity,
    shmds_channel_max_message, shmds_channel_flags, shmds_channel_check);
message_api!(TOPIC_DECLS, ShmdsTopic: shmds_topic_open, shmds_topic_create, shmds_topic_close,
    shmds_topic_len, shmds_topic_is_empty, shmds_topic_capacity, shmds_topic_max_message,
    shmds_topic_flags, shmds_topic_check);

/// Every handle may be used from several threads at once (lib.rs).
#[allow(dead_code)]
fn handles_are_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<ShmdsChannel>();
    shared::<crate::channel::ShmdsSender>();
    shared::<crate::channel::ShmdsReceiver>();
    shared::<ShmdsTopic>();
    shared::<crate::topic::ShmdsSubscriber>();
}
