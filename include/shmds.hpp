/*
 * shmds.hpp: a header-only C++17 layer over the C API of shmds (shmds.h).
 *
 * Typed, move-only RAII handles for segments, the structures in them
 * (arrays, queues, stacks, maps, sets, channels, topics) and the
 * coordination primitives (locks, rwlocks, conditions, semaphores,
 * barriers, events, latches, once cells). Failures throw shmds::Error,
 * whose code() is the SHMDS_E_* value; the expected outcomes of a
 * non-blocking or timed call (full, empty, timed out) are a bool or an
 * empty std::optional instead. Link with libshmds (see shmds.h).
 *
 * Example (a complete program):
 *
 *     #include "shmds.hpp"
 *
 *     #include <cstdio>
 *     #include <mutex>
 *
 *     struct Quote { std::uint8_t venue; double price; std::uint32_t size; };
 *     SHMDS_RECORD(Quote, venue, price, size);   // T{B:venue:7x<d:price:<I:size:4x}
 *
 *     int main() try {
 *         auto seg = shmds::Segment::open_or_create("demo", 1 << 20);
 *
 *         auto jobs = seg.open_or_create_queue<std::uint64_t>("jobs", 128);
 *         jobs.push(42);                                  // blocks while full
 *         if (auto v = jobs.pop_for(std::chrono::milliseconds(10)))
 *             std::printf("job %llu\n", static_cast<unsigned long long>(*v));
 *
 *         auto quotes = seg.open_or_create_array<Quote>("quotes", 3);
 *         quotes.set(0, Quote{1, 100.5, 10});
 *
 *         using Key = shmds::FixedStr<16>;
 *         auto prices = seg.open_or_create_map<Key, double>("prices", 64);
 *         prices.insert(Key("AAPL"), 189.5);
 *         std::optional<double> p = prices.get(Key("AAPL"));
 *
 *         auto lock = seg.open_or_create_lock("guard");
 *         {
 *             std::lock_guard<shmds::Lock> hold(lock);
 *             if (lock.owner_died()) { } // repair what it guards
 *         }
 *
 *         auto events = seg.open_or_create_channel("events", 64 << 10,
 *                                                  {4096, false, true});  // max_message, spsc, checksum
 *         auto tx = events.sender();
 *         auto rx = events.receiver();
 *         tx.send("hello");
 *         std::vector<std::uint8_t> msg = rx.recv();
 *         if (auto m = rx.try_recv_ref()) { }             // zero-copy: m->view()
 *         return p && msg.size() == 5 ? 0 : 1;
 *     } catch (const shmds::Error& e) {                   // e.code() is SHMDS_E_*
 *         std::fprintf(stderr, "%s\n", e.what());
 *         return 2;
 *     }
 *
 * Types: every typed open and create states sizeof(T) and the descriptor
 * shmds::element<T>::descriptor() (FORMAT.md, "Type descriptors"), so a
 * structure holding another type is refused with SHMDS_E_TYPE. Supported:
 * the fixed-width integers, float, double, char ("c"), bool ("?"),
 * std::byte ("B"), std::array<T, N> and T[N] of supported types
 * (std::array<std::uint8_t, N> is "Ns", as Rust's [u8; N]),
 * shmds::FixedStr<N>, and structs declared with SHMDS_RECORD. Another type
 * fails to compile with a static_assert naming the problem.
 *
 * Threads: every handle may be used from several threads at once, as the
 * C handles may, except where a class says otherwise. A moved-from handle
 * holds nothing: destroying it does nothing, and calling it throws
 * SHMDS_E_INVALID (getters return 0 or false). Destructors never throw.
 *
 * Durations: any std::chrono::duration; negative ones count as zero (the
 * C API's "negative waits forever" is reached only through the untimed
 * forms, e.g. pop() instead of pop_for()).
 */
#ifndef SHMDS_HPP
#define SHMDS_HPP

#include "shmds.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmds {

// ======================================================================
// Errors
// ======================================================================

/// The SHMDS_E_* codes as a scoped enum (Errc::type == SHMDS_E_TYPE).
enum class Errc : int {
    ok = SHMDS_OK,
    invalid = SHMDS_E_INVALID,
    not_found = SHMDS_E_NOT_FOUND,
    exists = SHMDS_E_EXISTS,
    permission = SHMDS_E_PERMISSION,
    type = SHMDS_E_TYPE,
    no_space = SHMDS_E_NO_SPACE,
    full = SHMDS_E_FULL,
    empty = SHMDS_E_EMPTY,
    timeout = SHMDS_E_TIMEOUT,
    corrupt = SHMDS_E_CORRUPT,
    incompatible = SHMDS_E_INCOMPATIBLE,
    stale = SHMDS_E_STALE,
    busy = SHMDS_E_BUSY,
    not_ready = SHMDS_E_NOT_READY,
    io = SHMDS_E_IO,
    index = SHMDS_E_INDEX,
    panic = SHMDS_E_PANIC,
    shape = SHMDS_E_SHAPE,
    disconnected = SHMDS_E_DISCONNECTED,
    shut_down = SHMDS_E_SHUT_DOWN,
    message_too_large = SHMDS_E_MESSAGE_TOO_LARGE,
    lagged = SHMDS_E_LAGGED,
    already_attached = SHMDS_E_ALREADY_ATTACHED,
    too_many_attached = SHMDS_E_TOO_MANY_ATTACHED,
    buffer_too_small = SHMDS_E_BUFFER_TOO_SMALL,
    owner_dead = SHMDS_E_OWNER_DEAD,
    not_owner = SHMDS_E_NOT_OWNER,
    broken = SHMDS_E_BROKEN,
    too_many_releases = SHMDS_E_TOO_MANY_RELEASES,
    reader_slots_full = SHMDS_E_READER_SLOTS_FULL,
};

/// A failed shmds call: code() is the (negative) SHMDS_E_* code, what() the
/// library's message for it (shmds_last_error() of the failing call, or
/// shmds_strerror(code) when that is empty).
class Error : public std::runtime_error {
public:
    /// An error with code `code` and message `message` (if empty:
    /// shmds_strerror(code)).
    Error(int code, const std::string& message)
        : std::runtime_error(message.empty() ? std::string(shmds_strerror(code)) : message),
          code_(code) {}

    /// The error of a call that just failed with `code` on this thread: its
    /// message is shmds_last_error().
    explicit Error(int code) : Error(code, last_message()) {}

    /// The SHMDS_E_* code (compare with the macros, or use errc()).
    int code() const noexcept { return code_; }
    /// The code as an Errc.
    Errc errc() const noexcept { return static_cast<Errc>(code_); }
    /// Whether the code is `e`.
    bool is(Errc e) const noexcept { return code_ == static_cast<int>(e); }
    /// The static name of the code (shmds_strerror).
    const char* name() const noexcept { return shmds_strerror(code_); }

private:
    static std::string last_message() {
        const char* m = shmds_last_error();
        return m ? std::string(m) : std::string();
    }
    int code_;
};

/// Compare an Errc with an int code either way round.
inline bool operator==(Errc a, int b) noexcept { return static_cast<int>(a) == b; }
inline bool operator==(int a, Errc b) noexcept { return a == static_cast<int>(b); }
inline bool operator!=(Errc a, int b) noexcept { return !(a == b); }
inline bool operator!=(int a, Errc b) noexcept { return !(a == b); }

namespace detail {

/// Throw the Error of a call that just returned `rc` (< 0).
[[noreturn]] inline void raise(int rc) { throw Error(rc); }

/// `rc` if it is not negative, else throw its Error (the one internal
/// check every call goes through).
inline int check(int rc) {
    if (rc < 0) raise(rc);
    return rc;
}

template <class T>
struct dependent_false : std::false_type {};

/// A duration as the C API's nanoseconds: never negative (clamped to 0),
/// rounded up (so a positive duration never becomes "try once"), at most
/// INT64_MAX.
template <class Rep, class Period>
std::int64_t to_ns(const std::chrono::duration<Rep, Period>& d) {
    using namespace std::chrono;
    if (!(d > duration<Rep, Period>::zero())) return 0;
    const long double ns = duration_cast<duration<long double, std::nano>>(d).count();
    if (!(ns < static_cast<long double>(std::numeric_limits<std::int64_t>::max())))
        return std::numeric_limits<std::int64_t>::max();
    if constexpr (std::is_floating_point<Rep>::value) {
        const std::int64_t whole = static_cast<std::int64_t>(ns);
        return static_cast<long double>(whole) < ns ? whole + 1 : whole;
    } else {
        return ceil<nanoseconds>(d).count();
    }
}

/// Time left until `deadline`, in nanoseconds (0 once passed).
inline std::int64_t ns_until(std::chrono::steady_clock::time_point deadline) {
    return to_ns(deadline - std::chrono::steady_clock::now());
}

/// A deadline `timeout_ns` from now (timeout_ns >= 0).
inline std::chrono::steady_clock::time_point deadline_in(std::int64_t timeout_ns) {
    const auto now = std::chrono::steady_clock::now();
    const auto room = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::time_point::max() - now)
                          .count();
    return now + std::chrono::nanoseconds(std::min<std::int64_t>(timeout_ns, room));
}

/// A time point of any clock as a duration from now.
template <class Clock, class Dur>
std::int64_t ns_until(const std::chrono::time_point<Clock, Dur>& tp) {
    return to_ns(tp - Clock::now());
}

/// Owns a C handle, closing it with `Close` (a unique_ptr with a
/// function-pointer-free deleter: movable, not copyable).
template <class H, void (*Close)(H*)>
struct Closer {
    void operator()(H* h) const noexcept { Close(h); }
};
template <class H, void (*Close)(H*)>
using Owned = std::unique_ptr<H, Closer<H, Close>>;

/// NUL-terminated copy of at most `n` bytes of a fixed char field.
inline std::string field_text(const char* p, std::size_t n) {
    std::size_t len = 0;
    while (len < n && p[len] != '\0') ++len;
    return std::string(p, len);
}

}  // namespace detail

// ======================================================================
// FixedStr
// ======================================================================

/// A string of at most N bytes (N <= 255) stored inline with its length,
/// byte for byte the Rust FixedStr<N> (descriptor T{B:len:Ns:bytes:}): a
/// length byte, then N bytes of which the first `len` count and the rest
/// are zero. The usual map key type. Trailing NULs are data: "a\0" and
/// "a" differ. A length byte past N (written by another process) is read
/// as N.
template <std::size_t N>
struct FixedStr {
    static_assert(N >= 1 && N <= 255, "shmds::FixedStr<N> holds 1 to 255 bytes");

    std::uint8_t len;
    char bytes[N];

    /// The empty string (all bytes zero).
    FixedStr() noexcept : len(0), bytes{} {}

    /// The string `s`; throws Error (SHMDS_E_INVALID) if it is longer than N bytes.
    explicit FixedStr(std::string_view s) : len(0), bytes{} {
        if (s.size() > N)
            throw Error(SHMDS_E_INVALID, std::to_string(s.size()) + " bytes do not fit in a FixedStr<" +
                                             std::to_string(N) + ">");
        len = static_cast<std::uint8_t>(s.size());
        if (!s.empty()) std::memcpy(bytes, s.data(), s.size());
    }
    /// The NUL-terminated string `s` (throws as above).
    explicit FixedStr(const char* s) : FixedStr(std::string_view(s)) {}
    /// The string `s` (throws as above).
    explicit FixedStr(const std::string& s) : FixedStr(std::string_view(s)) {}

    /// Its capacity, N.
    static constexpr std::size_t capacity() noexcept { return N; }
    /// Its length in bytes (the length byte, at most N).
    std::size_t size() const noexcept { return len > N ? N : len; }
    /// Whether it is empty.
    bool empty() const noexcept { return size() == 0; }
    /// Its bytes (not NUL-terminated when it is N bytes long).
    std::string_view view() const noexcept { return std::string_view(bytes, size()); }
    /// A copy of its bytes.
    std::string str() const { return std::string(view()); }

    friend bool operator==(const FixedStr& a, const FixedStr& b) noexcept { return a.view() == b.view(); }
    friend bool operator!=(const FixedStr& a, const FixedStr& b) noexcept { return a.view() != b.view(); }
    friend bool operator<(const FixedStr& a, const FixedStr& b) noexcept { return a.view() < b.view(); }
    friend bool operator>(const FixedStr& a, const FixedStr& b) noexcept { return a.view() > b.view(); }
    friend bool operator<=(const FixedStr& a, const FixedStr& b) noexcept { return a.view() <= b.view(); }
    friend bool operator>=(const FixedStr& a, const FixedStr& b) noexcept { return a.view() >= b.view(); }
    friend bool operator==(const FixedStr& a, std::string_view b) noexcept { return a.view() == b; }
    friend bool operator!=(const FixedStr& a, std::string_view b) noexcept { return a.view() != b; }
    friend bool operator==(std::string_view a, const FixedStr& b) noexcept { return a == b.view(); }
    friend bool operator!=(std::string_view a, const FixedStr& b) noexcept { return a != b.view(); }
};

// ======================================================================
// Element type descriptors
// ======================================================================

