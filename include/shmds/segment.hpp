/*
 * shmds/segment.hpp: part of shmds.hpp (include that). Segment, the
 * factory of every structure and primitive, with SegmentOptions and
 * EntryInfo.
 */
#ifndef SHMDS_SEGMENT_HPP
#define SHMDS_SEGMENT_HPP

#include "coord.hpp"
#include "element.hpp"
#include "error.hpp"
#include "messages.hpp"
#include "structures.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace shmds {

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

    /// Its name (as given to create or open, without a leading '/').
    std::string name() const {
        return detail::text_of([&](char* b, std::size_t n, std::size_t* len) { return shmds_segment_name(get(), b, n, len); });
    }
    /// Size in bytes.
    std::uint64_t size() const noexcept { return shmds_segment_size(get()); }
    /// Whether it lives in a regular file (its name is a path): a durable segment.
    bool is_durable() const noexcept { return shmds_segment_is_durable(get()) == 1; }
    /// Write a durable segment's changes to its file and wait for the disk
    /// (msync + fsync); nothing to do for a /dev/shm segment.
    void flush() const { detail::check(shmds_segment_flush(get())); }
    /// Write a consistent snapshot into the store directory `store` (other
    /// processes attached are paused while it is copied); returns its id.
    std::string snapshot(const std::string& store) const {
        char id[65];
        detail::check(shmds_segment_snapshot(get(), store.c_str(), id, sizeof id, nullptr));
        return std::string(id);
    }
    /// Restore snapshot `id` (or a unique prefix) of the store directory
    /// `store` as the new segment `name`, and open it.
    static Segment restore(const std::string& store, const std::string& id, const std::string& name) {
        ShmdsSegment* out = nullptr;
        detail::check(shmds_snapshot_restore(store.c_str(), id.c_str(), name.c_str(), &out));
        return Segment(out);
    }
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

/// The canonical form of a type descriptor, as the table records it and
/// descriptor() returns it ("<Q" for "Q"); throws Error (SHMDS_E_INVALID,
/// with the reason) if shmds cannot share that type.
inline std::string canonical_type(const std::string& descriptor) {
    return detail::text_of([&](char* b, std::size_t n, std::size_t* len) {
        return shmds_type_canonical(descriptor.c_str(), b, n, len);
    });
}

}  // namespace shmds

#endif /* SHMDS_SEGMENT_HPP */
