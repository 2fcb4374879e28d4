/*
 * shmds/error.hpp: part of shmds.hpp (include that). shmds::Error and
 * Errc, and the detail helpers every other part uses: the return-code
 * check, durations as the C API's nanoseconds, deadlines, and Owned (a
 * unique_ptr closing a C handle).
 */
#ifndef SHMDS_ERROR_HPP
#define SHMDS_ERROR_HPP

#include "../shmds.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

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

/// The text a C call copies out with the descriptor protocol:
/// `fill(buf, buf_size, &len)` writes it NUL-terminated, or fails with
/// SHMDS_E_BUFFER_TOO_SMALL and the length needed in `len` (then the
/// call is made again with a buffer that fits).
template <class Fill>
std::string text_of(Fill&& fill) {
    std::string buf(64, '\0');
    for (;;) {
        std::size_t len = 0;
        const int rc = fill(&buf[0], buf.size(), &len);
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len >= buf.size()) {
            buf.assign(len + 1, '\0');
            continue;
        }
        check(rc);
        buf.resize(std::min(len, buf.size()));
        return buf;
    }
}

}  // namespace detail

}  // namespace shmds

#endif /* SHMDS_ERROR_HPP */
