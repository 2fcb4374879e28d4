/*
 * shmds/structures.hpp: part of shmds.hpp (include that). The typed
 * structures: Array<T>, Queue<T> and Stack<T>, Map<K, V> and Set<K>.
 */
#ifndef SHMDS_STRUCTURES_HPP
#define SHMDS_STRUCTURES_HPP

#include "element.hpp"
#include "error.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmds {

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
    /// (Only for integer T; the delta and the result are T, whatever the
    /// argument's type.)
    template <class U = T, std::enable_if_t<detail::is_atomic_int<U>, int> = 0>
    T fetch_add(std::size_t i, T delta) const {
        std::uint64_t old = 0;
        detail::check(shmds_array_fetch_add(get(), static_cast<std::uint64_t>(i), detail::to_u64(delta), &old));
        return detail::from_u64<T>(old);
    }

    /// Integer elements: if element `i` is `expected`, set it to `desired`,
    /// atomically (std::atomic's compare_exchange_strong): true if it was
    /// swapped; else false, nothing changes, and `expected` gets the value
    /// found.
    template <class U = T, std::enable_if_t<detail::is_atomic_int<U>, int> = 0>
    bool compare_exchange(std::size_t i, T& expected, T desired) const {
        std::uint64_t found = 0;
        if (detail::check(shmds_array_compare_exchange(get(), static_cast<std::uint64_t>(i), detail::to_u64(expected),
                                                       detail::to_u64(desired), &found)) == 1)
            return true;
        expected = detail::from_u64<T>(found);
        return false;
    }

    /// The element type descriptor stored with the array (descriptor<T>()
    /// or one equal to it).
    std::string descriptor() const {
        return detail::text_of(
            [&](char* b, std::size_t n, std::size_t* len) { return shmds_array_descriptor(get(), b, n, len); });
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
    static int push_many(const ShmdsQueue* h, const void* e, std::size_t n, std::int64_t t, std::size_t* done) {
        return shmds_queue_push_many(h, e, n, t, done);
    }
    static int pop_many(const ShmdsQueue* h, void* o, std::size_t n, std::int64_t t, std::size_t* done) {
        return shmds_queue_pop_many(h, o, n, t, done);
    }
    static int descriptor(const ShmdsQueue* h, char* b, std::size_t n, std::size_t* len) {
        return shmds_queue_descriptor(h, b, n, len);
    }
    static std::size_t len(const ShmdsQueue* h) { return shmds_queue_len(h); }
    static std::uint64_t capacity(const ShmdsQueue* h) { return shmds_queue_capacity(h); }
    static std::size_t elem_size(const ShmdsQueue* h) { return shmds_queue_elem_size(h); }
    static int check(const ShmdsQueue* h) { return shmds_queue_check(h); }
    static int shutdown(const ShmdsQueue* h, bool immediate, std::size_t* discarded) {
        return shmds_queue_shutdown(h, immediate, discarded);
    }
    static bool is_shut_down(const ShmdsQueue* h) { return shmds_queue_is_shut_down(h); }
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
    static int push_many(const ShmdsStack* h, const void* e, std::size_t n, std::int64_t t, std::size_t* done) {
        return shmds_stack_push_many(h, e, n, t, done);
    }
    static int pop_many(const ShmdsStack* h, void* o, std::size_t n, std::int64_t t, std::size_t* done) {
        return shmds_stack_pop_many(h, o, n, t, done);
    }
    static int descriptor(const ShmdsStack* h, char* b, std::size_t n, std::size_t* len) {
        return shmds_stack_descriptor(h, b, n, len);
    }
    static std::size_t len(const ShmdsStack* h) { return shmds_stack_len(h); }
    static std::uint64_t capacity(const ShmdsStack* h) { return shmds_stack_capacity(h); }
    static std::size_t elem_size(const ShmdsStack* h) { return shmds_stack_elem_size(h); }
    static int check(const ShmdsStack* h) { return shmds_stack_check(h); }
    static int shutdown(const ShmdsStack* h, bool immediate, std::size_t* discarded) {
        return shmds_stack_shutdown(h, immediate, discarded);
    }
    static bool is_shut_down(const ShmdsStack* h) { return shmds_stack_is_shut_down(h); }
    static void close(ShmdsStack* h) { shmds_stack_close(h); }
};

