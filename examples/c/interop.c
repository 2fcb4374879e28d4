/*
 * The C side of the cross-language tests: write the known structures into
 * a segment, or check the ones another language (Rust, Python) wrote.
 *
 *   interop write SEGMENT    create the known structures
 *   interop check SEGMENT    check them; exit status 1 on a mismatch
 *   interop write-messages SEGMENT   the channels and topic, full of messages
 *   interop check-messages SEGMENT   receive them all; exit status 1 on a mismatch
 *   interop stream-send SEGMENT spsc|mpmc N   send N messages into channel stream
 *   interop stream-recv SEGMENT spsc|mpmc N   receive them, checking each, in order
 *
 * The known structures and messages are listed in tests/interop/main.rs. `check` also
 * reads the segment header and the name table directly, through the
 * layout structs of shmds.h, the way a tool without the library would.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmds.h"
#include "str16.h"

/* A Rust `Quote` record: {venue: u8, price: f64, size: u32}, C layout. */
struct quote {
    uint8_t venue;
    double price;
    uint32_t size;
};
#define QUOTE_TYPE "T{B:venue:7x<d:price:<I:size:4x}"

static const char *price_names[] = {"AAPL", "MSFT", "Z\xc3\xbcrich"};
static const double price_values[] = {189.5, 410.25, 7.0};

static int failures = 0;

#define CHECK(cond, ...)                                     \
    do {                                                     \
        if (!(cond)) {                                       \
            fprintf(stderr, "interop check: " __VA_ARGS__);  \
            fprintf(stderr, "\n");                           \
            failures++;                                      \
        }                                                    \
    } while (0)

/* Stop on a failed call, printing the library's message. */
static void ok(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "interop: %s: %s\n", what, shmds_last_error());
        exit(2);
    }
}

static void write_all(ShmdsSegment *seg) {
    ShmdsArray *quotes;
    ok(shmds_array_create(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, 3, false, &quotes),
       "create quotes");
    for (uint64_t i = 0; i < 3; i++) {
        struct quote q;
        memset(&q, 0, sizeof q);
        q.venue = (uint8_t)i;
        q.price = 100.5 + (double)i;
        q.size = (uint32_t)(10 * i);
        ok(shmds_array_set(quotes, i, &q, sizeof q), "set quote");
    }
    shmds_array_close(quotes);

    ShmdsQueue *jobs;
    ok(shmds_queue_create(seg, "jobs", sizeof(uint64_t), "<Q", 128, false, &jobs), "create jobs");
    for (uint64_t v = 1; v <= 100; v++)
        ok(shmds_queue_try_push(jobs, &v, sizeof v), "push job");
    shmds_queue_close(jobs);

    ShmdsStack *undo;
    ok(shmds_stack_create(seg, "undo", sizeof(int32_t), "<i", 8, false, &undo), "create undo");
    for (int32_t v = -1; v >= -3; v--)
        ok(shmds_stack_push(undo, &v, sizeof v, -1), "push undo");
    shmds_stack_close(undo);

    ShmdsMap *prices;
    ok(shmds_map_create(seg, "prices", sizeof(struct str16), STR16_TYPE, sizeof(double), "<d", 64,
                        false, &prices),
       "create prices");
    for (int i = 0; i < 3; i++) {
        struct str16 k = str16(price_names[i]);
        ok(shmds_map_insert(prices, &k, sizeof k, &price_values[i], sizeof(double)), "insert price");
    }
    shmds_map_close(prices);

    ShmdsMap *hits;
    ok(shmds_map_create(seg, "hits", sizeof(uint64_t), "<Q", sizeof(int64_t), "<q", 32, false, &hits),
       "create hits");
    for (uint64_t k = 1; k <= 20; k++) {
        int64_t v = -(int64_t)k;
        ok(shmds_map_insert(hits, &k, sizeof k, &v, sizeof v), "insert hit");
    }
    shmds_map_close(hits);
}