namespace detail {

/// The byte-order character of this machine in descriptors.
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr char native_order = '>';
#else
constexpr char native_order = '<';
#endif

/// The integer types described by size and signedness (not bool or the
/// character types).
template <class T>
struct is_plain_int
    : std::integral_constant<
          bool, std::is_same<T, signed char>::value || std::is_same<T, unsigned char>::value ||
                    std::is_same<T, short>::value || std::is_same<T, unsigned short>::value ||
                    std::is_same<T, int>::value || std::is_same<T, unsigned int>::value ||
                    std::is_same<T, long>::value || std::is_same<T, unsigned long>::value ||
                    std::is_same<T, long long>::value || std::is_same<T, unsigned long long>::value> {};

/// The descriptor code of an integer of `size` bytes.
constexpr char int_code(std::size_t size, bool is_signed) {
    return size == 1   ? (is_signed ? 'b' : 'B')
           : size == 2 ? (is_signed ? 'h' : 'H')
           : size == 4 ? (is_signed ? 'i' : 'I')
                       : (is_signed ? 'q' : 'Q');
}

/// A scalar's descriptor: one character, with the byte order unless it
/// is one byte.
inline std::string scalar_text(char code, std::size_t size) {
    return size == 1 ? std::string(1, code) : std::string{native_order, code};
}

/// The descriptor of N elements described by `inner`, as Rust writes
/// [T; N]: bytes as "Ns", nested shapes merged ("(3)" + "(2)<I" is "(3,2)<I").
inline std::string array_text(std::size_t n, const std::string& inner) {
    if (inner == "B") return std::to_string(n) + "s";
    if (!inner.empty() && inner[0] == '(') return "(" + std::to_string(n) + "," + inner.substr(1);
    return "(" + std::to_string(n) + ")" + inner;
}

/// One field of a record: name, offset, size and its descriptor function.
struct FieldInfo {
    const char* name;
    std::size_t offset;
    std::size_t size;
    const std::string& (*descriptor)();
};

/// The record descriptor of `fields` in a struct of `total` bytes: fields
/// sorted by offset, gaps and trailing padding as "Nx" (the algorithm of
/// record_descriptor in shmds/src/element.rs).
inline std::string record_descriptor(const FieldInfo* fields, std::size_t count, std::size_t total) {
    std::vector<FieldInfo> sorted(fields, fields + count);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const FieldInfo& a, const FieldInfo& b) { return a.offset < b.offset; });
    std::string out = "T{";
    std::size_t cursor = 0;
    for (const FieldInfo& f : sorted) {
        if (f.offset < cursor)
            throw Error(SHMDS_E_INVALID, std::string("record field ") + f.name +
                                             " overlaps the field before it (is it listed twice?)");
        if (f.offset > cursor) out += std::to_string(f.offset - cursor) + "x";
        out += f.descriptor();
        out += ":";
        out += f.name;
        out += ":";
        cursor = f.offset + f.size;
    }
    if (total > cursor) out += std::to_string(total - cursor) + "x";
    out += "}";
    return out;
}

/// What the ADL hook finds for a type not declared with SHMDS_RECORD.
struct not_a_record {};
not_a_record shmds_record_descriptor(...);

template <class T>
struct is_record
    : std::integral_constant<bool, !std::is_same<decltype(shmds_record_descriptor(
                                                     static_cast<const T*>(nullptr))),
                                                 not_a_record>::value> {};

}  // namespace detail

/// The type descriptor of T: element<T>::descriptor() is its canonical
/// descriptor (built at first use), element<T>::is_integer whether the
/// atomic fetch_add applies. Specialise it for a type of your own only if
/// SHMDS_RECORD cannot describe it (the descriptor must describe exactly
/// sizeof(T) bytes of which every bit pattern is a valid T).
template <class T, class Enable = void>
struct element {
    static_assert(detail::dependent_false<T>::value,
                  "shmds::element<T>: T has no shmds type descriptor. Use a fixed-width integer, "
                  "float, double, char, bool, std::byte, std::array<T, N> or T[N] of those, "
                  "shmds::FixedStr<N>, or a struct declared with SHMDS_RECORD(Type, fields...)");
};

/// Integers: B b <H <h <I <i <Q <q by size and signedness.
template <class T>
struct element<T, std::enable_if_t<detail::is_plain_int<T>::value>> {
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8,
                  "shmds::element: integers of 1, 2, 4 or 8 bytes only");
    static constexpr bool is_integer = true;
    static const std::string& descriptor() {
        static const std::string d = detail::scalar_text(detail::int_code(sizeof(T), std::is_signed<T>::value), sizeof(T));
        return d;
    }
};

/// float: <f (IEEE 754 binary32).
template <>
struct element<float> {
    static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4, "float must be IEEE 754 binary32");
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = detail::scalar_text('f', 4);
        return d;
    }
};

/// double: <d (IEEE 754 binary64).
template <>
struct element<double> {
    static_assert(std::numeric_limits<double>::is_iec559 && sizeof(double) == 8, "double must be IEEE 754 binary64");
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = detail::scalar_text('d', 8);
        return d;
    }
};

/// char: c (one byte character; Python's struct 'c'). Not an integer for
/// fetch_add.
template <>
struct element<char> {
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = "c";
        return d;
    }
};

/// bool: ? (one byte). Whole bools are read as byte != 0, so a byte other
/// than 0 or 1 written by another language is read as true; a bool field
/// inside a record is copied as it is (keep such bytes 0 or 1).
template <>
struct element<bool> {
    static_assert(sizeof(bool) == 1, "shmds::element<bool> needs a one-byte bool");
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = "?";
        return d;
    }
};

/// std::byte: B (a raw byte; arrays of them are "Ns").
template <>
struct element<std::byte> {
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = "B";
        return d;
    }
};

/// std::array<T, N>: "Ns" for bytes, else "(N)" and T's descriptor (nested
/// shapes merged, as Rust's [T; N]).
template <class T, std::size_t N>
struct element<std::array<T, N>> {
    static_assert(N > 0, "shmds::element: zero-length arrays have no descriptor");
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = detail::array_text(N, element<T>::descriptor());
        return d;
    }
};

/// T[N] (a record's array member): as std::array<T, N>.
template <class T, std::size_t N>
struct element<T[N]> {
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = detail::array_text(N, element<T>::descriptor());
        return d;
    }
};

/// FixedStr<N>: T{B:len:Ns:bytes:}.
template <std::size_t N>
struct element<FixedStr<N>> {
    static constexpr bool is_integer = false;
    static const std::string& descriptor() {
        static const std::string d = "T{B:len:" + std::to_string(N) + "s:bytes:}";
        return d;
    }
};

/// A struct declared with SHMDS_RECORD.
template <class T>
struct element<T, std::enable_if_t<std::is_class<T>::value && detail::is_record<T>::value>> {
    static constexpr bool is_integer = false;
    static const std::string& descriptor() { return shmds_record_descriptor(static_cast<const T*>(nullptr)); }
};

/// The descriptor of T (element<T>::descriptor()).
template <class T>
const std::string& descriptor() {
    return element<T>::descriptor();
}

namespace detail {

/// T can be an element of a structure: trivially copyable, standard
/// layout, not a C array or a pointer, and described.
template <class T>
constexpr bool assert_element() {
    static_assert(!std::is_array<T>::value,
                  "shmds: use std::array<T, N>, not a C array, as a structure's element type");
    static_assert(!std::is_pointer<T>::value, "shmds: pointers cannot live in shared memory");
    static_assert(!std::is_const<T>::value && !std::is_volatile<T>::value,
                  "shmds: element types are not const or volatile");
    static_assert(std::is_trivially_copyable<T>::value,
                  "shmds: element types must be trivially copyable (plain data)");
    static_assert(std::is_standard_layout<T>::value, "shmds: element types must be standard-layout");
    (void)sizeof(element<T>);
    return true;
}

/// T is an integer that fetch_add works on.
template <class T>
constexpr bool is_atomic_int = is_plain_int<T>::value;

/// The value of a T read through `fill(void* buf, size_t size)` (a C call
/// copying exactly sizeof(T) bytes; its return code is handed back in
/// `rc`). A bool is read as a byte != 0.
template <class T, class Fill>
T read_into(int& rc, Fill&& fill) {
    if constexpr (std::is_same<T, bool>::value) {
        std::uint8_t b = 0;
        rc = fill(&b, sizeof b);
        return b != 0;
    } else {
        T out{};
        rc = fill(&out, sizeof out);
        return out;
    }
}

/// An integer T from the C API's zero-extended 64-bit previous value.
template <class T>
T from_u64(std::uint64_t v) {
    using U = std::make_unsigned_t<T>;
    const U narrow = static_cast<U>(v);
    T out;
    std::memcpy(&out, &narrow, sizeof out);
    return out;
}

/// An integer delta as the C API's 64-bit two's complement.
template <class T>
std::uint64_t to_u64(T delta) {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(delta));
}
template <>
inline std::uint64_t to_u64<unsigned long>(unsigned long delta) {
    return static_cast<std::uint64_t>(delta);
}
template <>
inline std::uint64_t to_u64<unsigned long long>(unsigned long long delta) {
    return static_cast<std::uint64_t>(delta);
}

}  // namespace detail

}  // namespace shmds

// ----------------------------------------------------------------------
// SHMDS_RECORD(Type, field, field, ...)
// ----------------------------------------------------------------------

#define SHMDS_DETAIL_CAT_(a, b) a##b
#define SHMDS_DETAIL_CAT(a, b) SHMDS_DETAIL_CAT_(a, b)
#define SHMDS_DETAIL_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, \
                            _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, N, \
                            ...)                                                                         \
    N
#define SHMDS_DETAIL_NARGS(...)                                                                         \
    SHMDS_DETAIL_NARGS_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, \
                        15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, )
#define SHMDS_DETAIL_FIELD(T, f)                                                           \
    ::shmds::detail::FieldInfo {                                                           \
        #f, offsetof(T, f), sizeof(decltype(T::f)),                                        \
            &::shmds::element<::std::remove_cv_t<decltype(T::f)>>::descriptor              \
    }
#define SHMDS_DETAIL_F1(T, a) SHMDS_DETAIL_FIELD(T, a)
#define SHMDS_DETAIL_F2(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F1(T, __VA_ARGS__)
#define SHMDS_DETAIL_F3(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F2(T, __VA_ARGS__)
#define SHMDS_DETAIL_F4(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F3(T, __VA_ARGS__)
#define SHMDS_DETAIL_F5(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F4(T, __VA_ARGS__)
#define SHMDS_DETAIL_F6(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F5(T, __VA_ARGS__)
#define SHMDS_DETAIL_F7(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F6(T, __VA_ARGS__)
#define SHMDS_DETAIL_F8(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F7(T, __VA_ARGS__)
#define SHMDS_DETAIL_F9(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F8(T, __VA_ARGS__)
#define SHMDS_DETAIL_F10(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F9(T, __VA_ARGS__)
#define SHMDS_DETAIL_F11(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F10(T, __VA_ARGS__)
#define SHMDS_DETAIL_F12(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F11(T, __VA_ARGS__)
#define SHMDS_DETAIL_F13(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F12(T, __VA_ARGS__)
#define SHMDS_DETAIL_F14(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F13(T, __VA_ARGS__)
#define SHMDS_DETAIL_F15(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F14(T, __VA_ARGS__)
#define SHMDS_DETAIL_F16(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F15(T, __VA_ARGS__)
#define SHMDS_DETAIL_F17(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F16(T, __VA_ARGS__)
#define SHMDS_DETAIL_F18(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F17(T, __VA_ARGS__)
#define SHMDS_DETAIL_F19(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F18(T, __VA_ARGS__)
#define SHMDS_DETAIL_F20(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F19(T, __VA_ARGS__)
#define SHMDS_DETAIL_F21(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F20(T, __VA_ARGS__)
#define SHMDS_DETAIL_F22(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F21(T, __VA_ARGS__)
#define SHMDS_DETAIL_F23(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F22(T, __VA_ARGS__)
#define SHMDS_DETAIL_F24(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F23(T, __VA_ARGS__)
#define SHMDS_DETAIL_F25(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F24(T, __VA_ARGS__)
#define SHMDS_DETAIL_F26(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F25(T, __VA_ARGS__)
#define SHMDS_DETAIL_F27(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F26(T, __VA_ARGS__)
#define SHMDS_DETAIL_F28(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F27(T, __VA_ARGS__)
#define SHMDS_DETAIL_F29(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F28(T, __VA_ARGS__)
#define SHMDS_DETAIL_F30(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F29(T, __VA_ARGS__)
#define SHMDS_DETAIL_F31(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F30(T, __VA_ARGS__)
#define SHMDS_DETAIL_F32(T, a, ...) SHMDS_DETAIL_FIELD(T, a), SHMDS_DETAIL_F31(T, __VA_ARGS__)

/**
 * Declare the struct `Type` a shmds record with the listed fields (1 to
 * 32), as Rust's shmds::record!: its descriptor lists them by offset, each
 * with its own descriptor and name, and every gap and the trailing
 * padding as "Nx":
 *
 *     struct Quote { std::uint8_t venue; double price; std::uint32_t size; };
 *     SHMDS_RECORD(Quote, venue, price, size);  // T{B:venue:7x<d:price:<I:size:4x}
 *
 * Use it at namespace scope, in the namespace of `Type` (it defines a
 * function found by argument-dependent lookup), after the struct is
 * complete. List every field: one left out is described as padding, and
 * other languages would not see it. The struct must be trivially copyable
 * and standard-layout; every field type must have a descriptor.
 */
