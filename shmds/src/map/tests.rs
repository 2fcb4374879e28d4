use super::*;

#[test]
fn state_words_round_trip() {
    let b = busy(5, 4_000_000, true);
    assert_eq!(b & PHASE_MASK, BUSY);
    assert_eq!(busy_pid(b), 4_000_000);
    assert_ne!(b & WAS_LIVE, 0);
    assert_eq!(version(b), 5);
    assert_eq!(version(live(VERSION_MASK + 1)), 0);
    assert_eq!(free(3) & PHASE_MASK, FREE);
}

#[test]
fn hash_is_as_documented() {
    // The test vectors of FORMAT.md ("Map key hash").
    assert_eq!(map_key_hash(0, b""), 0xf47c_dffd_9671_363d);
    assert_eq!(map_key_hash(0, b"a"), 0x3507_7c9c_abe2_5ca4);
    assert_eq!(map_key_hash(1, b"0123456789abcdef!"), 0xced6_78fc_4d43_228b);
    let key = crate::FixedStr::<16>::new("AAPL").unwrap();
    // SAFETY: FixedStr has no padding; all 17 bytes are initialised.
    let bytes = unsafe {
        std::slice::from_raw_parts((&key as *const crate::FixedStr<16>).cast::<u8>(), 17)
    };
    assert_eq!(
        map_key_hash(0x0123_4567_89ab_cdef, bytes),
        0x9350_73d2_f31d_0b08
    );
}

// Not under loom: loom's atomics exist only inside a model.
#[cfg(not(loom))]
#[test]
fn homes_spread_over_the_table() {
    let shape = MapShape::new(1000, 8, 8, 0x1234);
    let header = MapHeader {
        kind: kind::MAP,
        value_size: 8,
        capacity: 1000,
        key_size: 8,
        reserved0: 0,
        slot_stride: 40,
        slots_offset: MAP_HEADER_SIZE,
        hash_seed: 0x1234,
        ctrl_offset: 0,
        reserved1: 0,
        len: AtomicU64::new(0),
        reserved2: [0; 7],
    };
    let words: Vec<AtomicU64> = (0..1000 * 5).map(|_| AtomicU64::new(0)).collect();
    let ctrl: Vec<AtomicU8> = (0..1000 * 2).map(|_| AtomicU8::new(0)).collect();
    // SAFETY: words holds capacity * stride words, ctrl 2 * capacity bytes.
    let core = unsafe {
        MapCore::new(
            &header,
            words.as_ptr(),
            ctrl.as_ptr(),
            shape,
            Duration::from_secs(1),
        )
    };
    let mut used = std::collections::HashSet::new();
    for k in 0u64..1000 {
        used.insert(core.home_of(core.key(&k.to_ne_bytes()).hash));
    }
    // Random placement fills about 1 - 1/e of the homes.
    assert!(used.len() > 550, "{} homes used", used.len());
}
