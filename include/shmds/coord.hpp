/*
 * shmds/coord.hpp: part of shmds.hpp (include that). The coordination
 * primitives: Lock, RwLock, Condition, Semaphore, Barrier, Event, Latch
 * and Once.
 */
#ifndef SHMDS_COORD_HPP
#define SHMDS_COORD_HPP

#include "error.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

namespace shmds {

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

}  // namespace shmds

#endif /* SHMDS_COORD_HPP */
