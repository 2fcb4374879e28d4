// Tests of include/shmds.hpp, the C++ layer over the C API: every class,
// the typed refusals, the try_ and timed forms, move semantics, record
// descriptors, the standard lock adaptors, a fork()ed producer, channels
// and topics (zero-copy receive included), every coordination
// primitive, batch pushes and pops, compare-exchange, map and set
// iteration, and the stored type descriptors.
//
//   hpp_test [PREFIX]    segment names start with PREFIX (default
//                        shmds-hpptest-<pid>); all are removed at exit,
//                        also on failure. Exit 0 when every check passed.
#include "shmds.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using shmds::FixedStr;

// The C header's fixed string: FixedStr<N> has its layout.
typedef SHMDS_FIXED_STR(16) CStr16;
static_assert(sizeof(CStr16) == sizeof(FixedStr<16>) && alignof(CStr16) == alignof(FixedStr<16>),
              "FixedStr<16> is SHMDS_FIXED_STR(16)");
static_assert(offsetof(CStr16, bytes) == offsetof(FixedStr<16>, bytes), "FixedStr<16> is SHMDS_FIXED_STR(16)");

// Whether A has a compare_exchange(i, E&, E) (integer elements only).
template <class A, class E, class = void>
struct has_compare_exchange : std::false_type {};
template <class A, class E>
struct has_compare_exchange<
    A, E, std::void_t<decltype(std::declval<const A&>().compare_exchange(0, std::declval<E&>(), E{}))>>
    : std::true_type {};
static_assert(has_compare_exchange<shmds::Array<std::uint64_t>, std::uint64_t>::value, "integers: yes");
static_assert(!has_compare_exchange<shmds::Array<double>, double>::value, "floats: no");
static_assert(!has_compare_exchange<shmds::Array<bool>, bool>::value, "bool: no");
static_assert(has_compare_exchange<shmds::Map<std::uint32_t, std::int16_t>, std::int16_t>::value, "integers: yes");
static_assert(!has_compare_exchange<shmds::Map<std::uint32_t, float>, float>::value, "floats: no");

using MapIt = shmds::Map<FixedStr<16>, std::int64_t>::iterator;
static_assert(std::is_same<std::iterator_traits<MapIt>::iterator_category, std::input_iterator_tag>::value,
              "an input iterator");
static_assert(std::is_same<std::iterator_traits<MapIt>::value_type, std::pair<FixedStr<16>, std::int64_t>>::value,
              "of (key, value)");
#if __cplusplus >= 202002L
static_assert(std::input_iterator<MapIt>, "std::input_iterator");
static_assert(std::input_iterator<shmds::Set<std::uint32_t>::iterator>, "std::input_iterator");
static_assert(std::ranges::input_range<shmds::Map<std::uint32_t, double>>, "a range");
static_assert(std::ranges::input_range<shmds::Set<FixedStr<8>>>, "a range");
#endif

// ---------------------------------------------------------------- records

struct Quote {
    std::uint8_t venue;
    double price;
    std::uint32_t size;
};
SHMDS_RECORD(Quote, venue, price, size);

// The same layout, its fields listed in another order: sorted by offset.
struct QuoteShuffled {
    std::uint8_t venue;
    double price;
    std::uint32_t size;
};
SHMDS_RECORD(QuoteShuffled, size, venue, price);

// Rust's test record Padded {a: u8, b: u64, c: [u8; 3]}.
struct Padded {
    std::uint8_t a;
    std::uint64_t b;
    std::array<std::uint8_t, 3> c;
};
SHMDS_RECORD(Padded, a, b, c);

// Rust's Nested {head: Padded, tail: [f32; 2]}.
struct Nested {
    Padded head;
    std::array<float, 2> tail;
};
SHMDS_RECORD(Nested, head, tail);

namespace app {
// A record in a namespace, with a C array, a bool and a FixedStr member.
struct Tagged {
    char tag[3];
    bool live;
    std::int32_t n;
    FixedStr<5> label;
};
SHMDS_RECORD(Tagged, tag, live, n, label);
}  // namespace app

// ---------------------------------------------------------------- harness

static int passed = 0;
static int failed = 0;

