// The C++ side of the cross-language tests, written with include/shmds.hpp:
// write the known structures into a segment, or check the ones another
// language (Rust, Python, C) wrote. The peer of examples/c/interop.c, with
// the same commands:
//
//   interop write SEGMENT            create the known structures
//   interop check SEGMENT            check them; exit status 1 on a mismatch
//   interop write-coord SEGMENT      the sets and coordination primitives
//   interop check-coord SEGMENT      check them; exit status 1 on a mismatch
//   interop write-messages SEGMENT   the channels and topic, full of messages
//   interop check-messages SEGMENT   receive them all; exit status 1 on a mismatch
//   interop stream-send SEGMENT spsc|mpmc N   send N messages into channel stream
//   interop stream-recv SEGMENT spsc|mpmc N   receive them, checking each, in order
//
// The segment must exist (the tests make it). A failed library call exits
// with status 2. The known structures and messages are listed in
// tests/interop/main.rs. `check` also reads the segment header and the name
// table directly, through the layout structs of shmds.h.
#include "shmds.hpp"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// A Rust `Quote` record: {venue: u8, price: f64, size: u32}, C layout.
struct Quote {
    std::uint8_t venue;
    double price;
    std::uint32_t size;
};
SHMDS_RECORD(Quote, venue, price, size);
const char* const QUOTE_TYPE = "T{B:venue:7x<d:price:<I:size:4x}";

using Str16 = shmds::FixedStr<16>;

const char* const price_names[] = {"AAPL", "MSFT", "Z\xc3\xbcrich"};
const double price_values[] = {189.5, 410.25, 7.0};

int failures = 0;

#define CHECK(cond, ...)                                     \
    do {                                                     \
        if (!(cond)) {                                       \
            std::fprintf(stderr, "interop check: " __VA_ARGS__); \
            std::fprintf(stderr, "\n");                      \
            failures++;                                      \
        }                                                    \
    } while (0)

// Whether f() throws a shmds::Error with `code`.
template <class F>
bool throws(int code, F&& f) {
    try {
        f();
    } catch (const shmds::Error& e) {
        return e.code() == code;
    }
    return false;
}

// ------------------------------------------------------------ structures

void write_all(const shmds::Segment& seg) {
    shmds::Array<Quote> quotes = seg.create_array<Quote>("quotes", 3);
    for (std::size_t i = 0; i < 3; i++) {
        Quote q;
        std::memset(&q, 0, sizeof q);  // padding bytes too
        q.venue = static_cast<std::uint8_t>(i);
        q.price = 100.5 + static_cast<double>(i);
        q.size = static_cast<std::uint32_t>(10 * i);
        quotes.set(i, q);
    }

    shmds::Queue<std::uint64_t> jobs = seg.create_queue<std::uint64_t>("jobs", 128);
    for (std::uint64_t v = 1; v <= 100; v++)
        if (!jobs.try_push(v)) throw shmds::Error(SHMDS_E_FULL, "jobs is full");

    shmds::Stack<std::int32_t> undo = seg.create_stack<std::int32_t>("undo", 8);
    for (std::int32_t v = -1; v >= -3; v--) undo.push(v);

    shmds::Map<Str16, double> prices = seg.create_map<Str16, double>("prices", 64);
    for (int i = 0; i < 3; i++) prices.insert(Str16(price_names[i]), price_values[i]);

    shmds::Map<std::uint64_t, std::int64_t> hits = seg.create_map<std::uint64_t, std::int64_t>("hits", 32);
    for (std::uint64_t k = 1; k <= 20; k++) hits.insert(k, -static_cast<std::int64_t>(k));
}

// ------------------------------------------- sets and coordination primitives

const std::uint64_t tag_keys[] = {3, 7, 42};
const char* const word_keys[] = {"alpha", "Z\xc3\xbcrich"};

void write_coord(const shmds::Segment& seg) {
    auto tags = seg.create_set<std::uint64_t>("tags", 16);
    for (std::uint64_t k : tag_keys) tags.insert(k);
    auto words = seg.create_set<Str16>("words", 8);
    for (const char* w : word_keys) words.insert(Str16(w));
    seg.create_event("ready").set();
    seg.create_latch("start", 4).count_down(1);
    auto slots = seg.create_semaphore("slots", 5);
    slots.acquire();
    slots.acquire();  // two permits stay taken
    seg.create_once("init").call([] {});
    seg.create_barrier("meet", 3);
    seg.create_lock("guard");
    seg.create_rwlock("table", 4);
}

