/*
 * shmds/element.hpp: part of shmds.hpp (include that). FixedStr<N>, the
 * element type descriptors (shmds::element<T>, shmds::descriptor<T>()),
 * the checks and conversions of element values, SHMDS_RECORD, and
 * std::hash of a FixedStr.
 */
#ifndef SHMDS_ELEMENT_HPP
#define SHMDS_ELEMENT_HPP

#include "error.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace shmds {

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

/// The C header's fixed string of N bytes, SHMDS_FIXED_STR(N), which
/// FixedStr<N> lays out exactly (asserted in element<FixedStr<N>>).
template <std::size_t N>
struct c_fixed_str {
    typedef SHMDS_FIXED_STR(N) type;
};

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

/// FixedStr<N>: T{B:len:Ns:bytes:}, byte for byte the C header's
/// SHMDS_FIXED_STR(N) (checked here for every N used).
template <std::size_t N>
struct element<FixedStr<N>> {
    static_assert(sizeof(FixedStr<N>) == sizeof(typename detail::c_fixed_str<N>::type) &&
                      alignof(FixedStr<N>) == alignof(typename detail::c_fixed_str<N>::type) &&
                      offsetof(FixedStr<N>, len) == offsetof(typename detail::c_fixed_str<N>::type, len) &&
                      offsetof(FixedStr<N>, bytes) == offsetof(typename detail::c_fixed_str<N>::type, bytes),
                  "shmds::FixedStr<N> must have the layout of SHMDS_FIXED_STR(N)");
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

/// How a T is held while a C call copies elements in: a bool as its byte
/// (read back as byte != 0, as read_into does), any other T as itself.
template <class T>
using storage_t = std::conditional_t<std::is_same<T, bool>::value, std::uint8_t, T>;

/// The T held in `s` (see storage_t).
template <class T>
T from_storage(const storage_t<T>& s) {
    if constexpr (std::is_same<T, bool>::value) {
        return s != 0;
    } else {
        return s;
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

namespace std {
/// std::hash of a FixedStr (by its bytes), for unordered containers.
template <std::size_t N>
struct hash<shmds::FixedStr<N>> {
    std::size_t operator()(const shmds::FixedStr<N>& s) const noexcept {
        return std::hash<std::string_view>()(s.view());
    }
};
}  // namespace std

#endif /* SHMDS_ELEMENT_HPP */
