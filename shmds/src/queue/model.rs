//! A queue on the heap for loom models.

use super::*;

pub(crate) struct Model {
    buf: Vec<u64>,
    capacity: u64,
    shape: QueueShape,
}

impl Model {
    pub(crate) fn new(capacity: u64) -> Model {
        let elem = 8u64;
        let bytes = QUEUE_HEADER_SIZE as usize
            + std::mem::size_of::<QueueHeader>()
            + capacity as usize * slot_stride(elem) as usize;
        let mut buf = vec![0u64; bytes / 8 + 1];
        let block = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer is 8-aligned and large enough for the loom
        // header (whose atomics are larger than the real ones) and slots.
        unsafe {
            let header = QueueHeader {
                kind: kind::QUEUE,
                elem_size: elem as u32,
                capacity,
                one_lap: capacity.next_power_of_two(),
                slot_stride: slot_stride(elem),
                slots_offset: 0,
                shutdown: crate::sync::AtomicU64::new(0),
                reserved0: [0; 2],
                tail: crate::sync::AtomicU64::new(0),
                reserved1: [0; 7],
                head: crate::sync::AtomicU64::new(0),
                unfinished: crate::sync::AtomicU64::new(0),
                join_event: crate::sync::AtomicU32::new(0),
                join_waiters: crate::sync::AtomicU32::new(0),
                reserved2: [0; 5],
            };
            block.cast::<QueueHeader>().write(header);
            let slots = block.add(Self::slots_offset());
            for i in 0..capacity as usize {
                slots
                    .add(i * slot_stride(elem) as usize)
                    .cast::<QueueSlot>()
                    .write(QueueSlot {
                        state: crate::sync::AtomicU64::new(0),
                    });
            }
        }
        let shape = QueueShape {
            capacity,
            shift: capacity.next_power_of_two().trailing_zeros(),
            stride: slot_stride(elem) as usize,
            patience: Duration::from_secs(3600),
        };
        Model {
            buf,
            capacity,
            shape,
        }
    }

    fn slots_offset() -> usize {
        (std::mem::size_of::<QueueHeader>() + 7) & !7
    }

    pub(crate) fn core(&self) -> QueueCore<'_> {
        let block = self.buf.as_ptr() as *mut u8;
        // SAFETY: initialised in new; lives as long as self.
        unsafe {
            QueueCore::new(
                &*block.cast::<QueueHeader>(),
                block.add(Self::slots_offset()),
                &self.shape,
            )
        }
    }

    pub(crate) fn try_push(&self, v: u64) -> bool {
        let mut w = |p: *mut u8| unsafe { p.cast::<u64>().write_unaligned(v) };
        match self.core().push(&mut w, None) {
            Ok(blocked) => blocked.is_none(),
            Err(Stop::ShutDown) => false,
            Err(e) => panic!("{e:?}"),
        }
    }

    pub(crate) fn try_pop(&self) -> Option<u64> {
        let mut out = None;
        let mut r = |p: *const u8| out = Some(unsafe { p.cast::<u64>().read_unaligned() });
        match self.core().pop(&mut r, &mut || {}, None).unwrap() {
            None => out,
            Some(_) => None,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let block = self.buf.as_mut_ptr().cast::<u8>();
        // SAFETY: drop the loom objects written in new, exactly once.
        unsafe {
            std::ptr::drop_in_place(block.cast::<QueueHeader>());
            let slots = block.add(Self::slots_offset());
            for i in 0..self.capacity as usize {
                std::ptr::drop_in_place(slots.add(i * slot_stride(8) as usize).cast::<QueueSlot>());
            }
        }
    }
}