void check_coord(const shmds::Segment& seg) {
    auto tags = seg.open_set<std::uint64_t>("tags");
    CHECK(tags.size() == 3, "tags holds %zu keys", tags.size());
    for (std::uint64_t k : tag_keys) CHECK(tags.contains(k), "tag %" PRIu64, k);
    auto words = seg.open_set<Str16>("words");
    CHECK(words.size() == 2, "words holds %zu keys", words.size());
    for (const char* w : word_keys) CHECK(words.contains(Str16(w)), "word %s", w);
    CHECK(seg.open_event("ready").is_set(), "event ready is not set");
    CHECK(seg.open_latch("start").count() == 3, "latch start: %u left", seg.open_latch("start").count());
    CHECK(seg.open_semaphore("slots").value() == 3, "semaphore slots: %u", seg.open_semaphore("slots").value());
    CHECK(seg.open_once("init").is_done(), "once init has not run");
    auto meet = seg.open_barrier("meet");
    CHECK(meet.parties() == 3 && !meet.is_broken(), "barrier meet");
    CHECK(!seg.open_lock("guard").is_locked(), "lock guard is held");
    seg.open_rwlock("table");
}

// The header and table, read through the layout structs.
void check_layout(const shmds::Segment& seg) {
    static const std::uint8_t magic[8] = SHMDS_MAGIC_BYTES;
    const auto* h = static_cast<const shmds_segment_header*>(seg.base());
    CHECK(std::memcmp(h->magic, magic, 8) == 0, "bad magic");
    CHECK(h->format_version == SHMDS_FORMAT_VERSION, "format version %u", h->format_version);
    CHECK(__atomic_load_n(&h->size, __ATOMIC_ACQUIRE) == seg.size(), "size");
    CHECK(h->max_size >= seg.size(), "maximum size");
    CHECK(h->entry_size == sizeof(shmds_entry), "entry size %u", h->entry_size);
    bool found = false;
    const auto* table = reinterpret_cast<const shmds_entry*>(reinterpret_cast<const char*>(h) + h->table_offset);
    for (std::uint32_t i = 0; i < h->table_capacity; i++) {
        const std::uint32_t state = __atomic_load_n(&table[i].state, __ATOMIC_ACQUIRE);
        const char* name = reinterpret_cast<const char*>(table[i].name);
        if (state == 1 && std::strncmp(name, "quotes", sizeof table[i].name) == 0) {
            found = true;
            CHECK(table[i].kind == SHMDS_KIND_ARRAY, "quotes kind %u", table[i].kind);
            CHECK(table[i].elem_size == sizeof(Quote), "quotes elem size");
            const char* type = reinterpret_cast<const char*>(table[i].elem_type);
            CHECK(std::strcmp(type, QUOTE_TYPE) == 0, "quotes type %s", type);
            const auto* a = reinterpret_cast<const shmds_array_header*>(reinterpret_cast<const char*>(h) +
                                                                         table[i].offset);
            CHECK(a->kind == SHMDS_KIND_ARRAY && a->len == 3, "quotes header");
            // The heap block header just before the structure.
            const auto* b = reinterpret_cast<const shmds_block_header*>(reinterpret_cast<const char*>(a) -
                                                                         sizeof(shmds_block_header));
            CHECK(std::memcmp(&b->magic, "BLK\x01", 4) == 0, "quotes block magic");
            CHECK(b->state == 2 && b->owner == i && b->size == table[i].size + 64,
                  "quotes block header: state %u owner %" PRIu64 " size %" PRIu64, b->state, b->owner, b->size);
        }
    }
    CHECK(found, "no live table entry named quotes");
}