#define CHECK(...)                                                                         \
    do {                                                                                   \
        if (__VA_ARGS__) {                                                                 \
            ++passed;                                                                      \
        } else {                                                                           \
            ++failed;                                                                      \
            std::fprintf(stderr, "hpp: FAILED %s:%d: %s\n", __FILE__, __LINE__, #__VA_ARGS__); \
        }                                                                                  \
    } while (0)

// Whether f() throws a shmds::Error with `code`.
template <class F>
static bool throws(int code, F&& f) {
    try {
        f();
    } catch (const shmds::Error& e) {
        if (e.code() == code) return true;
        std::fprintf(stderr, "hpp: expected code %d (%s), got %d: %s\n", code, shmds_strerror(code), e.code(),
                     e.what());
        return false;
    }
    std::fprintf(stderr, "hpp: expected code %d (%s), nothing thrown\n", code, shmds_strerror(code));
    return false;
}

template <class F>
static double millis(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

static std::string prefix;
static std::vector<std::string> made;  // every segment name used, removed at exit

static std::string seg_name(const std::string& suffix) {
    std::string name = prefix + "-" + suffix;
    made.push_back(name);
    return name;
}

static void remove_all() {
    for (const std::string& n : made) {
        try {
            shmds::Segment::remove(n);
        } catch (const std::exception& e) {  // e.g. a bad prefix: say so, go on
            std::fprintf(stderr, "hpp: could not remove %s: %s\n", n.c_str(), e.what());
        }
    }
}

static std::vector<std::uint8_t> bytes_of(std::string_view s) { return std::vector<std::uint8_t>(s.begin(), s.end()); }

// ---------------------------------------------------------------- tests

static void test_errors() {
    const std::string missing = seg_name("missing");
    try {
        shmds::Segment::open(missing);
        CHECK(false);
    } catch (const shmds::Error& e) {
        CHECK(e.code() == SHMDS_E_NOT_FOUND);
        CHECK(e.errc() == shmds::Errc::not_found);
        CHECK(e.is(shmds::Errc::not_found));
        CHECK(shmds::Errc::not_found == SHMDS_E_NOT_FOUND);
        CHECK(std::strlen(shmds_last_error()) > 0);
        CHECK(std::string(e.what()).find(shmds_last_error()) != std::string::npos);
        CHECK(std::string(e.what()).find(missing) != std::string::npos);
        CHECK(std::string(e.name()) == shmds_strerror(SHMDS_E_NOT_FOUND));
    }
    // An Error without a message falls back on shmds_strerror.
    shmds::Error plain(SHMDS_E_TIMEOUT, "");
    CHECK(std::string(plain.what()) == shmds_strerror(SHMDS_E_TIMEOUT));
    const std::runtime_error& base = plain;
    CHECK(base.what() == plain.what());
}

static void test_segment() {
    const std::string name = seg_name("seg");
    CHECK(!shmds::Segment::remove(name));  // none yet: false, no exception
    {
        shmds::Segment seg = shmds::Segment::create(name, 1 << 20);
        CHECK(seg.get() != nullptr);
        CHECK(seg.size() >= (1u << 20));
        CHECK(!seg.is_temporary());
        CHECK(!seg.is_abandoned());
        CHECK(seg.creator_alive());
        CHECK(seg.attached() >= 1);
        CHECK(seg.base() != nullptr);
        CHECK(throws(SHMDS_E_EXISTS, [&] { shmds::Segment::create(name, 1 << 20); }));
        // A segment grows: a stated size is refused only past its maximum
        // (4 GiB by default); a stated table capacity must be its own.
        CHECK(shmds::Segment::open_or_create(name, 2 << 20).size() == seg.size());
        CHECK(throws(SHMDS_E_SHAPE, [&] { shmds::Segment::open_or_create(name, 8ull << 30); }));
        shmds::SegmentOptions other_table;
        other_table.table_capacity = 7;
        CHECK(throws(SHMDS_E_SHAPE, [&] { shmds::Segment::open_or_create_with(name, other_table); }));
        CHECK(throws(SHMDS_E_SHAPE, [&] { shmds::Segment::open_with(name, other_table); }));
        shmds::Segment again = shmds::Segment::open_or_create(name, 1 << 20);
        CHECK(again.size() == seg.size());
        shmds::Segment third = shmds::Segment::open(name);
        CHECK(third.size() == seg.size());

        CHECK(seg.entries().empty());
        seg.create_queue<std::uint64_t>("q", 8);
        seg.create_map<FixedStr<16>, double>("m", 8);
        seg.create_lock("l");
        const std::vector<shmds::EntryInfo> es = seg.entries();
        CHECK(es.size() == 3);
        std::set<std::string> names;
        for (const auto& e : es) {
            names.insert(e.name);
            if (e.name == "q") CHECK(e.kind == SHMDS_KIND_QUEUE && e.elem_type == "<Q" && e.capacity == 8);
            if (e.name == "m")
                CHECK(e.kind == SHMDS_KIND_MAP && e.key_type == "T{B:len:16s:bytes:}" && e.elem_type == "<d" &&
                      e.key_size == 17 && e.elem_size == 8);
            if (e.name == "l") CHECK(e.kind == SHMDS_KIND_LOCK);
        }
        CHECK((names == std::set<std::string>{"q", "m", "l"}));
        CHECK(seg.erase("q"));
        CHECK(!seg.erase("q"));
        CHECK(seg.erase_and_wipe("m"));
        CHECK(!seg.erase_and_wipe("nope"));
        CHECK(seg.entries().size() == 1);

        // A read-only open attaches nothing and opens no structure.
        shmds::SegmentOptions ro;
        ro.read_only = true;
        shmds::Segment view = shmds::Segment::open_with(name, ro);
        CHECK(view.size() == seg.size());
    }
    CHECK(shmds::Segment::remove(name));
    CHECK(!shmds::Segment::remove(name));

    // A temporary segment goes with its last handle.
    const std::string temp = seg_name("temp");
    {
        shmds::SegmentOptions opts;
        opts.temporary = true;
        opts.size = 1 << 20;
        shmds::Segment t = shmds::Segment::create_with(temp, opts);
        CHECK(t.is_temporary());
        shmds::Segment t2 = shmds::Segment::open_or_create_with(temp, opts);
        CHECK(t2.is_temporary());
    }
    CHECK(throws(SHMDS_E_NOT_FOUND, [&] { shmds::Segment::open(temp); }));

    // The C options struct is accepted as it is.
    const std::string copts = seg_name("copts");
    ShmdsSegmentOptions c{};
    c.size = 1 << 20;
    c.table_capacity = 16;
    { shmds::Segment s = shmds::Segment::create_with(copts, c); CHECK(s.size() >= (1u << 20)); }
    { shmds::Segment s = shmds::Segment::open_with(copts, c); CHECK(s.size() >= (1u << 20)); }
    CHECK(shmds::Segment::remove(copts));
}

static void test_descriptors(const shmds::Segment& seg) {
    using shmds::descriptor;
    CHECK(descriptor<Quote>() == "T{B:venue:7x<d:price:<I:size:4x}");
    CHECK(descriptor<QuoteShuffled>() == "T{B:venue:7x<d:price:<I:size:4x}");
    CHECK(descriptor<Padded>() == "T{B:a:7x<Q:b:3s:c:5x}");
    CHECK(descriptor<Nested>() == "T{T{B:a:7x<Q:b:3s:c:5x}:head:(2)<f:tail:}");
    CHECK(descriptor<app::Tagged>() == "T{(3)c:tag:?:live:<i:n:T{B:len:5s:bytes:}:label:2x}");
    CHECK(descriptor<std::uint8_t>() == "B");
    CHECK(descriptor<std::int8_t>() == "b");
    CHECK(descriptor<bool>() == "?");
    CHECK(descriptor<char>() == "c");
    CHECK(descriptor<std::byte>() == "B");
    CHECK(descriptor<std::int16_t>() == "<h");
    CHECK(descriptor<std::uint16_t>() == "<H");
    CHECK(descriptor<std::int32_t>() == "<i");
    CHECK(descriptor<std::uint32_t>() == "<I");
    CHECK(descriptor<float>() == "<f");
    CHECK(descriptor<std::int64_t>() == "<q");
    CHECK(descriptor<std::uint64_t>() == "<Q");
    CHECK(descriptor<long long>() == "<q");
    CHECK(descriptor<unsigned long long>() == "<Q");
    CHECK(descriptor<double>() == "<d");
    CHECK((descriptor<std::array<std::uint8_t, 16>>() == "16s"));
    CHECK((descriptor<std::array<std::byte, 4>>() == "4s"));
    CHECK((descriptor<std::array<double, 3>>() == "(3)<d"));
    CHECK((descriptor<std::array<std::array<std::uint32_t, 2>, 3>>() == "(3,2)<I"));
    CHECK((descriptor<std::array<std::array<std::uint8_t, 4>, 3>>() == "(3)4s"));
    CHECK((descriptor<std::array<Quote, 2>>() == "(2)T{B:venue:7x<d:price:<I:size:4x}"));
    CHECK(descriptor<FixedStr<16>>() == "T{B:len:16s:bytes:}");
    CHECK(shmds::element<std::int32_t>::is_integer && !shmds::element<double>::is_integer);

    // The library accepts each, and stores exactly that canonical form.
    auto stored = [&](const std::string& name) {
        for (const auto& e : seg.entries())
            if (e.name == name) return e.elem_type;
        return std::string("(missing)");
    };
    seg.create_array<Quote>("d-quote", 1);
    CHECK(stored("d-quote") == descriptor<Quote>());
    seg.create_array<Nested>("d-nested", 1);
    CHECK(stored("d-nested") == descriptor<Nested>());
    seg.create_array<app::Tagged>("d-tagged", 1);
    CHECK(stored("d-tagged") == descriptor<app::Tagged>());
    seg.create_array<std::array<std::array<std::uint32_t, 2>, 3>>("d-shape", 1);
    CHECK(stored("d-shape") == "(3,2)<I");
    seg.create_array<std::array<std::array<std::uint8_t, 4>, 3>>("d-bytes", 1);
    CHECK(stored("d-bytes") == "(3)4s");
    seg.create_array<bool>("d-bool", 2);
    CHECK(stored("d-bool") == "?");
    seg.create_array<char>("d-char", 2);
    CHECK(stored("d-char") == "c");
    for (const char* n : {"d-quote", "d-nested", "d-tagged", "d-shape", "d-bytes", "d-bool", "d-char"}) seg.erase(n);
}

static void test_fixed_str() {
    FixedStr<16> a("AAPL");
    CHECK(a.size() == 4 && a.view() == "AAPL" && a.str() == "AAPL");
    CHECK(a == FixedStr<16>("AAPL") && a != FixedStr<16>("MSFT"));
    CHECK(a < FixedStr<16>("MSFT"));
    CHECK(a == "AAPL" && "AAPL" == a);
    CHECK(FixedStr<16>().empty());
    CHECK(FixedStr<4>(std::string_view("a\0", 2)) != FixedStr<4>("a"));  // trailing NULs are data
    CHECK(throws(SHMDS_E_INVALID, [] { FixedStr<2> x("long"); (void)x; }));
    CHECK(FixedStr<16>("Z\xc3\xbcrich").size() == 7);
    CHECK(std::hash<FixedStr<16>>()(a) == std::hash<FixedStr<16>>()(FixedStr<16>("AAPL")));
    FixedStr<4> full("abcd");
    CHECK(full.view() == "abcd");
    full.len = 200;  // as another process might write: read as N bytes
    CHECK(full.size() == 4);

    // Byte for byte what the C header's shmds_fixed_str_set writes.
    CStr16 c;
    std::memset(&c, 0x55, sizeof c);
    CHECK(shmds_fixed_str_set(&c, sizeof c, "AAPL") == SHMDS_OK);
    CHECK(std::memcmp(&c, &a, sizeof c) == 0);
    CHECK(shmds_fixed_str_set(&c, sizeof c, "") == SHMDS_OK);
    const FixedStr<16> empty;
    CHECK(std::memcmp(&c, &empty, sizeof c) == 0);
    CHECK(shmds_fixed_str_set(&c, sizeof c, "seventeen bytes!!") == SHMDS_E_INVALID);
    CHECK(throws(SHMDS_E_INVALID, [] { FixedStr<16> x("seventeen bytes!!"); (void)x; }));
    FixedStr<16> from_c;
    CHECK(shmds_fixed_str_set(&c, sizeof c, "MSFT") == SHMDS_OK);
    std::memcpy(static_cast<void*>(&from_c), &c, sizeof c);  // as a key from C code would arrive
    CHECK(from_c == "MSFT" && from_c == FixedStr<16>("MSFT"));
}

static void test_array(const shmds::Segment& seg) {
    shmds::Array<Quote> quotes = seg.create_array<Quote>("quotes", 3);
    CHECK(quotes.size() == 3 && quotes.elem_size() == sizeof(Quote));
    for (std::size_t i = 0; i < 3; i++) quotes.set(i, Quote{static_cast<std::uint8_t>(i), 100.5 + i, 10u * static_cast<std::uint32_t>(i)});
    const Quote q = quotes.get(2);
    CHECK(q.venue == 2 && q.price == 102.5 && q.size == 20);
    CHECK(quotes.data()[1].price == 101.5);
    CHECK(throws(SHMDS_E_INDEX, [&] { quotes.get(3); }));
    CHECK(throws(SHMDS_E_INDEX, [&] { quotes.set(3, Quote{}); }));
    quotes.check();
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_array<Padded>("quotes"); }));
    CHECK(seg.open_array<QuoteShuffled>("quotes").get(1).price == 101.5);  // the same descriptor
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_array<Quote>("quotes", 4); }));
    shmds::Array<Quote> again = seg.open_or_create_array<Quote>("quotes", 3);
    CHECK(again.get(1).size == 10);
    shmds::Array<Quote> opened = seg.open_array<Quote>("quotes");
    CHECK(opened.size() == 3);

    auto counters = seg.create_array<std::int32_t>("counters", 2);
    CHECK(counters.fetch_add(0, 5) == 0);
    CHECK(counters.fetch_add(0, -7) == 5);
    CHECK(counters.get(0) == -2);
    auto bytes = seg.create_array<std::uint8_t>("bytes", 1);
    bytes.set(0, 250);
    CHECK(bytes.fetch_add(0, 10) == 250);
    CHECK(bytes.get(0) == 4);  // wraps at the element's width
    auto tiny = seg.create_array<std::int8_t>("tiny", 1);
    tiny.set(0, -1);
    // The result is the element type (int8_t -1), not the argument's (int).
    static_assert(std::is_same<decltype(tiny.fetch_add(0, 1)), std::int8_t>::value, "fetch_add type");
    CHECK(tiny.fetch_add(0, 1) == -1 && tiny.get(0) == 0);
    auto flags = seg.create_array<bool>("flags", 2);
    flags.set(1, true);
    CHECK(flags.get(1) && !flags.get(0));

    // compare_exchange: std::atomic's shape.
    std::int32_t expected = -2;
    CHECK(counters.compare_exchange(0, expected, 40));
    CHECK(expected == -2 && counters.get(0) == 40);
    expected = -2;
    CHECK(!counters.compare_exchange(0, expected, 41));
    CHECK(expected == 40 && counters.get(0) == 40);  // the value found; nothing changed
    CHECK(throws(SHMDS_E_INDEX, [&] { std::int32_t e = 0; counters.compare_exchange(2, e, 1); }));
    auto small = seg.create_array<std::int8_t>("small", 1);
    small.set(0, -1);
    std::int8_t e8 = 0;
    CHECK(!small.compare_exchange(0, e8, 1) && e8 == -1);  // sign kept from the zero-extended C value
    CHECK(small.compare_exchange(0, e8, -128) && small.get(0) == -128);
    auto wide = seg.create_array<std::uint64_t>("wide", 1);
    std::uint64_t e64 = 0;
    CHECK(wide.compare_exchange(0, e64, 0xfedcba9876543210ull) && wide.get(0) == 0xfedcba9876543210ull);
    CHECK(!wide.compare_exchange(0, e64, 1) && e64 == 0xfedcba9876543210ull);
    // Many threads counting with a CAS loop lose no update.
    {
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&] {
                for (int k = 0; k < 500; k++) {
                    std::uint64_t cur = wide.get(0);
                    while (!wide.compare_exchange(0, cur, cur + 1)) {
                    }
                }
            });
        for (auto& t : ts) t.join();
        CHECK(wide.get(0) == 0xfedcba9876543210ull + 2000);
    }

    // The descriptors stored with them.
    CHECK(quotes.descriptor() == shmds::descriptor<Quote>());
    CHECK(counters.descriptor() == "<i" && small.descriptor() == "b" && flags.descriptor() == "?");
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::Array<std::int32_t>().descriptor(); }));
    CHECK(throws(SHMDS_E_INVALID, [] { std::int32_t e = 0; shmds::Array<std::int32_t>().compare_exchange(0, e, 1); }));
    seg.erase("small");
    seg.erase("wide");

    CHECK(seg.erase("quotes"));
    CHECK(throws(SHMDS_E_STALE, [&] { quotes.check(); }));
    CHECK(throws(SHMDS_E_NOT_FOUND, [&] { seg.open_array<Quote>("quotes"); }));
    seg.erase("counters");
    seg.erase("bytes");
    seg.erase("tiny");
    seg.erase("flags");
}