#define SHMDS_RECORD(Type, ...)                                                                       \
    inline const ::std::string& shmds_record_descriptor(const Type*) {                              \
        static_assert(::std::is_standard_layout<Type>::value,                                       \
                      "SHMDS_RECORD(" #Type "): the struct must be standard-layout");               \
        static_assert(::std::is_trivially_copyable<Type>::value,                                    \
                      "SHMDS_RECORD(" #Type "): the struct must be trivially copyable");            \
        static const ::std::string shmds_descriptor_ = [] {                                         \
            const ::shmds::detail::FieldInfo shmds_fields_[] = {                                    \
                SHMDS_DETAIL_CAT(SHMDS_DETAIL_F, SHMDS_DETAIL_NARGS(__VA_ARGS__))(Type, __VA_ARGS__)}; \
            return ::shmds::detail::record_descriptor(                                              \
                shmds_fields_, sizeof(shmds_fields_) / sizeof(shmds_fields_[0]), sizeof(Type));     \
        }();                                                                                        \
        return shmds_descriptor_;                                                                   \
    }                                                                                               \
    static_assert(true, "")

namespace shmds {

// ======================================================================
// Byte views (channel and topic messages)
// ======================================================================

/// A read-only view of message bytes: from a pointer and a length, a
/// std::string_view (or string, or string literal), or a vector or array
/// of bytes. It does not own them.
class Bytes {
public:
    /// `size` bytes at `data` (NULL allowed for 0).
    Bytes(const void* data, std::size_t size) noexcept : data_(data), size_(size) {}
    /// The bytes of `s`.
    Bytes(std::string_view s) noexcept : data_(s.data()), size_(s.size()) {}
    /// The bytes of `s`.
    Bytes(const std::string& s) noexcept : data_(s.data()), size_(s.size()) {}
    /// The bytes of a NUL-terminated string (without the NUL).
    Bytes(const char* s) noexcept : data_(s), size_(s ? std::strlen(s) : 0) {}
    /// The bytes of `v`.
    Bytes(const std::vector<std::uint8_t>& v) noexcept : data_(v.data()), size_(v.size()) {}
    /// The bytes of `v`.
    Bytes(const std::vector<char>& v) noexcept : data_(v.data()), size_(v.size()) {}
    /// The bytes of `a`.
    template <std::size_t N>
    Bytes(const std::array<std::uint8_t, N>& a) noexcept : data_(a.data()), size_(N) {}

    const void* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    const void* data_;
    std::size_t size_;
};

/// Fixed-size structures' and message rings' receive buffers start at
/// this many bytes (or max_message if smaller) and grow to what a message
/// needs.
constexpr std::size_t initial_receive_buffer = 4096;

// ======================================================================
// Array
// ======================================================================

/// A fixed-length array of T in shared memory (Segment::create_array<T>).
template <class T>
class Array {
    static_assert(detail::assert_element<T>(), "shmds::Array<T>: T is not an element type");

public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Array(ShmdsArray* h = nullptr) noexcept : h_(h) {}
    Array(Array&&) noexcept = default;
    Array& operator=(Array&&) noexcept = default;
    Array(const Array&) = delete;
    Array& operator=(const Array&) = delete;
    ~Array() = default;

    /// The C handle (still owned by this object).
    ShmdsArray* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsArray* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Number of elements.
    std::size_t size() const noexcept { return static_cast<std::size_t>(shmds_array_len(get())); }
    /// Size of one element in bytes (sizeof(T); 0 for an empty handle).
    std::size_t elem_size() const noexcept { return shmds_array_elem_size(get()); }

    /// A copy of element `i` (SHMDS_E_INDEX past the end).
    T get(std::size_t i) const {
        int rc = 0;
        T v = detail::read_into<T>(rc, [&](void* p, std::size_t n) {
            return shmds_array_get(get(), static_cast<std::uint64_t>(i), p, n);
        });
        detail::check(rc);
        return v;
    }

    /// Store `v` into element `i` (SHMDS_E_INDEX past the end).
    void set(std::size_t i, const T& v) const {
        detail::check(shmds_array_set(get(), static_cast<std::uint64_t>(i), &v, sizeof(T)));
    }

    /// Integer elements: add `delta` to element `i` atomically (wrapping);
    /// returns the previous value.
    template <class U = T>
    std::enable_if_t<detail::is_atomic_int<U>, U> fetch_add(std::size_t i, U delta) const {
        std::uint64_t old = 0;
        detail::check(shmds_array_fetch_add(get(), static_cast<std::uint64_t>(i), detail::to_u64(delta), &old));
        return detail::from_u64<U>(old);
    }

    /// The first element in shared memory: size() elements, valid while
    /// this handle is open. Other processes may change them at any moment
    /// (read them as data that can change under you; for integers prefer
    /// fetch_add or atomic access).
    T* data() const noexcept { return static_cast<T*>(shmds_array_data(get())); }

    /// Throws Error (SHMDS_E_STALE) once the array was erased.
    void check() const { detail::check(shmds_array_check(get())); }

private:
    detail::Owned<ShmdsArray, shmds_array_close> h_;
};

// ======================================================================
// Queue and Stack
// ======================================================================

namespace detail {

struct QueueOps {
    using handle = ShmdsQueue;
    static int try_push(const ShmdsQueue* h, const void* e, std::size_t n) { return shmds_queue_try_push(h, e, n); }
    static int push(const ShmdsQueue* h, const void* e, std::size_t n, std::int64_t t) {
        return shmds_queue_push(h, e, n, t);
    }
    static int try_pop(const ShmdsQueue* h, void* o, std::size_t n) { return shmds_queue_try_pop(h, o, n); }
    static int pop(const ShmdsQueue* h, void* o, std::size_t n, std::int64_t t) { return shmds_queue_pop(h, o, n, t); }
    static std::size_t len(const ShmdsQueue* h) { return shmds_queue_len(h); }
    static std::uint64_t capacity(const ShmdsQueue* h) { return shmds_queue_capacity(h); }
    static std::size_t elem_size(const ShmdsQueue* h) { return shmds_queue_elem_size(h); }
    static int check(const ShmdsQueue* h) { return shmds_queue_check(h); }
    static void close(ShmdsQueue* h) { shmds_queue_close(h); }
};

struct StackOps {
    using handle = ShmdsStack;
    static int try_push(const ShmdsStack* h, const void* e, std::size_t n) { return shmds_stack_try_push(h, e, n); }
    static int push(const ShmdsStack* h, const void* e, std::size_t n, std::int64_t t) {
        return shmds_stack_push(h, e, n, t);
    }
    static int try_pop(const ShmdsStack* h, void* o, std::size_t n) { return shmds_stack_try_pop(h, o, n); }
    static int pop(const ShmdsStack* h, void* o, std::size_t n, std::int64_t t) { return shmds_stack_pop(h, o, n, t); }
    static std::size_t len(const ShmdsStack* h) { return shmds_stack_len(h); }
    static std::uint64_t capacity(const ShmdsStack* h) { return shmds_stack_capacity(h); }
    static std::size_t elem_size(const ShmdsStack* h) { return shmds_stack_elem_size(h); }
    static int check(const ShmdsStack* h) { return shmds_stack_check(h); }
    static void close(ShmdsStack* h) { shmds_stack_close(h); }
};

/// What Queue<T> and Stack<T> share: pushes and pops of one T. Full,
/// empty and timed out are a bool or an empty optional; every other
/// failure (SHMDS_E_SHUT_DOWN included) throws.
template <class T, class Ops>
class Bounded {
    static_assert(assert_element<T>(), "shmds::Queue<T> / Stack<T>: T is not an element type");

public:
    using handle_type = typename Ops::handle;

    explicit Bounded(handle_type* h = nullptr) noexcept : h_(h) {}
    Bounded(Bounded&&) noexcept = default;
    Bounded& operator=(Bounded&&) noexcept = default;
    Bounded(const Bounded&) = delete;
    Bounded& operator=(const Bounded&) = delete;
    ~Bounded() = default;

    /// The C handle (still owned by this object).
    handle_type* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    handle_type* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Push `v` if there is room now (false if full). Never sleeps.
    bool try_push(const T& v) const {
        const int rc = Ops::try_push(get(), &v, sizeof(T));
        if (rc == SHMDS_E_FULL) return false;
        check_rc(rc);
        return true;
    }
    /// Push `v`, waiting for room as long as it takes.
    void push(const T& v) const { check_rc(Ops::push(get(), &v, sizeof(T), -1)); }
    /// Push `v`, waiting for room up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool push_for(const T& v, const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = Ops::push(get(), &v, sizeof(T), to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return false;
        check_rc(rc);
        return true;
    }

    /// Pop an element if there is one now (nullopt if empty). Never sleeps.
    std::optional<T> try_pop() const {
        int rc = 0;
        T v = read_into<T>(rc, [&](void* p, std::size_t n) { return Ops::try_pop(get(), p, n); });
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        check_rc(rc);
        return v;
    }
    /// Pop an element, waiting as long as it takes.
    T pop() const {
        int rc = 0;
        T v = read_into<T>(rc, [&](void* p, std::size_t n) { return Ops::pop(get(), p, n, -1); });
        check_rc(rc);
        return v;
    }
    /// Pop an element, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<T> pop_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const std::int64_t ns = to_ns(timeout);
        int rc = 0;
        T v = read_into<T>(rc, [&](void* p, std::size_t n) { return Ops::pop(get(), p, n, ns); });
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        check_rc(rc);
        return v;
    }

    /// Number of elements (approximate while others push and pop).
    std::size_t size() const noexcept { return Ops::len(get()); }
    /// Whether it holds no element (approximate, as size()).
    bool empty() const noexcept { return size() == 0; }
    /// The most elements it holds.
    std::size_t capacity() const noexcept { return static_cast<std::size_t>(Ops::capacity(get())); }
    /// Size of one element in bytes (sizeof(T); 0 for an empty handle).
    std::size_t elem_size() const noexcept { return Ops::elem_size(get()); }
    /// Throws Error (SHMDS_E_STALE) once the structure was erased.
    void check() const { check_rc(Ops::check(get())); }

private:
    static void check_rc(int rc) { detail::check(rc); }
    Owned<handle_type, &Ops::close> h_;
};

}  // namespace detail

/// A bounded multi-producer multi-consumer FIFO queue of T
/// (Segment::create_queue<T>): try_push/push/push_for, try_pop/pop/pop_for.
template <class T>
class Queue : public detail::Bounded<T, detail::QueueOps> {
public:
    using detail::Bounded<T, detail::QueueOps>::Bounded;
};

/// A bounded LIFO stack of T (Segment::create_stack<T>): the API of Queue,
/// popping the newest element first.
template <class T>
class Stack : public detail::Bounded<T, detail::StackOps> {
public:
    using detail::Bounded<T, detail::StackOps>::Bounded;
};

// ======================================================================
// Map and Set
// ======================================================================

/// A fixed-capacity hash map from K to V (Segment::create_map<K, V>).
/// Keys compare by their bytes.
template <class K, class V>
class Map {
    static_assert(detail::assert_element<K>(), "shmds::Map<K, V>: K is not an element type");
    static_assert(detail::assert_element<V>(), "shmds::Map<K, V>: V is not an element type");

public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Map(ShmdsMap* h = nullptr) noexcept : h_(h) {}
    Map(Map&&) noexcept = default;
    Map& operator=(Map&&) noexcept = default;
    Map(const Map&) = delete;
    Map& operator=(const Map&) = delete;
    ~Map() = default;

    /// The C handle (still owned by this object).
    ShmdsMap* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsMap* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// The value of `key`, or nullopt if absent.
    std::optional<V> get(const K& key) const {
        int rc = 0;
        V v = detail::read_into<V>(rc, [&](void* p, std::size_t n) {
            return shmds_map_get(get(), &key, sizeof(K), p, n);
        });
        if (detail::check(rc) == 0) return std::nullopt;
        return v;
    }
    /// Whether `key` is in the map (reads its value into a scratch copy:
    /// the C API has no contains for maps).
    bool contains(const K& key) const { return get(key).has_value(); }

    /// Set `key` to `value`: true if the key was there (its value
    /// replaced), false if it was added. Error SHMDS_E_NO_SPACE when the
    /// key is new and the map is full.
    bool insert(const K& key, const V& value) const {
        return detail::check(shmds_map_insert(get(), &key, sizeof(K), &value, sizeof(V))) == 1;
    }
    /// Remove `key`: true if it was there.
    bool erase(const K& key) const { return detail::check(shmds_map_remove(get(), &key, sizeof(K))) == 1; }

    /// Integer values: add `delta` to the value of `key` atomically
    /// (wrapping; an absent key counts as 0 and is added); returns the
    /// previous value.
    template <class U = V>
    std::enable_if_t<detail::is_atomic_int<U>, U> fetch_add(const K& key, U delta) const {
        std::uint64_t old = 0;
        detail::check(shmds_map_fetch_add(get(), &key, sizeof(K), detail::to_u64(delta), &old));
        return detail::from_u64<U>(old);
    }

    /// Number of keys.
    std::size_t size() const noexcept { return shmds_map_len(get()); }
    /// Whether it holds no key.
    bool empty() const noexcept { return size() == 0; }
    /// The most keys it holds.
    std::size_t capacity() const noexcept { return static_cast<std::size_t>(shmds_map_capacity(get())); }
    /// Size of a key in bytes (sizeof(K); 0 for an empty handle).
    std::size_t key_size() const noexcept { return shmds_map_key_size(get()); }
    /// Size of a value in bytes (sizeof(V); 0 for an empty handle).
    std::size_t value_size() const noexcept { return shmds_map_value_size(get()); }
    /// Throws Error (SHMDS_E_STALE) once the map was erased.
    void check() const { detail::check(shmds_map_check(get())); }

private:
    detail::Owned<ShmdsMap, shmds_map_close> h_;
};

/// A fixed-capacity set of K (Segment::create_set<K>). Unlike the C
/// shmds_set_insert (1 when already there), insert() returns what
/// std::set's does: true when the key was newly added.
template <class K>
class Set {
    static_assert(detail::assert_element<K>(), "shmds::Set<K>: K is not an element type");

public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Set(ShmdsSet* h = nullptr) noexcept : h_(h) {}
    Set(Set&&) noexcept = default;
    Set& operator=(Set&&) noexcept = default;
    Set(const Set&) = delete;
    Set& operator=(const Set&) = delete;
    ~Set() = default;

    /// The C handle (still owned by this object).
    ShmdsSet* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSet* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Add `key`: true if it was added, false if it was already there.
    /// Error SHMDS_E_NO_SPACE when it is new and the set is full.
    bool insert(const K& key) const { return detail::check(shmds_set_insert(get(), &key, sizeof(K))) == 0; }
    /// Whether `key` is in the set.
    bool contains(const K& key) const { return detail::check(shmds_set_contains(get(), &key, sizeof(K))) == 1; }
    /// Remove `key`: true if it was there.
    bool erase(const K& key) const { return detail::check(shmds_set_remove(get(), &key, sizeof(K))) == 1; }

    /// Number of keys.
    std::size_t size() const noexcept { return shmds_set_len(get()); }
    /// Whether it holds no key.
    bool empty() const noexcept { return size() == 0; }
    /// The most keys it holds.
    std::size_t capacity() const noexcept { return static_cast<std::size_t>(shmds_set_capacity(get())); }
    /// Size of a key in bytes (sizeof(K); 0 for an empty handle).
    std::size_t key_size() const noexcept { return shmds_set_key_size(get()); }
    /// Throws Error (SHMDS_E_STALE) once the set was erased.
    void check() const { detail::check(shmds_set_check(get())); }

private:
    detail::Owned<ShmdsSet, shmds_set_close> h_;
};

// ======================================================================
// Channels
// ======================================================================

/// How to create a channel: the largest message (0: the default, the
/// capacity up to 1 GiB), one sender and one receiver (SHMDS_SPSC), a
/// CRC32C per message (SHMDS_CHECKSUM).
struct ChannelOptions {
    std::uint64_t max_message = 0;
    bool spsc = false;
    bool checksum = false;

    /// The C flags.
    std::uint32_t flags() const noexcept {
        return (spsc ? static_cast<std::uint32_t>(SHMDS_SPSC) : 0u) |
               (checksum ? static_cast<std::uint32_t>(SHMDS_CHECKSUM) : 0u);
    }
};

/// A message held in place in the channel's ring by a receiver
/// (Receiver::recv_ref): data()/size() are its bytes, valid until it is
/// released: by release() or by its destructor. At most one per receiver
/// at a time (the receiver's other calls are refused until then); it must
/// not outlive its Receiver. Move-only.
class Message {
public:
    /// No message.
    Message() noexcept = default;
    Message(Message&& o) noexcept
        : rx_(std::exchange(o.rx_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Message& operator=(Message&& o) noexcept {
        if (this != &o) {
            reset();
            rx_ = std::exchange(o.rx_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;
    /// Releases the message (errors ignored).
    ~Message() { reset(); }

    /// Its bytes in shared memory.
    const std::uint8_t* data() const noexcept { return static_cast<const std::uint8_t*>(data_); }
    /// Its length in bytes.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is empty (zero bytes, or no message).
    bool empty() const noexcept { return size_ == 0; }
    /// Whether it holds a message.
    explicit operator bool() const noexcept { return rx_ != nullptr; }
    /// Its bytes as a string_view.
    std::string_view view() const noexcept { return std::string_view(static_cast<const char*>(data_), size_); }
    /// A copy of its bytes.
    std::vector<std::uint8_t> bytes() const { return std::vector<std::uint8_t>(data(), data() + size_); }

    /// Free its room for senders now (throws on a C failure). Its data is
    /// invalid from then on.
    void release() {
        if (rx_ == nullptr) return;
        const ShmdsReceiver* rx = std::exchange(rx_, nullptr);
        data_ = nullptr;
        size_ = 0;
        detail::check(shmds_receiver_release(rx));
    }

private:
    friend class Receiver;
    Message(const ShmdsReceiver* rx, const void* data, std::size_t size) noexcept : rx_(rx), data_(data), size_(size) {}
    void reset() noexcept {
        if (rx_ != nullptr) (void)shmds_receiver_release(rx_);
        rx_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsReceiver* rx_ = nullptr;
    const void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// Room reserved for one message in a channel's ring (Sender::reserve):
/// write its size() bytes at data(), then commit() to send them. Dropped
/// unsent (aborted) if destroyed before commit. At most one per sender at
/// a time; it must not outlive its Sender. Move-only.
class Reservation {
public:
    Reservation() noexcept = default;
    Reservation(Reservation&& o) noexcept
        : tx_(std::exchange(o.tx_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Reservation& operator=(Reservation&& o) noexcept {
        if (this != &o) {
            reset();
            tx_ = std::exchange(o.tx_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    /// Aborts an uncommitted reservation (errors ignored).
    ~Reservation() { reset(); }

    /// The reserved bytes, writable until commit() or abort().
    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(data_); }
    /// The message's length.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is still open.
    explicit operator bool() const noexcept { return tx_ != nullptr; }

    /// Send the written bytes.
    void commit() { finish(true); }
    /// Drop the message unsent.
    void abort() { finish(false); }

private:
    friend class Sender;
    Reservation(const ShmdsSender* tx, void* data, std::size_t size) noexcept : tx_(tx), data_(data), size_(size) {}
    void finish(bool send) {
        if (tx_ == nullptr) throw Error(SHMDS_E_INVALID, "no open reservation");
        const ShmdsSender* tx = std::exchange(tx_, nullptr);
        data_ = nullptr;
        size_ = 0;
        detail::check(send ? shmds_sender_commit(tx) : shmds_sender_abort(tx));
    }
    void reset() noexcept {
        if (tx_ != nullptr) (void)shmds_sender_abort(tx_);
        tx_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsSender* tx_ = nullptr;
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// An attached sending end of a channel (Channel::sender()); detaches when
/// destroyed. A full channel is false or nullopt from the try_ and _for
/// forms; SHMDS_E_DISCONNECTED (no receiver left), SHMDS_E_SHUT_DOWN and
/// SHMDS_E_MESSAGE_TOO_LARGE throw.
class Sender {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Sender(ShmdsSender* h = nullptr) noexcept : h_(h) {}
    Sender(Sender&&) noexcept = default;
    Sender& operator=(Sender&&) noexcept = default;
    Sender(const Sender&) = delete;
    Sender& operator=(const Sender&) = delete;
    ~Sender() = default;

    /// The C handle (still owned by this object).
    ShmdsSender* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSender* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Send `msg` if there is room now (false if full). Never sleeps.
    bool try_send(Bytes msg) const {
        const int rc = shmds_sender_try_send(get(), msg.data(), msg.size());
        if (rc == SHMDS_E_FULL) return false;
        detail::check(rc);
        return true;
    }
    /// Send `size` bytes at `data` if there is room now.
    bool try_send(const void* data, std::size_t size) const { return try_send(Bytes(data, size)); }

    /// Send `msg`, waiting for room as long as it takes.
    void send(Bytes msg) const { detail::check(shmds_sender_send(get(), msg.data(), msg.size(), -1)); }
    /// Send `size` bytes at `data`, waiting as long as it takes.
    void send(const void* data, std::size_t size) const { send(Bytes(data, size)); }

    /// Send `msg`, waiting for room up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool send_for(Bytes msg, const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = shmds_sender_send(get(), msg.data(), msg.size(), detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return false;
        detail::check(rc);
        return true;
    }
    /// Send `size` bytes at `data`, waiting up to `timeout`.
    template <class Rep, class Period>
    bool send_for(const void* data, std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        return send_for(Bytes(data, size), timeout);
    }

    /// Reserve room for a message of `size` bytes if there is room now
    /// (nullopt if full): write it in place, then commit().
    std::optional<Reservation> try_reserve(std::size_t size) const {
        void* data = nullptr;
        const int rc = shmds_sender_try_reserve(get(), size, &data);
        if (rc == SHMDS_E_FULL) return std::nullopt;
        detail::check(rc);
        return Reservation(get(), data, size);
    }
    /// Reserve room for `size` bytes, waiting as long as it takes.
    Reservation reserve(std::size_t size) const {
        void* data = nullptr;
        detail::check(shmds_sender_reserve(get(), size, &data, -1));
        return Reservation(get(), data, size);
    }
    /// Reserve room for `size` bytes, waiting up to `timeout`.
    template <class Rep, class Period>
    std::optional<Reservation> reserve_for(std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        void* data = nullptr;
        const int rc = shmds_sender_reserve(get(), size, &data, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return Reservation(get(), data, size);
    }

private:
    detail::Owned<ShmdsSender, shmds_sender_close> h_;
};

/// An attached receiving end of a channel (Channel::receiver()); detaches
/// when destroyed. An empty channel is nullopt from the try_ and _for
/// forms; SHMDS_E_DISCONNECTED (empty and no sender left) and
/// SHMDS_E_SHUT_DOWN (drained after a shutdown) throw. (The library looks
/// at the peers' liveness in a try_ call only now and then, so a try_
/// call may report empty for a while before it reports disconnected; a
/// waiting call reports it before it sleeps.) Copying receives
/// size their buffer with the C protocol (SHMDS_E_BUFFER_TOO_SMALL and the
/// length needed, then a retry); recv_ref and try_recv_ref receive in
/// place, without a copy.
class Receiver {
public:
    /// Take ownership of a C handle (NULL: an empty handle); receive
    /// buffers start at `initial_buffer` bytes.
    explicit Receiver(ShmdsReceiver* h = nullptr, std::size_t initial_buffer = initial_receive_buffer) noexcept
        : h_(h), initial_(initial_buffer) {}
    Receiver(Receiver&&) noexcept = default;
    Receiver& operator=(Receiver&&) noexcept = default;
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;
    ~Receiver() = default;

    /// The C handle (still owned by this object).
    ShmdsReceiver* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsReceiver* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// The next message if one is there now (nullopt if empty). Never sleeps.
    std::optional<std::vector<std::uint8_t>> try_recv() const { return receive(false, 0); }
    /// The next message, waiting as long as it takes.
    std::vector<std::uint8_t> recv() const { return *receive(true, -1); }
    /// The next message, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::vector<std::uint8_t>> recv_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return receive(true, detail::to_ns(timeout));
    }

    /// Receive the next message into `buf` (`size` bytes; NULL allowed
    /// for 0) if one is there now: its length, or nullopt if empty. A
    /// returned length larger than `size` means it did not fit: nothing was
    /// received, the message stays first in the channel, and a buffer of
    /// that many bytes takes it (the C SHMDS_E_BUFFER_TOO_SMALL protocol).
    std::optional<std::size_t> try_recv_into(void* buf, std::size_t size) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_try_recv(get(), buf, size, &len);
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }
    /// As try_recv_into, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::size_t> recv_into_for(void* buf, std::size_t size,
                                             const std::chrono::duration<Rep, Period>& timeout) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_recv(get(), buf, size, &len, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }
    /// As try_recv_into, waiting as long as it takes.
    std::size_t recv_into(void* buf, std::size_t size) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_recv(get(), buf, size, &len, -1);
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }

    /// The next message in place if one is there now (nullopt if empty).
    std::optional<Message> try_recv_ref() const {
        const void* data = nullptr;
        std::size_t len = 0;
        const int rc = shmds_receiver_try_recv_ref(get(), &data, &len);
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        detail::check(rc);
        return Message(get(), data, len);
    }
    /// The next message in place, waiting as long as it takes.
    Message recv_ref() const {
        const void* data = nullptr;
        std::size_t len = 0;
        detail::check(shmds_receiver_recv_ref(get(), &data, &len, -1));
        return Message(get(), data, len);
    }
    /// The next message in place, waiting up to `timeout`.
    template <class Rep, class Period>
    std::optional<Message> recv_ref_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const void* data = nullptr;
        std::size_t len = 0;
        const int rc = shmds_receiver_recv_ref(get(), &data, &len, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return Message(get(), data, len);
    }

private:
    /// One copying receive; timeout_ns < 0 waits forever. On
    /// SHMDS_E_BUFFER_TOO_SMALL the buffer grows to the length the C call
    /// reports and the receive is made again (another receiver may have
    /// taken that message meanwhile: then it is the next one's turn).
    std::optional<std::vector<std::uint8_t>> receive(bool wait, std::int64_t timeout_ns) const {
        const bool timed = wait && timeout_ns >= 0;
        const auto deadline = detail::deadline_in(timed ? timeout_ns : 0);
        std::vector<std::uint8_t> buf(initial_);
        for (;;) {
            std::size_t len = 0;
            const int rc = wait ? shmds_receiver_recv(get(), buf.data(), buf.size(), &len, timeout_ns)
                                : shmds_receiver_try_recv(get(), buf.data(), buf.size(), &len);
            if (rc == SHMDS_OK) {
                buf.resize(len);
                return buf;
            }
            if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > buf.size()) {
                buf.resize(len);
                if (timed) timeout_ns = detail::ns_until(deadline);
                continue;
            }
            if (rc == SHMDS_E_EMPTY || rc == SHMDS_E_TIMEOUT) return std::nullopt;
            detail::raise(rc);
        }
    }

    detail::Owned<ShmdsReceiver, shmds_receiver_close> h_;
    std::size_t initial_;
};

/// A bounded channel of variable-length messages (Segment::create_channel).
/// Attach senders and receivers to move messages; they stay usable after
/// the channel handle is closed.
class Channel {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Channel(ShmdsChannel* h = nullptr) noexcept : h_(h) {}
    Channel(Channel&&) noexcept = default;
    Channel& operator=(Channel&&) noexcept = default;
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;
    ~Channel() = default;

    /// The C handle (still owned by this object).
    ShmdsChannel* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsChannel* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Attach a sender (SHMDS_E_ALREADY_ATTACHED on an SPSC channel with a
    /// live one, SHMDS_E_TOO_MANY_ATTACHED past 32 processes).
    Sender sender() const {
        ShmdsSender* out = nullptr;
        detail::check(shmds_channel_attach_sender(get(), &out));
        return Sender(out);
    }
    /// Attach a receiver (refusals as for a sender).
    Receiver receiver() const {
        ShmdsReceiver* out = nullptr;
        detail::check(shmds_channel_attach_receiver(get(), &out));
        return Receiver(out, buffer_hint());
    }

    /// Shut the channel down for every process: sends throw
    /// SHMDS_E_SHUT_DOWN from now on; receivers get what is left, then the
    /// same.
    void shutdown() const { detail::check(shmds_channel_shutdown(get())); }
    /// Whether it was shut down.
    bool is_shut_down() const noexcept { return shmds_channel_is_shut_down(get()); }

    /// Messages held (approximate).
    std::size_t size() const noexcept { return shmds_channel_len(get()); }
    /// Whether no message is held.
    bool empty() const noexcept { return shmds_channel_is_empty(get()); }
    /// Whether not even an empty message fits.
    bool full() const noexcept { return shmds_channel_is_full(get()); }
    /// The ring's data capacity in bytes.
    std::uint64_t capacity() const noexcept { return shmds_channel_capacity(get()); }
    /// The largest message in bytes.
    std::uint64_t max_message() const noexcept { return shmds_channel_max_message(get()); }
    /// The C flags it was created with (SHMDS_SPSC, SHMDS_CHECKSUM).
    std::uint32_t flags() const noexcept { return shmds_channel_flags(get()); }
    /// Whether it is single-producer single-consumer.
    bool spsc() const noexcept { return (flags() & SHMDS_SPSC) != 0; }
    /// Whether its messages carry a checksum.
    bool checksum() const noexcept { return (flags() & SHMDS_CHECKSUM) != 0; }
    /// Throws Error (SHMDS_E_STALE) once the channel was erased.
    void check() const { detail::check(shmds_channel_check(get())); }

private:
    std::size_t buffer_hint() const noexcept {
        const std::uint64_t m = max_message();
        return static_cast<std::size_t>(std::min<std::uint64_t>(m, initial_receive_buffer));
    }
    detail::Owned<ShmdsChannel, shmds_channel_close> h_;
};

// ======================================================================
// Topics
// ======================================================================

/// How to create a topic: the largest message (0: the default, half the
/// capacity) and a CRC32C per message.
struct TopicOptions {
    std::uint64_t max_message = 0;
    bool checksum = false;

    /// The C flags.
    std::uint32_t flags() const noexcept { return checksum ? static_cast<std::uint32_t>(SHMDS_CHECKSUM) : 0u; }
};

/// A message received from a topic: its bytes, its sequence number, and
/// how many messages this subscriber lost (overwritten before it read
/// them) just before this one.
struct TopicMessage {
    std::vector<std::uint8_t> data;
    std::uint64_t seq = 0;
    std::uint64_t missed = 0;
};

/// Room reserved for one message of a topic (Topic::reserve): write it,
/// then commit() publishes it. The topic's publish lock is held until
/// then; destroyed uncommitted, it is aborted. It must not outlive its
/// Topic handle. Move-only.
class TopicReservation {
public:
    TopicReservation() noexcept = default;
    TopicReservation(TopicReservation&& o) noexcept
        : t_(std::exchange(o.t_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    TopicReservation& operator=(TopicReservation&& o) noexcept {
        if (this != &o) {
            reset();
            t_ = std::exchange(o.t_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    TopicReservation(const TopicReservation&) = delete;
    TopicReservation& operator=(const TopicReservation&) = delete;
    /// Aborts an uncommitted reservation (errors ignored).
    ~TopicReservation() { reset(); }

    /// The reserved bytes.
    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(data_); }
    /// The message's length.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is still open.
    explicit operator bool() const noexcept { return t_ != nullptr; }

    /// Publish the written bytes; returns the message's sequence number.
    std::uint64_t commit() {
        const ShmdsTopic* t = take();
        std::uint64_t seq = 0;
        detail::check(shmds_topic_commit(t, &seq));
        return seq;
    }
    /// Drop the message unpublished.
    void abort() { detail::check(shmds_topic_abort(take())); }

private:
    friend class Topic;
    TopicReservation(const ShmdsTopic* t, void* data, std::size_t size) noexcept : t_(t), data_(data), size_(size) {}
    const ShmdsTopic* take() {
        if (t_ == nullptr) throw Error(SHMDS_E_INVALID, "no open reservation");
        data_ = nullptr;
        size_ = 0;
        return std::exchange(t_, nullptr);
    }
    void reset() noexcept {
        if (t_ != nullptr) (void)shmds_topic_abort(t_);
        t_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsTopic* t_ = nullptr;
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// A reader of a topic with its own position (Topic::subscribe). Nothing
/// new is nullopt from the try_ and _for forms. Falling behind
/// (SHMDS_E_LAGGED in C) does not throw: the count of lost messages is
/// carried into the `missed` of the next message returned, which is the
/// oldest one the topic still holds.
class Subscriber {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Subscriber(ShmdsSubscriber* h = nullptr, std::size_t initial_buffer = initial_receive_buffer) noexcept
        : h_(h), initial_(initial_buffer) {}
    Subscriber(Subscriber&& o) noexcept
        : h_(std::move(o.h_)), initial_(o.initial_), missed_(o.missed_.exchange(0)) {}
    Subscriber& operator=(Subscriber&& o) noexcept {
        h_ = std::move(o.h_);
        initial_ = o.initial_;
        missed_.store(o.missed_.exchange(0));
        return *this;
    }
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    ~Subscriber() = default;

    /// The C handle (still owned by this object).
    ShmdsSubscriber* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSubscriber* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// The next message if there is one now (nullopt if none). Never sleeps.
    std::optional<TopicMessage> try_recv() const { return receive(Mode::now, 0); }
    /// The next message, waiting as long as it takes.
    TopicMessage recv() const { return *receive(Mode::wait, -1); }
    /// The next message, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<TopicMessage> recv_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return receive(Mode::wait, detail::to_ns(timeout));
    }
    /// The newest message, skipping every one before it (nullopt if
    /// nothing was published yet). Never sleeps.
    std::optional<TopicMessage> recv_latest() const { return receive(Mode::latest, 0); }

    /// Messages published that it has not read yet (an estimate).
    std::uint64_t pending() const noexcept { return shmds_subscriber_pending(get()); }

private:
    enum class Mode { now, wait, latest };

    std::optional<TopicMessage> receive(Mode mode, std::int64_t timeout_ns) const {
        const bool timed = mode == Mode::wait && timeout_ns >= 0;
        const auto deadline = detail::deadline_in(timed ? timeout_ns : 0);
        TopicMessage m;
        m.data.resize(initial_);
        for (;;) {
            std::size_t len = 0;
            std::uint64_t seq = 0, missed = 0;
            int rc;
            switch (mode) {
            case Mode::now:
                rc = shmds_subscriber_try_recv(get(), m.data.data(), m.data.size(), &len, &seq, &missed);
                break;
            case Mode::wait:
                rc = shmds_subscriber_recv(get(), m.data.data(), m.data.size(), &len, &seq, &missed, timeout_ns);
                break;
            default:
                rc = shmds_subscriber_recv_latest(get(), m.data.data(), m.data.size(), &len, &seq);
                break;
            }
            if (rc == SHMDS_OK) {
                m.data.resize(len);
                m.seq = seq;
                m.missed = missed_.exchange(0) + missed;
                return m;
            }
            if (rc == SHMDS_E_LAGGED) {
                missed_.fetch_add(missed);
            } else if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > m.data.size()) {
                m.data.resize(len);
            } else if (rc == SHMDS_E_EMPTY || rc == SHMDS_E_TIMEOUT) {
                return std::nullopt;
            } else {
                detail::raise(rc);
            }
            if (timed) timeout_ns = detail::ns_until(deadline);
        }
    }

    detail::Owned<ShmdsSubscriber, shmds_subscriber_close> h_;
    std::size_t initial_;
    mutable std::atomic<std::uint64_t> missed_{0};  // lost before the next message returned
};

/// A broadcast topic of variable-length messages (Segment::create_topic):
/// publish to every subscriber; the oldest messages are overwritten.
class Topic {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Topic(ShmdsTopic* h = nullptr) noexcept : h_(h) {}
    Topic(Topic&&) noexcept = default;
    Topic& operator=(Topic&&) noexcept = default;
    Topic(const Topic&) = delete;
    Topic& operator=(const Topic&) = delete;
    ~Topic() = default;

    /// The C handle (still owned by this object).
    ShmdsTopic* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsTopic* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Publish `msg`, waiting for another publisher as long as it takes
    /// (never for subscribers); returns its sequence number.
    std::uint64_t publish(Bytes msg) const {
        std::uint64_t seq = 0;
        detail::check(shmds_topic_publish(get(), msg.data(), msg.size(), &seq, -1));
        return seq;
    }
    /// Publish `size` bytes at `data`.
    std::uint64_t publish(const void* data, std::size_t size) const { return publish(Bytes(data, size)); }
    /// Publish `msg`, waiting for another publisher up to `timeout`
    /// (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::uint64_t> publish_for(Bytes msg, const std::chrono::duration<Rep, Period>& timeout) const {
        std::uint64_t seq = 0;
        const int rc = shmds_topic_publish(get(), msg.data(), msg.size(), &seq, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return seq;
    }

    /// Reserve room for a message of `size` bytes (holding the publish
    /// lock until commit or abort), waiting as long as it takes.
    TopicReservation reserve(std::size_t size) const {
        void* data = nullptr;
        detail::check(shmds_topic_reserve(get(), size, &data, -1));
        return TopicReservation(get(), data, size);
    }
    /// As reserve(), waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<TopicReservation> reserve_for(std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        void* data = nullptr;
        const int rc = shmds_topic_reserve(get(), size, &data, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return TopicReservation(get(), data, size);
    }

    /// The newest message and its sequence number (missed is 0), or nullopt
    /// if nothing was published yet.
    std::optional<TopicMessage> latest() const {
        TopicMessage m;
        m.data.resize(buffer_hint());
        for (;;) {
            std::size_t len = 0;
            const int rc = shmds_topic_latest(get(), m.data.data(), m.data.size(), &len, &m.seq);
            if (rc == SHMDS_OK) {
                m.data.resize(len);
                return m;
            }
            if (rc == SHMDS_E_EMPTY) return std::nullopt;
            if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > m.data.size()) {
                m.data.resize(len);
                continue;
            }
            detail::raise(rc);
        }
    }

    /// A subscriber receiving what is published from now on, or with
    /// `from_oldest` from the oldest message the topic still holds.
    Subscriber subscribe(bool from_oldest = false) const {
        ShmdsSubscriber* out = nullptr;
        detail::check(shmds_topic_subscribe(get(), from_oldest, &out));
        return Subscriber(out, buffer_hint());
    }

    /// Messages published since it was created (the next sequence number).
    std::uint64_t published() const noexcept { return shmds_topic_published(get()); }
    /// Messages held.
    std::size_t size() const noexcept { return shmds_topic_len(get()); }
    /// Whether no message is held.
    bool empty() const noexcept { return shmds_topic_is_empty(get()); }
    /// The ring's data capacity in bytes.
    std::uint64_t capacity() const noexcept { return shmds_topic_capacity(get()); }
    /// The largest message in bytes.
    std::uint64_t max_message() const noexcept { return shmds_topic_max_message(get()); }
    /// The C flags it was created with (SHMDS_CHECKSUM).
    std::uint32_t flags() const noexcept { return shmds_topic_flags(get()); }
    /// Throws Error (SHMDS_E_STALE) once the topic was erased.
    void check() const { detail::check(shmds_topic_check(get())); }

private:
    std::size_t buffer_hint() const noexcept {
        return static_cast<std::size_t>(std::min<std::uint64_t>(max_message(), initial_receive_buffer));
    }
    detail::Owned<ShmdsTopic, shmds_topic_close> h_;
};

// ======================================================================
// Coordination primitives
// ======================================================================

/// How an acquisition of a robust lock ended.
enum class LockResult {
    /// Taken.
    acquired,
    /// Taken, but its previous holder died holding it: what it guards may
    /// be half-updated (SHMDS_E_OWNER_DEAD).
    owner_died,
    /// Not taken: the time ran out (SHMDS_E_TIMEOUT).
    timed_out,
};

namespace detail {

/// A lock acquisition's result from its C code (other failures throw).
inline LockResult lock_result(int rc) {
    if (rc == SHMDS_OK) return LockResult::acquired;
    if (rc == SHMDS_E_OWNER_DEAD) return LockResult::owner_died;
    if (rc == SHMDS_E_TIMEOUT) return LockResult::timed_out;
    raise(rc);
}

/// The flag a robust lock handle keeps: whether its last acquisition took
/// the lock over from a dead holder. Movable (an atomic is not).
class DeathFlag {
public:
    DeathFlag() noexcept = default;
    DeathFlag(DeathFlag&& o) noexcept : v_(o.v_.load()) {}
    DeathFlag& operator=(DeathFlag&& o) noexcept {
        v_.store(o.v_.load());
        return *this;
    }
    /// Record `r`; whether it took the lock.
    bool note(LockResult r) noexcept {
        if (r != LockResult::timed_out) v_.store(r == LockResult::owner_died);
        return r != LockResult::timed_out;
    }
    bool get() const noexcept { return v_.load(); }

private:
    std::atomic<bool> v_{false};
};

}  // namespace detail

/// A robust lock shared by processes (Segment::create_lock), with the
/// standard Lockable / TimedLockable shape (lock, try_lock, try_lock_for,
/// try_lock_until, unlock), so std::lock_guard and std::unique_lock work.
///
/// A holder's death: when the previous holder died holding it, lock() and
/// the try_ forms still take the lock and return normally (true), and
/// owner_died() is true until the next acquisition through this handle:
/// check it after taking the lock to repair what it guards. acquire() and
/// acquire_for() return the outcome directly (LockResult::owner_died),
/// which is the race-free way when several threads share one handle.
/// Not reentrant. unlock() throws SHMDS_E_NOT_OWNER when this process
/// does not hold it (inside a std::lock_guard that terminates: don't
/// unlock a guarded lock by hand).
class Lock {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Lock(ShmdsLock* h = nullptr) noexcept : h_(h) {}
    Lock(Lock&&) noexcept = default;
    Lock& operator=(Lock&&) noexcept = default;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    /// Closes the handle; a lock held stays held (see shmds_lock_close).
    ~Lock() = default;

    /// The C handle (still owned by this object).
    ShmdsLock* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsLock* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Take the lock, waiting as long as it takes.
    void lock() { died_.note(detail::lock_result(shmds_lock_acquire(get(), -1))); }
    /// Take the lock if it is free now.
    bool try_lock() { return died_.note(detail::lock_result(shmds_lock_acquire(get(), 0))); }
    /// Take the lock, waiting up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return died_.note(detail::lock_result(shmds_lock_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take the lock, waiting until `deadline` (false if it passed).
    template <class Clock, class Dur>
    bool try_lock_until(const std::chrono::time_point<Clock, Dur>& deadline) {
        return died_.note(detail::lock_result(shmds_lock_acquire(get(), detail::ns_until(deadline))));
    }
    /// Release the lock this process holds.
    void unlock() { detail::check(shmds_lock_release(get())); }

    /// Take the lock, waiting as long as it takes: acquired or owner_died.
    LockResult acquire() { return note(detail::lock_result(shmds_lock_acquire(get(), -1))); }
    /// Take the lock, waiting up to `timeout`: acquired, owner_died or timed_out.
    template <class Rep, class Period>
    LockResult acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
        return note(detail::lock_result(shmds_lock_acquire(get(), detail::to_ns(timeout))));
    }

    /// Whether the last acquisition through this handle took the lock over
    /// from a holder that died.
    bool owner_died() const noexcept { return died_.get(); }
    /// Whether some process holds it now.
    bool is_locked() const noexcept { return shmds_lock_is_locked(get()); }
    /// The holder's pid (0 when free).
    std::uint32_t holder_pid() const {
        std::uint32_t pid = 0;
        detail::check(shmds_lock_holder(get(), &pid, nullptr));
        return pid;
    }
    /// How often it was taken over from a holder that died.
    std::uint64_t owner_deaths() const noexcept { return shmds_lock_owner_deaths(get()); }

private:
    LockResult note(LockResult r) {
        died_.note(r);
        return r;
    }
    detail::Owned<ShmdsLock, shmds_lock_close> h_;
    detail::DeathFlag died_;
};

/// A readers-writer lock (Segment::create_rwlock) with the standard
/// SharedTimedMutex shape: lock/try_lock/try_lock_for/unlock for the write
/// lock, lock_shared/try_lock_shared/try_lock_shared_for/unlock_shared for
/// a read lock, so std::unique_lock and std::shared_lock work. A writer's
/// death is surfaced as for Lock (owner_died(), or the LockResult of
/// acquire_write / acquire_read). SHMDS_E_READER_SLOTS_FULL throws.
class RwLock {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit RwLock(ShmdsRwLock* h = nullptr) noexcept : h_(h) {}
    RwLock(RwLock&&) noexcept = default;
    RwLock& operator=(RwLock&&) noexcept = default;
    RwLock(const RwLock&) = delete;
    RwLock& operator=(const RwLock&) = delete;
    ~RwLock() = default;

    /// The C handle (still owned by this object).
    ShmdsRwLock* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsRwLock* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Take the write lock, waiting as long as it takes.
    void lock() { died_.note(detail::lock_result(shmds_rwlock_write_acquire(get(), -1))); }
    /// Take the write lock if that needs no wait.
    bool try_lock() { return died_.note(detail::lock_result(shmds_rwlock_write_acquire(get(), 0))); }
    /// Take the write lock, waiting up to `timeout`.
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return died_.note(detail::lock_result(shmds_rwlock_write_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take the write lock, waiting until `deadline`.
    template <class Clock, class Dur>
    bool try_lock_until(const std::chrono::time_point<Clock, Dur>& deadline) {
        return died_.note(detail::lock_result(shmds_rwlock_write_acquire(get(), detail::ns_until(deadline))));
    }
    /// Release the write lock.
    void unlock() { detail::check(shmds_rwlock_write_release(get())); }

    /// Take a read lock, waiting as long as it takes.
    void lock_shared() { died_.note(detail::lock_result(shmds_rwlock_read_acquire(get(), -1))); }
    /// Take a read lock if that needs no wait.
    bool try_lock_shared() { return died_.note(detail::lock_result(shmds_rwlock_read_acquire(get(), 0))); }
    /// Take a read lock, waiting up to `timeout`.
    template <class Rep, class Period>
    bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& timeout) {
        return died_.note(detail::lock_result(shmds_rwlock_read_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take a read lock, waiting until `deadline`.
    template <class Clock, class Dur>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Dur>& deadline) {
        return died_.note(detail::lock_result(shmds_rwlock_read_acquire(get(), detail::ns_until(deadline))));
    }
    /// Release a read lock.
    void unlock_shared() { detail::check(shmds_rwlock_read_release(get())); }

    /// Take the write lock, waiting up to `timeout` (negative durations
    /// are 0): the outcome.
    template <class Rep, class Period>
    LockResult acquire_write_for(const std::chrono::duration<Rep, Period>& timeout) {
        return note(detail::lock_result(shmds_rwlock_write_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take the write lock, waiting as long as it takes: the outcome.
    LockResult acquire_write() { return note(detail::lock_result(shmds_rwlock_write_acquire(get(), -1))); }
    /// Take a read lock, waiting up to `timeout`: the outcome.
    template <class Rep, class Period>
    LockResult acquire_read_for(const std::chrono::duration<Rep, Period>& timeout) {
        return note(detail::lock_result(shmds_rwlock_read_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take a read lock, waiting as long as it takes: the outcome.
    LockResult acquire_read() { return note(detail::lock_result(shmds_rwlock_read_acquire(get(), -1))); }

    /// Whether the last acquisition through this handle followed a writer's death.
    bool owner_died() const noexcept { return died_.get(); }
    /// Read locks held now, by all processes.
    std::uint64_t readers() const noexcept { return shmds_rwlock_readers(get()); }
    /// The pid of the writer holding (or draining readers for) it, 0 if none.
    std::uint32_t writer() const noexcept { return shmds_rwlock_writer(get()); }

private:
    LockResult note(LockResult r) {
        died_.note(r);
        return r;
    }
    detail::Owned<ShmdsRwLock, shmds_rwlock_close> h_;
    detail::DeathFlag died_;
};

/// A condition variable with its own robust lock
/// (Segment::create_condition), as Python's threading.Condition: it is
/// itself Lockable (lock/try_lock/try_lock_for/unlock, for std::lock_guard
/// and std::unique_lock), and wait/wait_for/notify are called with that
/// lock held. A holder's death is surfaced as for Lock (owner_died()).
class Condition {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Condition(ShmdsCondition* h = nullptr) noexcept : h_(h) {}
    Condition(Condition&&) noexcept = default;
    Condition& operator=(Condition&&) noexcept = default;
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;
    ~Condition() = default;

    /// The C handle (still owned by this object).
    ShmdsCondition* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsCondition* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Take its lock, waiting as long as it takes.
    void lock() { died_.note(detail::lock_result(shmds_condition_acquire(get(), -1))); }
    /// Take its lock if it is free now.
    bool try_lock() { return died_.note(detail::lock_result(shmds_condition_acquire(get(), 0))); }
    /// Take its lock, waiting up to `timeout`.
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return died_.note(detail::lock_result(shmds_condition_acquire(get(), detail::to_ns(timeout))));
    }
    /// Take its lock, waiting until `deadline`.
    template <class Clock, class Dur>
    bool try_lock_until(const std::chrono::time_point<Clock, Dur>& deadline) {
        return died_.note(detail::lock_result(shmds_condition_acquire(get(), detail::ns_until(deadline))));
    }
    /// Release its lock.
    void unlock() { detail::check(shmds_condition_release(get())); }

    /// With the lock held: release it, wait for a notify, take it again.
    /// Wake-ups may be spurious: wait in a loop (or use wait(pred)).
    void wait() { wait_ns(-1); }
    /// As wait(), up to `timeout`: false if the time ran out (the lock is
    /// held again either way).
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
        return wait_ns(detail::to_ns(timeout));
    }
    /// With the lock held: wait until `pred()` is true.
    template <class Pred>
    void wait(Pred pred) {
        while (!pred()) wait_ns(-1);
    }
    /// With the lock held: wait until `pred()` is true, up to `timeout`;
    /// returns pred() at the end.
    template <class Rep, class Period, class Pred>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout, Pred pred) {
        const auto deadline = detail::deadline_in(detail::to_ns(timeout));
        while (!pred()) {
            const std::int64_t left = detail::ns_until(deadline);
            if (left == 0) return pred();
            wait_ns(left);
        }
        return true;
    }

    /// Wake one waiter.
    void notify_one() const { detail::check(shmds_condition_notify(get(), 1)); }
    /// Wake up to `n` waiters.
    void notify(std::uint32_t n) const { detail::check(shmds_condition_notify(get(), n)); }
    /// Wake every waiter.
    void notify_all() const { detail::check(shmds_condition_notify_all(get())); }

    /// Whether the last acquisition (or re-acquisition in a wait) through
    /// this handle took the lock over from a holder that died.
    bool owner_died() const noexcept { return died_.get(); }

private:
    /// false on timeout; SHMDS_E_OWNER_DEAD counts as a wake-up (noted).
    bool wait_ns(std::int64_t ns) {
        const int rc = shmds_condition_wait(get(), ns);
        if (rc == SHMDS_E_TIMEOUT) return false;
        if (rc == SHMDS_E_OWNER_DEAD) {
            died_.note(LockResult::owner_died);
            return true;
        }
        detail::check(rc);
        died_.note(LockResult::acquired);
        return true;
    }
    detail::Owned<ShmdsCondition, shmds_condition_close> h_;
    detail::DeathFlag died_;
};

/// A counting semaphore (Segment::create_semaphore), bounded or not
/// (create_bounded_semaphore: a release past the initial value throws
/// SHMDS_E_TOO_MANY_RELEASES). The shape of std::counting_semaphore.
/// A permit is not given back when its process dies.
class Semaphore {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Semaphore(ShmdsSemaphore* h = nullptr) noexcept : h_(h) {}
    Semaphore(Semaphore&&) noexcept = default;
    Semaphore& operator=(Semaphore&&) noexcept = default;
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    ~Semaphore() = default;

    /// The C handle (still owned by this object).
    ShmdsSemaphore* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSemaphore* release_handle() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Take a permit, waiting as long as it takes.
    void acquire() const { detail::check(shmds_semaphore_acquire(get(), -1)); }
    /// Take a permit if one is free now.
    bool try_acquire() const { return timed(0); }
    /// Take a permit, waiting up to `timeout` (false if none came).
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return timed(detail::to_ns(timeout));
    }
    /// Take a permit, waiting until `deadline`.
    template <class Clock, class Dur>
    bool try_acquire_until(const std::chrono::time_point<Clock, Dur>& deadline) const {
        return timed(detail::ns_until(deadline));
    }
    /// Add `n` permits, waking as many waiters.
    void release(std::uint32_t n = 1) const { detail::check(shmds_semaphore_release(get(), n)); }
    /// Permits free now.
    std::uint32_t value() const noexcept { return shmds_semaphore_value(get()); }

private:
    bool timed(std::int64_t ns) const {
        const int rc = shmds_semaphore_acquire(get(), ns);
        if (rc == SHMDS_E_TIMEOUT) return false;
        detail::check(rc);
        return true;
    }
    detail::Owned<ShmdsSemaphore, shmds_semaphore_close> h_;
};

/// A reusable barrier for a fixed number of parties
/// (Segment::create_barrier). A broken barrier (aborted, a wait timed
/// out, a waiting party died) makes wait throw SHMDS_E_BROKEN until reset().
class Barrier {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Barrier(ShmdsBarrier* h = nullptr) noexcept : h_(h) {}
    Barrier(Barrier&&) noexcept = default;
    Barrier& operator=(Barrier&&) noexcept = default;
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;
    ~Barrier() = default;

    /// The C handle (still owned by this object).
    ShmdsBarrier* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsBarrier* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Wait until all parties arrived; returns the arrival index (0 for
    /// the first, parties() - 1 for the last, which tripped it).
    std::uint32_t wait() const {
        std::uint32_t index = 0;
        detail::check(shmds_barrier_wait(get(), -1, &index));
        return index;
    }
    /// As wait(), up to `timeout`: nullopt if it passed (the barrier is
    /// then broken for all parties).
    template <class Rep, class Period>
    std::optional<std::uint32_t> wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
        std::uint32_t index = 0;
        const int rc = shmds_barrier_wait(get(), detail::to_ns(timeout), &index);
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return index;
    }
    /// Break it: every waiter and every wait until reset() throws SHMDS_E_BROKEN.
    void abort() const { detail::check(shmds_barrier_abort(get())); }
    /// Make it new: not broken, nobody waiting.
    void reset() const { detail::check(shmds_barrier_reset(get())); }
    /// Parties needed to trip it.
    std::uint32_t parties() const noexcept { return shmds_barrier_parties(get()); }
    /// Parties waiting now.
    std::uint32_t n_waiting() const noexcept { return shmds_barrier_n_waiting(get()); }
    /// Whether it is broken.
    bool is_broken() const noexcept { return shmds_barrier_is_broken(get()); }

private:
    detail::Owned<ShmdsBarrier, shmds_barrier_close> h_;
};

/// An event flag (Segment::create_event), as Python's threading.Event.
class Event {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Event(ShmdsEvent* h = nullptr) noexcept : h_(h) {}
    Event(Event&&) noexcept = default;
    Event& operator=(Event&&) noexcept = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() = default;

    /// The C handle (still owned by this object).
    ShmdsEvent* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsEvent* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Set it, waking every waiter.
    void set() const { detail::check(shmds_event_set(get())); }
    /// Clear it.
    void clear() const { detail::check(shmds_event_clear(get())); }
    /// Whether it is set.
    bool is_set() const noexcept { return shmds_event_is_set(get()); }
    /// Wait until it is set.
    void wait() const { detail::check(shmds_event_wait(get(), -1)); }
    /// Wait until it is set, up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = shmds_event_wait(get(), detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return false;
        detail::check(rc);
        return true;
    }

private:
    detail::Owned<ShmdsEvent, shmds_event_close> h_;
};

/// A count-down latch (Segment::create_latch): waiters wait until its
/// count reaches 0, then it stays open.
class Latch {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Latch(ShmdsLatch* h = nullptr) noexcept : h_(h) {}
    Latch(Latch&&) noexcept = default;
    Latch& operator=(Latch&&) noexcept = default;
    Latch(const Latch&) = delete;
    Latch& operator=(const Latch&) = delete;
    ~Latch() = default;

    /// The C handle (still owned by this object).
    ShmdsLatch* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsLatch* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Count down by `n` (SHMDS_E_INVALID, changing nothing, past 0).
    void count_down(std::uint32_t n = 1) const { detail::check(shmds_latch_count_down(get(), n)); }
    /// Count-downs still awaited.
    std::uint32_t count() const noexcept { return shmds_latch_count(get()); }
    /// Whether it is open, without waiting.
    bool try_wait() const { return wait_ns(0); }
    /// Wait until it is open.
    void wait() const { detail::check(shmds_latch_wait(get(), -1)); }
    /// Wait until it is open, up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return wait_ns(detail::to_ns(timeout));
    }
    /// Count down by `n`, then wait until it is open.
    void arrive_and_wait(std::uint32_t n = 1) const {
        count_down(n);
        wait();
    }

private:
    bool wait_ns(std::int64_t ns) const {
        const int rc = shmds_latch_wait(get(), ns);
        if (rc == SHMDS_E_TIMEOUT) return false;
        detail::check(rc);
        return true;
    }
    detail::Owned<ShmdsLatch, shmds_latch_close> h_;
};

/// A run-once cell (Segment::create_once): one initialiser run among all
/// processes. call(f) is the std::call_once of it; begin()/finish() the
/// protocol underneath. A run whose process dies, or that finishes undone
/// (f threw), is left to the next caller.
class Once {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Once(ShmdsOnce* h = nullptr) noexcept : h_(h) {}
    Once(Once&&) noexcept = default;
    Once& operator=(Once&&) noexcept = default;
    Once(const Once&) = delete;
    Once& operator=(const Once&) = delete;
    ~Once() = default;

    /// The C handle (still owned by this object).
    ShmdsOnce* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsOnce* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Run `f` unless it (or another process's run) has run: true if `f`
    /// ran here and finished. Waits while another process runs it. If `f`
    /// throws, the run is left to the next caller and the exception passes on.
    template <class F>
    bool call(F&& f) const {
        if (!begin()) return false;
        run(std::forward<F>(f));
        return true;
    }
    /// As call(f), waiting up to `timeout` for another process's run:
    /// nullopt if it did not end in time.
    template <class Rep, class Period, class F>
    std::optional<bool> call_for(const std::chrono::duration<Rep, Period>& timeout, F&& f) const {
        const std::optional<bool> go = begin_for(timeout);
        if (!go) return std::nullopt;
        if (!*go) return false;
        run(std::forward<F>(f));
        return true;
    }

    /// Begin the initialiser, waiting while another process runs it: true
    /// means run it now, then finish(); false means it has run.
    bool begin() const { return detail::check(shmds_once_begin(get(), -1)) == 1; }
    /// As begin(), waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<bool> begin_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = shmds_once_begin(get(), detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        return detail::check(rc) == 1;
    }
    /// End the run begun: `done` marks it run for good, false leaves it to
    /// the next caller.
    void finish(bool done) const { detail::check(shmds_once_finish(get(), done)); }
    /// Whether the initialiser has run.
    bool is_done() const noexcept { return shmds_once_is_done(get()); }

private:
    template <class F>
    void run(F&& f) const {
        try {
            std::forward<F>(f)();
        } catch (...) {
            (void)shmds_once_finish(get(), false);
            throw;
        }
        finish(true);
    }
    detail::Owned<ShmdsOnce, shmds_once_close> h_;
};

// ======================================================================
// Segment
// ======================================================================

/// How to create or open a segment (the C ShmdsSegmentOptions; 0 is the
/// default of each field).
struct SegmentOptions {
    /// Size of a new segment in bytes (rounded up to a page; 0: 1 MiB); a
    /// stated size refuses an existing segment whose maximum is smaller.
    std::uint64_t size = 0;
    /// The largest size a new segment grows to (0: 4 GiB, or size if larger).
    std::uint64_t max_size = 0;
    /// Entries in a new segment's table (0: 64).
    std::uint32_t table_capacity = 0;
    /// Permission bits of a new segment (0: 0600).
    std::uint32_t mode = 0;
    /// Remove it when the last attached process closes it or dies (SHMDS_TEMPORARY).
    bool temporary = false;
    /// Zero every structure's memory when it is erased (SHMDS_WIPE_ON_ERASE).
    bool wipe_on_erase = false;
    /// Map it read-only, for inspection (SHMDS_READ_ONLY; open_with only).
    bool read_only = false;

    /// The C options.
    ShmdsSegmentOptions to_c() const noexcept {
        ShmdsSegmentOptions o{};
        o.size = size;
        o.max_size = max_size;
        o.table_capacity = table_capacity;
        o.mode = mode;
        o.flags = (temporary ? static_cast<std::uint32_t>(SHMDS_TEMPORARY) : 0u) |
                  (wipe_on_erase ? static_cast<std::uint32_t>(SHMDS_WIPE_ON_ERASE) : 0u) |
                  (read_only ? static_cast<std::uint32_t>(SHMDS_READ_ONLY) : 0u);
        return o;
    }
};

/// One structure in a segment's table (Segment::entries).
struct EntryInfo {
    std::string name;
    /// One of SHMDS_KIND_*.
    std::uint32_t kind = 0;
    /// Size of an element (a map's value) in bytes.
    std::uint32_t elem_size = 0;
    /// Size of a map's or set's key in bytes (0 for other kinds).
    std::uint32_t key_size = 0;
    /// Array length, or queue, stack, map or set capacity.
    std::uint64_t capacity = 0;
    /// Size of the structure's block in bytes.
    std::uint64_t bytes = 0;
    /// The element (value) type descriptor.
    std::string elem_type;
    /// The key type descriptor (maps, sets).
    std::string key_type;
};

/// An attached segment (a named region of POSIX shared memory) and the
/// factory of the structures in it. Structure handles keep the segment
/// mapped, so a Segment may be destroyed before them.
class Segment {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Segment(ShmdsSegment* h = nullptr) noexcept : h_(h) {}
    Segment(Segment&&) noexcept = default;
    Segment& operator=(Segment&&) noexcept = default;
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;
    /// Closes the handle; the segment stays (see remove()).
    ~Segment() = default;

    /// The C handle (still owned by this object).
    ShmdsSegment* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSegment* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    // ---------------------------------------------------------- lifetime

    /// Create the segment `name` of `size` bytes (SHMDS_E_EXISTS if it exists).
    static Segment create(const std::string& name, std::uint64_t size) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_create(name.c_str(), size, &out));
        return Segment(out);
    }
    /// Open the existing segment `name`.
    static Segment open(const std::string& name) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_open(name.c_str(), &out));
        return Segment(out);
    }
    /// Open the segment `name`, creating it with `size` bytes if there is
    /// none. An existing one is accepted if it can grow to `size` (else
    /// SHMDS_E_SHAPE): segments grow, so its current size may differ.
    static Segment open_or_create(const std::string& name, std::uint64_t size) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_open_or_create(name.c_str(), size, &out));
        return Segment(out);
    }
    /// Create the segment `name` as `opts` says.
    static Segment create_with(const std::string& name, const SegmentOptions& opts) {
        return create_with(name, opts.to_c());
    }
    /// Create the segment `name` as the C `opts` says.
    static Segment create_with(const std::string& name, const ShmdsSegmentOptions& opts) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_create_with(name.c_str(), &opts, &out));
        return Segment(out);
    }
    /// Open the existing segment `name` as `opts` says (read_only, the
    /// maximum size and table capacity it must have).
    static Segment open_with(const std::string& name, const SegmentOptions& opts) {
        return open_with(name, opts.to_c());
    }
    /// Open the existing segment `name` as the C `opts` says.
    static Segment open_with(const std::string& name, const ShmdsSegmentOptions& opts) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_open_with(name.c_str(), &opts, &out));
        return Segment(out);
    }
    /// Open the segment `name`, creating it as `opts` says if there is none.
    static Segment open_or_create_with(const std::string& name, const SegmentOptions& opts) {
        return open_or_create_with(name, opts.to_c());
    }
    /// Open the segment `name`, creating it as the C `opts` says if there is none.
    static Segment open_or_create_with(const std::string& name, const ShmdsSegmentOptions& opts) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_segment_open_or_create_with(name.c_str(), &opts, &out));
        return Segment(out);
    }
    /// Remove the segment `name` from /dev/shm (attached processes keep
    /// their mapping): true if it existed, false if there was none.
    static bool remove(const std::string& name) {
        const int rc = shmds_segment_remove(name.c_str());
        if (rc == SHMDS_E_NOT_FOUND) return false;
        detail::check(rc);
        return true;
    }

    // ---------------------------------------------------------- the table

    /// Erase the structure `name` (open handles to it go stale): true if
    /// it existed, false if there was none.
    bool erase(const std::string& name) const { return erase_rc(shmds_segment_erase(get(), name.c_str())); }
    /// Erase the structure `name` and zero its memory: as erase().
    bool erase_and_wipe(const std::string& name) const {
        return erase_rc(shmds_segment_erase_wipe(get(), name.c_str()));
    }
    /// The structures in its table.
    std::vector<EntryInfo> entries() const {
        std::vector<ShmdsEntryInfo> raw;
        std::size_t count = 0;
        detail::check(shmds_segment_entries(get(), nullptr, 0, &count));
        while (count > raw.size()) {
            raw.resize(count + 4);
            detail::check(shmds_segment_entries(get(), raw.data(), raw.size() * sizeof(ShmdsEntryInfo), &count));
        }
        raw.resize(count);
        std::vector<EntryInfo> out;
        out.reserve(count);
        for (const ShmdsEntryInfo& e : raw) {
            EntryInfo i;
            i.name = detail::field_text(e.name, sizeof e.name);
            i.kind = e.kind;
            i.elem_size = e.elem_size;
            i.key_size = e.key_size;
            i.capacity = e.capacity;
            i.bytes = e.bytes;
            i.elem_type = detail::field_text(e.elem_type, sizeof e.elem_type);
            i.key_type = detail::field_text(e.key_type, sizeof e.key_type);
            out.push_back(std::move(i));
        }
        return out;
    }

    // ---------------------------------------------------------- about it

    /// Size in bytes.
    std::uint64_t size() const noexcept { return shmds_segment_size(get()); }
    /// Whether it is temporary (SHMDS_TEMPORARY).
    bool is_temporary() const { return detail::check(shmds_segment_is_temporary(get())) == 1; }
    /// Whether no live process is attached (a read-only handle does not attach).
    bool is_abandoned() const { return detail::check(shmds_segment_is_abandoned(get())) == 1; }
    /// Whether the process that created it still runs.
    bool creator_alive() const { return detail::check(shmds_segment_creator_alive(get())) == 1; }
    /// Live processes attached with a record.
    std::uint32_t attached() const {
        std::uint32_t live = 0;
        detail::check(shmds_segment_attached(get(), &live, nullptr));
        return live;
    }
    /// The first byte of the mapping (a shmds_segment_header), size() bytes.
    const void* base() const noexcept { return shmds_segment_base(get()); }

    // ---------------------------------------------------------- arrays

    /// Create the array `name` of `len` elements of T.
    template <class T>
    Array<T> create_array(const std::string& name, std::size_t len) const {
        return make_array<T>(name, len, false);
    }
    /// Open the existing array `name` of T (SHMDS_E_TYPE if it holds another type).
    template <class T>
    Array<T> open_array(const std::string& name) const {
        static_assert(detail::assert_element<T>(), "not an element type");
        ShmdsArray* out = nullptr;
        detail::check(shmds_array_open(get(), name.c_str(), sizeof(T), descriptor<T>().c_str(), &out));
        return Array<T>(out);
    }
    /// Open the array `name` of T, creating it with `len` elements if there
    /// is none (SHMDS_E_SHAPE for another length).
    template <class T>
    Array<T> open_or_create_array(const std::string& name, std::size_t len) const {
        return make_array<T>(name, len, true);
    }

    // ---------------------------------------------------------- queues, stacks

    /// Create the queue `name` holding at most `capacity` elements of T.
    template <class T>
    Queue<T> create_queue(const std::string& name, std::size_t capacity) const {
        return Queue<T>(make_ring<T>(&shmds_queue_create, name, capacity, false));
    }
    /// Open the existing queue `name` of T.
    template <class T>
    Queue<T> open_queue(const std::string& name) const {
        return Queue<T>(open_typed<T, ShmdsQueue>(&shmds_queue_open, name));
    }
    /// Open the queue `name` of T, creating it if there is none.
    template <class T>
    Queue<T> open_or_create_queue(const std::string& name, std::size_t capacity) const {
        return Queue<T>(make_ring<T>(&shmds_queue_create, name, capacity, true));
    }
    /// Create the stack `name` holding at most `capacity` elements of T.
    template <class T>
    Stack<T> create_stack(const std::string& name, std::size_t capacity) const {
        return Stack<T>(make_ring<T>(&shmds_stack_create, name, capacity, false));
    }
    /// Open the existing stack `name` of T.
    template <class T>
    Stack<T> open_stack(const std::string& name) const {
        return Stack<T>(open_typed<T, ShmdsStack>(&shmds_stack_open, name));
    }
    /// Open the stack `name` of T, creating it if there is none.
    template <class T>
    Stack<T> open_or_create_stack(const std::string& name, std::size_t capacity) const {
        return Stack<T>(make_ring<T>(&shmds_stack_create, name, capacity, true));
    }

    // ---------------------------------------------------------- maps, sets

    /// Create the map `name` from K to V holding at most `capacity` keys.
    template <class K, class V>
    Map<K, V> create_map(const std::string& name, std::size_t capacity) const {
        return make_map<K, V>(name, capacity, false);
    }
    /// Open the existing map `name` from K to V.
    template <class K, class V>
    Map<K, V> open_map(const std::string& name) const {
        static_assert(detail::assert_element<K>() && detail::assert_element<V>(), "not an element type");
        ShmdsMap* out = nullptr;
        detail::check(shmds_map_open(get(), name.c_str(), sizeof(K), descriptor<K>().c_str(), sizeof(V),
                                     descriptor<V>().c_str(), &out));
        return Map<K, V>(out);
    }
    /// Open the map `name` from K to V, creating it if there is none.
    template <class K, class V>
    Map<K, V> open_or_create_map(const std::string& name, std::size_t capacity) const {
        return make_map<K, V>(name, capacity, true);
    }
    /// Create the set `name` of K holding at most `capacity` keys.
    template <class K>
    Set<K> create_set(const std::string& name, std::size_t capacity) const {
        return make_set<K>(name, capacity, false);
    }
    /// Open the existing set `name` of K.
    template <class K>
    Set<K> open_set(const std::string& name) const {
        return Set<K>(open_typed<K, ShmdsSet>(&shmds_set_open, name));
    }
    /// Open the set `name` of K, creating it if there is none.
    template <class K>
    Set<K> open_or_create_set(const std::string& name, std::size_t capacity) const {
        return make_set<K>(name, capacity, true);
    }

    // ---------------------------------------------------------- channels, topics

    /// Create the channel `name` with `capacity` bytes of message data.
    Channel create_channel(const std::string& name, std::uint64_t capacity, const ChannelOptions& opts = {}) const {
        return make_channel(name, capacity, opts, false);
    }
    /// Open the existing channel `name`.
    Channel open_channel(const std::string& name) const {
        ShmdsChannel* out = nullptr;
        detail::check(shmds_channel_open(get(), name.c_str(), &out));
        return Channel(out);
    }
    /// Open the channel `name`, creating it if there is none (an existing
    /// one keeps its own max_message and flags: read them back).
    Channel open_or_create_channel(const std::string& name, std::uint64_t capacity,
                                   const ChannelOptions& opts = {}) const {
        return make_channel(name, capacity, opts, true);
    }
    /// Create the topic `name` with `capacity` bytes of message data.
    Topic create_topic(const std::string& name, std::uint64_t capacity, const TopicOptions& opts = {}) const {
        return make_topic(name, capacity, opts, false);
    }
    /// Open the existing topic `name`.
    Topic open_topic(const std::string& name) const {
        ShmdsTopic* out = nullptr;
        detail::check(shmds_topic_open(get(), name.c_str(), &out));
        return Topic(out);
    }
    /// Open the topic `name`, creating it if there is none.
    Topic open_or_create_topic(const std::string& name, std::uint64_t capacity, const TopicOptions& opts = {}) const {
        return make_topic(name, capacity, opts, true);
    }

    // ---------------------------------------------------------- coordination

    /// Create the lock `name`, free.
    Lock create_lock(const std::string& name) const { return Lock(named(&shmds_lock_create, name)); }
    /// Open the existing lock `name`.
    Lock open_lock(const std::string& name) const { return Lock(named(&shmds_lock_open, name)); }
    /// Open the lock `name`, creating it if there is none.
    Lock open_or_create_lock(const std::string& name) const { return Lock(named(&shmds_lock_open_or_create, name)); }

    /// Create the rwlock `name` with room for `reader_slots` reading
    /// processes at once (64 is a good start).
    RwLock create_rwlock(const std::string& name, std::uint32_t reader_slots) const {
        return RwLock(named(&shmds_rwlock_create, name, reader_slots));
    }
    /// Open the existing rwlock `name`.
    RwLock open_rwlock(const std::string& name) const { return RwLock(named(&shmds_rwlock_open, name)); }
    /// Open the rwlock `name`, creating it if there is none (SHMDS_E_SHAPE
    /// for another number of reader slots).
    RwLock open_or_create_rwlock(const std::string& name, std::uint32_t reader_slots) const {
        return RwLock(named(&shmds_rwlock_open_or_create, name, reader_slots));
    }

    /// Create the condition `name`.
    Condition create_condition(const std::string& name) const {
        return Condition(named(&shmds_condition_create, name));
    }
    /// Open the existing condition `name`.
    Condition open_condition(const std::string& name) const { return Condition(named(&shmds_condition_open, name)); }
    /// Open the condition `name`, creating it if there is none.
    Condition open_or_create_condition(const std::string& name) const {
        return Condition(named(&shmds_condition_open_or_create, name));
    }

    /// Create the semaphore `name` holding `value` permits.
    Semaphore create_semaphore(const std::string& name, std::uint32_t value) const {
        return Semaphore(named(&shmds_semaphore_create, name, value));
    }
    /// Open the existing semaphore `name` (bounded or not).
    Semaphore open_semaphore(const std::string& name) const { return Semaphore(named(&shmds_semaphore_open, name)); }
    /// Open the semaphore `name`, creating it with `value` permits if there
    /// is none (SHMDS_E_SHAPE for another value, SHMDS_E_TYPE if bounded).
    Semaphore open_or_create_semaphore(const std::string& name, std::uint32_t value) const {
        return Semaphore(named(&shmds_semaphore_open_or_create, name, value));
    }
    /// Create the bounded semaphore `name` holding `value` permits (a
    /// release past `value` throws SHMDS_E_TOO_MANY_RELEASES). Open it
    /// with open_semaphore.
    Semaphore create_bounded_semaphore(const std::string& name, std::uint32_t value) const {
        return Semaphore(named(&shmds_bounded_semaphore_create, name, value));
    }
    /// Open the bounded semaphore `name`, creating it if there is none
    /// (SHMDS_E_TYPE if it is not bounded).
    Semaphore open_or_create_bounded_semaphore(const std::string& name, std::uint32_t value) const {
        return Semaphore(named(&shmds_bounded_semaphore_open_or_create, name, value));
    }

    /// Create the barrier `name` for `parties` parties.
    Barrier create_barrier(const std::string& name, std::uint32_t parties) const {
        return Barrier(named(&shmds_barrier_create, name, parties));
    }
    /// Open the existing barrier `name`.
    Barrier open_barrier(const std::string& name) const { return Barrier(named(&shmds_barrier_open, name)); }
    /// Open the barrier `name`, creating it if there is none (SHMDS_E_SHAPE
    /// for another number of parties).
    Barrier open_or_create_barrier(const std::string& name, std::uint32_t parties) const {
        return Barrier(named(&shmds_barrier_open_or_create, name, parties));
    }

    /// Create the event `name`, clear.
    Event create_event(const std::string& name) const { return Event(named(&shmds_event_create, name)); }
    /// Open the existing event `name`.
    Event open_event(const std::string& name) const { return Event(named(&shmds_event_open, name)); }
    /// Open the event `name`, creating it (clear) if there is none.
    Event open_or_create_event(const std::string& name) const {
        return Event(named(&shmds_event_open_or_create, name));
    }

    /// Create the latch `name`, which opens after `count` count-downs.
    Latch create_latch(const std::string& name, std::uint32_t count) const {
        return Latch(named(&shmds_latch_create, name, count));
    }
    /// Open the existing latch `name`.
    Latch open_latch(const std::string& name) const { return Latch(named(&shmds_latch_open, name)); }
    /// Open the latch `name`, creating it if there is none (SHMDS_E_SHAPE
    /// for another count).
    Latch open_or_create_latch(const std::string& name, std::uint32_t count) const {
        return Latch(named(&shmds_latch_open_or_create, name, count));
    }

    /// Create the once cell `name`, not run.
    Once create_once(const std::string& name) const { return Once(named(&shmds_once_create, name)); }
    /// Open the existing once cell `name`.
    Once open_once(const std::string& name) const { return Once(named(&shmds_once_open, name)); }
    /// Open the once cell `name`, creating it if there is none.
    Once open_or_create_once(const std::string& name) const { return Once(named(&shmds_once_open_or_create, name)); }

private:
    static bool erase_rc(int rc) {
        if (rc == SHMDS_E_NOT_FOUND) return false;
        detail::check(rc);
        return true;
    }

    /// A primitive from `fn(seg, name, &out)`.
    template <class H>
    H* named(int (*fn)(const ShmdsSegment*, const char*, H**), const std::string& name) const {
        H* out = nullptr;
        detail::check(fn(get(), name.c_str(), &out));
        return out;
    }
    /// A primitive from `fn(seg, name, n, &out)`.
    template <class H>
    H* named(int (*fn)(const ShmdsSegment*, const char*, std::uint32_t, H**), const std::string& name,
             std::uint32_t n) const {
        H* out = nullptr;
        detail::check(fn(get(), name.c_str(), n, &out));
        return out;
    }

    template <class T, class H>
    H* open_typed(int (*fn)(const ShmdsSegment*, const char*, std::size_t, const char*, H**),
                  const std::string& name) const {
        static_assert(detail::assert_element<T>(), "not an element type");
        H* out = nullptr;
        detail::check(fn(get(), name.c_str(), sizeof(T), descriptor<T>().c_str(), &out));
        return out;
    }

    template <class T, class H>
    H* make_ring(int (*fn)(const ShmdsSegment*, const char*, std::size_t, const char*, std::uint64_t, bool, H**),
                 const std::string& name, std::size_t capacity, bool open_existing) const {
        static_assert(detail::assert_element<T>(), "not an element type");
        H* out = nullptr;
        detail::check(fn(get(), name.c_str(), sizeof(T), descriptor<T>().c_str(),
                         static_cast<std::uint64_t>(capacity), open_existing, &out));
        return out;
    }

    template <class T>
    Array<T> make_array(const std::string& name, std::size_t len, bool open_existing) const {
        return Array<T>(make_ring<T, ShmdsArray>(&shmds_array_create, name, len, open_existing));
    }

    template <class K, class V>
    Map<K, V> make_map(const std::string& name, std::size_t capacity, bool open_existing) const {
        static_assert(detail::assert_element<K>() && detail::assert_element<V>(), "not an element type");
        ShmdsMap* out = nullptr;
        detail::check(shmds_map_create(get(), name.c_str(), sizeof(K), descriptor<K>().c_str(), sizeof(V),
                                       descriptor<V>().c_str(), static_cast<std::uint64_t>(capacity), open_existing,
                                       &out));
        return Map<K, V>(out);
    }

    template <class K>
    Set<K> make_set(const std::string& name, std::size_t capacity, bool open_existing) const {
        return Set<K>(make_ring<K, ShmdsSet>(&shmds_set_create, name, capacity, open_existing));
    }

    Channel make_channel(const std::string& name, std::uint64_t capacity, const ChannelOptions& opts,
                         bool open_existing) const {
        ShmdsChannel* out = nullptr;
        detail::check(shmds_channel_create(get(), name.c_str(), capacity, opts.max_message, opts.flags(),
                                           open_existing, &out));
        return Channel(out);
    }

    Topic make_topic(const std::string& name, std::uint64_t capacity, const TopicOptions& opts,
                     bool open_existing) const {
        ShmdsTopic* out = nullptr;
        detail::check(
            shmds_topic_create(get(), name.c_str(), capacity, opts.max_message, opts.flags(), open_existing, &out));
        return Topic(out);
    }

    detail::Owned<ShmdsSegment, shmds_segment_close> h_;
};

}  // namespace shmds

namespace std {
/// std::hash of a FixedStr (by its bytes), for unordered containers.
template <std::size_t N>
struct hash<shmds::FixedStr<N>> {
    std::size_t operator()(const shmds::FixedStr<N>& s) const noexcept {
        return std::hash<std::string_view>()(s.view());
    }
};
}  // namespace std

#endif /* SHMDS_HPP */