void check_all(const shmds::Segment& seg) {
    check_layout(seg);

    const std::vector<shmds::EntryInfo> entries = seg.entries();
    CHECK(entries.size() == 5, "%zu entries, expected 5", entries.size());
    CHECK(shmds::descriptor<Quote>() == QUOTE_TYPE, "Quote descriptor %s", shmds::descriptor<Quote>().c_str());

    {
        shmds::Array<Quote> quotes = seg.open_array<Quote>("quotes");
        CHECK(quotes.size() == 3, "quotes length");
        CHECK(quotes.elem_size() == sizeof(Quote), "quote size");
        for (std::size_t i = 0; i < 3 && quotes.size() == 3; i++) {
            const Quote q = quotes.get(i);
            CHECK(q.venue == i && q.price == 100.5 + static_cast<double>(i) && q.size == 10 * i,
                  "quotes[%zu] = (%u, %g, %u)", i, q.venue, q.price, q.size);
            CHECK(std::memcmp(&quotes.data()[i], &q, sizeof q) == 0, "quotes.data()[%zu]", i);
        }
    }

    {
        shmds::Queue<std::uint64_t> jobs = seg.open_queue<std::uint64_t>("jobs");
        CHECK(jobs.elem_size() == 8, "jobs element size");
        for (std::uint64_t want = 1; want <= 100; want++) {
            const std::optional<std::uint64_t> v = jobs.try_pop();
            CHECK(v && *v == want, "job %" PRIu64 ": %s %" PRIu64, want, v ? "value" : "empty", v ? *v : 0);
        }
        CHECK(!jobs.try_pop(), "jobs not empty");
        CHECK(!jobs.pop_for(1ms), "pop did not time out");
    }

    {
        shmds::Stack<std::int32_t> undo = seg.open_stack<std::int32_t>("undo");
        for (std::int32_t want = -3; want <= -1; want++) {
            const std::optional<std::int32_t> v = undo.pop_for(0ns);
            CHECK(v && *v == want, "undo: %s %d, expected %d", v ? "value" : "empty", v ? *v : 0, want);
        }
    }

    {
        shmds::Map<Str16, double> prices = seg.open_map<Str16, double>("prices");
        CHECK(prices.size() == 3, "prices has %zu keys", prices.size());
        CHECK(prices.key_size() == sizeof(Str16), "price key size");
        for (int i = 0; i < 3; i++) {
            const std::optional<double> v = prices.get(Str16(price_names[i]));
            CHECK(v && *v == price_values[i], "prices[%s]: %s %g", price_names[i], v ? "value" : "absent",
                  v ? *v : 0.0);
        }
        CHECK(!prices.get(Str16("IBM")), "IBM should be absent");
        CHECK(!prices.contains(Str16("IBM")), "IBM should not be contained");
    }

    {
        shmds::Map<std::uint64_t, std::int64_t> hits = seg.open_map<std::uint64_t, std::int64_t>("hits");
        for (std::uint64_t k = 1; k <= 20; k++) {
            const std::optional<std::int64_t> v = hits.get(k);
            CHECK(v && *v == -static_cast<std::int64_t>(k), "hits[%" PRIu64 "]: %s %" PRId64, k,
                  v ? "value" : "absent", v ? *v : 0);
        }
    }

    // Wrong kinds and missing names are refused with the right codes.
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<std::uint64_t>("prices"); }), "prices opened as a queue");
    CHECK(throws(SHMDS_E_NOT_FOUND, [&] { seg.open_queue<std::uint64_t>("nope"); }), "missing name");
    CHECK(throws(SHMDS_E_INVALID, [&] { shmds::Segment().open_queue<std::uint64_t>("nope"); }), "empty segment");
    // Another element size or type than the structure holds is refused.
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<std::uint32_t>("jobs"); }), "jobs opened as 4 bytes");
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<double>("jobs"); }), "jobs opened as doubles");
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<std::int64_t>("jobs"); }), "jobs opened as i64");
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<shmds::FixedStr<15>, double>("prices"); }),
          "prices opened with another key");
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_array<std::array<std::uint8_t, 24>>("quotes"); }),
          "quotes opened as bytes");
    // (The C peer's NULL-output and fetch_add-on-doubles checks have no C++
    // form: the C++ layer never passes NULL, and fetch_add on a double map
    // does not compile.)
    try {
        seg.open_queue<std::uint64_t>("nope");
    } catch (const shmds::Error& e) {
        CHECK(std::strlen(e.what()) > 0 && std::strcmp(e.what(), shmds_last_error()) == 0,
              "the error's message is not the library's: %s", e.what());
    }
}

// ------------------------------------------------------------ messages

// The messages of tests/interop/main.rs: message k of len bytes is
// byte i = (7k + 31i + len) % 251.
const std::size_t event_lens[10] = {0, 1, 7, 63, 64, 65, 200, 1000, 4096, 3};
const std::size_t tick_lens[7] = {0, 5, 64, 100, 300, 2048, 1};

void fill_message(std::uint8_t* p, std::size_t k, std::size_t len) {
    for (std::size_t i = 0; i < len; i++) p[i] = static_cast<std::uint8_t>((7 * k + 31 * i + len) % 251);
}