/* The header and table, read through the layout structs. */
static void check_layout(ShmdsSegment *seg) {
    static const uint8_t magic[8] = SHMDS_MAGIC_BYTES;
    const shmds_segment_header *h = shmds_segment_base(seg);
    CHECK(memcmp(h->magic, magic, 8) == 0, "bad magic");
    CHECK(h->format_version == SHMDS_FORMAT_VERSION, "format version %u", h->format_version);
    CHECK(__atomic_load_n(&h->size, __ATOMIC_ACQUIRE) == shmds_segment_size(seg), "size");
    CHECK(h->max_size >= shmds_segment_size(seg), "maximum size");
    CHECK(h->entry_size == sizeof(shmds_entry), "entry size %u", h->entry_size);
    int found = 0;
    const shmds_entry *table = (const shmds_entry *)((const char *)h + h->table_offset);
    for (uint32_t i = 0; i < h->table_capacity; i++) {
        uint32_t state = __atomic_load_n(&table[i].state, __ATOMIC_ACQUIRE);
        const char *name = (const char *)table[i].name;
        if (state == 1 && strncmp(name, "quotes", sizeof table[i].name) == 0) {
            found = 1;
            CHECK(table[i].kind == SHMDS_KIND_ARRAY, "quotes kind %u", table[i].kind);
            CHECK(table[i].elem_size == sizeof(struct quote), "quotes elem size");
            CHECK(strcmp((const char *)table[i].elem_type, QUOTE_TYPE) == 0, "quotes type %s",
                  (const char *)table[i].elem_type);
            const shmds_array_header *a =
                (const shmds_array_header *)((const char *)h + table[i].offset);
            CHECK(a->kind == SHMDS_KIND_ARRAY && a->len == 3, "quotes header");
            /* The heap block header just before the structure. */
            const shmds_block_header *b =
                (const shmds_block_header *)((const char *)a - sizeof(shmds_block_header));
            CHECK(memcmp(&b->magic, "BLK\x01", 4) == 0, "quotes block magic");
            CHECK(b->state == 2 && b->owner == i && b->size == table[i].size + 64,
                  "quotes block header: state %u owner %" PRIu64 " size %" PRIu64, b->state,
                  b->owner, b->size);
        }
    }
    CHECK(found, "no live table entry named quotes");
}

