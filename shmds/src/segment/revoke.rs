//! Revoking every claim of a segment nobody else can be using: a durable
//! segment opened in a new boot, or a segment restored from a snapshot. Its
//! claims, locks and attachments name processes of another boot (or the
//! snapshot's source processes, which may still run), so no stamp in it
//! may be trusted: each is taken over as if its process had died, by the
//! structures' own recovery, so that afterwards the segment holds only
//! what that recovery leaves (see FORMAT.md, "What a crash leaves
//! behind").

use super::Segment;
use crate::error::Result;
use crate::layout::kind;
use crate::sync::Ordering;

/// Revoke everything; returns the claims taken over. The caller makes sure
/// no other process is attached (the durable file's lock; a new segment).
pub(crate) fn revoke_all(seg: &Segment) -> Result<u64> {
    crate::process::as_if_everyone_died(|| {
        let header = seg.map.header();
        let mut taken = 0u64;
        {
            let table = seg.map.table();
            if header.lock.load(Ordering::Acquire) != 0 {
                taken += 1;
            }
            let _lock = table.seize();
            for slot in seg.map.attach_slots() {
                slot.process.store(0, Ordering::Relaxed);
                slot.start_time.store(0, Ordering::Relaxed);
            }
            header.attach_overflow.store(0, Ordering::Relaxed);
        }
        for info in seg.entries()? {
            let handle = crate::handle::Handle::at(seg, info.clone())?;
            taken += match info.kind {
                kind::QUEUE => crate::queue::revoke(&handle)?,
                kind::STACK => crate::stack::revoke(&handle)?,
                kind::MAP | kind::SET => crate::map::revoke(&handle)?,
                kind::CHANNEL => crate::channel::revoke(&handle)?,
                kind::TOPIC => crate::topic::revoke(&handle)?,
                kind::LOCK..=kind::ONCE => crate::coord::revoke(&handle)?,
                _ => 0,
            };
        }
        Ok(taken)
    })
}
