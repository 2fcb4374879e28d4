/*
 * The C API's safety promises, checked under AddressSanitizer (`make
 * test-c` builds this with -fsanitize=address against libshmds.a; ASan
 * intercepts memcpy, so a copy inside Rust past a caller's buffer is
 * reported here, as a crash of this program).
 *
 *   safety PREFIX                 every documented call, with right and
 *                                 wrong sizes, types and NULLs, in segments
 *                                 named PREFIX-...
 *   safety fixture NAME u64|rec   a segment NAME with a queue "jobs" holding
 *                                 one uint64_t 42, or one 64-byte record
 *                                 (for the README program's run)
 *
 * Every segment it makes is removed before it returns; `tests/c/run.sh`
 * also removes PREFIX-* when this program dies.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmds.h"

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, " (last error: %s)\n", shmds_last_error());       \
        }                                                                    \
    } while (0)

/* `call` returned `want`, and on failure left a message containing `text`. */
#define EXPECT(call, want, text)                                                      \
    do {                                                                              \
        int rc_ = (call);                                                             \
        CHECK(rc_ == (want), "%s returned %d (%s), expected %d", #call, rc_,         \
              shmds_strerror(rc_), (want));                                           \
        if (rc_ < 0 && (text) != NULL)                                                \
            CHECK(strstr(shmds_last_error(), (text)) != NULL,                         \
                  "%s: message \"%s\" lacks \"%s\"", #call, shmds_last_error(), (text)); \
    } while (0)

static const char *no_text = NULL;

/* Stop on a failed set-up call. */
static void must(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "safety: %s: %s (%s)\n", what, shmds_strerror(rc), shmds_last_error());
        exit(2);
    }
}

/* A 64-byte record, as in the README's warning. */
struct rec {
    uint64_t v[8];
};
#define REC_TYPE "T{<Q:a:<Q:b:<Q:c:<Q:d:<Q:e:<Q:f:<Q:g:<Q:h:}"

/* A record with padding: {u8, f64, u32}, 24 bytes. */
struct quote {
    uint8_t venue;
    double price;
    uint32_t size;
};
#define QUOTE_TYPE "T{B:venue:7x<d:price:<I:size:4x}"

static void test_errors(void) {
    static const int codes[] = {SHMDS_OK,         SHMDS_E_INVALID,   SHMDS_E_NOT_FOUND,
                                SHMDS_E_EXISTS,   SHMDS_E_PERMISSION, SHMDS_E_TYPE,
                                SHMDS_E_NO_SPACE, SHMDS_E_FULL,      SHMDS_E_EMPTY,
                                SHMDS_E_TIMEOUT,  SHMDS_E_CORRUPT,   SHMDS_E_INCOMPATIBLE,
                                SHMDS_E_STALE,    SHMDS_E_BUSY,      SHMDS_E_NOT_READY,
                                SHMDS_E_IO,       SHMDS_E_INDEX,     SHMDS_E_PANIC,
                                SHMDS_E_SHAPE,    SHMDS_E_SHUTDOWN};
    const char *unknown = shmds_strerror(-1000);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = shmds_strerror(codes[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, unknown) != 0, "no text for code %d",
              codes[i]);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, shmds_strerror(codes[j])) != 0, "codes %d and %d share a text",
                  codes[i], codes[j]);
    }
    CHECK(shmds_last_error() != NULL, "last error is NULL");
}