static void test_queue(const shmds::Segment& seg) {
    shmds::Queue<std::uint64_t> jobs = seg.create_queue<std::uint64_t>("jobs", 4);
    CHECK(jobs.capacity() == 4 && jobs.size() == 0 && jobs.empty() && jobs.elem_size() == 8);
    // Typed refusal: another element type, size or kind.
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<float>("jobs"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<std::int64_t>("jobs"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_queue<double>("jobs"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_stack<std::uint64_t>("jobs"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<std::uint64_t, std::uint64_t>("jobs"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_array<std::uint64_t>("jobs"); }));
    CHECK(throws(SHMDS_E_EXISTS, [&] { seg.create_queue<std::uint64_t>("jobs", 4); }));
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_queue<std::uint64_t>("jobs", 5); }));
    CHECK(throws(SHMDS_E_NOT_FOUND, [&] { seg.open_queue<std::uint64_t>("nope"); }));

    for (std::uint64_t v = 1; v <= 4; v++) CHECK(jobs.try_push(v));
    CHECK(!jobs.try_push(5));  // full: false, no exception
    CHECK(jobs.size() == 4);
    bool pushed = true;
    const double waited = millis([&] { pushed = jobs.push_for(5, 10ms); });
    CHECK(!pushed && waited >= 9.0);
    CHECK(!jobs.push_for(5, -5s));  // a negative duration is "try once", not forever
    shmds::Queue<std::uint64_t> other = seg.open_queue<std::uint64_t>("jobs");
    CHECK(other.try_pop() == std::optional<std::uint64_t>(1));
    CHECK(other.pop() == 2);
    CHECK(jobs.pop_for(10ms) == std::optional<std::uint64_t>(3));
    CHECK(jobs.try_pop() == std::optional<std::uint64_t>(4));
    CHECK(!jobs.try_pop());  // empty: nullopt
    std::optional<std::uint64_t> got = 99;
    const double idle = millis([&] { got = jobs.pop_for(10ms); });
    CHECK(!got && idle >= 9.0);
    jobs.push(7);
    CHECK(jobs.pop() == 7);
    jobs.check();
    CHECK(seg.open_or_create_queue<std::uint64_t>("jobs", 4).capacity() == 4);

    // Records go through whole.
    auto quotes = seg.create_queue<Quote>("quote-q", 2);
    quotes.push(Quote{9, 1.25, 3});
    const Quote q = quotes.pop();
    CHECK(q.venue == 9 && q.price == 1.25 && q.size == 3);
    seg.erase("quote-q");
    seg.erase("jobs");
    CHECK(throws(SHMDS_E_STALE, [&] { jobs.check(); }));
}