/// What Queue<T> and Stack<T> share: pushes and pops of one T or of a
/// batch. Full, empty and timed out are a bool, an empty optional, or a
/// count or vector short of what was asked; every other failure
/// (SHMDS_E_SHUT_DOWN included) throws.
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

    // Batches: a run of slots is claimed at once, so these are much faster
    // than a push or pop per element. Elements go in the order given
    // (first first) and come out as single pops would take them: a
    // queue's oldest first, a stack's top first. If a batch call throws
    // (SHMDS_E_SHUT_DOWN, say), some elements may have been pushed or
    // popped before it did.

    /// Push as many of the `n` elements at `first` as there is room for
    /// now, in order; returns how many (from 0 to n). Never sleeps.
    std::size_t try_push_many(const T* first, std::size_t n) const { return push_raw(first, n, 0); }
    /// Push as many elements of `v` as there is room for now.
    std::size_t try_push_many(const std::vector<T>& v) const { return push_vector(v, 0); }
    /// Push the `n` elements at `first`, in order, waiting for room as
    /// long as it takes; returns n.
    std::size_t push_many(const T* first, std::size_t n) const { return push_raw(first, n, -1); }
    /// Push every element of `v`, waiting as long as it takes; returns v.size().
    std::size_t push_many(const std::vector<T>& v) const { return push_vector(v, -1); }
    /// Push the `n` elements at `first`, in order, waiting for room up to
    /// `timeout` in all: how many were pushed (fewer than n if it passed).
    template <class Rep, class Period>
    std::size_t push_many_for(const T* first, std::size_t n, const std::chrono::duration<Rep, Period>& timeout) const {
        return push_raw(first, n, to_ns(timeout));
    }
    /// Push the elements of `v`, waiting up to `timeout`: how many were pushed.
    template <class Rep, class Period>
    std::size_t push_many_for(const std::vector<T>& v, const std::chrono::duration<Rep, Period>& timeout) const {
        return push_vector(v, to_ns(timeout));
    }

    /// Pop up to `max` elements that are there now (an empty vector if
    /// none). Never sleeps.
    std::vector<T> try_pop_many(std::size_t max) const { return pop_raw(max, 0); }
    /// Pop up to `max` elements, waiting as long as it takes for the
    /// first, then taking what is there (at least one; none at once if
    /// `max` is 0).
    std::vector<T> pop_many(std::size_t max) const { return pop_raw(max, -1); }
    /// As pop_many, waiting for the first up to `timeout` (an empty
    /// vector if it passed).
    template <class Rep, class Period>
    std::vector<T> pop_many_for(std::size_t max, const std::chrono::duration<Rep, Period>& timeout) const {
        return pop_raw(max, to_ns(timeout));
    }

    /// The element type descriptor stored with the structure
    /// (descriptor<T>() or one equal to it).
    std::string descriptor() const {
        return text_of([&](char* b, std::size_t n, std::size_t* len) { return Ops::descriptor(get(), b, n, len); });
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

    /// Shut it down for every process: pushes throw SHMDS_E_SHUT_DOWN from
    /// now on, pops take what is left and then throw it; every waiter
    /// wakes. With `immediate` what is left is discarded: returns how many
    /// elements were. Harmless twice; there is no way back.
    std::size_t shutdown(bool immediate = false) const {
        std::size_t discarded = 0;
        check_rc(Ops::shutdown(get(), immediate, &discarded));
        return discarded;
    }
    /// Whether it was shut down, by any process.
    bool is_shut_down() const noexcept { return Ops::is_shut_down(get()); }

protected:
    static void check_rc(int rc) { detail::check(rc); }

private:

    /// Push `n` elements packed at `elems`; timeout_ns 0 tries once, < 0
    /// waits forever. Full and timed out are a short count.
    std::size_t push_raw(const void* elems, std::size_t n, std::int64_t timeout_ns) const {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
            throw Error(SHMDS_E_INVALID, std::to_string(n) + " elements are more bytes than a size_t counts");
        std::size_t pushed = 0;
        const int rc = Ops::push_many(get(), n == 0 ? nullptr : elems, n * sizeof(T), timeout_ns, &pushed);
        if (rc != SHMDS_E_FULL && rc != SHMDS_E_TIMEOUT) check_rc(rc);
        return pushed;
    }
    std::size_t push_vector(const std::vector<T>& v, std::int64_t timeout_ns) const {
        if constexpr (std::is_same<T, bool>::value) {
            const std::vector<std::uint8_t> bytes(v.begin(), v.end());  // std::vector<bool> has no data()
            return push_raw(bytes.data(), bytes.size(), timeout_ns);
        } else {
            return push_raw(v.data(), v.size(), timeout_ns);
        }
    }

    /// Pop up to `max` elements (never more than the capacity: no more can
    /// be there); timeout_ns as push_raw. Empty and timed out are an empty
    /// vector.
    std::vector<T> pop_raw(std::size_t max, std::int64_t timeout_ns) const {
        const std::size_t room = std::min(max, capacity());
        std::vector<storage_t<T>> buf(room);
        std::size_t popped = 0;
        const int rc = Ops::pop_many(get(), buf.data(), room * sizeof(T), timeout_ns, &popped);
        if (rc != SHMDS_E_EMPTY && rc != SHMDS_E_TIMEOUT) check_rc(rc);
        buf.resize(std::min(popped, room));
        if constexpr (std::is_same<T, bool>::value) {
            return std::vector<bool>(buf.begin(), buf.end());  // byte != 0
        } else {
            return buf;
        }
    }

    Owned<handle_type, &Ops::close> h_;
};

}  // namespace detail

