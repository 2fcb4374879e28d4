/*
 * The C API's safety promises, checked under AddressSanitizer (`make
 * test-c` builds this with -fsanitize=address against libshmds.a; ASan
 * intercepts memcpy, so a copy inside Rust past a caller's buffer is
 * reported here, as a crash of this program).
 *
 *   safety PREFIX                 every documented call, with right and
 *                                 wrong sizes, types and NULLs, in segments
 *                                 named PREFIX-... (message buffers: heap
 *                                 copies of exactly the size passed)
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
#include <sys/stat.h>

#include "check.h"

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
                                SHMDS_E_SHAPE,    SHMDS_E_DISCONNECTED, SHMDS_E_SHUT_DOWN,
                                SHMDS_E_MESSAGE_TOO_LARGE, SHMDS_E_LAGGED,
                                SHMDS_E_ALREADY_ATTACHED,  SHMDS_E_TOO_MANY_ATTACHED,
                                SHMDS_E_BUFFER_TOO_SMALL,  SHMDS_E_OWNER_DEAD,
                                SHMDS_E_NOT_OWNER,         SHMDS_E_BROKEN,
                                SHMDS_E_TOO_MANY_RELEASES, SHMDS_E_READER_SLOTS_FULL};
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
           "array \"quotes\" holds elements of 24 bytes (record{venue: u8, price: f64, size: u32} "
           "(\"" QUOTE_TYPE "\")), not 8");
    EXPECT(shmds_array_open(seg, "quotes", 24, "T{<Q:a:<Q:b:<Q:c:}", &b), SHMDS_E_TYPE,
           "holds elements of type record{venue: u8, price: f64, size: u32} (\"" QUOTE_TYPE
           "\"), not record{a: u64, b: u64, c: u64}");
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
               #KIND " \"" #KIND "-recs\" holds elements of 64 bytes (record{a: u64,");            \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", sizeof(uint64_t), "<Q", &r),           \
               SHMDS_E_TYPE, "elements of 64 bytes");                                         \
        EXPECT(shmds_##KIND##_open(seg, #KIND "-recs", 64, "(8)<q", &r), SHMDS_E_TYPE,        \
               "(\"" REC_TYPE "\"), not [i64; 8] (\"(8)<q\")");                                 \
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

/*
 * Batches and the descriptor getter of queues and stacks: buffers are heap
 * copies of exactly the size passed, so ASan catches a copy past them.
 */
