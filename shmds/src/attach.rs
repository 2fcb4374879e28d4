//! Segment lifetime: the processes attached to a segment, and the removal
//! of temporary segments when the last of them leaves.
//!
//! Every writable [`Segment`] handle made by `create` or `open` attaches its
//! process to the segment; dropping the last clone of that handle detaches
//! it. Read-only handles (inspection: `shmds ls`, [`segment_status`]) never
//! attach. A process is recorded in one of the [`ATTACH_SLOTS`]
//! [`AttachSlot`]s after the header, by pid and start time (so a pid reused
//! by a later process is not taken for it), with the number of its handles;
//! a process that finds every slot held by a live process counts itself in
//! `SegmentHeader::attach_overflow` instead.
//!
//! # The slot protocol
//!
//! A slot's `process` word is `pid | count << 32`, and its `start_time` the
//! process's start time (0: not recorded yet, or unknown). A slot is
//!
//! - **free**: `process == 0` (and `start_time == 0`);
//! - **held** by a process: `count >= 1`; the process counts as alive when
//!   [`is_same_process`](process::is_same_process)`(pid, start_time)`;
//! - **being released**: a pid with `count == 0`. It is nobody's: anyone
//!   may finish the release, in the releaser's order.
//!
//! Moves, all compare-and-swaps (sequentially consistent):
//!
//! - **attach**: add 1 to the count of a slot held with our pid and start
//!   time; else claim a free slot (`0 → pid | 1 << 32`, then store our start
//!   time); a held slot whose process is dead is released first (below) and
//!   then claimed. With no slot left, `attach_overflow += 1`.
//! - **detach**: subtract 1 (`attach_overflow -= 1` for an overflow
//!   attachment); a count reaching 0 is a release.
//! - **release** of `pid | count`: `→ pid | 0` (no longer counted), then
//!   `start_time → 0`, then `pid | 0 → 0`. A free slot therefore never
//!   shows a stale start time to a claimer: a freshly claimed slot reads
//!   `(pid, 0)` (alive by pid alone) until its start time is stored, never
//!   another process's start time, which would make it look dead.
//!
//! Attaching and detaching release the slots of dead processes they pass,
//! so a killed process holds its slot only until someone looks.
//!
//! # Removal
//!
//! A segment is *abandoned* when no live process holds a slot and
//! `attach_overflow` is 0 (overflowed attachers cannot be checked for
//! liveness, so any count keeps the segment). Removing one:
//!
//! 1. `state`: `READY → REMOVED` (compare-and-swap);
//! 2. look at every slot and `attach_overflow` again;
//! 3. anyone attached: `REMOVED → READY` (the removal is undone); else
//!    `shm_unlink` the name, if it still holds this segment (the same seed).
//!
//! An attacher adds itself first and then loads `state`: if it finds
//! `REMOVED` it takes itself out again and waits until the removal is
//! undone (then attaches anew) or the name is gone (then the segment does
//! not exist for it: [`Error::SegmentNotFound`]). Both sides store before
//! they load, sequentially consistent (Dekker's pattern), so either the
//! remover's second look sees the attacher, or the attacher sees `REMOVED`:
//! nobody stays attached to a segment whose name was removed. A remover
//! killed between steps 1 and 3 leaves `REMOVED`: an attacher that has
//! waited [`SETTLE_TIMEOUT`] finishes the removal itself (steps 2 and 3)
//! if the segment is temporary, and undoes it if not (a persistent
//! segment is removed only on request).
//!
//! Who removes:
//!
//! - a **temporary** segment ([`SegmentOptions::temporary`]): the process
//!   whose detach leaves it abandoned; and a process that **opens** a
//!   temporary segment found abandoned (its attachers all died): it
//!   removes it and gets [`Error::SegmentNotFound`], so
//!   [`SegmentOptions::open_or_create`] makes a fresh one;
//! - any segment: [`remove_abandoned`] (`shmds rm --abandoned`).
//!
//! A process killed while attached to a temporary segment is noticed by
//! the next process that detaches, opens it, or runs [`remove_abandoned`].
//!
//! Limits: a forked child does not inherit its parent's attachment (its
//! copies of the parent's handles neither count nor detach it; it attaches
//! by opening the segment itself). Processes of another PID namespace look
//! dead.
//!
//! [`SegmentOptions::temporary`]: crate::SegmentOptions::temporary
//! [`SegmentOptions::open_or_create`]: crate::SegmentOptions::open_or_create