/// Shutdown, tasks and join, map/set contains and clear, the segment's
/// name and canonical type descriptors.
static void test_lifecycle(const shmds::Segment& seg) {
    auto q = seg.create_queue<std::uint64_t>("life-q", 4);
    q.push(1);
    CHECK(!q.join_for(1ms));
    CHECK(q.try_pop_task() == std::optional<std::uint64_t>(1));
    CHECK(q.unfinished_tasks() == 1 && !q.join_for(0ms));
    q.task_done();
    q.join();
    CHECK(throws(SHMDS_E_INVALID, [&] { q.task_done(); }));
    CHECK(!q.try_pop_task());
    q.push(2);
    q.push(3);
    CHECK(!q.is_shut_down());
    CHECK(q.shutdown() == 0 && q.is_shut_down());
    CHECK(throws(SHMDS_E_SHUT_DOWN, [&] { q.push(4); }));
    CHECK(q.pop_task() == 2);
    q.task_done();
    CHECK(q.shutdown(true) == 1);  // discards the 3
    CHECK(throws(SHMDS_E_SHUT_DOWN, [&] { q.pop(); }));
    auto st = seg.create_stack<std::int32_t>("life-s", 2);
    st.push(5);
    CHECK(st.shutdown(true) == 1 && st.is_shut_down());

    auto m = seg.create_map<std::uint64_t, double>("life-m", 8);
    m.insert(1, 1.5);
    m.insert(2, 2.5);
    CHECK(m.contains(2) && !m.contains(3));
    m.clear();
    CHECK(m.size() == 0 && !m.contains(2));
    auto set = seg.create_set<std::uint32_t>("life-set", 8);
    set.insert(7);
    set.clear();
    CHECK(!set.contains(7) && set.size() == 0);

    CHECK(seg.name() == prefix + "-main");
    CHECK(!seg.is_durable());
    seg.flush();
    {
        const std::string dir = "/tmp/" + prefix + "-durable";
        CHECK(std::system(("mkdir -p '" + dir + "'").c_str()) == 0);
        auto durable = shmds::Segment::create(dir + "/d.shmds", 1 << 20);
        CHECK(durable.is_durable());
        auto dq = durable.create_queue<std::uint64_t>("dq", 4);
        dq.push(9);
        durable.flush();
        const std::string id = durable.snapshot(dir + "/store");
        CHECK(id.size() == 64);
        auto back = shmds::Segment::restore(dir + "/store", id.substr(0, 8), prefix + "-restored");
        CHECK(back.open_queue<std::uint64_t>("dq").try_pop() == std::optional<std::uint64_t>(9));
        CHECK(throws(SHMDS_E_NOT_FOUND, [&] { shmds::Segment::restore(dir + "/store", "abcdef12", prefix + "-x"); }));
        shmds::Segment::remove(prefix + "-restored");
        CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
    }
    CHECK(shmds::canonical_type("Q") == "<Q");
    CHECK(shmds::canonical_type("T{<Q:ts:xxxx<i:n:}") == "T{<Q:ts:4x<i:n:}");
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::canonical_type("<Z"); }));
    for (const char* n : {"life-q", "life-s", "life-m", "life-set"}) seg.erase(n);
}

static void test_stack(const shmds::Segment& seg) {
    shmds::Stack<std::int32_t> undo = seg.create_stack<std::int32_t>("undo", 3);
    for (std::int32_t v = -1; v >= -3; v--) undo.push(v);
    CHECK(!undo.try_push(-4));
    CHECK(!undo.push_for(-4, 10ms));
    CHECK(undo.size() == 3 && undo.capacity() == 3);
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_stack<std::uint32_t>("undo"); }));
    shmds::Stack<std::int32_t> again = seg.open_stack<std::int32_t>("undo");
    CHECK(again.pop() == -3);
    CHECK(undo.try_pop() == std::optional<std::int32_t>(-2));
    CHECK(undo.pop_for(10ms) == std::optional<std::int32_t>(-1));
    CHECK(!undo.try_pop());
    CHECK(!undo.pop_for(10ms));
    undo.check();
    CHECK(seg.open_or_create_stack<std::int32_t>("undo", 3).capacity() == 3);
    seg.erase("undo");
}

static void test_map_set(const shmds::Segment& seg) {
    using Key = FixedStr<16>;
    shmds::Map<Key, double> prices = seg.create_map<Key, double>("prices", 4);
    CHECK(prices.capacity() >= 4 && prices.empty() && prices.key_size() == 17 && prices.value_size() == 8);
    CHECK(!prices.insert(Key("AAPL"), 189.5));  // added
    CHECK(!prices.insert(Key("MSFT"), 410.0));
    CHECK(prices.insert(Key("MSFT"), 410.25));  // replaced
    CHECK(prices.size() == 2);
    CHECK(prices.get(Key("MSFT")) == std::optional<double>(410.25));
    CHECK(!prices.get(Key("IBM")));
    CHECK(prices.contains(Key("AAPL")) && !prices.contains(Key("IBM")));
    CHECK(prices.erase(Key("AAPL")));
    CHECK(!prices.erase(Key("AAPL")));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<FixedStr<8>, double>("prices"); }));   // key size
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<std::array<std::uint8_t, 17>, double>("prices"); }));  // key type
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<Key, std::int64_t>("prices"); }));    // value type
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_set<Key>("prices"); }));
    shmds::Map<Key, double> again = seg.open_map<Key, double>("prices");
    CHECK(again.get(Key("MSFT")) == std::optional<double>(410.25));
    // Fill it up: a new key past the capacity is SHMDS_E_NO_SPACE.
    int added = 0;
    try {
        for (int i = 0; i < 1000; i++, added++) prices.insert(Key("k" + std::to_string(i)), i);
        CHECK(false);
    } catch (const shmds::Error& e) {
        CHECK(e.code() == SHMDS_E_NO_SPACE);
    }
    CHECK(prices.size() == prices.capacity());
    prices.check();

    auto hits = seg.open_or_create_map<std::uint64_t, std::int64_t>("hits", 32);
    CHECK(hits.fetch_add(7, -3) == 0);  // absent counts as 0
    CHECK(hits.fetch_add(7, 10) == -3);
    CHECK(hits.get(7) == std::optional<std::int64_t>(7));
    CHECK(seg.open_or_create_map<std::uint64_t, std::int64_t>("hits", 32).size() == 1);

    shmds::Set<Key> seen = seg.create_set<Key>("seen", 8);
    CHECK(seen.insert(Key("a")));   // newly added: true (std::set meaning)
    CHECK(!seen.insert(Key("a")));  // already there: false
    CHECK(seen.contains(Key("a")) && !seen.contains(Key("b")));
    CHECK(seen.size() == 1 && seen.capacity() >= 8 && seen.key_size() == 17);
    CHECK(seen.erase(Key("a")) && !seen.erase(Key("a")));
    CHECK(seen.empty());
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_set<FixedStr<15>>("seen"); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_map<Key, double>("seen"); }));
    CHECK(seg.open_set<Key>("seen").capacity() == seen.capacity());
    CHECK(seg.open_or_create_set<Key>("seen", 8).size() == 0);
    seen.check();
    seg.erase("seen");
    CHECK(throws(SHMDS_E_STALE, [&] { seen.check(); }));
    seg.erase("prices");
    seg.erase("hits");
}

template <class T>
static std::vector<T> iota_vec(T first, std::size_t n) {
    std::vector<T> v;
    for (std::size_t i = 0; i < n; i++) v.push_back(static_cast<T>(first + static_cast<T>(i)));
    return v;
}