static void check_all(ShmdsSegment *seg, const char *seg_name) {
    check_layout(seg);

    size_t count = 0;
    ShmdsEntryInfo infos[16];
    ok(shmds_segment_entries(seg, infos, sizeof infos, &count), "entries");
    CHECK(count == 5, "%zu entries, expected 5", count);

    ShmdsArray *quotes;
    ok(shmds_array_open(seg, "quotes", sizeof(struct quote), QUOTE_TYPE, &quotes), "open quotes");
    CHECK(shmds_array_len(quotes) == 3, "quotes length");
    CHECK(shmds_array_elem_size(quotes) == sizeof(struct quote), "quote size");
    const struct quote *q = shmds_array_data(quotes);
    for (uint64_t i = 0; i < 3 && shmds_array_len(quotes) == 3; i++) {
        CHECK(q[i].venue == i && q[i].price == 100.5 + (double)i && q[i].size == 10 * i,
              "quotes[%" PRIu64 "] = (%u, %g, %u)", i, q[i].venue, q[i].price, q[i].size);
    }
    shmds_array_close(quotes);

    ShmdsQueue *jobs;
    ok(shmds_queue_open(seg, "jobs", sizeof(uint64_t), "<Q", &jobs), "open jobs");
    CHECK(shmds_queue_elem_size(jobs) == 8, "jobs element size");
    for (uint64_t want = 1; want <= 100; want++) {
        uint64_t v = 0;
        int rc = shmds_queue_try_pop(jobs, &v, sizeof v);
        CHECK(rc == SHMDS_OK && v == want, "job %" PRIu64 ": rc %d value %" PRIu64, want, rc, v);
    }
    uint64_t extra;
    CHECK(shmds_queue_try_pop(jobs, &extra, sizeof extra) == SHMDS_E_EMPTY, "jobs not empty");
    CHECK(shmds_queue_pop(jobs, &extra, sizeof extra, 1000000) == SHMDS_E_TIMEOUT,
          "pop did not time out");
    shmds_queue_close(jobs);

    ShmdsStack *undo;
    ok(shmds_stack_open(seg, "undo", sizeof(int32_t), "<i", &undo), "open undo");
    for (int32_t want = -3; want <= -1; want++) {
        int32_t v = 0;
        int rc = shmds_stack_pop(undo, &v, sizeof v, 0);
        CHECK(rc == SHMDS_OK && v == want, "undo: rc %d value %d, expected %d", rc, v, want);
    }
    shmds_stack_close(undo);

    ShmdsMap *prices;
    ok(shmds_map_open(seg, "prices", sizeof(struct str16), STR16_TYPE, sizeof(double), "<d", &prices),
       "open prices");
    CHECK(shmds_map_len(prices) == 3, "prices has %zu keys", shmds_map_len(prices));
    CHECK(shmds_map_key_size(prices) == sizeof(struct str16), "price key size");
    for (int i = 0; i < 3; i++) {
        struct str16 k = str16(price_names[i]);
        double v = 0;
        int rc = shmds_map_get(prices, &k, sizeof k, &v, sizeof v);
        CHECK(rc == 1 && v == price_values[i], "prices[%s]: rc %d value %g", price_names[i], rc, v);
    }
    struct str16 absent = str16("IBM");
    double v;
    CHECK(shmds_map_get(prices, &absent, sizeof absent, &v, sizeof v) == 0, "IBM should be absent");
    shmds_map_close(prices);

    ShmdsMap *hits;
    ok(shmds_map_open(seg, "hits", sizeof(uint64_t), "<Q", sizeof(int64_t), "<q", &hits), "open hits");
    for (uint64_t k = 1; k <= 20; k++) {
        int64_t h = 0;
        int rc = shmds_map_get(hits, &k, sizeof k, &h, sizeof h);
        CHECK(rc == 1 && h == -(int64_t)k, "hits[%" PRIu64 "]: rc %d value %" PRId64, k, rc, h);
    }
    shmds_map_close(hits);

    /* Wrong kinds and missing names are refused with the right codes. */
    ShmdsQueue *wrong;
    CHECK(shmds_queue_open(seg, "prices", 8, NULL, &wrong) == SHMDS_E_TYPE, "prices opened as a queue");
    CHECK(shmds_queue_open(seg, "nope", 8, NULL, &wrong) == SHMDS_E_NOT_FOUND, "missing name");
    CHECK(shmds_queue_open(NULL, "nope", 8, NULL, &wrong) == SHMDS_E_INVALID, "NULL segment");
    /* Another element size or type than the structure holds is refused. */
    CHECK(shmds_queue_open(seg, "jobs", 4, NULL, &wrong) == SHMDS_E_TYPE, "jobs opened as 4 bytes");
    CHECK(shmds_queue_open(seg, "jobs", 8, "<d", &wrong) == SHMDS_E_TYPE, "jobs opened as doubles");

    /* A NULL output pointer is refused before anything is created. */
    char other[300];
    snprintf(other, sizeof other, "%s-null-out", seg_name);
    CHECK(shmds_segment_create(other, 1 << 20, NULL) == SHMDS_E_INVALID, "NULL out accepted");
    ShmdsSegment *none;
    CHECK(shmds_segment_open(other, &none) == SHMDS_E_NOT_FOUND, "NULL out left a segment");
    CHECK(shmds_map_create(seg, "never", 8, "<Q", 8, "<Q", 4, false, NULL) == SHMDS_E_INVALID,
          "NULL map out accepted");
    CHECK(shmds_map_open(seg, "never", 8, NULL, 8, NULL, &hits) == SHMDS_E_NOT_FOUND,
          "NULL out left a map");
    /* Atomic arithmetic needs integer values. */
    ok(shmds_map_open(seg, "prices", sizeof(struct str16), NULL, sizeof(double), NULL, &prices),
       "reopen prices");
    struct str16 k = str16("AAPL");
    CHECK(shmds_map_fetch_add(prices, &k, sizeof k, 1, NULL) == SHMDS_E_INVALID, "fetch_add on doubles");
    CHECK(strlen(shmds_last_error()) > 0, "no message for the last error");
    shmds_map_close(prices);
}