use crate::error::{Error, Result};
use crate::layout::{
    segment_flags, segment_state, AttachSlot, Line, SegmentHeader, ATTACH_SLOTS, FORMAT_VERSION,
    MAGIC, TABLE_OFFSET,
};
use crate::process;
use crate::segment::Mapping;
use crate::sync::Ordering::SeqCst;
use crate::Segment;
use std::time::{Duration, Instant};

/// One process in a slot's count.
const ONE: u64 = 1 << 32;

/// How long an attacher waits for a removal in progress to finish (or be
/// undone) before it finishes it itself; a remover takes microseconds.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bound on compare-and-swap retries on one word: another process may
/// rewrite it at any rate, and no loop here may spin for ever.
const RETRIES: u32 = 1000;

fn pid_of(word: u64) -> u32 {
    word as u32
}

fn count_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// `Attachment` value: not attached.
const NOT_ATTACHED: u64 = 0;
/// `Attachment` place of an attachment counted in `attach_overflow`.
const OVERFLOW: u32 = u32::MAX;

/// Where a mapping's process is counted: private to the process (not in
/// the segment). `pid << 32 | place`, with `place` a slot index + 1 or
/// [`OVERFLOW`]; [`NOT_ATTACHED`] when it is not.
///
/// The pid is the attaching process's: a forked child inherits the value
/// but is another process, and must not detach its parent.
#[derive(Debug, Default)]
pub(crate) struct Attachment(std::sync::atomic::AtomicU64);

/// Where one attachment is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Slot(usize),
    Overflow,
}