std::vector<std::uint8_t> message(std::size_t k, std::size_t len) {
    std::vector<std::uint8_t> m(len);
    fill_message(m.data(), k, len);
    return m;
}

// Whether the len bytes at got are message k of want bytes.
bool is_message(const void* got, std::size_t len, std::size_t k, std::size_t want) {
    if (len != want) return false;
    const std::vector<std::uint8_t> m = message(k, want);
    return want == 0 || std::memcmp(got, m.data(), want) == 0;
}
bool is_message(const std::vector<std::uint8_t>& got, std::size_t k, std::size_t want) {
    return is_message(got.data(), got.size(), k, want);
}

void write_messages(const shmds::Segment& seg) {
    {
        shmds::Channel events = seg.create_channel("events", 64 << 10, {4096, false, true});
        shmds::Sender tx = events.sender();
        for (std::size_t k = 0; k < 10; k++) {
            const std::size_t len = event_lens[k];
            if (k % 2 == 0) {
                if (!tx.try_send(message(k, len))) throw shmds::Error(SHMDS_E_FULL, "events is full");
            } else {
                std::optional<shmds::Reservation> slot = tx.try_reserve(len);
                if (!slot) throw shmds::Error(SHMDS_E_FULL, "events is full");
                fill_message(slot->data(), k, len);
                slot->commit();
            }
        }
    }

    {
        shmds::Channel pipe = seg.create_channel("pipe", 4096, {0, true, false});
        shmds::Sender tx = pipe.sender();
        for (std::size_t k = 0; k < 10; k++)
            if (!tx.send_for(message(k, 10 * k), 0ns)) throw shmds::Error(SHMDS_E_FULL, "pipe is full");
    }

    shmds::Topic ticks = seg.create_topic("ticks", 4096);
    for (std::size_t k = 0; k < 7; k++) {
        const std::size_t len = tick_lens[k];
        std::uint64_t seq;
        if (k % 2 == 0) {
            seq = ticks.publish(message(k, len));
        } else {
            shmds::TopicReservation slot = ticks.reserve(len);
            fill_message(slot.data(), k, len);
            seq = slot.commit();
        }
        CHECK(seq == k, "tick %zu published as %" PRIu64, k, seq);
    }
}

// A receive found nothing more: empty (nullopt), or every sender gone.
template <class F>
void nothing_more(F&& receive, const char* what) {
    try {
        const bool got = receive();
        CHECK(!got, "%s: one more message at the end", what);
    } catch (const shmds::Error& e) {
        CHECK(e.code() == SHMDS_E_DISCONNECTED, "%s: %d (%s) at the end", what, e.code(), e.what());
    }
}

void check_messages(const shmds::Segment& seg) {
    {
        shmds::Channel events = seg.open_channel("events");
        CHECK(events.max_message() == 4096 && events.flags() == SHMDS_CHECKSUM,
              "events: max_message %" PRIu64 ", flags %u", events.max_message(), events.flags());
        shmds::Receiver rx = events.receiver();
        for (std::size_t k = 0; k < 10; k++) {
            const std::size_t want = event_lens[k];
            if (k % 2 == 0) {
                // Ask the length with an empty buffer, then receive into exactly that.
                const std::optional<std::size_t> len = rx.try_recv_into(nullptr, 0);
                CHECK(len && *len == want, "events %zu: %zu bytes, expected %zu", k, len ? *len : 0, want);
                if (!len || want == 0) continue;  // an empty one was received by the probe
                std::vector<std::uint8_t> buf(*len);
                const std::optional<std::size_t> got = rx.try_recv_into(buf.data(), buf.size());
                CHECK(got && is_message(buf.data(), *got, k, want), "events %zu: %zu bytes", k, got ? *got : 0);
            } else {
                std::optional<shmds::Message> m = rx.try_recv_ref();
                CHECK(m && is_message(m->data(), m->size(), k, want), "events %zu: %s, %zu bytes", k,
                      m ? "received" : "empty", m ? m->size() : 0);
                if (m) m->release();
            }
        }
        char small[8];
        nothing_more([&] { return rx.try_recv_into(small, sizeof small).has_value(); }, "events");
    }

    {
        shmds::Channel pipe = seg.open_channel("pipe");
        CHECK(pipe.flags() == SHMDS_SPSC, "pipe flags %u", pipe.flags());
        shmds::Receiver rx = pipe.receiver();
        for (std::size_t k = 0; k < 10; k++) {
            const std::optional<std::vector<std::uint8_t>> m = rx.recv_for(0ns);
            CHECK(m && is_message(*m, k, 10 * k), "pipe %zu: %s, %zu bytes", k, m ? "received" : "empty",
                  m ? m->size() : 0);
        }
        nothing_more([&] { return rx.try_recv().has_value(); }, "pipe");
    }

    shmds::Topic ticks = seg.open_topic("ticks");
    shmds::Subscriber sub = ticks.subscribe(true);
    for (std::size_t k = 0; k < 7; k++) {
        const std::optional<shmds::TopicMessage> m = sub.try_recv();
        CHECK(m && m->seq == k && m->missed == 0 && is_message(m->data, k, tick_lens[k]),
              "ticks %zu: %s, seq %" PRIu64 ", %zu bytes", k, m ? "received" : "empty", m ? m->seq : 0,
              m ? m->data.size() : 0);
    }
    nothing_more([&] { return sub.try_recv().has_value(); }, "ticks");
    const std::optional<shmds::TopicMessage> latest = ticks.latest();
    CHECK(latest && latest->seq == 6 && is_message(latest->data, 6, tick_lens[6]), "ticks latest: %s, seq %" PRIu64,
          latest ? "received" : "empty", latest ? latest->seq : 0);
}