static void test_batches(const shmds::Segment& seg) {
    // Queue: what fits now, in order; the oldest first out.
    shmds::Queue<std::uint64_t> q = seg.create_queue<std::uint64_t>("batch-q", 8);
    CHECK(q.descriptor() == "<Q");
    const std::vector<std::uint64_t> ten = iota_vec<std::uint64_t>(0, 10);
    CHECK(q.try_push_many(ten.data(), ten.size()) == 8);  // room for 8
    CHECK(q.size() == 8);
    CHECK(q.try_push_many(ten) == 0);                     // full: 0, no exception
    std::size_t pushed = 99;
    const double full_wait = millis([&] { pushed = q.push_many_for(ten.data(), 1, 10ms); });
    CHECK(pushed == 0 && full_wait >= 9.0);
    CHECK(q.push_many_for(ten, -5s) == 0);                // negative: try once
    CHECK(q.try_push_many(nullptr, 0) == 0);
    CHECK(q.try_pop_many(3) == iota_vec<std::uint64_t>(0, 3));
    CHECK(q.pop_many(100) == iota_vec<std::uint64_t>(3, 5));  // what is there, not 100
    CHECK(q.try_pop_many(4).empty());                     // empty: an empty vector
    std::vector<std::uint64_t> none{1};
    const double empty_wait = millis([&] { none = q.pop_many_for(4, 10ms); });
    CHECK(none.empty() && empty_wait >= 9.0);
    CHECK(q.pop_many_for(4, 0ms).empty());
    CHECK(q.try_pop_many(0).empty() && q.pop_many(0).empty());  // max 0: nothing, at once

    // A timed push that fits in part: how many went in.
    CHECK(q.push_many(iota_vec<std::uint64_t>(100, 2)) == 2);
    CHECK(q.push_many_for(ten, 10ms) == 6);
    CHECK(q.size() == 8);
    std::vector<std::uint64_t> want = iota_vec<std::uint64_t>(100, 2);
    for (std::uint64_t v = 0; v < 6; v++) want.push_back(v);
    CHECK(q.try_pop_many(64) == want);

    // push_many blocks until all are in; pop_many waits for the first.
    {
        const std::vector<std::uint64_t> many = iota_vec<std::uint64_t>(1000, 500);
        std::vector<std::uint64_t> got;
        std::thread consumer([&] {
            shmds::Queue<std::uint64_t> mine = seg.open_queue<std::uint64_t>("batch-q");
            while (got.size() < many.size()) {
                std::vector<std::uint64_t> part = mine.pop_many_for(7, 5s);
                if (part.empty()) break;
                if (part.size() > 7) break;
                got.insert(got.end(), part.begin(), part.end());
            }
        });
        CHECK(q.push_many(many.data(), many.size()) == many.size());
        consumer.join();
        CHECK(got == many);
    }
    {
        std::thread producer([&] {
            std::this_thread::sleep_for(20ms);
            seg.open_queue<std::uint64_t>("batch-q").push_many(iota_vec<std::uint64_t>(7, 3));
        });
        std::vector<std::uint64_t> first;
        const double waited = millis([&] { first = q.pop_many(16); });
        producer.join();
        CHECK(!first.empty() && first.size() <= 3 && first.front() == 7 && waited >= 15.0);
        const std::vector<std::uint64_t> rest = q.try_pop_many(16);
        first.insert(first.end(), rest.begin(), rest.end());
        CHECK(first == iota_vec<std::uint64_t>(7, 3));
    }
    CHECK(q.empty());

    // Stack: a batch pushes in order, so its last element is the top; a
    // batch pop takes the top first.
    shmds::Stack<std::int32_t> st = seg.create_stack<std::int32_t>("batch-s", 5);
    CHECK(st.descriptor() == "<i");
    CHECK(st.try_push_many(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7}) == 5);  // 6 and 7 did not fit
    CHECK(!st.try_push(8));
    CHECK(st.try_pop_many(2) == (std::vector<std::int32_t>{5, 4}));
    CHECK(st.push_many_for(std::vector<std::int32_t>{10, 11, 12}, 10ms) == 2);
    CHECK(st.pop_many(10) == (std::vector<std::int32_t>{11, 10, 3, 2, 1}));
    CHECK(st.try_pop_many(10).empty());
    const double stack_wait = millis([&] { CHECK(st.pop_many_for(3, 10ms).empty()); });
    CHECK(stack_wait >= 9.0);
    const std::int32_t arr[] = {-1, -2, -3};
    CHECK(st.push_many(arr, 3) == 3);
    CHECK(st.pop() == -3);  // single pops agree
    CHECK(st.pop_many_for(8, 10ms) == (std::vector<std::int32_t>{-2, -1}));

    // Other element types: records whole, bools as bytes.
    shmds::Queue<Quote> qq = seg.create_queue<Quote>("batch-quotes", 4);
    CHECK(qq.descriptor() == shmds::descriptor<Quote>());
    const std::vector<Quote> quotes{{1, 1.5, 10}, {2, 2.5, 20}, {3, 3.5, 30}};
    CHECK(qq.push_many(quotes) == 3);
    const std::vector<Quote> back = qq.try_pop_many(8);
    CHECK(back.size() == 3 && back[0].venue == 1 && back[2].price == 3.5 && back[2].size == 30);
    shmds::Stack<bool> bits = seg.create_stack<bool>("batch-bits", 8);
    CHECK(bits.descriptor() == "?");
    CHECK(bits.push_many(std::vector<bool>{true, false, false, true, true}) == 5);
    CHECK(bits.try_pop_many(8) == (std::vector<bool>{true, true, false, false, true}));

    // The opened handle sees the same descriptor; an empty handle throws.
    CHECK(seg.open_queue<std::uint64_t>("batch-q").descriptor() == "<Q");
    shmds::Queue<std::uint64_t> nothing;
    CHECK(throws(SHMDS_E_INVALID, [&] { nothing.try_push_many(ten); }));
    CHECK(throws(SHMDS_E_INVALID, [&] { nothing.try_pop_many(4); }));
    CHECK(throws(SHMDS_E_INVALID, [&] { nothing.descriptor(); }));
    CHECK(throws(SHMDS_E_INVALID, [&] { shmds::Stack<std::int32_t>().pop_many_for(1, 10ms); }));
    for (const char* n : {"batch-q", "batch-s", "batch-quotes", "batch-bits"}) seg.erase(n);
}

static void test_map_set_iteration(const shmds::Segment& seg) {
    using Key = FixedStr<16>;
    shmds::Map<Key, std::int64_t> m = seg.create_map<Key, std::int64_t>("iter-m", 64);
    CHECK(m.key_descriptor() == "T{B:len:16s:bytes:}" && m.value_descriptor() == "<q");
    CHECK(m.begin() == m.end() && m.items().empty());
    std::map<std::string, std::int64_t> want;
    for (int i = 0; i < 50; i++) {
        const std::string k = "key" + std::to_string(i);
        m.insert(Key(k), i * 3);
        want[k] = i * 3;
    }
    // Every key exactly once, with its value.
    std::map<std::string, int> visits;
    bool values_ok = true;
    for (const auto& kv : m) {
        visits[kv.first.str()]++;
        if (want.count(kv.first.str()) == 0 || want[kv.first.str()] != kv.second) values_ok = false;
    }
    CHECK(visits.size() == 50 && values_ok);
    CHECK(std::all_of(visits.begin(), visits.end(), [](const auto& v) { return v.second == 1; }));
    const std::vector<std::pair<Key, std::int64_t>> items = m.items();
    CHECK(items.size() == 50);
    std::map<std::string, std::int64_t> from_items;
    for (const auto& kv : items) from_items[kv.first.str()] = kv.second;
    CHECK(from_items == want);
    // The iterator's own shape: ->, postfix ++, the end stays the end.
    auto it = m.begin();
    CHECK(it != m.end() && want.count(it->first.str()) == 1);
    const auto before = it++;
    CHECK(before->first != it->first);
    std::size_t walked = 0;
    for (auto j = m.begin(); j != m.end(); ++j) walked++;
    CHECK(walked == 50);
    auto end = m.end();
    ++end;
    CHECK(end == m.end());
    CHECK(std::distance(m.begin(), m.end()) == 50);
    // After removals only what is left.
    for (int i = 0; i < 50; i += 2) m.erase(Key("key" + std::to_string(i)));
    std::set<std::string> left;
    for (const auto& kv : m) CHECK(left.insert(kv.first.str()).second);
    CHECK(left.size() == 25 && left.count("key1") == 1 && left.count("key0") == 0);
    // Another handle to it walks the same keys.
    CHECK(seg.open_map<Key, std::int64_t>("iter-m").items().size() == 25);

    // compare_exchange: std::atomic's shape; an absent key throws.
    shmds::Map<std::uint32_t, std::uint16_t> counts = seg.create_map<std::uint32_t, std::uint16_t>("iter-cx", 16);
    CHECK(counts.key_descriptor() == "<I" && counts.value_descriptor() == "<H");
    counts.insert(1, 10);
    std::uint16_t exp = 10;
    CHECK(counts.compare_exchange(1, exp, 20));
    CHECK(exp == 10 && counts.get(1) == std::optional<std::uint16_t>(20));
    exp = 10;
    CHECK(!counts.compare_exchange(1, exp, 30));
    CHECK(exp == 20 && counts.get(1) == std::optional<std::uint16_t>(20));
    CHECK(throws(SHMDS_E_NOT_FOUND, [&] { std::uint16_t e = 0; counts.compare_exchange(2, e, 1); }));
    CHECK(!counts.get(2) && counts.size() == 1);  // not added
    shmds::Map<std::uint32_t, std::int32_t> signs = seg.create_map<std::uint32_t, std::int32_t>("iter-signs", 16);
    signs.insert(5, -7);
    std::int32_t es = 0;
    CHECK(!signs.compare_exchange(5, es, 1) && es == -7);
    CHECK(signs.compare_exchange(5, es, -70000) && signs.get(5) == std::optional<std::int32_t>(-70000));
    {
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&] {
                for (int k = 0; k < 250; k++) {
                    std::uint16_t cur = counts.get(1).value_or(0);
                    while (!counts.compare_exchange(1, cur, static_cast<std::uint16_t>(cur + 1))) {
                    }
                }
            });
        for (auto& t : ts) t.join();
        CHECK(counts.get(1) == std::optional<std::uint16_t>(1020));
    }
    // Bool values come back as bools.
    shmds::Map<std::uint32_t, bool> flags = seg.create_map<std::uint32_t, bool>("iter-flags", 8);
    flags.insert(1, true);
    flags.insert(2, false);
    std::map<std::uint32_t, bool> fl;
    for (const auto& kv : flags) fl[kv.first] = kv.second;
    CHECK((fl == std::map<std::uint32_t, bool>{{1, true}, {2, false}}));

    // Set: every key exactly once.
    shmds::Set<std::uint32_t> s = seg.create_set<std::uint32_t>("iter-s", 256);
    CHECK(s.key_descriptor() == "<I");
    CHECK(s.begin() == s.end() && s.keys().empty());
    for (std::uint32_t k = 0; k < 100; k++) s.insert(k * 7);
    std::map<std::uint32_t, int> seen;
    for (std::uint32_t k : s) seen[k]++;
    CHECK(seen.size() == 100 && seen.begin()->first == 0 && seen.rbegin()->first == 99 * 7);
    CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& v) { return v.second == 1 && v.first % 7 == 0; }));
    std::vector<std::uint32_t> ks = s.keys();
    std::sort(ks.begin(), ks.end());
    CHECK(ks.size() == 100);
    bool multiples = true;
    for (std::size_t i = 0; i < ks.size(); i++) multiples = multiples && ks[i] == 7 * i;
    CHECK(multiples);
    shmds::Set<Key> names = seg.create_set<Key>("iter-names", 8);
    CHECK(names.key_descriptor() == "T{B:len:16s:bytes:}");
    names.insert(Key("a"));
    names.insert(Key("bb"));
    std::set<std::string> got_names;
    for (const Key& k : names) got_names.insert(k.str());
    CHECK((got_names == std::set<std::string>{"a", "bb"}));

    // Weakly consistent: while another thread adds and removes other keys,
    // each walk still visits every key present throughout exactly once.
    {
        std::atomic<bool> stop{false};
        std::thread churn([&] {
            shmds::Set<std::uint32_t> mine = seg.open_set<std::uint32_t>("iter-s");
            while (!stop.load()) {
                for (std::uint32_t k = 100000; k < 100050; k++) mine.insert(k);
                for (std::uint32_t k = 100000; k < 100050; k++) mine.erase(k);
            }
        });
        bool once_each = true;
        for (int walk = 0; walk < 50; walk++) {
            std::map<std::uint32_t, int> v;
            for (std::uint32_t k : s) v[k]++;
            int stable = 0;
            for (const auto& kv : v) {
                if (kv.second != 1) once_each = false;
                if (kv.first < 100000) stable++;
            }
            if (stable != 100) once_each = false;
        }
        stop.store(true);
        churn.join();
        CHECK(once_each);
    }

    // Empty handles throw.
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::Map<std::uint32_t, double>().begin(); }));
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::Map<std::uint32_t, double>().key_descriptor(); }));
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::Set<std::uint32_t>().keys(); }));
    CHECK(throws(SHMDS_E_INVALID, [] { shmds::Set<std::uint32_t>().key_descriptor(); }));
    for (const char* n : {"iter-m", "iter-cx", "iter-signs", "iter-flags", "iter-s", "iter-names"}) seg.erase(n);
}