/* ------------------------------------------------------------ messages */

/* The messages of tests/interop/main.rs: message k of len bytes is
 * byte i = (7k + 31i + len) % 251. */
static const size_t event_lens[10] = {0, 1, 7, 63, 64, 65, 200, 1000, 4096, 3};
static const size_t tick_lens[7] = {0, 5, 64, 100, 300, 2048, 1};

static void fill_message(unsigned char *p, size_t k, size_t len) {
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)((7 * k + 31 * i + len) % 251);
}

/* Message k of len bytes, in a heap buffer of exactly that size. */
static unsigned char *message(size_t k, size_t len) {
    unsigned char *p = malloc(len ? len : 1);
    if (p == NULL) {
        fprintf(stderr, "interop: out of memory\n");
        exit(2);
    }
    fill_message(p, k, len);
    return p;
}

/* Whether the len bytes at got are message k of want bytes. */
static int is_message(const void *got, size_t len, size_t k, size_t want) {
    if (len != want)
        return 0;
    unsigned char *m = message(k, want);
    int same = memcmp(got, m, want) == 0;
    free(m);
    return same;
}

static void write_messages(ShmdsSegment *seg) {
    ShmdsChannel *events;
    ShmdsSender *tx;
    ok(shmds_channel_create(seg, "events", 64 << 10, 4096, SHMDS_CHECKSUM, false, &events),
       "create events");
    ok(shmds_channel_attach_sender(events, &tx), "attach events sender");
    for (size_t k = 0; k < 10; k++) {
        size_t len = event_lens[k];
        if (k % 2 == 0) {
            unsigned char *m = message(k, len);
            ok(shmds_sender_try_send(tx, m, len), "send event");
            free(m);
        } else {
            void *slot;
            ok(shmds_sender_try_reserve(tx, len, &slot), "reserve event");
            fill_message(slot, k, len);
            ok(shmds_sender_commit(tx), "commit event");
        }
    }
    shmds_sender_close(tx);
    shmds_channel_close(events);

    ShmdsChannel *pipe;
    ok(shmds_channel_create(seg, "pipe", 4096, 0, SHMDS_SPSC, false, &pipe), "create pipe");
    ok(shmds_channel_attach_sender(pipe, &tx), "attach pipe sender");
    for (size_t k = 0; k < 10; k++) {
        unsigned char *m = message(k, 10 * k);
        ok(shmds_sender_send(tx, m, 10 * k, 0), "send pipe");
        free(m);
    }
    shmds_sender_close(tx);
    shmds_channel_close(pipe);

    ShmdsTopic *ticks;
    ok(shmds_topic_create(seg, "ticks", 4096, 0, 0, false, &ticks), "create ticks");
    for (size_t k = 0; k < 7; k++) {
        size_t len = tick_lens[k];
        uint64_t seq;
        if (k % 2 == 0) {
            unsigned char *m = message(k, len);
            ok(shmds_topic_publish(ticks, m, len, &seq, -1), "publish tick");
            free(m);
        } else {
            void *slot;
            ok(shmds_topic_reserve(ticks, len, &slot, -1), "reserve tick");
            fill_message(slot, k, len);
            ok(shmds_topic_commit(ticks, &seq), "commit tick");
        }
        CHECK(seq == k, "tick %zu published as %" PRIu64, k, seq);
    }
    shmds_topic_close(ticks);
}

/* A receive found nothing more: empty, or every sender gone. */
static void nothing_more(int rc, const char *what) {
    CHECK(rc == SHMDS_E_EMPTY || rc == SHMDS_E_DISCONNECTED, "%s: %d (%s) at the end", what, rc,
          shmds_last_error());
}

