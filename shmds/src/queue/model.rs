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
        self.try_push_run(&[v]) == 1
    }

    /// One push call of up to `values.len()` elements (one run); how many
    /// it pushed (0: full, or shut down).
    pub(crate) fn try_push_run(&self, values: &[u64]) -> usize {
        if values.is_empty() {
            return 0;
        }
        // SAFETY: the payload has room for a u64 (elem_size 8).
        let mut w = |i: usize, p: *mut u8| unsafe { p.cast::<u64>().write_unaligned(values[i]) };
        match self.core().push(values.len(), &mut w, None, false) {
            Ok(Step::Moved(n)) => n,
            Ok(Step::Blocked(_)) | Err(Stop::ShutDown) => 0,
            Err(e) => panic!("{e:?}"),
        }
    }

    pub(crate) fn try_pop(&self) -> Option<u64> {
        self.try_pop_run(1).pop()
    }

    /// One pop call of up to `want` elements (one run, or a skip mark).
    pub(crate) fn try_pop_run(&self, want: usize) -> Vec<u64> {
        let mut out = vec![0; want];
        // SAFETY: the payload holds a u64.
        let mut r = |i: usize, p: *const u8| out[i] = unsafe { p.cast::<u64>().read_unaligned() };
        let n = match self
            .core()
            .pop(want, &mut r, &mut || {}, None, false)
            .unwrap()
        {
            Step::Moved(n) => n,
            Step::Blocked(_) => 0,
        };
        out.truncate(n);
        out
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