static void test_moves(const shmds::Segment& seg) {
    shmds::Queue<std::uint64_t> a = seg.create_queue<std::uint64_t>("moves", 4);
    ShmdsQueue* raw = a.get();
    shmds::Queue<std::uint64_t> b = std::move(a);
    CHECK(a.get() == nullptr && !a && b.get() == raw);
    CHECK(b.try_push(1));
    CHECK(a.size() == 0 && a.capacity() == 0);             // getters of an empty handle: 0
    CHECK(throws(SHMDS_E_INVALID, [&] { a.try_push(2); }));  // calls: SHMDS_E_INVALID
    shmds::Queue<std::uint64_t> c = seg.open_queue<std::uint64_t>("moves");
    c = std::move(b);  // closes c's own handle, takes b's
    CHECK(c.get() == raw && b.get() == nullptr);
    CHECK(c.pop() == 1);
    static_assert(!std::is_copy_constructible<shmds::Queue<int>>::value, "move-only");
    static_assert(std::is_nothrow_move_constructible<shmds::Queue<int>>::value, "noexcept move");
    static_assert(std::is_nothrow_move_assignable<shmds::Map<int, int>>::value, "noexcept move");
    static_assert(!std::is_copy_assignable<shmds::Segment>::value, "move-only");
    static_assert(std::is_nothrow_move_constructible<shmds::Lock>::value, "noexcept move");
    static_assert(std::is_nothrow_move_constructible<shmds::Subscriber>::value, "noexcept move");
    static_assert(!std::is_copy_constructible<shmds::Message>::value, "move-only");

    // A segment handle moved, and closed before the structures made from it.
    const std::string name = seg_name("moved");
    shmds::Queue<std::uint64_t> survivor;
    {
        shmds::Segment s = shmds::Segment::create(name, 1 << 20);
        shmds::Segment t = std::move(s);
        CHECK(!s && t);
        survivor = t.create_queue<std::uint64_t>("q", 2);
    }
    CHECK(survivor.try_push(5) && survivor.pop() == 5);
    shmds::Lock l = seg.create_lock("moved-lock");
    shmds::Lock m = std::move(l);
    { std::lock_guard<shmds::Lock> hold(m); CHECK(m.is_locked()); }
    CHECK(!l.is_locked());
    seg.erase("moves");
    seg.erase("moved-lock");
    shmds::Segment::remove(name);
}

static void test_channel(const shmds::Segment& seg) {
    shmds::Channel ch = seg.create_channel("events", 64 << 10, {10000, false, true});
    CHECK(ch.max_message() == 10000 && ch.checksum() && !ch.spsc());
    CHECK(ch.flags() == SHMDS_CHECKSUM);
    CHECK(ch.capacity() >= (64u << 10) && ch.empty() && !ch.full());
    shmds::Sender tx = ch.sender();
    shmds::Receiver rx = ch.receiver();
    CHECK(!rx.try_recv());  // empty: nullopt (a sender is attached)
    std::optional<std::vector<std::uint8_t>> none = bytes_of("x");
    const double idle = millis([&] { none = rx.recv_for(10ms); });
    CHECK(!none && idle >= 9.0);

    CHECK(tx.try_send("hello"));
    tx.send(std::string("world"));
    const std::vector<std::uint8_t> blob(9000, 0xab);  // more than the first receive buffer (4096)
    CHECK(tx.send_for(blob, 10ms));
    tx.send(static_cast<const void*>(nullptr), 0);
    CHECK(ch.size() == 4);
    CHECK(rx.try_recv() == bytes_of("hello"));
    CHECK(rx.recv() == bytes_of("world"));
    CHECK(rx.recv_for(10ms) == std::optional<std::vector<std::uint8_t>>(blob));
    CHECK(rx.recv().empty());

    // Zero-copy: the message stays in the ring until the view goes.
    tx.send(std::string_view("in place"));
    tx.send(std::string_view("next"));
    {
        std::optional<shmds::Message> m = rx.try_recv_ref();
        CHECK(m && m->view() == "in place" && m->size() == 8);
        CHECK(throws(SHMDS_E_INVALID, [&] { rx.try_recv(); }));  // one held at a time
        shmds::Message moved = std::move(*m);
        CHECK(!*m && moved.view() == "in place");
    }  // released here
    {
        shmds::Message m = rx.recv_ref();
        CHECK(m.bytes() == bytes_of("next"));
        m.release();
        CHECK(!m);
    }
    CHECK(!rx.try_recv_ref());
    CHECK(!rx.recv_ref_for(10ms));

    // Reserve in place: committed is sent, aborted (or dropped) is not.
    {
        shmds::Reservation r = tx.reserve(3);
        std::memcpy(r.data(), "abc", 3);
        r.commit();
        std::optional<shmds::Reservation> dropped = tx.try_reserve(5);
        CHECK(dropped && dropped->size() == 5);
    }
    {
        std::optional<shmds::Reservation> r = tx.reserve_for(2, 10ms);
        CHECK(r.has_value());
        r->abort();
    }
    CHECK(rx.try_recv() == bytes_of("abc"));
    CHECK(!rx.try_recv());

    // Into a caller's buffer, with the C length protocol.
    tx.send("0123456789");
    CHECK(rx.try_recv_into(nullptr, 0) == std::optional<std::size_t>(10));  // the length needed
    char small[4];
    CHECK(rx.recv_into_for(small, sizeof small, 10ms) == std::optional<std::size_t>(10));  // kept
    char big[16];
    CHECK(rx.recv_into_for(big, sizeof big, 10ms) == std::optional<std::size_t>(10));
    CHECK(std::string(big, 10) == "0123456789");
    CHECK(!rx.try_recv_into(big, sizeof big));
    CHECK(!rx.recv_into_for(big, sizeof big, 10ms));
    tx.send("");
    CHECK(rx.recv_into(nullptr, 0) == 0);

    // Too large, full.
    CHECK(throws(SHMDS_E_MESSAGE_TOO_LARGE, [&] { tx.try_send(std::vector<std::uint8_t>(10001)); }));
    const std::vector<std::uint8_t> chunk(1000, 1);
    int sent = 0;
    while (tx.try_send(chunk)) sent++;
    CHECK(sent > 0 && !tx.send_for(chunk, 10ms));
    CHECK(!tx.try_reserve(1000));
    for (int i = 0; i < sent; i++) CHECK(rx.try_recv() == std::optional<std::vector<std::uint8_t>>(chunk));

    // Every sender gone and empty: SHMDS_E_DISCONNECTED (a waiting receive
    // sees it at once; try_ calls look at the peers' liveness only now and
    // then, so they may say empty first).
    { shmds::Sender gone = std::move(tx); }
    CHECK(throws(SHMDS_E_DISCONNECTED, [&] { rx.recv_for(10ms); }));
    CHECK(throws(SHMDS_E_DISCONNECTED, [&] { rx.recv(); }));

    // Shutdown: sends fail, receivers get what is left, then the same code.
    shmds::Channel same = seg.open_channel("events");
    shmds::Sender tx2 = same.sender();
    tx2.send("last");
    same.shutdown();
    CHECK(ch.is_shut_down());
    CHECK(throws(SHMDS_E_SHUT_DOWN, [&] { tx2.try_send("more"); }));
    CHECK(rx.try_recv() == bytes_of("last"));
    CHECK(throws(SHMDS_E_SHUT_DOWN, [&] { rx.try_recv(); }));
    CHECK(SHMDS_E_SHUT_DOWN != SHMDS_E_DISCONNECTED);
    ch.check();

    // SPSC: a second live sender is refused.
    shmds::Channel pipe = seg.open_or_create_channel("pipe", 4096, {0, true, false});
    CHECK(pipe.spsc() && pipe.flags() == SHMDS_SPSC);
    shmds::Sender one = pipe.sender();
    CHECK(throws(SHMDS_E_ALREADY_ATTACHED, [&] { pipe.sender(); }));
    shmds::Receiver prx = pipe.receiver();
    one.send("spsc");
    CHECK(prx.recv() == bytes_of("spsc"));
    CHECK(seg.open_or_create_channel("pipe", 4096).spsc());  // keeps its own flags
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_topic("pipe"); }));
    seg.erase("events");
    seg.erase("pipe");
    CHECK(throws(SHMDS_E_STALE, [&] { ch.check(); }));
}

