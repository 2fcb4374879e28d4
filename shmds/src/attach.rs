//! Attached processes (stand-in until the lifetime work lands).

use crate::error::Result;
use crate::segment::Mapping;

/// Record this process as attached to the segment.
pub(crate) fn attach(_map: &Mapping) -> Result<()> {
    Ok(())
}

/// Undo [`attach`].
pub(crate) fn detach(_map: &Mapping) {}