static void check_messages(ShmdsSegment *seg) {
    ShmdsChannel *events;
    ShmdsReceiver *rx;
    ok(shmds_channel_open(seg, "events", &events), "open events");
    CHECK(shmds_channel_max_message(events) == 4096 && shmds_channel_flags(events) == SHMDS_CHECKSUM,
          "events: max_message %" PRIu64 ", flags %u", shmds_channel_max_message(events),
          shmds_channel_flags(events));
    ok(shmds_channel_attach_receiver(events, &rx), "attach events receiver");
    for (size_t k = 0; k < 10; k++) {
        size_t want = event_lens[k], len = 0;
        if (k % 2 == 0) {
            /* Ask the length with an empty buffer, then receive into exactly that. */
            int rc = shmds_receiver_try_recv(rx, NULL, 0, &len);
            CHECK(want == 0 ? rc == SHMDS_OK : rc == SHMDS_E_BUFFER_TOO_SMALL,
                  "events %zu: probe %d", k, rc);
            CHECK(len == want, "events %zu: %zu bytes, expected %zu", k, len, want);
            if (want == 0)
                continue;
            void *buf = malloc(len);
            rc = shmds_receiver_try_recv(rx, buf, len, &len);
            CHECK(rc == SHMDS_OK && is_message(buf, len, k, want), "events %zu: rc %d, %zu bytes",
                  k, rc, len);
            free(buf);
        } else {
            const void *data;
            int rc = shmds_receiver_try_recv_ref(rx, &data, &len);
            CHECK(rc == SHMDS_OK && is_message(data, len, k, want), "events %zu: rc %d, %zu bytes",
                  k, rc, len);
            if (rc == SHMDS_OK)
                ok(shmds_receiver_release(rx), "release event");
        }
    }
    size_t len;
    char small[8];
    nothing_more(shmds_receiver_try_recv(rx, small, sizeof small, &len), "events");
    shmds_receiver_close(rx);
    shmds_channel_close(events);

    ShmdsChannel *pipe;
    ok(shmds_channel_open(seg, "pipe", &pipe), "open pipe");
    CHECK(shmds_channel_flags(pipe) == SHMDS_SPSC, "pipe flags %u", shmds_channel_flags(pipe));
    ok(shmds_channel_attach_receiver(pipe, &rx), "attach pipe receiver");
    unsigned char buf[4096];
    for (size_t k = 0; k < 10; k++) {
        int rc = shmds_receiver_recv(rx, buf, sizeof buf, &len, 0);
        CHECK(rc == SHMDS_OK && is_message(buf, len, k, 10 * k), "pipe %zu: rc %d, %zu bytes", k,
              rc, len);
    }
    nothing_more(shmds_receiver_try_recv(rx, buf, sizeof buf, &len), "pipe");
    shmds_receiver_close(rx);
    shmds_channel_close(pipe);

    ShmdsTopic *ticks;
    ShmdsSubscriber *sub;
    ok(shmds_topic_open(seg, "ticks", &ticks), "open ticks");
    ok(shmds_topic_subscribe(ticks, true, &sub), "subscribe to ticks");
    for (size_t k = 0; k < 7; k++) {
        uint64_t seq = 99, missed = 99;
        int rc = shmds_subscriber_try_recv(sub, buf, sizeof buf, &len, &seq, &missed);
        CHECK(rc == SHMDS_OK && seq == k && missed == 0 && is_message(buf, len, k, tick_lens[k]),
              "ticks %zu: rc %d, seq %" PRIu64 ", %zu bytes", k, rc, seq, len);
    }
    nothing_more(shmds_subscriber_try_recv(sub, buf, sizeof buf, &len, NULL, NULL), "ticks");
    uint64_t seq = 0;
    int rc = shmds_topic_latest(ticks, buf, sizeof buf, &len, &seq);
    CHECK(rc == SHMDS_OK && seq == 6 && is_message(buf, len, 6, tick_lens[6]),
          "ticks latest: rc %d, seq %" PRIu64, rc, seq);
    shmds_subscriber_close(sub);
    shmds_topic_close(ticks);
}