static void test_topic(const shmds::Segment& seg) {
    shmds::Topic ticks = seg.create_topic("ticks", 4096);
    CHECK(ticks.max_message() == 2048 && ticks.flags() == 0 && ticks.empty());
    CHECK(!ticks.latest());
    shmds::Subscriber sub = ticks.subscribe();
    CHECK(!sub.try_recv());
    CHECK(!sub.recv_for(10ms));
    CHECK(ticks.publish("t0") == 0);
    CHECK(ticks.publish(std::vector<std::uint8_t>(3000 / 2, 7)) == 1);  // 1500 bytes
    {
        shmds::TopicReservation r = ticks.reserve(2);
        std::memcpy(r.data(), "t2", 2);
        CHECK(r.commit() == 2);
    }
    { shmds::TopicReservation dropped = ticks.reserve(2); }  // aborted
    CHECK(ticks.publish_for("t3", 10ms) == std::optional<std::uint64_t>(3));
    CHECK(ticks.published() == 4);
    CHECK(sub.pending() == 4);
    std::optional<shmds::TopicMessage> m = sub.try_recv();
    CHECK(m && m->data == bytes_of("t0") && m->seq == 0 && m->missed == 0);
    shmds::TopicMessage m1 = sub.recv();
    CHECK(m1.seq == 1 && m1.data.size() == 1500);
    m = sub.recv_for(10ms);
    CHECK(m && m->seq == 2 && m->data == bytes_of("t2"));
    m = sub.try_recv();
    CHECK(m && m->seq == 3 && m->data == bytes_of("t3"));
    CHECK(!sub.try_recv());
    const std::optional<shmds::TopicMessage> newest = ticks.latest();
    CHECK(newest && newest->seq == 3 && newest->data == bytes_of("t3"));

    // From the oldest held; recv_latest skips to the newest.
    shmds::Subscriber old = seg.open_topic("ticks").subscribe(true);
    m = old.try_recv();
    CHECK(m && m->seq == 0);
    m = old.recv_latest();
    CHECK(m && m->seq == 3);
    CHECK(!old.try_recv());

    // A subscriber that falls behind: the loss is counted on the next one.
    shmds::Topic small = seg.open_or_create_topic("small", 256, {64, true});
    CHECK(small.flags() == SHMDS_CHECKSUM);
    shmds::Subscriber slow = small.subscribe();
    for (int i = 0; i < 40; i++) small.publish("tick " + std::to_string(i));
    std::optional<shmds::TopicMessage> after = slow.try_recv();
    CHECK(after && after->missed > 0 && after->seq == after->missed);
    std::uint64_t seen = after ? after->seq + 1 : 0;
    while (auto next = slow.try_recv()) {
        CHECK(next->seq == seen && next->missed == 0);
        seen++;
    }
    CHECK(seen == 40);
    CHECK(throws(SHMDS_E_MESSAGE_TOO_LARGE, [&] { small.publish(std::string(65, 'x')); }));
    ticks.check();
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_channel("ticks"); }));
    seg.erase("ticks");
    seg.erase("small");
}

static void test_locks(const shmds::Segment& seg) {
    shmds::Lock lock = seg.create_lock("guard");
    CHECK(throws(SHMDS_E_EXISTS, [&] { seg.create_lock("guard"); }));
    shmds::Lock other = seg.open_lock("guard");
    {
        std::lock_guard<shmds::Lock> hold(lock);
        CHECK(lock.is_locked() && other.is_locked());
        CHECK(lock.holder_pid() == static_cast<std::uint32_t>(getpid()));
        CHECK(!other.try_lock());  // not reentrant: held
        bool got = true;
        const double waited = millis([&] { got = other.try_lock_for(10ms); });
        CHECK(!got && waited >= 9.0);
        CHECK(other.acquire_for(10ms) == shmds::LockResult::timed_out);
        CHECK(!other.try_lock_until(std::chrono::steady_clock::now() + 5ms));
    }
    CHECK(!lock.is_locked() && lock.holder_pid() == 0);
    CHECK(throws(SHMDS_E_NOT_OWNER, [&] { lock.unlock(); }));
    {
        std::unique_lock<shmds::Lock> hold(other, std::defer_lock);
        CHECK(hold.try_lock_for(10ms));
        CHECK(!other.owner_died());
    }
    CHECK(lock.acquire() == shmds::LockResult::acquired);
    lock.unlock();
    CHECK(seg.open_or_create_lock("guard").owner_deaths() == 0);
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_rwlock("guard"); }));

    shmds::RwLock rw = seg.create_rwlock("rw", 8);
    {
        std::shared_lock<shmds::RwLock> read(rw);
        CHECK(rw.readers() == 1);
        std::shared_lock<shmds::RwLock> read2(rw);
        CHECK(rw.readers() == 2);
        CHECK(!rw.try_lock_for(10ms));  // a writer waits for the readers
    }
    CHECK(rw.readers() == 0);
    {
        std::unique_lock<shmds::RwLock> write(rw);
        CHECK(rw.writer() == static_cast<std::uint32_t>(getpid()));
        CHECK(!rw.try_lock_shared());
        CHECK(!rw.try_lock_shared_for(10ms));
    }
    CHECK(rw.writer() == 0);
    CHECK(rw.acquire_read_for(10ms) == shmds::LockResult::acquired);
    rw.unlock_shared();
    CHECK(throws(SHMDS_E_NOT_OWNER, [&] { rw.unlock_shared(); }));
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_rwlock("rw", 16); }));
    CHECK(seg.open_rwlock("rw").readers() == 0);
    seg.erase("guard");
    seg.erase("rw");
}

static void test_condition(const shmds::Segment& seg) {
    shmds::Condition cond = seg.create_condition("cond");
    shmds::Array<std::uint32_t> state = seg.create_array<std::uint32_t>("cond-state", 1);
    {
        std::unique_lock<shmds::Condition> hold(cond);
        bool notified = true;
        const double waited = millis([&] { notified = cond.wait_for(10ms); });
        CHECK(!notified && waited >= 9.0);
        CHECK(!cond.wait_for(10ms, [&] { return state.get(0) == 1; }));
    }
    std::thread waiter([&] {
        shmds::Condition mine = seg.open_condition("cond");
        std::lock_guard<shmds::Condition> hold(mine);
        mine.wait([&] { return state.get(0) == 1; });
        state.set(0, 2);
        mine.notify_all();
    });
    {
        std::this_thread::sleep_for(20ms);
        std::lock_guard<shmds::Condition> hold(cond);
        state.set(0, 1);
        cond.notify_one();
    }
    {
        std::unique_lock<shmds::Condition> hold(cond);
        CHECK(cond.wait_for(5s, [&] { return state.get(0) == 2; }));
    }
    waiter.join();
    cond.notify(3);  // nobody waits: fine
    CHECK(seg.open_or_create_condition("cond").try_lock_for(10ms));
    cond.unlock();  // the lock is the cell's, whichever handle took it
    seg.erase("cond");
    seg.erase("cond-state");
}

