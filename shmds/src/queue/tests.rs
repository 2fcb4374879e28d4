use super::*;

#[test]
fn state_words_round_trip() {
    let states = [
        SlotState::Empty {
            tag: 0,
            waited: false,
        },
        SlotState::Empty {
            tag: TAG_MASK,
            waited: true,
        },
        SlotState::Writing {
            tag: 5,
            pid: 4_194_303,
        },
        SlotState::Full {
            tag: 1 << 38,
            waited: true,
            skip: true,
        },
        SlotState::Full {
            tag: 7,
            waited: false,
            skip: false,
        },
        SlotState::Reading {
            tag: 9,
            pid: 1,
            skip: false,
        },
        SlotState::Reading {
            tag: TAG_MASK,
            pid: 4_194_303,
            skip: true,
        },
    ];
    for s in states {
        assert_eq!(SlotState::decode(s.encode()), s);
    }
    assert_eq!(prev_tag(0), TAG_MASK);
    assert_eq!(next_tag(TAG_MASK), 0);
    assert_eq!(slot_stride(8), 16);
    assert_eq!(slot_stride(1), 16);
    assert_eq!(slot_stride(24), 32);
}