/// A bounded multi-producer multi-consumer FIFO queue of T
/// (Segment::create_queue<T>): try_push/push/push_for, try_pop/pop/pop_for,
/// and their batch forms try_push_many/push_many/push_many_for,
/// try_pop_many/pop_many/pop_many_for.
template <class T>
class Queue : public detail::Bounded<T, detail::QueueOps> {
    using Base = detail::Bounded<T, detail::QueueOps>;

public:
    using Base::Base;

    // Tasks, as Python's queue.Queue: an element taken by a pop_task form
    // counts as unfinished until task_done() is called for it (by any
    // process); join() waits until none is. The other pops count as done.

    /// Pop an element if there is one now and count it as a task (nullopt
    /// if empty). Never sleeps.
    std::optional<T> try_pop_task() const {
        int rc = 0;
        T v = detail::read_into<T>(rc, [&](void* p, std::size_t n) { return shmds_queue_pop_task(this->get(), p, n, 0); });
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        Base::check_rc(rc);
        return v;
    }
    /// Pop an element, waiting as long as it takes, and count it as a task.
    T pop_task() const {
        int rc = 0;
        T v = detail::read_into<T>(rc, [&](void* p, std::size_t n) { return shmds_queue_pop_task(this->get(), p, n, -1); });
        Base::check_rc(rc);
        return v;
    }
    /// Mark one task as done (throws SHMDS_E_INVALID if none is unfinished).
    void task_done() const { Base::check_rc(shmds_queue_task_done(this->get())); }
    /// Wait until the queue is empty and every task is done.
    void join() const { Base::check_rc(shmds_queue_join(this->get(), -1)); }
    /// join(), waiting up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool join_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = shmds_queue_join(this->get(), detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return false;
        Base::check_rc(rc);
        return true;
    }
    /// Tasks taken and not yet marked done.
    std::uint64_t unfinished_tasks() const noexcept { return shmds_queue_unfinished_tasks(this->get()); }
};

/// A bounded LIFO stack of T (Segment::create_stack<T>): the API of Queue,
/// popping the newest element first (a batch pop takes the top first; a
/// batch push leaves its last element on top).
template <class T>
class Stack : public detail::Bounded<T, detail::StackOps> {
public:
    using detail::Bounded<T, detail::StackOps>::Bounded;
};