static void test_semaphore_barrier_event_latch_once(const shmds::Segment& seg) {
    shmds::Semaphore sem = seg.create_semaphore("sem", 2);
    CHECK(sem.value() == 2);
    sem.acquire();
    CHECK(sem.try_acquire());
    CHECK(!sem.try_acquire());
    bool got = true;
    const double waited = millis([&] { got = sem.try_acquire_for(10ms); });
    CHECK(!got && waited >= 9.0);
    sem.release(2);
    CHECK(sem.value() == 2);
    CHECK(seg.open_semaphore("sem").try_acquire_until(std::chrono::steady_clock::now() + 10ms));
    CHECK(seg.open_or_create_semaphore("sem", 2).value() == 1);
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_semaphore("sem", 3); }));
    shmds::Semaphore bounded = seg.create_bounded_semaphore("bsem", 1);
    CHECK(throws(SHMDS_E_TOO_MANY_RELEASES, [&] { bounded.release(); }));
    bounded.acquire();
    bounded.release();
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_or_create_semaphore("bsem", 1); }));
    CHECK(throws(SHMDS_E_TYPE, [&] { seg.open_or_create_bounded_semaphore("sem", 2); }));
    CHECK(seg.open_or_create_bounded_semaphore("bsem", 1).value() == 1);

    shmds::Barrier solo = seg.create_barrier("solo", 1);
    CHECK(solo.wait() == 0 && solo.parties() == 1);
    shmds::Barrier pair = seg.open_or_create_barrier("pair", 2);
    std::uint32_t other_index = 99;
    std::thread party([&] { other_index = seg.open_barrier("pair").wait(); });
    const std::optional<std::uint32_t> mine = pair.wait_for(5s);
    party.join();
    CHECK(mine && ((*mine == 0 && other_index == 1) || (*mine == 1 && other_index == 0)));
    CHECK(!pair.wait_for(10ms));  // alone: times out, and that breaks it
    CHECK(pair.is_broken());
    CHECK(throws(SHMDS_E_BROKEN, [&] { pair.wait(); }));
    pair.reset();
    CHECK(!pair.is_broken() && pair.n_waiting() == 0);
    pair.abort();
    CHECK(throws(SHMDS_E_BROKEN, [&] { pair.wait_for(10ms); }));
    pair.reset();
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_barrier("pair", 3); }));

    shmds::Event ev = seg.create_event("ev");
    CHECK(!ev.is_set());
    bool set = true;
    const double idle = millis([&] { set = ev.wait_for(10ms); });
    CHECK(!set && idle >= 9.0);
    std::thread setter([&] {
        std::this_thread::sleep_for(10ms);
        seg.open_event("ev").set();
    });
    ev.wait();
    setter.join();
    CHECK(ev.is_set() && ev.wait_for(0ms));
    ev.clear();
    CHECK(!seg.open_or_create_event("ev").is_set());

    shmds::Latch latch = seg.create_latch("latch", 2);
    CHECK(latch.count() == 2 && !latch.try_wait() && !latch.wait_for(10ms));
    latch.count_down();
    CHECK(throws(SHMDS_E_INVALID, [&] { latch.count_down(5); }));
    CHECK(latch.count() == 1);
    std::thread counter([&] { seg.open_latch("latch").count_down(); });
    latch.wait();
    counter.join();
    CHECK(latch.count() == 0 && latch.try_wait());
    CHECK(throws(SHMDS_E_SHAPE, [&] { seg.open_or_create_latch("latch", 3); }));
    CHECK(seg.open_or_create_latch("latch", 2).count() == 0);

    shmds::Once once = seg.create_once("once");
    CHECK(!once.is_done());
    int runs = 0;
    try {
        once.call([&] {
            runs++;
            throw std::runtime_error("fails the first time");
        });
        CHECK(false);
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "fails the first time");
    }
    CHECK(!once.is_done());  // left to the next caller
    CHECK(once.call([&] { runs++; }));
    CHECK(!seg.open_once("once").call([&] { runs++; }));
    CHECK(runs == 2 && once.is_done());
    CHECK(once.call_for(10ms, [&] { runs++; }) == std::optional<bool>(false));
    CHECK(!seg.open_or_create_once("once").begin());
    shmds::Once manual = seg.open_or_create_once("manual");
    CHECK(manual.begin_for(10ms) == std::optional<bool>(true));
    manual.finish(true);
    CHECK(manual.is_done());
    CHECK(throws(SHMDS_E_NOT_OWNER, [&] { manual.finish(true); }));
    for (const char* n : {"sem", "bsem", "solo", "pair", "ev", "latch", "once", "manual"}) seg.erase(n);
}

// A forked child process pushes into a queue that the parent pops; another
// dies holding a lock, which the parent then takes over.
static void test_processes(const std::string& seg_name_) {
    shmds::Segment seg = shmds::Segment::open(seg_name_);
    shmds::Queue<std::uint64_t> q = seg.create_queue<std::uint64_t>("fork-q", 8);
    const std::uint64_t n = 1000;
    std::fflush(nullptr);
    const pid_t child = fork();
    if (child == 0) {
        int rc = 0;
        try {
            shmds::Segment s = shmds::Segment::open(seg_name_);
            shmds::Queue<std::uint64_t> cq = s.open_queue<std::uint64_t>("fork-q");
            for (std::uint64_t v = 0; v < n; v++) cq.push(v);  // blocks while full
        } catch (const std::exception& e) {
            std::fprintf(stderr, "hpp: child: %s\n", e.what());
            rc = 1;
        }
        _exit(rc);
    }
    CHECK(child > 0);
    bool in_order = true;
    for (std::uint64_t want = 0; want < n; want++) {
        const std::optional<std::uint64_t> v = q.pop_for(10s);
        if (!v || *v != want) {
            in_order = false;
            break;
        }
    }
    CHECK(in_order);
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!q.try_pop());

    // A holder that dies: the next lock() takes it, owner_died() says so.
    shmds::Lock lock = seg.create_lock("fork-lock");
    std::fflush(nullptr);
    const pid_t dier = fork();
    if (dier == 0) {
        shmds::Segment s = shmds::Segment::open(seg_name_);
        shmds::Lock l = s.open_lock("fork-lock");
        l.lock();
        _exit(0);  // dies holding it
    }
    CHECK(waitpid(dier, &status, 0) == dier);
    CHECK(lock.is_locked());
    CHECK(lock.try_lock_for(10s));
    CHECK(lock.owner_died());
    lock.unlock();
    CHECK(lock.owner_deaths() == 1);
    {
        std::lock_guard<shmds::Lock> again(lock);
        CHECK(!lock.owner_died());
    }
    seg.erase("fork-q");
    seg.erase("fork-lock");
}

int main(int argc, char** argv) {
    prefix = argc > 1 ? argv[1] : "shmds-hpptest-" + std::to_string(getpid());
    int rc = 0;
    try {
        test_errors();
        test_segment();
        test_fixed_str();
        const std::string main_name = seg_name("main");
        shmds::Segment seg = shmds::Segment::create(main_name, 8 << 20);
        test_descriptors(seg);
        test_array(seg);
        test_queue(seg);
        test_stack(seg);
        test_lifecycle(seg);
        test_map_set(seg);
        test_batches(seg);
        test_map_set_iteration(seg);
        test_moves(seg);
        test_channel(seg);
        test_topic(seg);
        test_locks(seg);
        test_condition(seg);
        test_semaphore_barrier_event_latch_once(seg);
        test_processes(main_name);
        CHECK(seg.entries().empty());
    } catch (const shmds::Error& e) {
        std::fprintf(stderr, "hpp: unexpected shmds::Error %d (%s): %s\n", e.code(), e.name(), e.what());
        ++failed;
        rc = 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hpp: unexpected exception: %s\n", e.what());
        ++failed;
        rc = 1;
    }
    remove_all();
    std::printf("hpp: %d passed, %d failed\n", passed, failed);
    return rc != 0 || failed != 0 ? 1 : 0;
}