#define RING_BATCH_TESTS(KIND, H, ORDER_LAST)                                                 \
    static void test_##KIND##_batches(ShmdsSegment *seg) {                                    \
        H *r = NULL;                                                                          \
        must(shmds_##KIND##_create(seg, #KIND "-batch", 8, "<Q", 8, false, &r), "batch");     \
        uint64_t *in = malloc(10 * sizeof *in), *out = malloc(10 * sizeof *out);              \
        for (int i = 0; i < 10; i++) in[i] = 100 + (uint64_t)i;                              \
        size_t n = 99;                                                                        \
        EXPECT(shmds_##KIND##_push_many(r, in, 12, 0, &n), SHMDS_E_INVALID,                   \
               "not a whole number of the elements");                                         \
        CHECK(n == 0, "*pushed after a refusal: %zu", n);                                     \
        EXPECT(shmds_##KIND##_push_many(r, NULL, 16, 0, &n), SHMDS_E_INVALID, "NULL");        \
        EXPECT(shmds_##KIND##_push_many(NULL, in, 16, 0, &n), SHMDS_E_INVALID, "NULL");       \
        EXPECT(shmds_##KIND##_push_many(r, NULL, 0, 0, &n), SHMDS_OK, no_text);               \
        CHECK(n == 0, "empty batch pushed %zu", n);                                           \
        EXPECT(shmds_##KIND##_pop_many(r, out, 10 * sizeof *out, 0, &n), SHMDS_E_EMPTY,       \
               "empty");                                                                      \
        EXPECT(shmds_##KIND##_pop_many(r, out, 8, 1000000, &n), SHMDS_E_TIMEOUT, no_text);    \
        /* 10 into a capacity of 8: 8 fit now. */                                             \
        EXPECT(shmds_##KIND##_push_many(r, in, 10 * sizeof *in, 0, &n), SHMDS_E_FULL,         \
               "pushed says how many");                                                       \
        CHECK(n == 8, "pushed %zu of 10 into 8 slots", n);                                    \
        EXPECT(shmds_##KIND##_push_many(r, in + 8, 2 * sizeof *in, 1000000, NULL),            \
               SHMDS_E_TIMEOUT, no_text);                                                     \
        EXPECT(shmds_##KIND##_pop_many(r, out, 7, 0, &n), SHMDS_E_INVALID, "whole number");  \
        EXPECT(shmds_##KIND##_pop_many(r, out, 3 * sizeof *out, -1, &n), SHMDS_OK, no_text);  \
        CHECK(n == 3, "popped %zu, asked 3", n);                                              \
        CHECK(out[0] == (ORDER_LAST ? 107u : 100u) && out[2] == (ORDER_LAST ? 105u : 102u),   \
              #KIND " batch order %" PRIu64 " %" PRIu64, out[0], out[2]);                     \
        EXPECT(shmds_##KIND##_pop_many(r, out, 10 * sizeof *out, 0, &n), SHMDS_OK, no_text);  \
        CHECK(n == 5, "popped the last %zu of 5", n);                                         \
        EXPECT(shmds_##KIND##_push_many(r, in, 2 * sizeof *in, -1, &n), SHMDS_OK, no_text);   \
        CHECK(n == 2 && shmds_##KIND##_len(r) == 2, "pushed %zu", n);                         \
        char *small = malloc(2), *big = malloc(3);                                            \
        size_t len = 0;                                                                       \
        EXPECT(shmds_##KIND##_descriptor(r, small, 2, &len), SHMDS_E_BUFFER_TOO_SMALL,        \
               no_text);                                                                      \
        CHECK(len == 2, "descriptor length %zu", len);                                        \
        EXPECT(shmds_##KIND##_descriptor(r, big, 3, &len), SHMDS_OK, no_text);                \
        CHECK(strcmp(big, "<Q") == 0, "descriptor %s", big);                                  \
        EXPECT(shmds_##KIND##_descriptor(r, NULL, 0, &len), SHMDS_E_BUFFER_TOO_SMALL,         \
               no_text);                                                                      \
        EXPECT(shmds_##KIND##_descriptor(NULL, big, 3, &len), SHMDS_E_INVALID, "NULL");       \
        free(small);                                                                          \
        free(big);                                                                            \
        free(in);                                                                             \
        free(out);                                                                            \
        shmds_##KIND##_close(r);                                                              \
    }

RING_BATCH_TESTS(queue, ShmdsQueue, 1 - 1)
RING_BATCH_TESTS(stack, ShmdsStack, 1)

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
           "map \"prices\" holds keys of 17 bytes (str16 (\"" STR16_TYPE "\")), not 8");
    EXPECT(shmds_map_open(seg, "prices", ks, NULL, 4, NULL, &o), SHMDS_E_TYPE,
           "holds values of 8 bytes (f64 (\"<d\")), not 4");
    EXPECT(shmds_map_open(seg, "prices", ks, NULL, vs, "<q", &o), SHMDS_E_TYPE,
           "holds values of type f64 (\"<d\"), not i64 (\"<q\")");
    EXPECT(shmds_map_open(seg, "prices", ks, "T{B:n:16s:b:}", vs, NULL, &o), SHMDS_E_TYPE,
           "holds keys of type str16 (\"" STR16_TYPE "\")");
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

/* Runs after test_maps: "prices" is a map. */
static void test_sets(ShmdsSegment *seg) {
    ShmdsSet *s = NULL, *o = NULL;
    ShmdsMap *m = NULL;
    const size_t ks = sizeof(struct str16);
    EXPECT(shmds_set_create(seg, "symbols", 8, STR16_TYPE, 2, false, &s), SHMDS_E_INVALID,
           "describes keys of 17 bytes");
    EXPECT(shmds_set_create(seg, "symbols", ks, NULL, 2, false, &s), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_set_create(seg, "symbols", ks, STR16_TYPE, 2, false, NULL), SHMDS_E_INVALID,
           "NULL");
    must(shmds_set_create(seg, "symbols", ks, STR16_TYPE, 2, false, &s), "symbols");
    int rc = shmds_set_create(seg, "symbols", ks, STR16_TYPE, 3, true, &o);
    CHECK(rc == SHMDS_E_SHAPE, "open_existing, other capacity: %d", rc);
    if (rc == SHMDS_OK)
        shmds_set_close(o);
    EXPECT(shmds_set_open(seg, "symbols", 8, NULL, &o), SHMDS_E_TYPE,
           "set \"symbols\" holds keys of 17 bytes (str16 (\"" STR16_TYPE "\")), not 8");
    EXPECT(shmds_set_open(seg, "symbols", ks, "T{B:n:16s:b:}", &o), SHMDS_E_TYPE,
           "holds keys of type str16 (\"" STR16_TYPE "\")");
    EXPECT(shmds_set_open(seg, "prices", ks, NULL, &o), SHMDS_E_TYPE, "not a set");
    EXPECT(shmds_map_open(seg, "symbols", ks, NULL, 8, NULL, &m), SHMDS_E_TYPE, "not a map");
    EXPECT(shmds_set_open(seg, "absent", ks, NULL, &o), SHMDS_E_NOT_FOUND, "absent");
    EXPECT(shmds_set_open(seg, "symbols", ks, NULL, NULL), SHMDS_E_INVALID, "NULL");
    must(shmds_set_create(seg, "symbols", ks, STR16_TYPE, 2, true, &o), "open symbols");
    CHECK(shmds_set_key_size(o) == ks && shmds_set_capacity(o) == 2, "set shape");

    struct str16 k = str16("AAPL"), b = str16("MSFT"), c = str16("Z");
    uint64_t small = 0;
    /* 1: found (already there), 0: added, as shmds_map_insert. */
    EXPECT(shmds_set_insert(s, &k, ks), 0, no_text);
    EXPECT(shmds_set_insert(o, &k, ks), 1, no_text);
    EXPECT(shmds_set_insert(s, &small, sizeof small), SHMDS_E_INVALID,
           "input buffer is 8 bytes, but set \"symbols\" has keys of 17 bytes");
    EXPECT(shmds_set_insert(s, NULL, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_set_insert(NULL, &k, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_set_contains(o, &k, ks), 1, no_text);
    EXPECT(shmds_set_contains(o, &b, ks), 0, no_text);
    EXPECT(shmds_set_contains(o, &k, ks - 1), SHMDS_E_INVALID, "input buffer is 16");
    EXPECT(shmds_set_contains(o, NULL, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_set_insert(o, &b, ks), 0, no_text);
    EXPECT(shmds_set_insert(o, &c, ks), SHMDS_E_NO_SPACE, "set \"symbols\" is full");
    CHECK(shmds_set_len(s) == 2, "len %zu", shmds_set_len(s));
    EXPECT(shmds_set_remove(o, &k, 4), SHMDS_E_INVALID, "input buffer is 4");
    EXPECT(shmds_set_remove(NULL, &k, ks), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_set_remove(o, &k, ks), 1, no_text);
    EXPECT(shmds_set_remove(o, &k, ks), 0, no_text);
    EXPECT(shmds_set_insert(s, &c, ks), 0, no_text);
    EXPECT(shmds_set_check(s), SHMDS_OK, no_text);
    shmds_set_close(o);
    must(shmds_segment_erase(seg, "symbols"), "erase symbols");
    EXPECT(shmds_set_check(s), SHMDS_E_STALE, "symbols");
    EXPECT(shmds_set_contains(s, &c, ks), SHMDS_E_STALE, "symbols");
    shmds_set_close(s);
    CHECK(shmds_set_len(NULL) == 0 && shmds_set_capacity(NULL) == 0 &&
              shmds_set_key_size(NULL) == 0,
          "NULL set");
    EXPECT(shmds_set_check(NULL), SHMDS_E_INVALID, "NULL");
    shmds_set_close(NULL);
}

/* A heap copy of exactly `size` bytes (ASan reports any access past it). */
static char *exactly(size_t size) {
    char *p = malloc(size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "safety: out of memory\n");
        exit(2);
    }
    return p;
}

/* Channels: create and open, then every send and receive, with right and
 * wrong sizes and NULLs, on one sender and one receiver. */
static void test_channel(ShmdsSegment *seg) {
    ShmdsChannel *ch = NULL, *o = NULL;
    ShmdsSender *tx = NULL, *tx2 = NULL;
    ShmdsReceiver *rx = NULL, *rx2 = NULL;
    ShmdsQueue *q = NULL;
    EXPECT(shmds_channel_create(NULL, "events", 4096, 0, 0, false, &ch), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_create(seg, NULL, 4096, 0, 0, false, &ch), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_create(seg, "events", 4096, 0, 0, false, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_create(seg, "events", 4096, 0, 8, false, &ch), SHMDS_E_INVALID,
           "flags 0x8 include bits a channel does not take");
    EXPECT(shmds_channel_create(seg, "events", 0, 0, 0, false, &ch), SHMDS_E_INVALID, "capacity");
    EXPECT(shmds_channel_create(seg, "events", 4096, 8192, 0, false, &ch), SHMDS_E_INVALID,
           "max_message must be at most the capacity");
    EXPECT(shmds_channel_open(seg, "events", &ch), SHMDS_E_NOT_FOUND, "events");
    must(shmds_channel_create(seg, "events", 4000, 1000, SHMDS_CHECKSUM, false, &ch), "events");
    CHECK(shmds_channel_capacity(ch) == 4032 && shmds_channel_max_message(ch) == 1000 &&
              shmds_channel_flags(ch) == SHMDS_CHECKSUM,
          "events shape: %" PRIu64 " %" PRIu64 " %u", shmds_channel_capacity(ch),
          shmds_channel_max_message(ch), shmds_channel_flags(ch));
    CHECK(shmds_channel_len(ch) == 0 && shmds_channel_is_empty(ch) && !shmds_channel_is_full(ch) &&
              !shmds_channel_is_shut_down(ch),
          "a new channel is empty");
    EXPECT(shmds_channel_check(ch), SHMDS_OK, no_text);
    EXPECT(shmds_channel_create(seg, "events", 4032, 0, 0, false, &o), SHMDS_E_EXISTS, no_text);
    EXPECT(shmds_channel_create(seg, "events", 8192, 0, 0, true, &o), SHMDS_E_SHAPE,
           "capacity 4032, not the 8192");
    EXPECT(shmds_channel_create(seg, "events", 4032, 0, 0, true, &o), SHMDS_OK, no_text);
    CHECK(shmds_channel_max_message(o) == 1000, "open_existing: its own max_message");
    shmds_channel_close(o);
    EXPECT(shmds_channel_open(seg, "jobs", &o), SHMDS_E_TYPE, "not a channel");
    EXPECT(shmds_queue_open(seg, "events", 8, NULL, &q), SHMDS_E_TYPE, "is a channel");
    EXPECT(shmds_channel_open(seg, "events", NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_open(NULL, "events", &o), SHMDS_E_INVALID, "NULL");
    must(shmds_channel_open(seg, "events", &o), "open events");

    EXPECT(shmds_channel_attach_sender(NULL, &tx), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_attach_sender(ch, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_attach_receiver(NULL, &rx), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_attach_receiver(o, NULL), SHMDS_E_INVALID, "NULL");
    must(shmds_channel_attach_sender(ch, &tx), "attach sender");
    must(shmds_channel_attach_receiver(o, &rx), "attach receiver");

    /* Send: a buffer and its length; NULL only with length 0. */
    char big[1200];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    EXPECT(shmds_sender_try_send(tx, "hello", 5), SHMDS_OK, no_text);
    EXPECT(shmds_sender_try_send(tx, NULL, 0), SHMDS_OK, no_text);
    EXPECT(shmds_sender_try_send(tx, NULL, 5), SHMDS_E_INVALID, "NULL but its length is 5");
    EXPECT(shmds_sender_try_send(tx, big, 1001), SHMDS_E_MESSAGE_TOO_LARGE,
           "a message of 1001 bytes is larger than \"events\" allows (1000 bytes");
    /* A length past the buffer is refused before a byte is read. */
    EXPECT(shmds_sender_send(tx, big, SIZE_MAX, -1), SHMDS_E_MESSAGE_TOO_LARGE, no_text);
    EXPECT(shmds_sender_try_send(NULL, "x", 1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_send(NULL, "x", 1, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_send(tx, big, 300, 0), SHMDS_OK, no_text);
    CHECK(shmds_channel_len(ch) == 3, "len %zu", shmds_channel_len(ch));

    /* Receive into a buffer: one too small keeps the message, first in line. */
    char buf[64];
    size_t n = 99;
    EXPECT(shmds_receiver_try_recv(rx, buf, 4, &n), SHMDS_E_BUFFER_TOO_SMALL,
           "the message from channel \"events\" is 5 bytes, more than the 4-byte buffer; "
           "it stays first in the channel");
    CHECK(n == 5, "needed %zu", n);
    n = 0;
    EXPECT(shmds_receiver_recv(rx, NULL, 0, &n, -1), SHMDS_E_BUFFER_TOO_SMALL, "5 bytes");
    CHECK(n == 5, "needed %zu", n);
    EXPECT(shmds_receiver_try_recv(rx, NULL, 8, &n), SHMDS_E_INVALID, "NULL but its size is 8");
    EXPECT(shmds_receiver_try_recv(rx, buf, sizeof buf, NULL), SHMDS_E_INVALID,
           "length output pointer is NULL");
    EXPECT(shmds_receiver_try_recv(NULL, buf, sizeof buf, &n), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_recv(NULL, buf, sizeof buf, &n, -1), SHMDS_E_INVALID, "NULL");
    CHECK(shmds_channel_len(ch) == 3, "a refused receive lost a message");
    char *five = exactly(5);
    EXPECT(shmds_receiver_recv(rx, five, 5, &n, -1), SHMDS_OK, no_text);
    CHECK(n == 5 && memcmp(five, "hello", 5) == 0, "hello back");
    free(five);
    n = 99;
    EXPECT(shmds_receiver_try_recv(rx, NULL, 0, &n), SHMDS_OK, no_text);
    CHECK(n == 0, "empty message: %zu", n);
    char *exact = exactly(300);
    EXPECT(shmds_receiver_recv(rx, exact, 299, &n, 0), SHMDS_E_BUFFER_TOO_SMALL, "300 bytes");
    EXPECT(shmds_receiver_recv(rx, exact, 300, &n, 0), SHMDS_OK, no_text);
    CHECK(n == 300 && memcmp(exact, big, 300) == 0, "300 bytes back");
    free(exact);
    EXPECT(shmds_receiver_try_recv(rx, buf, sizeof buf, &n), SHMDS_E_EMPTY, "empty");
    EXPECT(shmds_receiver_recv(rx, buf, sizeof buf, &n, 1000000), SHMDS_E_TIMEOUT, "timed out");

    /* Zero copy out: reserve, write in place, commit or abort. */
    void *w = NULL, *w2 = NULL;
    EXPECT(shmds_sender_try_reserve(tx, 10, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_reserve(tx, 10, NULL, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_try_reserve(NULL, 10, &w), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_try_reserve(tx, 1001, &w), SHMDS_E_MESSAGE_TOO_LARGE, "1001 bytes");
    EXPECT(shmds_sender_reserve(tx, SIZE_MAX, &w, -1), SHMDS_E_MESSAGE_TOO_LARGE, no_text);
    EXPECT(shmds_sender_commit(tx), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_sender_abort(tx), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_sender_commit(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_abort(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_sender_try_reserve(tx, 10, &w), SHMDS_OK, no_text);
    CHECK(w != NULL, "no data pointer");
    if (w != NULL)
        memcpy(w, "0123456789", 10);
    EXPECT(shmds_sender_try_reserve(tx, 10, &w2), SHMDS_E_INVALID, "has a reservation open");
    EXPECT(shmds_sender_try_send(tx, "x", 1), SHMDS_E_INVALID, "commit or abort it first");
    EXPECT(shmds_receiver_try_recv(rx, buf, sizeof buf, &n), SHMDS_E_EMPTY, no_text);
    EXPECT(shmds_sender_commit(tx), SHMDS_OK, no_text);
    EXPECT(shmds_sender_commit(tx), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_sender_reserve(tx, 7, &w, -1), SHMDS_OK, no_text);
    if (w != NULL)
        memcpy(w, "aborted", 7);
    EXPECT(shmds_sender_abort(tx), SHMDS_OK, no_text);
    EXPECT(shmds_sender_reserve(tx, 0, &w, 0), SHMDS_OK, no_text);
    EXPECT(shmds_sender_commit(tx), SHMDS_OK, no_text);

    /* Zero copy in: the message in place until released. */
    const void *r = NULL, *r2 = NULL;
    EXPECT(shmds_receiver_try_recv_ref(rx, NULL, &n), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_try_recv_ref(rx, &r, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_recv_ref(rx, NULL, NULL, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_try_recv_ref(NULL, &r, &n), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_release(rx), SHMDS_E_INVALID, "holds no message in place");
    EXPECT(shmds_receiver_release(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_receiver_try_recv_ref(rx, &r, &n), SHMDS_OK, no_text);
    CHECK(n == 10 && r != NULL && memcmp(r, "0123456789", 10) == 0, "reserved message back");
    EXPECT(shmds_receiver_try_recv_ref(rx, &r2, &n), SHMDS_E_INVALID, "holds a message in place");
    EXPECT(shmds_receiver_try_recv(rx, buf, sizeof buf, &n), SHMDS_E_INVALID, "release it first");
    EXPECT(shmds_receiver_release(rx), SHMDS_OK, no_text);
    EXPECT(shmds_receiver_release(rx), SHMDS_E_INVALID, "holds no message");
    /* The aborted reservation is passed over; then the empty one. */
    EXPECT(shmds_receiver_recv_ref(rx, &r, &n, -1), SHMDS_OK, no_text);
    CHECK(n == 0, "empty reserved message: %zu", n);
    EXPECT(shmds_receiver_release(rx), SHMDS_OK, no_text);
    EXPECT(shmds_receiver_recv_ref(rx, &r, &n, 1000000), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_receiver_try_recv_ref(rx, &r, &n), SHMDS_E_EMPTY, no_text);

    /* Full: try and timed sends give up. */
    int sent = 0;
    while (shmds_sender_try_send(tx, big, 1000) == SHMDS_OK && sent < 100)
        sent++;
    CHECK(sent >= 3 && sent <= 4, "%d messages of 1000 bytes in 4032", sent);
    EXPECT(shmds_sender_try_send(tx, big, 1000), SHMDS_E_FULL, "full");
    EXPECT(shmds_sender_send(tx, big, 1000, 1000000), SHMDS_E_TIMEOUT, "timed out");
    EXPECT(shmds_sender_try_reserve(tx, 1000, &w), SHMDS_E_FULL, no_text);

    /* Shutdown: sends refused; receivers drain, then are told. */
    EXPECT(shmds_channel_shutdown(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_channel_shutdown(o), SHMDS_OK, no_text);
    CHECK(shmds_channel_is_shut_down(ch), "shutdown not seen");
    EXPECT(shmds_sender_try_send(tx, "x", 1), SHMDS_E_SHUT_DOWN, "was shut down");
    EXPECT(shmds_sender_reserve(tx, 1, &w, -1), SHMDS_E_SHUT_DOWN, no_text);
    char *msg = exactly(1000);
    int drained = 0;
    while (shmds_receiver_try_recv(rx, msg, 1000, &n) == SHMDS_OK)
        drained++;
    CHECK(drained == sent, "drained %d of %d", drained, sent);
    EXPECT(shmds_receiver_recv(rx, msg, 1000, &n, -1), SHMDS_E_SHUT_DOWN, "was shut down");
    free(msg);

    /* A second sender and receiver of an MPMC channel: fine. */
    EXPECT(shmds_channel_attach_sender(o, &tx2), SHMDS_OK, no_text);
    EXPECT(shmds_channel_attach_receiver(ch, &rx2), SHMDS_OK, no_text);
    shmds_sender_close(tx2);
    shmds_receiver_close(rx2);
    shmds_sender_close(tx);
    shmds_receiver_close(rx);
    shmds_channel_close(o);
    shmds_channel_close(ch);
    CHECK(shmds_channel_len(NULL) == 0 && shmds_channel_capacity(NULL) == 0 &&
              shmds_channel_max_message(NULL) == 0 && shmds_channel_flags(NULL) == 0 &&
              !shmds_channel_is_empty(NULL) && !shmds_channel_is_full(NULL) &&
              !shmds_channel_is_shut_down(NULL),
          "NULL channel");
    EXPECT(shmds_channel_check(NULL), SHMDS_E_INVALID, "NULL");
    shmds_channel_close(NULL);
    shmds_sender_close(NULL);
    shmds_receiver_close(NULL);
}

/* SPSC ends, disconnection, handles closed in any order, guards left open
 * at close, and erasure. */
static void test_channel_ends(ShmdsSegment *seg) {
    ShmdsChannel *ch = NULL;
    ShmdsSender *tx = NULL, *tx2 = NULL;
    ShmdsReceiver *rx = NULL, *rx2 = NULL;
    must(shmds_channel_create(seg, "pipe", 1024, 0, SHMDS_SPSC, false, &ch), "pipe");
    CHECK(shmds_channel_flags(ch) == SHMDS_SPSC && shmds_channel_max_message(ch) == 1024,
          "pipe shape");
    must(shmds_channel_attach_sender(ch, &tx), "pipe sender");
    EXPECT(shmds_channel_attach_sender(ch, &tx2), SHMDS_E_ALREADY_ATTACHED,
           "single-producer single-consumer channel and process");
    CHECK(tx2 == NULL, "a refused attach wrote a handle");
    must(shmds_channel_attach_receiver(ch, &rx), "pipe receiver");
    EXPECT(shmds_channel_attach_receiver(ch, &rx2), SHMDS_E_ALREADY_ATTACHED, "as its receiver");
    /* The channel handle closed first: its senders and receivers go on. */
    shmds_channel_close(ch);
    size_t n = 0;
    char buf[16];
    EXPECT(shmds_sender_send(tx, "one", 3, -1), SHMDS_OK, no_text);
    EXPECT(shmds_sender_send(tx, "two", 3, -1), SHMDS_OK, no_text);
    EXPECT(shmds_receiver_recv(rx, buf, 2, &n, -1), SHMDS_E_BUFFER_TOO_SMALL, "3 bytes");
    EXPECT(shmds_receiver_recv(rx, buf, sizeof buf, &n, -1), SHMDS_OK, no_text);
    CHECK(n == 3 && memcmp(buf, "one", 3) == 0, "SPSC: one");
    /* The last sender gone: the rest is delivered, then disconnection. */
    void *w = NULL;
    EXPECT(shmds_sender_try_reserve(tx, 5, &w), SHMDS_OK, no_text);
    shmds_sender_close(tx); /* with a reservation open: aborted */
    EXPECT(shmds_receiver_try_recv(rx, buf, sizeof buf, &n), SHMDS_OK, no_text);
    CHECK(n == 3 && memcmp(buf, "two", 3) == 0, "SPSC: two");
    EXPECT(shmds_receiver_recv(rx, buf, sizeof buf, &n, -1), SHMDS_E_DISCONNECTED,
           "no sender is attached any more");
    /* A new sender may attach now. */
    must(shmds_channel_open(seg, "pipe", &ch), "reopen pipe");
    must(shmds_channel_attach_sender(ch, &tx), "second pipe sender");
    EXPECT(shmds_sender_send(tx, "three", 5, -1), SHMDS_OK, no_text);
    const void *r = NULL;
    EXPECT(shmds_receiver_recv_ref(rx, &r, &n, -1), SHMDS_OK, no_text);
    CHECK(n == 5 && memcmp(r, "three", 5) == 0, "SPSC: three");
    shmds_receiver_close(rx); /* with a message held: released */
    /* No receiver left: a sender that finds the channel full is told. */
    int sent = 0;
    while (shmds_sender_try_send(tx, "x", 1) == SHMDS_OK && sent < 100)
        sent++;
    CHECK(sent == 16, "%d one-cell messages in 16 cells", sent);
    EXPECT(shmds_sender_send(tx, "x", 1, -1), SHMDS_E_DISCONNECTED, "no receiver is attached");

    /* Erased: every handle says so. */
    EXPECT(shmds_segment_erase(seg, "pipe"), SHMDS_OK, no_text);
    EXPECT(shmds_channel_check(ch), SHMDS_E_STALE, "pipe");
    EXPECT(shmds_sender_try_send(tx, "x", 1), SHMDS_E_STALE, "erased");
    EXPECT(shmds_channel_attach_receiver(ch, &rx), SHMDS_E_STALE, no_text);
    shmds_sender_close(tx);
    shmds_channel_close(ch);
}

/* Topics: publish (copied and in place), subscribers, lagging, the newest
 * message. */
static void test_topic(ShmdsSegment *seg) {
    ShmdsTopic *t = NULL, *o = NULL;
    ShmdsSubscriber *sub = NULL, *old = NULL;
    EXPECT(shmds_topic_create(NULL, "ticks", 1024, 0, 0, false, &t), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_create(seg, NULL, 1024, 0, 0, false, &t), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_create(seg, "ticks", 1024, 0, 0, false, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_create(seg, "ticks", 1024, 0, SHMDS_SPSC, false, &t), SHMDS_E_INVALID,
           "a topic does not take (it takes SHMDS_CHECKSUM)");
    EXPECT(shmds_topic_create(seg, "ticks", 64, 0, 0, false, &t), SHMDS_E_INVALID, "capacity");
    EXPECT(shmds_topic_create(seg, "ticks", 1024, 600, 0, false, &t), SHMDS_E_INVALID,
           "at most half its capacity (512 bytes)");
    must(shmds_topic_create(seg, "ticks", 1024, 0, SHMDS_CHECKSUM, false, &t), "ticks");
    CHECK(shmds_topic_capacity(t) == 1024 && shmds_topic_max_message(t) == 512 &&
              shmds_topic_flags(t) == SHMDS_CHECKSUM && shmds_topic_is_empty(t) &&
              shmds_topic_len(t) == 0 && shmds_topic_published(t) == 0,
          "ticks shape");
    EXPECT(shmds_topic_check(t), SHMDS_OK, no_text);
    EXPECT(shmds_topic_create(seg, "ticks", 2048, 0, 0, true, &o), SHMDS_E_SHAPE, "capacity");
    EXPECT(shmds_topic_open(seg, "events-gone", &o), SHMDS_E_NOT_FOUND, no_text);
    EXPECT(shmds_topic_open(seg, "jobs", &o), SHMDS_E_TYPE, "not a topic");
    EXPECT(shmds_topic_open(seg, "ticks", NULL), SHMDS_E_INVALID, "NULL");
    must(shmds_topic_open(seg, "ticks", &o), "open ticks");

    char buf[64];
    size_t n = 0;
    uint64_t seq = 99, missed = 99;
    EXPECT(shmds_topic_latest(t, buf, sizeof buf, &n, &seq), SHMDS_E_EMPTY,
           "nothing was published to topic \"ticks\" yet");
    EXPECT(shmds_topic_subscribe(NULL, false, &sub), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_subscribe(t, false, NULL), SHMDS_E_INVALID, "NULL");
    must(shmds_topic_subscribe(o, false, &sub), "subscribe");
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, &n, &seq, &missed), SHMDS_E_EMPTY,
           "empty");
    EXPECT(shmds_subscriber_recv(sub, buf, sizeof buf, &n, &seq, &missed, 1000000),
           SHMDS_E_TIMEOUT, no_text);

    /* Publish: a buffer and its length. */
    EXPECT(shmds_topic_publish(t, NULL, 5, &seq, -1), SHMDS_E_INVALID, "NULL but its length");
    EXPECT(shmds_topic_publish(t, buf, 513, &seq, -1), SHMDS_E_MESSAGE_TOO_LARGE,
           "513 bytes is larger than \"ticks\" allows (512 bytes");
    EXPECT(shmds_topic_publish(t, buf, SIZE_MAX, &seq, -1), SHMDS_E_MESSAGE_TOO_LARGE, no_text);
    EXPECT(shmds_topic_publish(NULL, "x", 1, &seq, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_publish(t, "tick 0", 6, &seq, -1), SHMDS_OK, no_text);
    CHECK(seq == 0, "seq %" PRIu64, seq);

    /* Receive: too small a buffer keeps the message for the next call. */
    n = 0;
    EXPECT(shmds_subscriber_try_recv(sub, buf, 5, &n, &seq, &missed), SHMDS_E_BUFFER_TOO_SMALL,
           "is 6 bytes, more than the 5-byte buffer; this subscriber keeps it");
    CHECK(n == 6, "needed %zu", n);
    CHECK(shmds_subscriber_pending(sub) == 1, "pending %" PRIu64, shmds_subscriber_pending(sub));
    EXPECT(shmds_subscriber_try_recv(sub, NULL, 8, &n, &seq, &missed), SHMDS_E_INVALID,
           "NULL but its size is 8");
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, NULL, &seq, &missed), SHMDS_E_INVALID,
           "length output pointer is NULL");
    EXPECT(shmds_subscriber_try_recv(NULL, buf, sizeof buf, &n, &seq, &missed), SHMDS_E_INVALID,
           "NULL");
    char *six = exactly(6);
    seq = 99;
    EXPECT(shmds_subscriber_recv(sub, six, 6, &n, &seq, &missed, -1), SHMDS_OK, no_text);
    CHECK(n == 6 && seq == 0 && missed == 0 && memcmp(six, "tick 0", 6) == 0, "tick 0 back");
    free(six);
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, &n, NULL, NULL), SHMDS_E_EMPTY, no_text);

    /* In place: reserve, write, commit or abort. */
    void *w = NULL;
    EXPECT(shmds_topic_reserve(t, 4, NULL, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_reserve(NULL, 4, &w, -1), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_reserve(t, 513, &w, -1), SHMDS_E_MESSAGE_TOO_LARGE, no_text);
    EXPECT(shmds_topic_commit(t, &seq), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_topic_abort(t), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_topic_commit(NULL, &seq), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_abort(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_reserve(t, 6, &w, -1), SHMDS_OK, no_text);
    if (w != NULL)
        memcpy(w, "tick 1", 6);
    EXPECT(shmds_topic_publish(t, "x", 1, &seq, -1), SHMDS_E_INVALID, "has a reservation open");
    EXPECT(shmds_topic_reserve(t, 6, &w, -1), SHMDS_E_INVALID, "commit or abort it first");
    /* Another handle waits for the publish lock, up to its timeout. */
    EXPECT(shmds_topic_publish(o, "x", 1, &seq, 1000000), SHMDS_E_TIMEOUT, no_text);
    seq = 99;
    EXPECT(shmds_topic_commit(t, &seq), SHMDS_OK, no_text);
    CHECK(seq == 1, "seq %" PRIu64, seq);
    EXPECT(shmds_topic_reserve(t, 3, &w, 0), SHMDS_OK, no_text);
    EXPECT(shmds_topic_abort(t), SHMDS_OK, no_text);
    EXPECT(shmds_topic_commit(t, NULL), SHMDS_E_INVALID, "has no reservation open");
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, &n, &seq, NULL), SHMDS_OK, no_text);
    CHECK(n == 6 && seq == 1 && memcmp(buf, "tick 1", 6) == 0, "tick 1 back");

    /* Lagging: 100 one-cell messages into 16 cells. */
    for (uint64_t i = 2; i < 102; i++)
        EXPECT(shmds_topic_publish(o, &i, sizeof i, NULL, -1), SHMDS_OK, no_text);
    CHECK(shmds_topic_len(t) == 16 && shmds_topic_published(t) == 102, "held %zu, published %" PRIu64,
          shmds_topic_len(t), shmds_topic_published(t));
    missed = 0;
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, &n, &seq, &missed), SHMDS_E_LAGGED,
           "missed 84 messages");
    CHECK(missed == 84, "missed %" PRIu64, missed);
    uint64_t v = 0;
    EXPECT(shmds_subscriber_recv(sub, &v, sizeof v, &n, &seq, &missed, -1), SHMDS_OK, no_text);
    CHECK(seq == 86 && v == 86 && missed == 0, "after lagging: seq %" PRIu64 " value %" PRIu64,
          seq, v);
    EXPECT(shmds_subscriber_recv_latest(sub, &v, 4, &n, &seq), SHMDS_E_BUFFER_TOO_SMALL, "8 bytes");
    EXPECT(shmds_subscriber_try_recv(sub, &v, sizeof v, &n, &seq, NULL), SHMDS_OK, no_text);
    CHECK(seq == 101 && v == 101, "kept latest: seq %" PRIu64, seq);
    EXPECT(shmds_subscriber_recv_latest(sub, &v, sizeof v, &n, &seq), SHMDS_OK, no_text);
    CHECK(seq == 101, "latest seq %" PRIu64, seq);
    EXPECT(shmds_subscriber_try_recv(sub, &v, sizeof v, &n, &seq, NULL), SHMDS_E_EMPTY, no_text);
    EXPECT(shmds_subscriber_recv_latest(NULL, &v, sizeof v, &n, &seq), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_subscriber_recv_latest(sub, &v, sizeof v, NULL, &seq), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_latest(t, &v, 7, &n, &seq), SHMDS_E_BUFFER_TOO_SMALL, "8 bytes");
    CHECK(n == 8, "needed %zu", n);
    EXPECT(shmds_topic_latest(t, &v, sizeof v, &n, NULL), SHMDS_OK, no_text);
    CHECK(v == 101, "latest %" PRIu64, v);
    EXPECT(shmds_topic_latest(t, NULL, 8, &n, &seq), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_topic_latest(NULL, &v, sizeof v, &n, &seq), SHMDS_E_INVALID, "NULL");
    must(shmds_topic_subscribe(t, true, &old), "subscribe from oldest");
    EXPECT(shmds_subscriber_try_recv(old, &v, sizeof v, &n, &seq, NULL), SHMDS_OK, no_text);
    CHECK(seq == 86, "oldest seq %" PRIu64, seq);

    /* A handle closed with a reservation open lets go of the publish lock. */
    EXPECT(shmds_topic_reserve(o, 8, &w, -1), SHMDS_OK, no_text);
    shmds_topic_close(o);
    EXPECT(shmds_topic_publish(t, "after", 5, &seq, 1000000000), SHMDS_OK, no_text);

    /* Erased: every handle says so. */
    EXPECT(shmds_segment_erase(seg, "ticks"), SHMDS_OK, no_text);
    EXPECT(shmds_topic_check(t), SHMDS_E_STALE, "ticks");
    EXPECT(shmds_topic_publish(t, "x", 1, &seq, -1), SHMDS_E_STALE, no_text);
    EXPECT(shmds_subscriber_try_recv(sub, buf, sizeof buf, &n, &seq, NULL), SHMDS_E_STALE,
           no_text);
    shmds_subscriber_close(sub);
    shmds_subscriber_close(old);
    shmds_topic_close(t);
    CHECK(shmds_topic_len(NULL) == 0 && shmds_topic_capacity(NULL) == 0 &&
              shmds_topic_max_message(NULL) == 0 && shmds_topic_flags(NULL) == 0 &&
              !shmds_topic_is_empty(NULL) && shmds_topic_published(NULL) == 0 &&
              shmds_subscriber_pending(NULL) == 0,
          "NULL topic");
    EXPECT(shmds_topic_check(NULL), SHMDS_E_INVALID, "NULL");
    shmds_topic_close(NULL);
    shmds_subscriber_close(NULL);
}

/* Senders, receivers and subscribers keep the segment mapped: they go on
 * after the channel, topic and segment handles are closed and the segment
 * is removed. */
static void test_closed_parents(const char *prefix) {
    char name[256];
    snprintf(name, sizeof name, "%s-parents", prefix);
    ShmdsSegment *seg = NULL;
    ShmdsChannel *ch = NULL;
    ShmdsTopic *t = NULL;
    ShmdsSender *tx = NULL;
    ShmdsReceiver *rx = NULL;
    ShmdsSubscriber *sub = NULL;
    must(shmds_segment_create(name, 1 << 20, &seg), "parents segment");
    must(shmds_channel_create(seg, "c", 4096, 0, 0, false, &ch), "parents channel");
    must(shmds_topic_create(seg, "t", 4096, 0, 0, false, &t), "parents topic");
    must(shmds_channel_attach_sender(ch, &tx), "parents sender");
    must(shmds_channel_attach_receiver(ch, &rx), "parents receiver");
    must(shmds_topic_subscribe(t, false, &sub), "parents subscriber");
    EXPECT(shmds_topic_publish(t, "last", 4, NULL, -1), SHMDS_OK, no_text);
    shmds_topic_close(t);
    shmds_channel_close(ch);
    shmds_segment_close(seg);
    must(shmds_segment_remove(name), "remove parents segment");
    char buf[8];
    size_t n = 0;
    EXPECT(shmds_sender_send(tx, "still", 5, -1), SHMDS_OK, no_text);
    EXPECT(shmds_receiver_recv(rx, buf, sizeof buf, &n, -1), SHMDS_OK, no_text);
    CHECK(n == 5 && memcmp(buf, "still", 5) == 0, "after the parents closed");
    EXPECT(shmds_subscriber_recv(sub, buf, sizeof buf, &n, NULL, NULL, -1), SHMDS_OK, no_text);
    CHECK(n == 4 && memcmp(buf, "last", 4) == 0, "subscriber after the parents closed");
    shmds_receiver_close(rx);
    shmds_sender_close(tx);
    shmds_subscriber_close(sub);
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

/* Segment options and lifetime: temporary segments go with their last
 * handle; read-only handles do not attach; every bad option is refused. */
static void test_lifetime(const char *prefix) {
    char temp[256], keep[256];
    snprintf(temp, sizeof temp, "%s-temporary", prefix);
    snprintf(keep, sizeof keep, "%s-persistent", prefix);
    ShmdsSegment *seg = NULL, *ro = NULL, *again = NULL;
    ShmdsSegmentOptions opts = {0};
    opts.size = 1 << 20;
    opts.flags = SHMDS_TEMPORARY;

    EXPECT(shmds_segment_create_with(temp, NULL, &seg), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_create_with(NULL, &opts, &seg), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_create_with(temp, &opts, NULL), SHMDS_E_INVALID, "NULL");
    ShmdsSegmentOptions bad = opts;
    bad.flags = 1u << 7;
    EXPECT(shmds_segment_create_with(temp, &bad, &seg), SHMDS_E_INVALID, "flags");
    bad.flags = SHMDS_READ_ONLY;
    EXPECT(shmds_segment_create_with(temp, &bad, &seg), SHMDS_E_INVALID, "flags");
    bad = opts;
    bad.reserved = 1;
    EXPECT(shmds_segment_open_or_create_with(temp, &bad, &seg), SHMDS_E_INVALID, "reserved");
    EXPECT(shmds_segment_open_with(temp, &opts, &seg), SHMDS_E_NOT_FOUND, no_text);

    EXPECT(shmds_segment_create_with(temp, &opts, &seg), SHMDS_OK, no_text);
    CHECK(shmds_segment_size(seg) == 1 << 20, "size %" PRIu64, shmds_segment_size(seg));
    EXPECT(shmds_segment_is_temporary(seg), 1, no_text);
    EXPECT(shmds_segment_is_abandoned(seg), 0, no_text);
    EXPECT(shmds_segment_creator_alive(seg), 1, no_text);
    uint32_t live = 99, overflow = 99;
    EXPECT(shmds_segment_attached(seg, &live, &overflow), SHMDS_OK, no_text);
    CHECK(live == 1 && overflow == 0, "attached %u, overflow %u", live, overflow);
    EXPECT(shmds_segment_attached(seg, NULL, NULL), SHMDS_OK, no_text);
    EXPECT(shmds_segment_attached(NULL, &live, NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_is_temporary(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_is_abandoned(NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_creator_alive(NULL), SHMDS_E_INVALID, "NULL");

    /* A second handle attaches once more; a read-only one does not. */
    ShmdsSegmentOptions inspect = {0};
    inspect.flags = SHMDS_READ_ONLY;
    EXPECT(shmds_segment_open_or_create_with(temp, &opts, &again), SHMDS_OK, no_text);
    EXPECT(shmds_segment_open_with(temp, &inspect, &ro), SHMDS_OK, no_text);
    EXPECT(shmds_segment_attached(ro, &live, NULL), SHMDS_OK, no_text);
    CHECK(live == 1, "one process (%u), whatever its handles", live);
    EXPECT(shmds_segment_is_abandoned(ro), 0, no_text);
    ShmdsArray *a = NULL;
    EXPECT(shmds_array_create(ro, "nope", 8, "<Q", 4, false, &a), SHMDS_E_PERMISSION, no_text);
    shmds_segment_close(again);
    shmds_segment_close(seg);
    /* The last attached handle is gone: so is the temporary segment. */
    EXPECT(shmds_segment_is_abandoned(ro), 1, no_text);
    EXPECT(shmds_segment_open(temp, &again), SHMDS_E_NOT_FOUND, no_text);
    shmds_segment_close(ro);

    /* Persistent, default size, wiping erases. */
    ShmdsSegmentOptions plain = {0};
    plain.flags = SHMDS_WIPE_ON_ERASE;
    plain.table_capacity = 16;
    plain.mode = 0640;
    EXPECT(shmds_segment_open_or_create_with(keep, &plain, &seg), SHMDS_OK, no_text);
    CHECK(shmds_segment_size(seg) == 1 << 20, "default size %" PRIu64, shmds_segment_size(seg));
    EXPECT(shmds_segment_is_temporary(seg), 0, no_text);
    EXPECT(shmds_array_create(seg, "wiped", 8, "<Q", 4, false, &a), SHMDS_OK, no_text);
    shmds_array_close(a);
    EXPECT(shmds_segment_erase_wipe(seg, "wiped"), SHMDS_OK, no_text);
    EXPECT(shmds_segment_erase_wipe(seg, "wiped"), SHMDS_E_NOT_FOUND, "wiped");
    EXPECT(shmds_segment_erase_wipe(NULL, "wiped"), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_segment_erase_wipe(seg, NULL), SHMDS_E_INVALID, no_text);
    /* Segments grow: another size opens it; another maximum size is refused. */
    ShmdsSegmentOptions other_size = plain;
    other_size.size = 2 << 20;
    EXPECT(shmds_segment_open_or_create_with(keep, &other_size, &again), SHMDS_OK, no_text);
    shmds_segment_close(again);
    ShmdsSegmentOptions other_max = plain;
    other_max.max_size = 1 << 30;
    EXPECT(shmds_segment_open_or_create_with(keep, &other_max, &again), SHMDS_E_SHAPE,
           "maximum size");
    shmds_segment_close(seg);
    EXPECT(shmds_segment_open_with(keep, &inspect, &ro), SHMDS_OK, no_text);
    EXPECT(shmds_segment_is_abandoned(ro), 1, no_text);
    shmds_segment_close(ro);
    EXPECT(shmds_segment_remove(keep), SHMDS_OK, no_text);
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

/* Iteration, compare-exchange, descriptors and the header's fixed strings. */
static void test_iteration_and_cas(ShmdsSegment *seg) {
    typedef SHMDS_FIXED_STR(8) str8;
    str8 key;
    EXPECT(shmds_fixed_str_set(&key, sizeof key, "toolong-9"), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_fixed_str_set(&key, sizeof key, "abc"), SHMDS_OK, no_text);
    CHECK(key.len == 3 && memcmp(key.bytes, "abc\0\0\0\0\0", 8) == 0, "fixed string bytes");
    EXPECT(shmds_fixed_str_set_n(&key, sizeof key, "a\0b", 3), SHMDS_OK, no_text);
    CHECK(key.len == 3 && key.bytes[1] == 0 && key.bytes[2] == 'b', "fixed string with NUL");

    ShmdsMap *m;
    must(shmds_map_create(seg, "iter-map", sizeof(str8), SHMDS_FIXED_STR_TYPE(8), 8, "<q", 16,
                          false, &m),
         "iter-map");
    const char *names[] = {"a", "bb", "ccc", "dddd", "eeeee"};
    for (int64_t i = 0; i < 5; i++) {
        must(shmds_fixed_str_set(&key, sizeof key, names[i]), "key");
        must(shmds_map_insert(m, &key, sizeof key, &i, sizeof i), "insert");
    }
    uint64_t cursor = 0, seen = 0, prev = 7;
    int64_t value = 0, sum = 0;
    str8 *k = malloc(sizeof *k);
    int64_t *v = malloc(sizeof *v);
    int rc;
    while ((rc = shmds_map_next(m, &cursor, k, sizeof *k, v, sizeof *v)) == 1) {
        seen++;
        sum += *v;
        CHECK(k->len == (uint8_t)(*v + 1), "key %d for value %" PRId64, k->len, *v);
    }
    CHECK(rc == 0 && seen == 5 && sum == 10, "map_next: rc %d, %" PRIu64 " keys, sum %" PRId64,
          rc, seen, sum);
    CHECK(cursor == shmds_map_capacity(m), "cursor at the end: %" PRIu64, cursor);
    EXPECT(shmds_map_next(m, &cursor, k, sizeof *k, v, sizeof *v), 0, no_text);
    cursor = 0;
    EXPECT(shmds_map_next(m, &cursor, k, 4, v, sizeof *v), SHMDS_E_INVALID, "output buffer is 4");
    EXPECT(shmds_map_next(m, NULL, k, sizeof *k, v, sizeof *v), SHMDS_E_INVALID, "cursor");
    EXPECT(shmds_map_next(m, &cursor, k, sizeof *k, (char *)k + 1, sizeof *v), SHMDS_E_INVALID,
           "overlap");
    must(shmds_fixed_str_set(&key, sizeof key, "ccc"), "key");
    EXPECT(shmds_map_compare_exchange(m, &key, sizeof key, 2, 20, &prev), 1, no_text);
    CHECK(prev == 2, "previous %" PRIu64, prev);
    EXPECT(shmds_map_compare_exchange(m, &key, sizeof key, 2, 30, &prev), 0, no_text);
    CHECK(prev == 20, "actual %" PRIu64, prev);
    must(shmds_map_get(m, &key, sizeof key, &value, sizeof value), "get");
    CHECK(value == 20, "value after compare-exchange %" PRId64, value);
    must(shmds_fixed_str_set(&key, sizeof key, "zz"), "key");
    EXPECT(shmds_map_compare_exchange(m, &key, sizeof key, 0, 1, NULL), SHMDS_E_NOT_FOUND,
           "absent");
    char text[32];
    size_t len = 0;
    EXPECT(shmds_map_key_descriptor(m, text, sizeof text, &len), SHMDS_OK, no_text);
    CHECK(strcmp(text, "T{B:len:8s:bytes:}") == 0 && len == strlen(text), "key type %s", text);
    EXPECT(shmds_map_value_descriptor(m, text, sizeof text, &len), SHMDS_OK, no_text);
    CHECK(strcmp(text, "<q") == 0, "value type %s", text);
    shmds_map_close(m);
    free(k);
    free(v);

    ShmdsSet *set;
    must(shmds_set_create(seg, "iter-set", 8, "<Q", 8, false, &set), "iter-set");
    for (uint64_t i = 1; i <= 3; i++) must(shmds_set_insert(set, &i, sizeof i), "set insert");
    uint64_t *one = malloc(sizeof *one), total = 0;
    cursor = 0;
    seen = 0;
    while (shmds_set_next(set, &cursor, one, sizeof *one) == 1) {
        seen++;
        total += *one;
    }
    CHECK(seen == 3 && total == 6, "set_next: %" PRIu64 " keys, sum %" PRIu64, seen, total);
    EXPECT(shmds_set_next(set, &cursor, one, 4), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_set_key_descriptor(set, text, 2, &len), SHMDS_E_BUFFER_TOO_SMALL, no_text);
    CHECK(len == 2, "set key type length %zu", len);
    free(one);
    shmds_set_close(set);

    ShmdsArray *a;
    must(shmds_array_create(seg, "cas", 4, "<I", 4, false, &a), "cas array");
    EXPECT(shmds_array_compare_exchange(a, 1, 0, 5, &prev), 1, no_text);
    EXPECT(shmds_array_compare_exchange(a, 1, 0, 6, &prev), 0, no_text);
    CHECK(prev == 5, "array actual %" PRIu64, prev);
    EXPECT(shmds_array_compare_exchange(a, 4, 0, 6, &prev), SHMDS_E_INDEX, no_text);
    EXPECT(shmds_array_descriptor(a, text, sizeof text, NULL), SHMDS_OK, no_text);
    CHECK(strcmp(text, "<I") == 0, "array type %s", text);
    shmds_array_close(a);
    ShmdsArray *quotes;
    must(shmds_array_open(seg, "quotes", sizeof(struct quote), NULL, &quotes), "quotes");
    EXPECT(shmds_array_compare_exchange(quotes, 0, 0, 1, NULL), SHMDS_E_INVALID, no_text);
    shmds_array_close(quotes);
}

/* Shutdown, tasks and join, map/set contains and clear, the segment's name,
 * descriptor canonicalization. */
static void test_lifecycle_calls(ShmdsSegment *seg) {
    ShmdsQueue *q;
    ShmdsStack *s;
    must(shmds_queue_create(seg, "life-q", 8, "<Q", 4, false, &q), "life-q");
    must(shmds_stack_create(seg, "life-s", 8, "<Q", 4, false, &s), "life-s");
    uint64_t v = 5, out = 0;
    size_t n = 99;
    /* Tasks: a counting pop, task_done, join. */
    must(shmds_queue_push(q, &v, sizeof v, -1), "push");
    EXPECT(shmds_queue_join(q, 1000000), SHMDS_E_TIMEOUT, "timed out waiting for the tasks");
    EXPECT(shmds_queue_pop_task(q, &out, sizeof out, 0), SHMDS_OK, no_text);
    CHECK(out == 5 && shmds_queue_unfinished_tasks(q) == 1, "pop_task: %" PRIu64, out);
    EXPECT(shmds_queue_join(q, 0), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_queue_task_done(q), SHMDS_OK, no_text);
    EXPECT(shmds_queue_join(q, -1), SHMDS_OK, no_text);
    EXPECT(shmds_queue_task_done(q), SHMDS_E_INVALID, "more times than elements were taken");
    EXPECT(shmds_queue_pop_task(q, &out, sizeof out, 0), SHMDS_E_EMPTY, no_text);
    EXPECT(shmds_queue_pop_task(q, &out, 4, 0), SHMDS_E_INVALID, no_text);
    /* Shutdown: pushes fail, what is left is popped, then the code. */
    must(shmds_queue_push(q, &v, sizeof v, -1), "push");
    must(shmds_stack_push(s, &v, sizeof v, -1), "push");
    must(shmds_stack_push(s, &v, sizeof v, -1), "push");
    CHECK(!shmds_queue_is_shut_down(q), "not shut down yet");
    EXPECT(shmds_queue_shutdown(q, false, &n), SHMDS_OK, no_text);
    CHECK(n == 0 && shmds_queue_is_shut_down(q), "shutdown: %zu discarded", n);
    EXPECT(shmds_queue_try_push(q, &v, sizeof v), SHMDS_E_SHUT_DOWN, no_text);
    EXPECT(shmds_queue_pop(q, &out, sizeof out, -1), SHMDS_OK, no_text);
    EXPECT(shmds_queue_pop(q, &out, sizeof out, -1), SHMDS_E_SHUT_DOWN, no_text);
    EXPECT(shmds_stack_shutdown(s, true, &n), SHMDS_OK, no_text);
    CHECK(n == 2 && shmds_stack_is_shut_down(s), "immediate shutdown: %zu discarded", n);
    EXPECT(shmds_stack_try_pop(s, &out, sizeof out), SHMDS_E_SHUT_DOWN, no_text);
    EXPECT(shmds_stack_shutdown(s, false, NULL), SHMDS_OK, no_text);
    EXPECT(shmds_queue_shutdown(NULL, false, &n), SHMDS_E_INVALID, no_text);
    CHECK(!shmds_queue_is_shut_down(NULL), "NULL is not shut down");
    shmds_queue_close(q);
    shmds_stack_close(s);

    /* Map and set: contains and clear. */
    ShmdsMap *m;
    ShmdsSet *set;
    must(shmds_map_create(seg, "life-m", 8, "<Q", 8, "<Q", 8, false, &m), "life-m");
    must(shmds_set_create(seg, "life-set", 4, "<I", 8, false, &set), "life-set");
    for (uint64_t k = 1; k <= 3; k++) must(shmds_map_insert(m, &k, sizeof k, &k, sizeof k), "ins");
    uint32_t key32 = 7;
    must(shmds_set_insert(set, &key32, sizeof key32), "set insert");
    uint64_t k2 = 2, k9 = 9;
    EXPECT(shmds_map_contains(m, &k2, sizeof k2), 1, no_text);
    EXPECT(shmds_map_contains(m, &k9, sizeof k9), 0, no_text);
    EXPECT(shmds_map_contains(m, &k2, 4), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_map_clear(m), SHMDS_OK, no_text);
    CHECK(shmds_map_len(m) == 0, "map cleared: %zu left", shmds_map_len(m));
    EXPECT(shmds_map_contains(m, &k2, sizeof k2), 0, no_text);
    EXPECT(shmds_set_clear(set), SHMDS_OK, no_text);
    EXPECT(shmds_set_contains(set, &key32, sizeof key32), 0, no_text);
    EXPECT(shmds_map_clear(NULL), SHMDS_E_INVALID, no_text);
    shmds_map_close(m);
    shmds_set_close(set);

    /* The segment's name and canonical descriptors. */
    char text[64];
    size_t len = 0;
    EXPECT(shmds_segment_name(seg, text, sizeof text, &len), SHMDS_OK, no_text);
    CHECK(len == strlen(text) && len > 0, "segment name %s", text);
    EXPECT(shmds_segment_name(seg, text, 1, &len), SHMDS_E_BUFFER_TOO_SMALL, no_text);
    EXPECT(shmds_type_canonical("Q", text, sizeof text, &len), SHMDS_OK, no_text);
    CHECK(strcmp(text, "<Q") == 0 && len == 2, "canonical Q: %s", text);
    EXPECT(shmds_type_canonical("T{<Q:ts:xxxx<i:n:}", text, sizeof text, NULL), SHMDS_OK, no_text);
    CHECK(strcmp(text, "T{<Q:ts:4x<i:n:}") == 0, "canonical record: %s", text);
    EXPECT(shmds_type_canonical("<Z", text, sizeof text, NULL), SHMDS_E_INVALID, "<Z");
    EXPECT(shmds_type_canonical(NULL, text, sizeof text, NULL), SHMDS_E_INVALID, no_text);
}

/* Durable segments and snapshots: a file path as the name, flush, a
 * snapshot into a store and its restore; wrong arguments are refused. */
static void test_durable_and_snapshots(const char *prefix) {
    char dir[200], path[300], store[300], copy[256], id[65];
    snprintf(dir, sizeof dir, "/tmp/%s-durable", prefix);
    snprintf(path, sizeof path, "%s/seg.shmds", dir);
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(copy, sizeof copy, "%s-restored", prefix);
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    ShmdsSegment *seg, *back;
    must(shmds_segment_create(path, 1 << 20, &seg), "durable create");
    CHECK(shmds_segment_is_durable(seg) == 1, "is durable");
    CHECK(shmds_segment_is_durable(NULL) == 0, "NULL is not durable");
    ShmdsQueue *q;
    uint64_t v = 42, out = 0, fresh = 0;
    must(shmds_queue_create(seg, "q", 8, "<Q", 8, false, &q), "durable queue");
    must(shmds_queue_push(q, &v, sizeof v, -1), "push");
    EXPECT(shmds_segment_flush(seg), SHMDS_OK, no_text);
    EXPECT(shmds_segment_flush(NULL), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_segment_snapshot(seg, store, id, 64, NULL), SHMDS_E_BUFFER_TOO_SMALL, "65");
    EXPECT(shmds_segment_snapshot(seg, NULL, id, sizeof id, NULL), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_segment_snapshot(seg, store, id, sizeof id, &fresh), SHMDS_OK, no_text);
    CHECK(strlen(id) == 64 && fresh > 0, "snapshot id %s, %" PRIu64 " new bytes", id, fresh);
    EXPECT(shmds_snapshot_restore(store, "ffffffff", copy, &back), SHMDS_E_NOT_FOUND, "no snapshot");
    EXPECT(shmds_snapshot_restore(store, id, copy, NULL), SHMDS_E_INVALID, no_text);
    EXPECT(shmds_snapshot_restore(store, id, copy, &back), SHMDS_OK, no_text);
    ShmdsQueue *q2;
    must(shmds_queue_open(back, "q", 8, "<Q", &q2), "restored queue");
    EXPECT(shmds_queue_try_pop(q2, &out, sizeof out), SHMDS_OK, no_text);
    CHECK(out == 42, "restored element %" PRIu64, out);
    shmds_queue_close(q2);
    shmds_segment_close(back);
    must(shmds_segment_remove(copy), "remove restored");
    shmds_queue_close(q);
    shmds_segment_close(seg);
    must(shmds_segment_remove(path), "remove durable");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm -rf %s", dir);
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
    test_lifetime(argv[1]);
    /* "jobs" exists so that the array tests can open it as the wrong kind. */
    ShmdsQueue *jobs;
    must(shmds_queue_create(seg, "jobs", 64, REC_TYPE, 2, false, &jobs), "jobs");
    shmds_queue_close(jobs);
    test_arrays(seg);
    test_queue(seg);
    test_stack(seg);
    test_queue_batches(seg);
    test_stack_batches(seg);
    test_iteration_and_cas(seg);
    test_lifecycle_calls(seg);
    test_durable_and_snapshots(argv[1]);
    test_maps(seg);
    test_sets(seg);
    test_channel(seg);
    test_channel_ends(seg);
    test_topic(seg);
    test_closed_parents(argv[1]);
    test_stale(seg);
    test_entries(seg);
    shmds_segment_close(seg);
    must(shmds_segment_remove(name), "remove segment");
    printf("c safety: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