// ======================================================================
// Map and Set
// ======================================================================

template <class K, class V>
class Map;
template <class K>
class Set;

namespace detail {

/// An input iterator over a map's or set's slots: `Source::next(h,
/// cursor, out)` (shmds_map_next or shmds_set_next) finds the next entry
/// from `cursor` on. The end is the default-constructed iterator; one
/// that reaches the end becomes equal to it. It holds the current entry
/// by value and the C handle by pointer: it must not outlive its Map or
/// Set handle.
template <class Source>
class CursorIterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = typename Source::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    /// The end.
    CursorIterator() noexcept = default;

    reference operator*() const noexcept { return item_; }
    pointer operator->() const noexcept { return &item_; }
    CursorIterator& operator++() {
        if (h_ != nullptr) step();  // the end stays the end
        return *this;
    }
    CursorIterator operator++(int) {
        CursorIterator old = *this;
        ++*this;
        return old;
    }
    friend bool operator==(const CursorIterator& a, const CursorIterator& b) noexcept {
        return a.h_ == b.h_ && a.cursor_ == b.cursor_;
    }
    friend bool operator!=(const CursorIterator& a, const CursorIterator& b) noexcept { return !(a == b); }

private:
    template <class, class>
    friend class shmds::Map;
    template <class>
    friend class shmds::Set;

    /// At the first entry of `h` (the end if it has none; a NULL `h`
    /// throws SHMDS_E_INVALID, from the C call).
    explicit CursorIterator(const typename Source::handle* h) : h_(h) { step(); }
    /// To the next entry from the cursor on, or to the end.
    void step() {
        if (!Source::next(h_, cursor_, item_)) {
            h_ = nullptr;
            cursor_ = 0;
        }
    }

    const typename Source::handle* h_ = nullptr;
    std::uint64_t cursor_ = 0;
    value_type item_{};
};

template <class K, class V>
struct MapSource {
    using handle = ShmdsMap;
    using value_type = std::pair<K, V>;
    static bool next(const ShmdsMap* h, std::uint64_t& cursor, value_type& out) {
        storage_t<K> k{};
        storage_t<V> v{};
        if (check(shmds_map_next(h, &cursor, &k, sizeof k, &v, sizeof v)) == 0) return false;
        out.first = from_storage<K>(k);
        out.second = from_storage<V>(v);
        return true;
    }
};

template <class K>
struct SetSource {
    using handle = ShmdsSet;
    using value_type = K;
    static bool next(const ShmdsSet* h, std::uint64_t& cursor, value_type& out) {
        storage_t<K> k{};
        if (check(shmds_set_next(h, &cursor, &k, sizeof k)) == 0) return false;
        out = from_storage<K>(k);
        return true;
    }
};

}  // namespace detail