/* The stream's channel, created by whichever side comes first. */
static ShmdsChannel *stream(ShmdsSegment *seg, const char *mode) {
    int spsc = strcmp(mode, "spsc") == 0;
    if (!spsc && strcmp(mode, "mpmc") != 0) {
        fprintf(stderr, "interop: mode %s is not spsc or mpmc\n", mode);
        exit(2);
    }
    ShmdsChannel *ch;
    ok(shmds_channel_create(seg, spsc ? "stream-spsc" : "stream", 4096, 1000,
                            spsc ? SHMDS_SPSC : 0, true, &ch),
       "open or create the stream");
    return ch;
}

/* Send the stream's n messages, or receive and check them. */
static void stream_run(ShmdsSegment *seg, const char *mode, size_t n, int sending) {
    ShmdsChannel *ch = stream(seg, mode);
    ShmdsSender *tx = NULL;
    ShmdsReceiver *rx = NULL;
    if (sending)
        ok(shmds_channel_attach_sender(ch, &tx), "attach stream sender");
    else
        ok(shmds_channel_attach_receiver(ch, &rx), "attach stream receiver");
    unsigned char m[1000];
    for (size_t k = 0; k < n && failures == 0; k++) {
        size_t want = 37 * k % 1001, len = want;
        int rc;
        if (sending) {
            fill_message(m, k, want);
            rc = shmds_sender_send(tx, m, want, 60000000000LL);
        } else {
            rc = shmds_receiver_recv(rx, m, sizeof m, &len, 60000000000LL);
        }
        CHECK(rc == SHMDS_OK, "stream %s %zu: %d (%s)", sending ? "send" : "receive", k, rc,
              shmds_last_error());
        CHECK(sending || rc != SHMDS_OK || is_message(m, len, k, want),
              "stream message %zu: %zu bytes, not what was sent", k, len);
    }
    shmds_sender_close(tx);
    shmds_receiver_close(rx);
    shmds_channel_close(ch);
}

/* The sets and coordination primitives (tests/interop/main.rs lists them). */
static const uint64_t tag_keys[] = {3, 7, 42};
static const char *word_keys[] = {"alpha", "Z\xc3\xbcrich"};

static void write_coord(ShmdsSegment *seg) {
    ShmdsSet *tags, *words;
    ok(shmds_set_create(seg, "tags", sizeof(uint64_t), "<Q", 16, false, &tags), "create tags");
    for (int i = 0; i < 3; i++) ok(shmds_set_insert(tags, &tag_keys[i], sizeof(uint64_t)), "tag");
    ok(shmds_set_create(seg, "words", sizeof(struct str16), STR16_TYPE, 8, false, &words),
       "create words");
    for (int i = 0; i < 2; i++) {
        struct str16 k = str16(word_keys[i]);
        ok(shmds_set_insert(words, &k, sizeof k), "word");
    }
    ShmdsEvent *ready;
    ok(shmds_event_create(seg, "ready", &ready), "create ready");
    ok(shmds_event_set(ready), "set ready");
    ShmdsLatch *start;
    ok(shmds_latch_create(seg, "start", 4, &start), "create start");
    ok(shmds_latch_count_down(start, 1), "count down start");
    ShmdsSemaphore *slots;
    ok(shmds_semaphore_create(seg, "slots", 5, &slots), "create slots");
    for (int i = 0; i < 2; i++) ok(shmds_semaphore_acquire(slots, -1), "acquire a slot");
    ShmdsOnce *init;
    ok(shmds_once_create(seg, "init", &init), "create init");
    if (shmds_once_begin(init, -1) == 1) ok(shmds_once_finish(init, true), "finish init");
    ShmdsBarrier *meet;
    ok(shmds_barrier_create(seg, "meet", 3, &meet), "create meet");
    ShmdsLock *guard;
    ok(shmds_lock_create(seg, "guard", &guard), "create guard");
    ShmdsRwLock *table;
    ok(shmds_rwlock_create(seg, "table", 4, &table), "create table");
    shmds_set_close(tags);
    shmds_set_close(words);
    shmds_event_close(ready);
    shmds_latch_close(start);
    shmds_semaphore_close(slots);
    shmds_once_close(init);
    shmds_barrier_close(meet);
    shmds_lock_close(guard);
    shmds_rwlock_close(table);
}

