//! `include/shmds.h` is generated, and checked in. cbindgen writes the API
//! from `lib.rs` and its modules (`channel.rs`, `topic.rs`), and from the
//! text of the functions that `ring.rs` (queues, stacks) and `message.rs`
//! (channels, topics) write with a macro (which it cannot expand); the layout
//! section (every `repr(C)` struct of `shmds::layout`, with a static
//! assertion on each size and offset, so that a C or C++ compiler checks
//! its own layout against Rust's) comes from `shmds::layout::describe()`.
//! This test regenerates the header and fails when the checked-in one
//! differs; `make header` rewrites it.
//!
//! The header is valid C11 and C++ (checked by `make test-header`): the
//! assertions go through `SHMDS_STATIC_ASSERT`, which is `_Static_assert`
//! in C and `static_assert` in C++.

use std::fmt::Write;

fn layout_section() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "/*\n * Layout: the bytes in shared memory, as specified in FORMAT.md and\n * declared in shmds/src/layout.rs. Fields that Rust declares atomic\n * (every field another process may change) must be accessed with atomic\n * operations, e.g. __atomic_load_n(&h->bump, __ATOMIC_ACQUIRE). Every\n * other field is fixed at creation, yet any process that maps the segment\n * can rewrite it at any moment: copy it once, validate the copy and use\n * only the copy (FORMAT.md, \"Opening a segment\"); bound every offset\n * and size read from the segment before using it.\n */\n"
    );
    let _ = writeln!(
        out,
        "#ifdef __cplusplus\n#define SHMDS_STATIC_ASSERT(cond, msg) static_assert(cond, msg)\n#else\n#define SHMDS_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)\n#endif\n"
    );
    let _ = writeln!(
        out,
        "#define SHMDS_FORMAT_VERSION {}",
        shmds_core::layout::FORMAT_VERSION
    );
    let magic: Vec<String> = shmds_core::layout::MAGIC
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    let _ = writeln!(out, "#define SHMDS_MAGIC_BYTES {{ {} }}", magic.join(", "));
    let _ = writeln!(
        out,
        "#define SHMDS_CACHE_LINE {}\n",
        shmds_core::layout::CACHE_LINE
    );
    for s in shmds_core::layout::describe() {
        let _ = writeln!(out, "/* {} ({} bytes) */", s.name, s.size);
        let _ = writeln!(out, "typedef struct {} {{", s.c_name);
        for f in &s.fields {
            let atomic = if f.atomic { " /* atomic */" } else { "" };
            match f.len {
                0 => {
                    let _ = writeln!(out, "    {} {};{atomic}", f.c_type, f.name);
                }
                n => {
                    let _ = writeln!(out, "    {} {}[{n}];{atomic}", f.c_type, f.name);
                }
            }
        }
        let _ = writeln!(out, "}} {};", s.c_name);
        let _ = writeln!(
            out,
            "SHMDS_STATIC_ASSERT(sizeof({0}) == {1}, \"{0}: size\");",
            s.c_name, s.size
        );
        for f in &s.fields {
            let _ = writeln!(
                out,
                "SHMDS_STATIC_ASSERT(offsetof({0}, {1}) == {2}, \"{0}.{1}: offset\");",
                s.c_name, f.name, f.offset
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// The key type of most maps: Rust's `FixedStr<N>`, Python's `S<N>`-like
/// strings with their length (README, "Strings and bytes").
const FIXED_STR: &str = r#"#ifndef SHMDS_FIXED_STR_H
#define SHMDS_FIXED_STR_H
/*
 * Fixed-capacity strings, the usual map key: Rust's FixedStr<N> (a length
 * byte, then N bytes of which the first `len` count and the rest are zero),
 * type descriptor "T{B:len:Ns:bytes:}".
 *
 *   typedef SHMDS_FIXED_STR(16) str16;
 *   str16 key;
 *   if (shmds_fixed_str_set(&key, sizeof key, "AAPL") != SHMDS_OK) ...  // too long
 *   shmds_map_open(seg, "prices", sizeof key, SHMDS_FIXED_STR_TYPE(16), ...);
 */
#define SHMDS_FIXED_STR(N) struct { uint8_t len; char bytes[N]; }
#define SHMDS_FIXED_STR_TYPE(N) "T{B:len:" #N "s:bytes:}"

/*
 * Set the fixed string at `key` (`key_size` bytes: sizeof a
 * SHMDS_FIXED_STR(N), so N = key_size - 1, at most 255) to the `n` bytes
 * at `s`, zeroing the rest: SHMDS_OK, or SHMDS_E_INVALID (nothing written)
 * if they do not fit.
 */
static inline int shmds_fixed_str_set_n(void *key, size_t key_size, const char *s, size_t n) {
    unsigned char *k = (unsigned char *)key;
    size_t i;
    if (key == NULL || key_size < 1 || key_size > 256 || n > key_size - 1 || (n > 0 && s == NULL))
        return SHMDS_E_INVALID;
    k[0] = (unsigned char)n;
    for (i = 0; i < key_size - 1; i++)
        k[1 + i] = i < n ? (unsigned char)s[i] : 0;
    return SHMDS_OK;
}

/* shmds_fixed_str_set_n with the NUL-terminated string `s`. */
static inline int shmds_fixed_str_set(void *key, size_t key_size, const char *s) {
    size_t n = 0;
    if (s == NULL)
        return SHMDS_E_INVALID;
    while (s[n] != '\0' && n < key_size)
        n++;
    return shmds_fixed_str_set_n(key, key_size, s, n);
}
#endif /* SHMDS_FIXED_STR_H */
"#;

/// The full header text.
pub(crate) fn generate() -> String {
    let config = cbindgen::Config {
        language: cbindgen::Language::C,
        include_guard: Some("SHMDS_H".into()),
        header: Some(
            "/*\n * shmds.h: the C API of shmds (libshmds.so, libshmds.a) and the byte\n * layout of its segments.\n *\n * GENERATED by `make header` (cbindgen over shmds-c/src/lib.rs, ring.rs,\n * message.rs, channel.rs, topic.rs and coord.rs, plus the layout section from\n * shmds/src/layout.rs). Do not edit: a test fails when this file is stale.\n *\n * Conventions:\n * - Functions return SHMDS_OK (0) or a negative SHMDS_E_* code;\n *   shmds_strerror(code) names it and shmds_last_error() gives the calling\n *   thread's last failure message. shmds_map_get/insert/remove return 1 or\n *   0 (found or not) on success.\n * - Strings are NUL-terminated UTF-8. Handles are opaque, come from this\n *   library, may be used from several threads at once, and are released\n *   with their *_close (NULL is ignored). Structure handles keep the\n *   segment mapped, so the segment handle may be closed first.\n * - Every open and create states the element size (a map's key and value\n *   sizes) the caller will pass, and a type descriptor (optional for an\n *   open: NULL accepts any type of that size). A structure holding another\n *   size or type is refused with SHMDS_E_TYPE.\n * - Every buffer goes with its size in bytes, and that size must be\n *   exactly what the call reads or writes: one element (key, value), or a\n *   whole number of ShmdsEntryInfo. Another size is SHMDS_E_INVALID, and\n *   nothing is read or written. Messages (channels, topics) have any\n *   length up to the structure's max_message: a receive buffer must be at\n *   least that long, else SHMDS_E_BUFFER_TOO_SMALL, the length needed in\n *   *len, and the message is kept for the next call. Timeouts are in\n *   nanoseconds; negative waits forever.\n * - try_* calls never sleep: a slot held by a live process mid-operation\n *   makes them report full or empty.\n * - No Rust panic crosses this boundary; one would be SHMDS_E_PANIC.\n */".into(),
        ),
        after_includes: Some(layout_section()),
        trailer: Some(FIXED_STR.into()),
        documentation: true,
        cpp_compat: true,
        usize_is_size_t: true,
        ..Default::default()
    };
    // The macro-written functions as source text, for cbindgen to read
    // after lib.rs (see ring.rs).
    let rings = std::env::temp_dir().join(format!("shmds-c-rings-{}.rs", std::process::id()));
    let text = [
        crate::ring::QUEUE_DECLS,
        crate::ring::STACK_DECLS,
        crate::message::CHANNEL_DECLS,
        crate::message::TOPIC_DECLS,
        crate::channel::CHANNEL_CALLS,
        crate::topic::TOPIC_CALLS,
        crate::coord::PRIMITIVE_HANDLES,
        crate::coord::PRIMITIVE_CALLS,
    ]
    .join("\n");
    std::fs::write(&rings, text).expect("write the macro-written declarations");
    // lib.rs brings its modules (channel.rs, topic.rs) along.
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs");
    let bindings = cbindgen::Builder::new()
        .with_src(lib)
        .with_src(&rings)
        .with_config(config)
        .generate();
    let _ = std::fs::remove_file(&rings);
    let mut buf = Vec::new();
    bindings.expect("cbindgen").write(&mut buf);
    String::from_utf8(buf).expect("utf-8")
}

#[test]
fn checked_in_header_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/shmds.h");
    let generated = generate();
    if std::env::var_os("SHMDS_UPDATE_HEADER").is_some() {
        std::fs::write(path, &generated).expect("write include/shmds.h");
        return;
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        current == generated,
        "include/shmds.h is stale: run `make header` and commit it"
    );
}