/// A fixed-capacity hash map from K to V (Segment::create_map<K, V>).
/// Keys compare by their bytes.
///
/// Iteration (begin()/end(), items()) walks the slots with
/// shmds_map_next, yielding (key, value) copies. It is weakly
/// consistent: every key present from the start to the end of a walk is
/// visited exactly once; one inserted or removed meanwhile may or may not
/// be, and a value is the one found when its slot was passed. The order
/// is the slots' order, not the keys'.
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
    /// Whether `key` is in the map.
    bool contains(const K& key) const { return detail::check(shmds_map_contains(get(), &key, sizeof(K))) == 1; }

    /// Set `key` to `value`: true if the key was there (its value
    /// replaced), false if it was added. Error SHMDS_E_NO_SPACE when the
    /// key is new and the map is full.
    bool insert(const K& key, const V& value) const {
        return detail::check(shmds_map_insert(get(), &key, sizeof(K), &value, sizeof(V))) == 1;
    }
    /// Remove `key`: true if it was there.
    bool erase(const K& key) const { return detail::check(shmds_map_remove(get(), &key, sizeof(K))) == 1; }
    /// Remove every key (each removal atomic; keys others insert meanwhile may stay).
    void clear() const { detail::check(shmds_map_clear(get())); }

    /// Integer values: add `delta` to the value of `key` atomically
    /// (wrapping; an absent key counts as 0 and is added); returns the
    /// previous value.
    /// (Only for integer V; the delta and the result are V.)
    template <class U = V, std::enable_if_t<detail::is_atomic_int<U>, int> = 0>
    V fetch_add(const K& key, V delta) const {
        std::uint64_t old = 0;
        detail::check(shmds_map_fetch_add(get(), &key, sizeof(K), detail::to_u64(delta), &old));
        return detail::from_u64<V>(old);
    }

    /// Integer values: if the value of `key` is `expected`, set it to
    /// `desired`, atomically (std::atomic's compare_exchange_strong): true
    /// if it was swapped; else false, nothing changes, and `expected` gets
    /// the value found. An absent key is not a mismatch: it throws Error
    /// SHMDS_E_NOT_FOUND (there is no value to hand back, and a retry loop
    /// on false would never end); add it first (insert, or fetch_add(key, 0)).
    template <class U = V, std::enable_if_t<detail::is_atomic_int<U>, int> = 0>
    bool compare_exchange(const K& key, V& expected, V desired) const {
        std::uint64_t found = 0;
        if (detail::check(shmds_map_compare_exchange(get(), &key, sizeof(K), detail::to_u64(expected),
                                                     detail::to_u64(desired), &found)) == 1)
            return true;
        expected = detail::from_u64<V>(found);
        return false;
    }

    /// An input iterator yielding const std::pair<K, V>& (copies; see the
    /// class comment). It must not outlive this handle.
    using iterator = detail::CursorIterator<detail::MapSource<K, V>>;
    using const_iterator = iterator;
    using value_type = std::pair<K, V>;
    /// At the first entry (a C failure throws; an empty handle
    /// SHMDS_E_INVALID).
    iterator begin() const { return iterator(get()); }
    /// The end.
    iterator end() const noexcept { return iterator(); }
    /// Every (key, value), by one walk of begin() to end().
    std::vector<std::pair<K, V>> items() const { return std::vector<std::pair<K, V>>(begin(), end()); }

    /// The key type descriptor stored with the map (descriptor<K>() or one
    /// equal to it).
    std::string key_descriptor() const {
        return detail::text_of(
            [&](char* b, std::size_t n, std::size_t* len) { return shmds_map_key_descriptor(get(), b, n, len); });
    }
    /// The value type descriptor stored with the map.
    std::string value_descriptor() const {
        return detail::text_of(
            [&](char* b, std::size_t n, std::size_t* len) { return shmds_map_value_descriptor(get(), b, n, len); });
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
/// std::set's does: true when the key was newly added. Iteration
/// (begin()/end(), keys()) walks the slots with shmds_set_next, weakly
/// consistent as Map's: every key present throughout is visited exactly
/// once, one inserted or removed meanwhile may or may not be.
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
    /// Remove every key (each removal atomic; keys others insert meanwhile may stay).
    void clear() const { detail::check(shmds_set_clear(get())); }

    /// An input iterator yielding const K& (copies). It must not outlive
    /// this handle.
    using iterator = detail::CursorIterator<detail::SetSource<K>>;
    using const_iterator = iterator;
    using value_type = K;
    /// At the first key (a C failure throws; an empty handle SHMDS_E_INVALID).
    iterator begin() const { return iterator(get()); }
    /// The end.
    iterator end() const noexcept { return iterator(); }
    /// Every key, by one walk of begin() to end().
    std::vector<K> keys() const { return std::vector<K>(begin(), end()); }

    /// The key type descriptor stored with the set (descriptor<K>() or one
    /// equal to it).
    std::string key_descriptor() const {
        return detail::text_of(
            [&](char* b, std::size_t n, std::size_t* len) { return shmds_set_key_descriptor(get(), b, n, len); });
    }

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

}  // namespace shmds

#endif /* SHMDS_STRUCTURES_HPP */
