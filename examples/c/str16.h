/* A Rust `FixedStr<16>` (descriptor T{B:len:16s:bytes:}): a length byte,
 * then up to 16 bytes of UTF-8. Shared by the C examples. */
#ifndef SHMDS_EXAMPLE_STR16_H
#define SHMDS_EXAMPLE_STR16_H

#include <stdint.h>
#include <string.h>

#define STR16_TYPE "T{B:len:16s:bytes:}"

struct str16 {
    uint8_t len;
    char bytes[16];
};

/* The key for `s` (at most 16 bytes; longer is cut). */
static inline struct str16 str16(const char *s) {
    struct str16 k;
    size_t n = strlen(s);
    memset(&k, 0, sizeof k);
    k.len = (uint8_t)(n > 16 ? 16 : n);
    memcpy(k.bytes, s, k.len);
    return k;
}

#endif