impl Attachment {
    fn set(&self, pid: u32, place: Place) {
        let place = match place {
            Place::Slot(i) => i as u32 + 1,
            Place::Overflow => OVERFLOW,
        };
        self.0.store(
            u64::from(pid) << 32 | u64::from(place),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether this process is attached through it (in this process, not a
    /// forked child's copy).
    pub(crate) fn is_ours(&self) -> bool {
        let value = self.0.load(std::sync::atomic::Ordering::Relaxed);
        value as u32 != 0 && (value >> 32) as u32 == process::current_pid()
    }

    /// The attachment, which is then forgotten (so it is undone once).
    fn take(&self) -> Option<(u32, Place)> {
        let value = self
            .0
            .swap(NOT_ATTACHED, std::sync::atomic::Ordering::Relaxed);
        let (pid, place) = ((value >> 32) as u32, value as u32);
        match place {
            0 => None,
            OVERFLOW => Some((pid, Place::Overflow)),
            i => Some((pid, Place::Slot(i as usize - 1))),
        }
    }
}

/// A slot as read: both words, and what they mean.
#[derive(Clone, Copy, Debug)]
struct Seen {
    word: u64,
    start: u64,
}

impl Seen {
    fn read(slot: &AttachSlot) -> Seen {
        // The process word first: a start time read after it belongs to
        // that process or is 0 (see the release order).
        let word = slot.process.load(SeqCst);
        let start = slot.start_time.load(SeqCst);
        Seen { word, start }
    }

    fn held(&self) -> bool {
        count_of(self.word) > 0
    }

    /// A held slot whose process is running.
    fn live(&self) -> bool {
        self.held() && process::is_same_process(pid_of(self.word), self.start)
    }
}

/// The parts of a segment this module uses: a writable or read-only
/// mapping's header and slots, or `remove_abandoned`'s own small mapping.
struct View<'a> {
    header: &'a SegmentHeader,
    slots: &'a [AttachSlot],
    name: &'a str,
    /// The segment's seed (our validated copy): tells this segment from
    /// another made later under the same name.
    seed: u64,
}

impl<'a> View<'a> {
    fn of(map: &'a Mapping) -> View<'a> {
        View {
            header: map.header(),
            slots: map.attach_slots(),
            name: map.name(),
            seed: map.geometry().seed,
        }
    }

    fn not_found(&self) -> Error {
        Error::SegmentNotFound {
            name: self.name.to_owned(),
        }
    }

    /// Finish the release of a slot read as `pid | 0` (`marked`): clear
    /// the start time, then free the process word. Anyone may do it, any
    /// number of times: each step is a compare-and-swap from the value the
    /// releaser left.
    fn finish_release(slot: &AttachSlot, marked: u64) {
        let start = slot.start_time.load(SeqCst);
        if slot.process.load(SeqCst) != marked {
            return;
        }
        let _ = slot.start_time.compare_exchange(start, 0, SeqCst, SeqCst);
        let _ = slot.process.compare_exchange(marked, 0, SeqCst, SeqCst);
    }

    /// Release the slot read as `seen` if its process is dead (or finish a
    /// release under way). Whether the slot is now free or being released
    /// (`false`: held by a live process, or changed meanwhile).
    fn clear_if_dead(slot: &AttachSlot, seen: Seen) -> bool {
        if seen.word == 0 {
            return true;
        }
        let marked = u64::from(pid_of(seen.word));
        if seen.held() {
            if seen.live() {
                return false;
            }
            if slot
                .process
                .compare_exchange(seen.word, marked, SeqCst, SeqCst)
                .is_err()
            {
                return false;
            }
        }
        View::finish_release(slot, marked);
        true
    }

    /// Look at every slot, releasing those of dead processes (a writable
    /// view only), and return the number of live processes holding one.
    fn sweep(&self, writable: bool) -> usize {
        let mut live = 0;
        for slot in self.slots {
            let seen = Seen::read(slot);
            if seen.word == 0 {
                continue;
            }
            if seen.live() {
                live += 1;
            } else if writable {
                View::clear_if_dead(slot, seen);
            }
        }
        live
    }

    /// Whether nobody is attached: no live slot holder and no overflow.
    fn abandoned(&self, writable: bool) -> bool {
        self.sweep(writable) == 0 && self.header.attach_overflow.load(SeqCst) == 0
    }

    /// Count process (`pid`, `start`) as attached once more.
    fn join(&self, pid: u32, start: u64) -> Place {
        // A slot we hold already.
        for (i, slot) in self.slots.iter().enumerate() {
            for _ in 0..RETRIES {
                let seen = Seen::read(slot);
                if pid_of(seen.word) != pid
                    || !seen.held()
                    || seen.start != start
                    || count_of(seen.word) == u32::MAX
                {
                    break;
                }
                if slot
                    .process
                    .compare_exchange(seen.word, seen.word + ONE, SeqCst, SeqCst)
                    .is_ok()
                {
                    return Place::Slot(i);
                }
            }
        }
        // A free slot, or one a dead process held.
        for (i, slot) in self.slots.iter().enumerate() {
            let seen = Seen::read(slot);
            if !View::clear_if_dead(slot, seen) {
                continue;
            }
            // A free slot has no start time, unless someone wrote one.
            let stray = slot.start_time.load(SeqCst);
            if stray != 0 && slot.process.load(SeqCst) == 0 {
                let _ = slot.start_time.compare_exchange(stray, 0, SeqCst, SeqCst);
            }
            let ours = u64::from(pid) | ONE;
            if slot
                .process
                .compare_exchange(0, ours, SeqCst, SeqCst)
                .is_ok()
            {
                slot.start_time.store(start, SeqCst);
                return Place::Slot(i);
            }
        }
        let overflow = &self.header.attach_overflow;
        let mut seen = overflow.load(SeqCst);
        for _ in 0..RETRIES {
            // At the largest count the segment is kept for good anyway.
            let next = seen.saturating_add(1);
            match overflow.compare_exchange(seen, next, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        Place::Overflow
    }

    /// Undo one `join` of `pid` at `place`. A slot that no longer shows
    /// `pid` (taken over after someone thought us dead, or overwritten) is
    /// left alone.
    fn leave(&self, pid: u32, place: Place) {
        match place {
            Place::Overflow => {
                let overflow = &self.header.attach_overflow;
                let mut seen = overflow.load(SeqCst);
                for _ in 0..RETRIES {
                    if seen == 0 {
                        return;
                    }
                    match overflow.compare_exchange(seen, seen - 1, SeqCst, SeqCst) {
                        Ok(_) => return,
                        Err(now) => seen = now,
                    }
                }
            }
            Place::Slot(i) => {
                let Some(slot) = self.slots.get(i) else {
                    return;
                };
                for _ in 0..RETRIES {
                    let word = slot.process.load(SeqCst);
                    if pid_of(word) != pid || count_of(word) == 0 {
                        return;
                    }
                    let next = if count_of(word) == 1 {
                        u64::from(pid)
                    } else {
                        word - ONE
                    };
                    if slot
                        .process
                        .compare_exchange(word, next, SeqCst, SeqCst)
                        .is_ok()
                    {
                        if next == u64::from(pid) {
                            View::finish_release(slot, next);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Steps 1 to 3 of a removal (module docs), for a segment found
    /// abandoned.
    fn try_remove(&self) -> Removal {
        crate::fault::pause_point("lifetime.remove.before_announce");
        match self.header.state.compare_exchange(
            segment_state::READY,
            segment_state::REMOVED,
            SeqCst,
            SeqCst,
        ) {
            Ok(_) => self.decide_removal(),
            Err(segment_state::REMOVED) => Removal::Underway,
            Err(_) => Removal::Kept,
        }
    }

    /// Steps 2 and 3, with `state == REMOVED`.
    fn decide_removal(&self) -> Removal {
        // A name we may not unlink (another user's segment in the sticky
        // /dev/shm) keeps the segment, ready, rather than half-removed.
        if self.abandoned(true) && self.unlink_if_ours() {
            Removal::Removed
        } else {
            let _ = self.header.state.compare_exchange(
                segment_state::REMOVED,
                segment_state::READY,
                SeqCst,
                SeqCst,
            );
            Removal::Kept
        }
    }

    /// Wait while another process removes the segment: `true` once the
    /// name is gone, `false` once the removal was undone. After
    /// [`SETTLE_TIMEOUT`] its remover died or stalls: with `finish`, decide
    /// in its place (steps 2 and 3); without, undo the removal. (An opener
    /// finishes the removal of a temporary segment only: a persistent one
    /// with `state == REMOVED` and nobody removing it is kept, whatever
    /// wrote that state.)
    fn settle(&self, finish: bool) -> bool {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if self.header.state.load(SeqCst) != segment_state::REMOVED {
                return false;
            }
            if !name_holds(self.name, self.seed).unwrap_or(true) {
                return true;
            }
            if Instant::now() >= deadline {
                if finish {
                    return self.decide_removal() == Removal::Removed;
                }
                let _ = self.header.state.compare_exchange(
                    segment_state::REMOVED,
                    segment_state::READY,
                    SeqCst,
                    SeqCst,
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `shm_unlink` the name if it still holds this segment; whether the
    /// name no longer holds it (now, or already before).
    fn unlink_if_ours(&self) -> bool {
        match name_holds(self.name, self.seed) {
            Some(true) => match crate::segment::unlink_name(self.name) {
                // NOENT: someone else unlinked it meanwhile, as we meant to.
                Ok(()) | Err(rustix::io::Errno::NOENT) => true,
                Err(_) => false,
            },
            Some(false) => true,
            None => false,
        }
    }
}

/// The outcome of [`View::try_remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// The name was removed.
    Removed,
    /// Not removed: someone is attached, or the segment is not ready.
    Kept,
    /// Another process is removing it.
    Underway,
}

/// Whether `/dev/shm/<name>` is a shmds segment with the seed `seed`
/// (`None`: it cannot be told, e.g. no permission to read it). Never
/// blocks on a special file planted under the name.
fn name_holds(name: &str, seed: u64) -> Option<bool> {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(crate::segment::segment_path(name), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Some(false),
        Err(_) => return None,
    };
    let stat = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Some(false);
    }
    let mut line = [0u8; 64];
    if rustix::io::pread(&fd, &mut line, 0).ok()? != line.len() {
        return Some(false);
    }
    let at = core::mem::offset_of!(SegmentHeader, seed);
    let mut word = [0u8; 8];
    word.copy_from_slice(&line[at..at + 8]);
    Some(line[..8] == MAGIC && u64::from_ne_bytes(word) == seed)
}

/// Attach the calling process to the segment of `map`, a new mapping
/// (called once, by `create` before the segment is ready and by `open`
/// after validating it). Read-only mappings do not attach.
///
/// An open of a temporary segment found abandoned removes it and fails
/// with [`Error::SegmentNotFound`]; so does one that finds the segment
/// being removed (once the removal is through).
pub(crate) fn attach(map: &Mapping) -> Result<()> {
    if !map.writable() {
        return Ok(());
    }
    let view = View::of(map);
    let temporary = map.geometry().flags & segment_flags::TEMPORARY != 0;
    let (pid, start) = (process::current_pid(), process::current_start_time());
    let deadline = Instant::now() + SETTLE_TIMEOUT * 4;
    loop {
        let state = view.header.state.load(SeqCst);
        if state == segment_state::REMOVED {
            if view.settle(temporary) {
                return Err(view.not_found());
            }
        } else if state == segment_state::READY && temporary && view.abandoned(true) {
            match view.try_remove() {
                Removal::Removed => return Err(view.not_found()),
                Removal::Kept | Removal::Underway => {}
            }
        } else {
            // Ready (or, for the creator, not yet): join, then check.
            crate::fault::pause_point("lifetime.attach.before_join");
            let place = view.join(pid, start);
            if view.header.state.load(SeqCst) != segment_state::REMOVED {
                map.attachment.set(pid, place);
                return Ok(());
            }
            view.leave(pid, place);
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                name: map.name().to_owned(),
                detail: "its state keeps changing between removed and ready (another process \
                         rewrites the header?)"
                    .into(),
            });
        }
    }
}

/// Detach the calling process from the segment of `map` (its drop). The
/// last process to leave a temporary segment removes it.
/// Whether any live process is attached to the segment of `map` (this one
/// included). Releases dead processes' slots on the way.
pub(crate) fn anyone_attached(map: &Mapping) -> bool {
    !View::of(map).abandoned(true)
}

pub(crate) fn detach(map: &Mapping) {
    let Some((pid, place)) = map.attachment.take() else {
        return;
    };
    if pid != process::current_pid() {
        // A forked child's copy of its parent's mapping.
        return;
    }
    let view = View::of(map);
    view.leave(pid, place);
    // The look also releases dead processes' slots, temporary or not.
    let abandoned = view.abandoned(true);
    if map.geometry().flags & segment_flags::TEMPORARY != 0
        && abandoned
        && view.header.state.load(SeqCst) == segment_state::READY
    {
        view.try_remove();
    }
}

/// A process attached to a segment (see [`Segment::attachers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attacher {
    /// Its process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field
    /// 22), 0 if not recorded; with the pid it names one process.
    pub start_time: u64,
    /// Number of its open handles (each `create`/`open`; clones share one).
    pub handles: u32,
    /// Whether that process still runs (a dead one holds its record until
    /// another process attaches or detaches).
    pub alive: bool,
}

fn attachers_of(view: &View<'_>) -> Vec<Attacher> {
    let mut out: Vec<Attacher> = Vec::new();
    for slot in view.slots.iter().take(ATTACH_SLOTS) {
        let seen = Seen::read(slot);
        if !seen.held() {
            continue;
        }
        let (pid, handles) = (pid_of(seen.word), count_of(seen.word));
        // One process may hold two slots (two threads attaching at once).
        if let Some(a) = out
            .iter_mut()
            .find(|a| a.pid == pid && a.start_time == seen.start)
        {
            a.handles = a.handles.saturating_add(handles);
            continue;
        }
        out.push(Attacher {
            pid,
            start_time: seen.start,
            handles,
            alive: seen.live(),
        });
    }
    out
}

impl Segment {
    /// The processes recorded as attached to this segment, live or dead
    /// ([`Attacher::alive`]). Processes that found no free record are not
    /// listed, only counted ([`attach_overflow`](Segment::attach_overflow)).
    pub fn attachers(&self) -> Vec<Attacher> {
        attachers_of(&View::of(&self.map))
    }

    /// Attached processes that found every attachment record taken (they
    /// are counted, not named; a temporary segment with any is kept).
    pub fn attach_overflow(&self) -> u32 {
        self.map.header().attach_overflow.load(SeqCst)
    }

    /// Whether the segment is removed when the last attached process
    /// detaches or dies ([`SegmentOptions::temporary`](crate::SegmentOptions::temporary)).
    pub fn is_temporary(&self) -> bool {
        self.map.geometry().flags & segment_flags::TEMPORARY != 0
    }

    /// Whether erased structures' memory is zeroed
    /// ([`SegmentOptions::wipe_on_erase`](crate::SegmentOptions::wipe_on_erase)).
    pub fn wipes_on_erase(&self) -> bool {
        self.map.geometry().flags & segment_flags::WIPE_ON_ERASE != 0
    }

    /// Whether the process that created the segment still runs (its pid,
    /// with its start time, so a reused pid is not taken for it).
    pub fn creator_alive(&self) -> bool {
        let header = self.map.header();
        let pid = header.creator_pid.load(SeqCst);
        pid != 0 && process::is_same_process(pid, header.creator_start.load(SeqCst))
    }

    /// Whether no live process is attached (and none overflowed the
    /// attachment records): what `shmds rm --abandoned` removes. A
    /// writable handle is attached, so only a read-only one sees `true`.
    pub fn is_abandoned(&self) -> bool {
        View::of(&self.map).abandoned(false)
    }
}

/// What [`segment_status`] reports of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStatus {
    /// The segment's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is temporary ([`Segment::is_temporary`]).
    pub temporary: bool,
    /// Pid of its creator.
    pub creator_pid: u32,
    /// Whether its creator still runs ([`Segment::creator_alive`]).
    pub creator_alive: bool,
    /// The processes recorded as attached ([`Segment::attachers`]).
    pub attachers: Vec<Attacher>,
    /// Attached processes counted without a record
    /// ([`Segment::attach_overflow`]).
    pub overflow: u32,
    /// Whether no live process is attached ([`Segment::is_abandoned`]).
    pub abandoned: bool,
}

impl SegmentStatus {
    /// Number of live attached processes (overflowed ones included).
    pub fn live_attachers(&self) -> u64 {
        self.attachers.iter().filter(|a| a.alive).count() as u64 + u64::from(self.overflow)
    }
}

/// How long inspection waits for a segment still being created.
const INSPECT_TIMEOUT: Duration = Duration::from_millis(100);

fn inspect(name: &str) -> Result<Segment> {
    Segment::options()
        .read_only(true)
        .open_timeout(INSPECT_TIMEOUT)
        .open(name)
}

/// The lifetime status of the segment `name`, read without attaching to it
/// (it is opened read-only). A segment of another format version is
/// [`Error::Incompatible`].
pub fn segment_status(name: &str) -> Result<SegmentStatus> {
    let seg = inspect(name)?;
    let status = SegmentStatus {
        name: seg.name().to_owned(),
        size: seg.size(),
        temporary: seg.is_temporary(),
        creator_pid: seg.creator_pid(),
        creator_alive: seg.creator_alive(),
        attachers: seg.attachers(),
        overflow: seg.attach_overflow(),
        abandoned: seg.is_abandoned(),
    };
    Ok(status)
}

/// Remove every shmds segment in `/dev/shm` that no live process is
/// attached to (and that has no overflowed attachers), persistent or
/// temporary, as [`remove_if_abandoned`] does; return their names.
/// Segments this build cannot read (another format version), that are not
/// ready, or that this user may not write are left alone.
pub fn remove_abandoned() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in crate::list_segments()? {
        if let Ok(true) = remove_if_abandoned(&name) {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Remove the segment `name` if no live process is attached to it (and it
/// has no overflowed attachers); whether it was removed. It is checked
/// again, with the removal protocol of the module docs, right before its
/// name is unlinked, so a process attaching meanwhile keeps it. A segment
/// of another format version is [`Error::Incompatible`] and never removed.
pub fn remove_if_abandoned(name: &str) -> Result<bool> {
    let seg = inspect(name)?;
    Ok(seg.is_abandoned() && remove_if_still_abandoned(&seg))
}

/// Remove `seg` (a read-only, validated handle) if it is abandoned. It
/// needs to write the header: a writable mapping of the header and the
/// slots alone is made for that (a writable open would attach).
fn remove_if_still_abandoned(seg: &Segment) -> bool {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(format!("/dev/shm/{}", seg.name()), flags, Mode::empty()) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(&fd) else {
        return false;
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
        || (stat.st_size as u64) < TABLE_OFFSET
    {
        return false;
    }
    let file = std::fs::File::from(fd);
    let Ok(map) = memmap2::MmapOptions::new()
        .len(TABLE_OFFSET as usize)
        .map_raw(&file)
    else {
        return false;
    };
    let base = map.as_mut_ptr();
    // SAFETY: the mapping is page-aligned and TABLE_OFFSET >= 64 bytes long.
    let line = unsafe { Line::read(base) };
    use core::mem::offset_of;
    if line.u64_at(offset_of!(SegmentHeader, magic)).to_ne_bytes() != MAGIC
        || line.u32_at(offset_of!(SegmentHeader, format_version)) != FORMAT_VERSION
        || line.u64_at(offset_of!(SegmentHeader, fingerprint)) != crate::layout::fingerprint()
        || line.u64_at(offset_of!(SegmentHeader, seed)) != seg.seed()
    {
        // Not the segment validated a moment ago (replaced, or rewritten).
        return false;
    }
    // SAFETY: the mapping is TABLE_OFFSET bytes, page-aligned: the header
    // (repr(C), its changing fields atomics) at 0 and ATTACH_SLOTS slots
    // (pairs of atomics) right after it, as layout.rs places them. Only the
    // atomic fields are used. The mapping lives until the end of this
    // function, longer than `view`.
    let view = unsafe {
        View {
            header: &*base.cast::<SegmentHeader>(),
            slots: std::slice::from_raw_parts(
                base.add(crate::layout::SEGMENT_HEADER_SIZE as usize)
                    .cast::<AttachSlot>(),
                ATTACH_SLOTS,
            ),
            name: seg.name(),
            seed: seg.seed(),
        }
    };
    if !view.abandoned(true) {
        return false;
    }
    match view.try_remove() {
        Removal::Removed => true,
        Removal::Kept => false,
        // Another remover is at it (or died half-way): wait for it.
        Removal::Underway => view.settle(true),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("shmds-unit-attach-{tag}-{}-{n}", std::process::id())
    }

    /// Removes the segment when dropped (also when a test fails).
    struct Named(String);
    impl Drop for Named {
        fn drop(&mut self) {
            let _ = Segment::remove(&self.0);
        }
    }

    fn me() -> (u32, u64) {
        (process::current_pid(), process::current_start_time())
    }

    /// A pid that is certainly not running: a reaped child's.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn ours(seg: &Segment) -> Option<Attacher> {
        let (pid, start) = me();
        seg.attachers()
            .into_iter()
            .find(|a| a.pid == pid && a.start_time == start)
    }

    #[test]
    fn handles_count_in_one_slot() {
        let n = Named(name("count"));
        let a = Segment::create(&n.0, 1 << 20).unwrap();
        assert_eq!(ours(&a).unwrap().handles, 1);
        let b = Segment::open(&n.0).unwrap();
        let c = b.clone();
        let me = ours(&a).unwrap();
        assert_eq!(me.handles, 2, "a clone shares its handle's attachment");
        assert!(me.alive);
        assert_eq!(a.attachers().len(), 1);
        drop((b, c));
        assert_eq!(ours(&a).unwrap().handles, 1);
        let ro = Segment::options().read_only(true).open(&n.0).unwrap();
        assert_eq!(
            ours(&a).unwrap().handles,
            1,
            "read-only handles do not attach"
        );
        assert!(!ro.is_abandoned());
        drop(a);
        assert!(ours(&ro).is_none());
        assert!(ro.is_abandoned());
        assert!(ro.attachers().is_empty());
        assert!(ro.creator_alive());
        assert!(!ro.is_temporary());
    }

    #[test]
    fn temporary_goes_with_its_last_handle() {
        let n = Named(name("temp"));
        let opts = Segment::options().size(1 << 20).temporary(true);
        let a = opts.create(&n.0).unwrap();
        assert!(a.is_temporary());
        let b = Segment::open(&n.0).unwrap();
        drop(a);
        assert!(Segment::open(&n.0).is_ok(), "one handle is left");
        drop(b);
        assert!(matches!(
            Segment::open(&n.0),
            Err(Error::SegmentNotFound { .. })
        ));
        assert!(!std::path::Path::new(&format!("/dev/shm/{}", n.0)).exists());
    }

    #[test]
    fn persistent_stays() {
        let n = Named(name("persistent"));
        drop(Segment::create(&n.0, 1 << 20).unwrap());
        let status = segment_status(&n.0).unwrap();
        assert!(status.abandoned && !status.temporary);
        assert!(status.attachers.is_empty());
        assert_eq!(status.size, 1 << 20);
        assert_eq!(status.creator_pid, process::current_pid());
        assert!(status.creator_alive);
        assert!(Segment::open(&n.0).is_ok());
    }

    /// A slot of a dead process, written by hand, is not counted, and the
    /// next attach or detach frees it.
    #[test]
    fn dead_slots_are_released() {
        let n = Named(name("dead"));
        let seg = Segment::create(&n.0, 1 << 20).unwrap();
        let slots = seg.map.attach_slots();
        let dead = dead_pid();
        let free = slots
            .iter()
            .position(|s| s.process.load(SeqCst) == 0)
            .unwrap();
        slots[free]
            .process
            .store(u64::from(dead) | (3 * ONE), SeqCst);
        slots[free].start_time.store(12345, SeqCst);
        let dead_one = seg.attachers().into_iter().find(|a| a.pid == dead).unwrap();
        assert!(!dead_one.alive);
        assert_eq!(dead_one.handles, 3);
        let other = Segment::open(&n.0).unwrap();
        drop(other);
        assert_eq!(slots[free].process.load(SeqCst), 0, "freed on the way");
        assert_eq!(slots[free].start_time.load(SeqCst), 0);
        assert!(seg.attachers().iter().all(|a| a.pid != dead));
    }

    /// Our pid with another start time is a process that used our pid
    /// before: dead, and not ours to count on.
    #[test]
    fn reused_pid_is_another_process() {
        let n = Named(name("reuse"));
        let seg = Segment::create(&n.0, 1 << 20).unwrap();
        let (pid, start) = me();
        let slots = seg.map.attach_slots();
        let mine = slots
            .iter()
            .position(|s| s.process.load(SeqCst) as u32 == pid)
            .unwrap();
        // An impostor slot before ours would be found first; place it in
        // a free slot after ours.
        let free = slots
            .iter()
            .position(|s| s.process.load(SeqCst) == 0)
            .unwrap();
        slots[free].process.store(u64::from(pid) | ONE, SeqCst);
        slots[free].start_time.store(start + 1000, SeqCst);
        let list = seg.attachers();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|a| a.start_time == start && a.alive));
        assert!(list
            .iter()
            .any(|a| a.start_time == start + 1000 && !a.alive));
        // Our own second open joins our slot, not the impostor's.
        let again = Segment::open(&n.0).unwrap();
        assert_eq!(count_of(slots[mine].process.load(SeqCst)), 2);
        drop(again);
        assert_eq!(slots[free].process.load(SeqCst), 0, "released by detach");
    }

    #[test]
    fn overflow_keeps_a_temporary() {
        let n = Named(name("overflow"));
        let seg = Segment::options()
            .size(1 << 20)
            .temporary(true)
            .create(&n.0)
            .unwrap();
        let slots = seg.map.attach_slots();
        // Fill every free slot with a live process that is not us: pid 1.
        let init_start = process::start_time(1).unwrap_or(0);
        let mut filled = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            if s.process.load(SeqCst) == 0 {
                s.process.store(1 | ONE, SeqCst);
                s.start_time.store(init_start, SeqCst);
                filled.push(i);
            }
        }
        // Another process (a pid nobody has) finds no slot: it overflows.
        const OTHER: u32 = 4_000_000;
        let view = View::of(&seg.map);
        assert_eq!(view.join(OTHER, 0), Place::Overflow);
        assert_eq!(seg.attach_overflow(), 1);
        for i in filled {
            slots[i].process.store(0, SeqCst);
            slots[i].start_time.store(0, SeqCst);
        }
        // We leave; only the overflowed attacher is left: kept.
        drop(seg);
        let status = segment_status(&n.0).unwrap();
        assert_eq!(status.overflow, 1);
        assert!(!status.abandoned);
        assert_eq!(status.live_attachers(), 1);
        // It leaves (through a writable handle of ours, which attaches and
        // then detaches as the last one): removed.
        let rw = Segment::open(&n.0).unwrap();
        View::of(&rw.map).leave(OTHER, Place::Overflow);
        assert_eq!(rw.attach_overflow(), 0);
        drop(rw);
        assert!(matches!(
            Segment::open(&n.0),
            Err(Error::SegmentNotFound { .. })
        ));
    }

    /// A remover that died after announcing (`state == REMOVED`, name
    /// still there): an opener waits, then finishes the removal of a
    /// temporary segment nobody is attached to, and undoes it for a
    /// persistent one.
    #[test]
    fn stuck_removal_is_settled_by_the_next_open() {
        for temporary in [true, false] {
            let n = Named(name("stuck"));
            let ro = {
                let seg = Segment::options()
                    .size(1 << 20)
                    .temporary(temporary)
                    .create(&n.0)
                    .unwrap();
                let ro = inspect(&n.0).unwrap();
                // Leave without removing, as a remover killed at once would.
                let (pid, place) = seg.map.attachment.take().unwrap();
                View::of(&seg.map).leave(pid, place);
                seg.map.header().state.store(segment_state::REMOVED, SeqCst);
                ro
            };
            let started = Instant::now();
            let opened = Segment::open(&n.0);
            assert!(started.elapsed() >= SETTLE_TIMEOUT);
            if temporary {
                assert!(matches!(opened, Err(Error::SegmentNotFound { .. })));
                assert!(!std::path::Path::new(&format!("/dev/shm/{}", n.0)).exists());
            } else {
                let seg = opened.unwrap();
                assert_eq!(seg.attachers().len(), 1);
                assert_eq!(ro.map.header().state.load(SeqCst), segment_state::READY);
            }
        }
    }

    #[test]
    fn attachment_record() {
        let a = Attachment::default();
        assert_eq!(a.take(), None);
        a.set(42, Place::Slot(0));
        assert_eq!(a.take(), Some((42, Place::Slot(0))));
        assert_eq!(a.take(), None);
        a.set(7, Place::Slot(127));
        assert_eq!(a.take(), Some((7, Place::Slot(127))));
        a.set(7, Place::Overflow);
        assert_eq!(a.take(), Some((7, Place::Overflow)));
    }
}