// ------------------------------------------------------------ the stream

// The stream's channel, created by whichever side comes first.
shmds::Channel stream(const shmds::Segment& seg, const std::string& mode) {
    const bool spsc = mode == "spsc";
    if (!spsc && mode != "mpmc") {
        std::fprintf(stderr, "interop: mode %s is not spsc or mpmc\n", mode.c_str());
        std::exit(2);
    }
    return seg.open_or_create_channel(spsc ? "stream-spsc" : "stream", 4096, {1000, spsc, false});
}

// Send the stream's n messages, or receive and check them.
void stream_run(const shmds::Segment& seg, const std::string& mode, std::size_t n, bool sending) {
    shmds::Channel ch = stream(seg, mode);
    shmds::Sender tx;
    shmds::Receiver rx;
    if (sending)
        tx = ch.sender();
    else
        rx = ch.receiver();
    std::vector<std::uint8_t> m(1000);
    for (std::size_t k = 0; k < n && failures == 0; k++) {
        const std::size_t want = 37 * k % 1001;
        if (sending) {
            fill_message(m.data(), k, want);
            CHECK(tx.send_for(m.data(), want, 60s), "stream send %zu: timed out", k);
        } else {
            const std::optional<std::vector<std::uint8_t>> got = rx.recv_for(60s);
            CHECK(got, "stream receive %zu: timed out", k);
            CHECK(!got || is_message(*got, k, want), "stream message %zu: %zu bytes, not what was sent", k,
                  got->size());
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const bool stream_cmd = argc == 5 && std::strncmp(argv[1], "stream-", 7) == 0;
    if (argc != 3 && !stream_cmd) {
        std::fprintf(stderr,
                     "usage: %s write|check|write-coord|check-coord|write-messages|check-messages SEGMENT\n"
                     "       %s stream-send|stream-recv SEGMENT spsc|mpmc N\n",
                     argv[0], argv[0]);
        return 2;
    }
    const std::string cmd = argv[1];
    try {
        shmds::Segment seg = shmds::Segment::open(argv[2]);
        if (cmd == "write")
            write_all(seg);
        else if (cmd == "check")
            check_all(seg);
        else if (cmd == "write-coord")
            write_coord(seg);
        else if (cmd == "check-coord")
            check_coord(seg);
        else if (cmd == "write-messages")
            write_messages(seg);
        else if (cmd == "check-messages")
            check_messages(seg);
        else if (stream_cmd && cmd == "stream-send")
            stream_run(seg, argv[3], static_cast<std::size_t>(std::strtoull(argv[4], nullptr, 10)), true);
        else if (stream_cmd && cmd == "stream-recv")
            stream_run(seg, argv[3], static_cast<std::size_t>(std::strtoull(argv[4], nullptr, 10)), false);
        else {
            std::fprintf(stderr, "unknown command %s\n", argv[1]);
            return 2;
        }
    } catch (const shmds::Error& e) {
        std::fprintf(stderr, "interop: %s: %s (%s)\n", cmd.c_str(), e.name(), e.what());
        return 2;
    }
    return failures ? 1 : 0;
}