static void test_segments(const char *prefix, ShmdsSegment *seg, const char *seg_name) {
    char other[256];
    snprintf(other, sizeof other, "%s-other", prefix);
    ShmdsSegment *s2 = NULL;
    CHECK(shmds_segment_size(seg) == 4 << 20, "size %" PRIu64, shmds_segment_size(seg));
    EXPECT(shmds_segment_create(NULL, 1 << 20, &s2), SHMDS_E_INVALID, "name is NULL");
    EXPECT(shmds_segment_create(other, 1 << 20, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_open(other, &s2), SHMDS_E_NOT_FOUND, "does not exist");
    EXPECT(shmds_segment_open(other, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_open_or_create(other, 1 << 20, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_open(other, &s2), SHMDS_E_NOT_FOUND, "does not exist");
    EXPECT(shmds_segment_create(seg_name, 1 << 20, &s2), SHMDS_E_EXISTS, "already exists");
    EXPECT(shmds_segment_create("bad/name", 1 << 20, &s2), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_segment_open_or_create(other, 1 << 20, &s2), SHMDS_OK, no_text);
    CHECK(shmds_segment_size(s2) == 1 << 20, "size %" PRIu64, shmds_segment_size(s2));
    CHECK(shmds_segment_base(s2) != NULL, "no base");
    shmds_segment_close(s2);
    EXPECT(shmds_segment_open(other, &s2), SHMDS_OK, no_text);
    shmds_segment_close(s2);
    EXPECT(shmds_segment_remove(other), SHMDS_OK, no_text);
    EXPECT(shmds_segment_remove(other), SHMDS_E_NOT_FOUND, no_text);
    EXPECT(shmds_segment_remove(NULL), SHMDS_E_INVALID, no_text);
    CHECK(shmds_segment_size(NULL) == 0 && shmds_segment_base(NULL) == NULL, "NULL segment");
    shmds_segment_close(NULL);
}

static void test_entries(ShmdsSegment *seg) {
    size_t count = 0;
    EXPECT(shmds_segment_entries(seg, NULL, 0, &count), SHMDS_OK, no_text);
    CHECK(count >= 2, "%zu entries", count);
    /* Room for one: only one is written (ASan watches the rest). */
    ShmdsEntryInfo one[1];
    size_t again = 0;
    EXPECT(shmds_segment_entries(seg, one, sizeof one, &again), SHMDS_OK, no_text);
    CHECK(again == count, "count %zu then %zu", count, again);
    CHECK(memchr(one[0].name, 0, sizeof one[0].name) != NULL, "name not terminated");
    ShmdsEntryInfo *all = malloc(count * sizeof *all);
    EXPECT(shmds_segment_entries(seg, all, count * sizeof *all, NULL), SHMDS_OK, no_text);
    free(all);
    EXPECT(shmds_segment_entries(seg, one, sizeof one - 1, &count), SHMDS_E_INVALID,
           "not a whole number");
    EXPECT(shmds_segment_entries(seg, NULL, sizeof one, &count), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_entries(NULL, one, sizeof one, &count), SHMDS_E_INVALID, "NULL");
}

static void test_arrays(ShmdsSegment *seg) {
    ShmdsArray *a = NULL, *b = NULL;
    /* Create: the descriptor must describe elem_size bytes, and is required. */
    EXPECT(shmds_array_create(seg, "quotes", 8, QUOTE_TYPE, 4, false, &a), SHMDS_E_INVALID,
           "describes elements of 24 bytes, but the size given is 8");
    EXPECT(shmds_array_create(seg, "quotes", sizeof(struct quote), NULL, 4, false, &a),
           SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_create(seg, "quotes", sizeof(struct quote), "<Z", 4, false, &a),
           SHMDS_E_INVALID, "invalid type descriptor");
    EXPECT(shmds_array_create(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, 4, false, NULL),
           SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_create(NULL, "quotes", sizeof(struct quote), QUOTE_TYPE, 4, false, &a),
           SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_create(seg, NULL, sizeof(struct quote), QUOTE_TYPE, 4, false, &a),
           SHMDS_E_INVALID, "NULL");
    must(shmds_array_create(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, 4, false, &a),
         "create quotes");
    EXPECT(shmds_array_create(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, 4, false, &b),
           SHMDS_E_EXISTS, no_text);
    EXPECT(shmds_array_create(seg, "quotes", 8, "<Q", 4, true, &b), SHMDS_E_TYPE, no_text);
    /* Another length: refused (SHAPE), or opened with the length it has. */
    int rc = shmds_array_create(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, 9, true, &b);
    CHECK(rc == SHMDS_E_SHAPE, "open_existing, other length: %d", rc);
    if (rc == SHMDS_OK) {
        CHECK(shmds_array_len(b) == 4, "length %" PRIu64, shmds_array_len(b));
        shmds_array_close(b);
    }

    /* Open: the stated size and type must match. */
    EXPECT(shmds_array_open(seg, "quotes", 8, NULL, &b), SHMDS_E_TYPE,
           "array \"quotes\" holds elements of 24 bytes (type " QUOTE_TYPE "), not 8");
    EXPECT(shmds_array_open(seg, "quotes", 24, "T{<Q:a:<Q:b:<Q:c:}", &b), SHMDS_E_TYPE,
           "holds elements of type " QUOTE_TYPE ", not T{<Q:a:<Q:b:<Q:c:}");
    EXPECT(shmds_array_open(seg, "quotes", 8, QUOTE_TYPE, &b), SHMDS_E_INVALID, "size given");
    EXPECT(shmds_array_open(seg, "nope", 8, NULL, &b), SHMDS_E_NOT_FOUND, no_text);
    EXPECT(shmds_array_open(seg, "jobs", 64, NULL, &b), SHMDS_E_TYPE, "not a");
    EXPECT(shmds_array_open(seg, "quotes", 24, NULL, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_open(seg, "quotes", 24, NULL, &b), SHMDS_OK, no_text);
    shmds_array_close(b);
    EXPECT(shmds_array_open(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, &b), SHMDS_OK,
           no_text);
    CHECK(shmds_array_len(b) == 4 && shmds_array_elem_size(b) == 24, "quotes shape");
    CHECK(shmds_array_data(b) != NULL, "no data");

    /* Get and set: exactly one element. */
    struct quote q = {1, 2.5, 3};
    EXPECT(shmds_array_set(a, 1, &q, sizeof q), SHMDS_OK, no_text);
    EXPECT(shmds_array_set(a, 1, &q, sizeof q - 1), SHMDS_E_INVALID,
           "input buffer is 23 bytes, but array \"quotes\" has elements of 24 bytes");
    EXPECT(shmds_array_set(a, 1, &q, sizeof q + 8), SHMDS_E_INVALID, "exactly that size");
    EXPECT(shmds_array_set(a, 1, NULL, sizeof q), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_set(a, 4, &q, sizeof q), SHMDS_E_INDEX, "out of bounds");
    EXPECT(shmds_array_set(NULL, 1, &q, sizeof q), SHMDS_E_INVALID, "NULL");
    uint64_t small;
    EXPECT(shmds_array_get(b, 1, &small, sizeof small), SHMDS_E_INVALID, "output buffer is 8");
    struct quote got;
    memset(&got, 0, sizeof got);
    EXPECT(shmds_array_get(b, 1, &got, sizeof got), SHMDS_OK, no_text);
    CHECK(got.venue == 1 && got.price == 2.5 && got.size == 3, "quote read back");
    EXPECT(shmds_array_get(b, 1, NULL, sizeof got), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_array_get(b, 99, &got, sizeof got), SHMDS_E_INDEX, no_text);
    /* A buffer that is the element itself is refused, not copied onto itself. */
    struct quote *data = shmds_array_data(b);
    EXPECT(shmds_array_get(b, 1, &data[1], sizeof got), SHMDS_E_INVALID, "overlaps");
    EXPECT(shmds_array_set(b, 1, (char *)&data[1] + 4, sizeof got), SHMDS_E_INVALID, "overlaps");
    EXPECT(shmds_array_get(b, 1, &data[2], sizeof got), SHMDS_OK, no_text);
    CHECK(data[2].price == 2.5, "copy to element 2");
    uint64_t old = 7;
    EXPECT(shmds_array_fetch_add(b, 0, 1, &old), SHMDS_E_INVALID, "not integers");
    shmds_array_close(b);
    shmds_array_close(a);

    /* Integer atomics. */
    must(shmds_array_create(seg, "counts", sizeof(uint32_t), "<I", 2, false, &a), "counts");
    EXPECT(shmds_array_fetch_add(a, 1, 5, &old), SHMDS_OK, no_text);
    EXPECT(shmds_array_fetch_add(a, 1, (uint64_t)-1, NULL), SHMDS_OK, no_text);
    EXPECT(shmds_array_fetch_add(a, 1, 0, &old), SHMDS_OK, no_text);
    CHECK(old == 4, "count %" PRIu64, old);
    EXPECT(shmds_array_fetch_add(a, 2, 1, &old), SHMDS_E_INDEX, no_text);
    EXPECT(shmds_array_fetch_add(NULL, 0, 1, &old), SHMDS_E_INVALID, no_text);
    shmds_array_close(a);
    CHECK(shmds_array_len(NULL) == 0 && shmds_array_elem_size(NULL) == 0 &&
              shmds_array_data(NULL) == NULL,
          "NULL array");
    shmds_array_close(NULL);
}

/*
 * Queues and stacks have the same functions; one body checks both.
 * KIND is queue or stack, H its handle type; ORDER_LAST says whether a pop
 * takes the last pushed (stack) or the first (queue).
 */
#define RING_TESTS(KIND, H, ORDER_LAST)                                                       \
    static void test_##KIND(ShmdsSegment *seg) {                                              \
        H *r = NULL, *w = NULL;                                                               \
        EXPECT(shmds_##KIND##_create(seg, #KIND "-recs", 8, REC_TYPE, 4, false, &r),          \
               SHMDS_E_INVALID, "describes elements of 64 bytes");                            \
        EXPECT(shmds_##KIND##_create(seg, #KIND "-recs", 64, NULL, 4, false, &r),             \
               SHMDS_E_INVALID, "NULL");                                                      \
        EXPECT(shmds_##KIND##_create(seg, #KIND "-recs", 64, REC_TYPE, 4, false, NULL),       \
               SHMDS_E_INVALID, "NULL");                                                      \
        must(shmds_##KIND##_create(seg, #KIND "-recs", sizeof(struct rec), REC_TYPE, 4, false, \
                                   &w),                                                       \
             "create " #KIND);                                                                \
        /* The README's mistake: 64-byte records opened as 8-byte elements. */               \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", sizeof(uint64_t), NULL, &r),           \
               SHMDS_E_TYPE,                                                                  \
               #KIND " \"" #KIND "-recs\" holds elements of 64 bytes (type " REC_TYPE "), not 8"); \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", sizeof(uint64_t), "<Q", &r),           \
               SHMDS_E_TYPE, "elements of 64 bytes");                                         \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", 64, "(8)<q", &r), SHMDS_E_TYPE,        \
               "holds elements of type " REC_TYPE ", not (8)<q");                             \
        EXPECT(shmds_##KIND##_open(seg, "quotes", 24, NULL, &r), SHMDS_E_TYPE, "not a");      \
        EXPECT(shmds_##KIND##_open(seg, "missing", 8, NULL, &r), SHMDS_E_NOT_FOUND, no_text); \
        EXPECT(shmds_##KIND##_open(NULL, #KIND "-recs", 64, NULL, &r), SHMDS_E_INVALID,       \
               "NULL");                                                                       \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", 64, NULL, NULL), SHMDS_E_INVALID,      \
               "NULL");                                                                       \
        EXPECT(shmds_##KIND##_create(seg, #KIND "-recs", 8, "<Q", 4, true, &r), SHMDS_E_TYPE, \
               no_text);                                                                      \
        int rc = shmds_##KIND##_create(seg, #KIND "-recs", 64, REC_TYPE, 5, true, &r);        \
        CHECK(rc == SHMDS_E_SHAPE, "open_existing, other capacity: %d", rc); \
        if (rc == SHMDS_OK) {                                                                 \
            CHECK(shmds_##KIND##_capacity(r) == 4, "capacity %" PRIu64,                       \
                  shmds_##KIND##_capacity(r));                                                \
            shmds_##KIND##_close(r);                                                          \
        }                                                                                     \
        must(shmds_##KIND##_open(seg, #KIND "-recs", sizeof(struct rec), NULL, &r),           \
             "open " #KIND);                                                                  \
        CHECK(shmds_##KIND##_elem_size(r) == 64 && shmds_##KIND##_capacity(r) == 4,           \
              #KIND " shape");                                                                \
        struct rec one, two;                                                                  \
        memset(&one, 1, sizeof one);                                                          \
        memset(&two, 2, sizeof two);                                                          \
        uint64_t small = 0;                                                                   \
        EXPECT(shmds_##KIND##_try_push(w, &small, sizeof small), SHMDS_E_INVALID,             \
               "input buffer is 8 bytes, but " #KIND);                           \
        EXPECT(shmds_##KIND##_push(w, &small, sizeof small, -1), SHMDS_E_INVALID,             \
               "input buffer is 8 bytes");                                                    \
        EXPECT(shmds_##KIND##_try_push(w, NULL, sizeof one), SHMDS_E_INVALID, "NULL");        \
        EXPECT(shmds_##KIND##_try_push(NULL, &one, sizeof one), SHMDS_E_INVALID, "NULL");     \
        EXPECT(shmds_##KIND##_try_pop(r, &small, sizeof small), SHMDS_E_INVALID,              \
               "output buffer is 8 bytes");                                                   \
        EXPECT(shmds_##KIND##_try_pop(r, &one, sizeof one), SHMDS_E_EMPTY, "empty");          \
        EXPECT(shmds_##KIND##_pop(r, &one, sizeof one, 1000000), SHMDS_E_TIMEOUT, no_text);   \
        EXPECT(shmds_##KIND##_try_push(w, &one, sizeof one), SHMDS_OK, no_text);              \
        EXPECT(shmds_##KIND##_push(w, &two, sizeof two, 0), SHMDS_OK, no_text);               \
        CHECK(shmds_##KIND##_len(r) == 2, #KIND " len %zu", shmds_##KIND##_len(r));           \
        /* An 8-byte buffer for a 64-byte element: refused, nothing taken. */                 \
        EXPECT(shmds_##KIND##_pop(r, &small, sizeof small, 1000000000), SHMDS_E_INVALID,      \
               "output buffer is 8 bytes, but " #KIND " \"" #KIND                             \
               "-recs\" has elements of 64 bytes");                                                        \
        EXPECT(shmds_##KIND##_try_pop(r, &small, sizeof small), SHMDS_E_INVALID, no_text);    \
        EXPECT(shmds_##KIND##_pop(r, &small, 0, -1), SHMDS_E_INVALID, no_text);               \
        EXPECT(shmds_##KIND##_pop(r, NULL, 64, -1), SHMDS_E_INVALID, "NULL");                 \
        EXPECT(shmds_##KIND##_pop(NULL, &one, 64, -1), SHMDS_E_INVALID, "NULL");              \
        CHECK(small == 0, "8-byte buffer written");                                           \
        CHECK(shmds_##KIND##_len(r) == 2, #KIND " lost an element to a refused pop");         \
        struct rec got;                                                                       \
        EXPECT(shmds_##KIND##_pop(r, &got, sizeof got, -1), SHMDS_OK, no_text);               \
        CHECK(got.v[7] == (ORDER_LAST ? two.v[7] : one.v[7]), #KIND " order");                \
        EXPECT(shmds_##KIND##_try_pop(r, &got, sizeof got), SHMDS_OK, no_text);               \
        CHECK(got.v[0] == (ORDER_LAST ? one.v[0] : two.v[0]), #KIND " order");                \
        for (int i = 0; i < 4; i++)                                                           \
            EXPECT(shmds_##KIND##_try_push(w, &one, sizeof one), SHMDS_OK, no_text);          \
        EXPECT(shmds_##KIND##_try_push(w, &one, sizeof one), SHMDS_E_FULL, "full");           \
        EXPECT(shmds_##KIND##_push(w, &one, sizeof one, 1000000), SHMDS_E_TIMEOUT,            \
               "timed out");                                                                  \
        shmds_##KIND##_close(r);                                                              \
        shmds_##KIND##_close(w);                                                              \
        CHECK(shmds_##KIND##_len(NULL) == 0 && shmds_##KIND##_capacity(NULL) == 0 &&          \
                  shmds_##KIND##_elem_size(NULL) == 0,                                        \
              "NULL " #KIND);                                                                 \
        shmds_##KIND##_close(NULL);                                                           \
    }

RING_TESTS(queue, ShmdsQueue, 0)
RING_TESTS(stack, ShmdsStack, 1)

/* A Rust FixedStr<16>: a length byte, then up to 16 bytes. */
struct str16 {
    uint8_t len;
    char bytes[16];
};
#define STR16_TYPE "T{B:len:16s:bytes:}"

static struct str16 str16(const char *s) {
    struct str16 k;
    memset(&k, 0, sizeof k);
    k.len = (uint8_t)strlen(s);
    memcpy(k.bytes, s, k.len);
    return k;
}

static void test_maps(ShmdsSegment *seg) {
    ShmdsMap *m = NULL, *o = NULL;
    const size_t ks = sizeof(struct str16), vs = sizeof(double);
    EXPECT(shmds_map_create(seg, "prices", 8, STR16_TYPE, vs, "<d", 2, false, &m),
           SHMDS_E_INVALID, "describes keys of 17 bytes");
    EXPECT(shmds_map_create(seg, "prices", ks, STR16_TYPE, 4, "<d", 2, false, &m),
           SHMDS_E_INVALID, "describes values of 8 bytes");
    EXPECT(shmds_map_create(seg, "prices", ks, NULL, vs, "<d", 2, false, &m), SHMDS_E_INVALID,
           "NULL");
    EXPECT(shmds_map_create(seg, "prices", ks, STR16_TYPE, vs, NULL, 2, false, &m),
           SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_create(seg, "prices", ks, STR16_TYPE, vs, "<d", 2, false, NULL),
           SHMDS_E_INVALID, "NULL");
    must(shmds_map_create(seg, "prices", ks, STR16_TYPE, vs, "<d", 2, false, &m), "prices");
    int rc = shmds_map_create(seg, "prices", ks, STR16_TYPE, vs, "<d", 3, true, &o);
    CHECK(rc == SHMDS_E_SHAPE, "open_existing, other capacity: %d", rc);
    if (rc == SHMDS_OK)
        shmds_map_close(o);
    EXPECT(shmds_map_open(seg, "prices", 8, NULL, vs, NULL, &o), SHMDS_E_TYPE,
           "map \"prices\" holds keys of 17 bytes (type " STR16_TYPE "), not 8");
    EXPECT(shmds_map_open(seg, "prices", ks, NULL, 4, NULL, &o), SHMDS_E_TYPE,
           "holds values of 8 bytes (type <d), not 4");
    EXPECT(shmds_map_open(seg, "prices", ks, NULL, vs, "<q", &o), SHMDS_E_TYPE,
           "holds values of type <d, not <q");
    EXPECT(shmds_map_open(seg, "prices", ks, "T{B:n:16s:b:}", vs, NULL, &o), SHMDS_E_TYPE,
           "holds keys of type " STR16_TYPE);
    EXPECT(shmds_map_open(seg, "quotes", 8, NULL, 8, NULL, &o), SHMDS_E_TYPE, "not a map");
    EXPECT(shmds_map_open(seg, "prices", ks, NULL, vs, NULL, NULL), SHMDS_E_INVALID, "NULL");
    must(shmds_map_open(seg, "prices", ks, STR16_TYPE, vs, "<d", &o), "open prices");
    CHECK(shmds_map_key_size(o) == ks && shmds_map_value_size(o) == vs &&
              shmds_map_capacity(o) == 2,
          "map shape");

    struct str16 k = str16("AAPL");
    double v = 189.5, got = 0;
    uint64_t small = 0;
    EXPECT(shmds_map_insert(m, &k, ks, &v, vs), 0, no_text);
    EXPECT(shmds_map_insert(m, &k, ks, &v, vs), 1, no_text);
    EXPECT(shmds_map_insert(m, &small, sizeof small, &v, vs), SHMDS_E_INVALID,
           "input buffer is 8 bytes, but map \"prices\" has keys of 17 bytes");
    EXPECT(shmds_map_insert(m, &k, ks, &v, 4), SHMDS_E_INVALID, "has values of 8 bytes");
    EXPECT(shmds_map_insert(m, NULL, ks, &v, vs), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_insert(m, &k, ks, NULL, vs), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_insert(NULL, &k, ks, &v, vs), SHMDS_E_INVALID, "NULL");
    float tiny = 0;
    EXPECT(shmds_map_get(o, &k, ks, &tiny, sizeof tiny), SHMDS_E_INVALID, "output buffer is 4");
    EXPECT(shmds_map_get(o, &k, ks - 1, &got, vs), SHMDS_E_INVALID, "input buffer is 16");
    EXPECT(shmds_map_get(o, &k, ks, NULL, vs), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_get(o, &k, ks, &got, vs), 1, no_text);
    CHECK(got == 189.5, "got %g", got);
    struct str16 absent = str16("IBM");
    EXPECT(shmds_map_get(o, &absent, ks, &got, vs), 0, no_text);
    EXPECT(shmds_map_remove(o, &k, 4), SHMDS_E_INVALID, "input buffer is 4");
    EXPECT(shmds_map_remove(o, NULL, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_remove(NULL, &k, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_map_fetch_add(o, &k, ks, 1, NULL), SHMDS_E_INVALID, "integer");
    CHECK(shmds_map_len(o) == 1, "len %zu", shmds_map_len(o));
    struct str16 b = str16("MSFT"), c = str16("Z");
    EXPECT(shmds_map_insert(o, &b, ks, &v, vs), 0, no_text);
    EXPECT(shmds_map_insert(o, &c, ks, &v, vs), SHMDS_E_NO_SPACE, "full");
    EXPECT(shmds_map_remove(o, &k, ks), 1, no_text);
    EXPECT(shmds_map_remove(o, &k, ks), 0, no_text);
    shmds_map_close(o);
    shmds_map_close(m);

    /* Integer values; key and output in one buffer (they may overlap). */
    must(shmds_map_create(seg, "hits", 8, "<Q", 8, "<Q", 8, false, &m), "hits");
    uint64_t key = 404, old = 1;
    EXPECT(shmds_map_fetch_add(m, &key, sizeof key, 5, &old), SHMDS_OK, no_text);
    CHECK(old == 0, "old %" PRIu64, old);
    EXPECT(shmds_map_fetch_add(m, &key, sizeof key, 2, NULL), SHMDS_OK, no_text);
    EXPECT(shmds_map_fetch_add(m, &key, 4, 2, NULL), SHMDS_E_INVALID, "input buffer is 4");
    EXPECT(shmds_map_fetch_add(NULL, &key, 8, 2, NULL), SHMDS_E_INVALID, "NULL");
    uint64_t both = 404;
    EXPECT(shmds_map_get(m, &both, sizeof both, &both, sizeof both), 1, no_text);
    CHECK(both == 7, "hits[404] = %" PRIu64, both);
    shmds_map_close(m);
    CHECK(shmds_map_len(NULL) == 0 && shmds_map_capacity(NULL) == 0 &&
              shmds_map_key_size(NULL) == 0 && shmds_map_value_size(NULL) == 0,
          "NULL map");
    shmds_map_close(NULL);
}

/* A segment NAME with a queue "jobs" holding one u64 (42) or one record. */
static int fixture(const char *name, const char *what) {
    ShmdsSegment *seg;
    must(shmds_segment_create(name, 1 << 20, &seg), "create fixture segment");
    ShmdsQueue *q;
    if (strcmp(what, "u64") == 0) {
        uint64_t v = 42;
        must(shmds_queue_create(seg, "jobs", sizeof v, "<Q", 8, false, &q), "jobs");
        must(shmds_queue_try_push(q, &v, sizeof v), "push");
    } else {
        struct rec r;
        memset(&r, 0xab, sizeof r);
        must(shmds_queue_create(seg, "jobs", sizeof r, REC_TYPE, 8, false, &q), "jobs");
        must(shmds_queue_try_push(q, &r, sizeof r), "push");
    }
    shmds_queue_close(q);
    shmds_segment_close(seg);
    return 0;
}

/* Erased structures: every handle says so (SHMDS_E_STALE), whatever its kind. */
static void test_stale(ShmdsSegment *seg) {
    ShmdsQueue *q = NULL;
    ShmdsStack *s = NULL;
    ShmdsArray *a = NULL;
    ShmdsMap *m = NULL;
    EXPECT(shmds_queue_create(seg, "gone-q", 8, "<Q", 4, false, &q), SHMDS_OK, no_text);
    EXPECT(shmds_stack_create(seg, "gone-s", 8, "<Q", 4, false, &s), SHMDS_OK, no_text);
    EXPECT(shmds_array_create(seg, "gone-a", 8, "<Q", 4, false, &a), SHMDS_OK, no_text);
    EXPECT(shmds_map_create(seg, "gone-m", 8, "<Q", 8, "<Q", 4, false, &m), SHMDS_OK, no_text);
    EXPECT(shmds_queue_check(q), SHMDS_OK, no_text);
    EXPECT(shmds_stack_check(s), SHMDS_OK, no_text);
    EXPECT(shmds_array_check(a), SHMDS_OK, no_text);
    EXPECT(shmds_map_check(m), SHMDS_OK, no_text);
    EXPECT(shmds_queue_check(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_erase(seg, "gone-nothing"), SHMDS_E_NOT_FOUND, "gone-nothing");
    EXPECT(shmds_segment_erase(NULL, "gone-q"), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_erase(seg, NULL), SHMDS_E_INVALID, no_text);
    const char *names[] = {"gone-q", "gone-s", "gone-a", "gone-m"};
    for (size_t i = 0; i < 4; i++)
        EXPECT(shmds_segment_erase(seg, names[i]), SHMDS_OK, no_text);
    EXPECT(shmds_queue_check(q), SHMDS_E_STALE, "gone-q");
    EXPECT(shmds_stack_check(s), SHMDS_E_STALE, "gone-s");
    EXPECT(shmds_array_check(a), SHMDS_E_STALE, "gone-a");
    EXPECT(shmds_map_check(m), SHMDS_E_STALE, "gone-m");
    uint64_t v = 1;
    EXPECT(shmds_queue_try_push(q, &v, sizeof v), SHMDS_E_STALE, no_text);
    shmds_queue_close(q);
    shmds_stack_close(s);
    shmds_array_close(a);
    shmds_map_close(m);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "fixture") == 0)
        return fixture(argv[2], argv[3]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s PREFIX | fixture NAME u64|rec\n", argv[0]);
        return 2;
    }
    char name[256];
    snprintf(name, sizeof name, "%s-main", argv[1]);
    ShmdsSegment *seg;
    must(shmds_segment_create(name, 4 << 20, &seg), "create segment");
    test_errors();
    test_segments(argv[1], seg, name);
    /* "jobs" exists so that the array tests can open it as the wrong kind. */
    ShmdsQueue *jobs;
    must(shmds_queue_create(seg, "jobs", 64, REC_TYPE, 2, false, &jobs), "jobs");
    shmds_queue_close(jobs);
    test_arrays(seg);
    test_queue(seg);
    test_stack(seg);
    test_maps(seg);
    test_stale(seg);
    test_entries(seg);
    shmds_segment_close(seg);
    must(shmds_segment_remove(name), "remove segment");
    printf("c safety: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