static void check_coord(ShmdsSegment *seg) {
    ShmdsSet *tags, *words;
    ok(shmds_set_open(seg, "tags", sizeof(uint64_t), "<Q", &tags), "open tags");
    CHECK(shmds_set_len(tags) == 3, "tags holds %zu keys", shmds_set_len(tags));
    for (int i = 0; i < 3; i++)
        CHECK(shmds_set_contains(tags, &tag_keys[i], sizeof(uint64_t)) == 1, "tag %" PRIu64,
              tag_keys[i]);
    ok(shmds_set_open(seg, "words", sizeof(struct str16), STR16_TYPE, &words), "open words");
    CHECK(shmds_set_len(words) == 2, "words holds %zu keys", shmds_set_len(words));
    for (int i = 0; i < 2; i++) {
        struct str16 k = str16(word_keys[i]);
        CHECK(shmds_set_contains(words, &k, sizeof k) == 1, "word %s", word_keys[i]);
    }
    ShmdsEvent *ready;
    ok(shmds_event_open(seg, "ready", &ready), "open ready");
    CHECK(shmds_event_is_set(ready), "event ready is not set");
    ShmdsLatch *start;
    ok(shmds_latch_open(seg, "start", &start), "open start");
    CHECK(shmds_latch_count(start) == 3, "latch start: %u left", shmds_latch_count(start));
    ShmdsSemaphore *slots;
    ok(shmds_semaphore_open(seg, "slots", &slots), "open slots");
    CHECK(shmds_semaphore_value(slots) == 3, "semaphore slots: %u", shmds_semaphore_value(slots));
    ShmdsOnce *init;
    ok(shmds_once_open(seg, "init", &init), "open init");
    CHECK(shmds_once_is_done(init), "once init has not run");
    ShmdsBarrier *meet;
    ok(shmds_barrier_open(seg, "meet", &meet), "open meet");
    CHECK(shmds_barrier_parties(meet) == 3 && !shmds_barrier_is_broken(meet), "barrier meet");
    ShmdsLock *guard;
    ok(shmds_lock_open(seg, "guard", &guard), "open guard");
    CHECK(!shmds_lock_is_locked(guard), "lock guard is held");
    ShmdsRwLock *table;
    ok(shmds_rwlock_open(seg, "table", &table), "open table");
    shmds_set_close(tags);
    shmds_set_close(words);
    shmds_event_close(ready);
    shmds_latch_close(start);
    shmds_semaphore_close(slots);
    shmds_once_close(init);
    shmds_barrier_close(meet);
    shmds_lock_close(guard);
    shmds_rwlock_close(table);
}

int main(int argc, char **argv) {
    int stream_cmd = argc == 5 && strncmp(argv[1], "stream-", 7) == 0;
    if (argc != 3 && !stream_cmd) {
        fprintf(stderr, "usage: %s write|check|write-coord|check-coord|write-messages|"
                        "check-messages SEGMENT\n"
                        "       %s stream-send|stream-recv SEGMENT spsc|mpmc N\n",
                argv[0], argv[0]);
        return 2;
    }
    ShmdsSegment *seg;
    ok(shmds_segment_open(argv[2], &seg), "open segment");
    if (strcmp(argv[1], "write") == 0)
        write_all(seg);
    else if (strcmp(argv[1], "check") == 0)
        check_all(seg, argv[2]);
    else if (strcmp(argv[1], "write-coord") == 0)
        write_coord(seg);
    else if (strcmp(argv[1], "check-coord") == 0)
        check_coord(seg);
    else if (strcmp(argv[1], "write-messages") == 0)
        write_messages(seg);
    else if (strcmp(argv[1], "check-messages") == 0)
        check_messages(seg);
    else if (stream_cmd && strcmp(argv[1], "stream-send") == 0)
        stream_run(seg, argv[3], (size_t)strtoull(argv[4], NULL, 10), 1);
    else if (stream_cmd && strcmp(argv[1], "stream-recv") == 0)
        stream_run(seg, argv[3], (size_t)strtoull(argv[4], NULL, 10), 0);
    else {
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
    }
    shmds_segment_close(seg);
    return failures ? 1 : 0;
}
