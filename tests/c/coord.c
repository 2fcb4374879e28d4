/*
 * The coordination primitives from C, between processes (`make test-c`
 * builds this with -fsanitize=address against libshmds.a and runs it from
 * tests/c/run.sh):
 *
 *   coord PREFIX   every primitive, between this process and forked
 *                  children, in the segment PREFIX-coord
 *
 * Locks: two processes add 1 to a shared counter 100,000 times each under
 * the lock, non-atomically, and the total is exact; a child that holds the
 * lock is killed, and the next acquire gets SHMDS_E_OWNER_DEAD with the
 * lock held. Then rwlocks, conditions, semaphores, events, latches,
 * barriers (several rounds) and once cells, each across processes.
 *
 * Every wait has a timeout, and an alarm ends this program and each child
 * if something hangs anyway. The segment is removed before it returns;
 * `tests/c/run.sh` also removes PREFIX-* when this program dies.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SECOND INT64_C(1000000000)
#define MS INT64_C(1000000)
/* Long enough for any wait that should succeed on a loaded machine. */
#define PATIENCE (10 * SECOND)

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static const char *seg_name;
/* The shared cells (an array of 64 uint64_t): counters and flags. */
enum { COUNTER, COND_FLAG, ONCE_RUNS, STARTED, BARRIER_INDEX = 8, CELLS = 64 };

static uint64_t *cells_of(ShmdsSegment *seg, ShmdsArray **array) {
    must(shmds_array_open(seg, "cells", sizeof(uint64_t), "<Q", array), "open cells");
    return shmds_array_data(*array);
}

/*
 * Fork a child that runs `body(seg, arg)` on a segment handle of its own
 * and exits: 0 if the body returned 0 and no check failed in it. It never
 * outlives a hang by more than a minute.
 */
static pid_t spawn(int (*body)(ShmdsSegment *, void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        alarm(60);
        int before = failed;
        ShmdsSegment *seg = NULL;
        int status = shmds_segment_open(seg_name, &seg) < 0 ? 100 : body(seg, arg);
        shmds_segment_close(seg);
        _exit(status != 0 ? status : failed != before);
    }
    return pid;
}

/* Wait for child `pid`, which must exit with status 0. */
static void reap(pid_t pid, const char *what) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid %s", what);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s: status %#x", what, status);
}

/*
 * A child that takes something and is killed holding it: `take` opens and
 * takes it in the child (returning what the call returned, which must be
 * `want`); `spawn_holder` returns once the child holds it.
 */
struct holder {
    int (*take)(ShmdsSegment *seg);
    int want;
};

/* The pipe a holder writes one byte to once it holds what it took. */
static int ready[2];

static int hold(ShmdsSegment *seg, void *arg) {
    const struct holder *h = arg;
    EXPECT(h->take(seg), h->want, no_text);
    char c = 'x';
    if (write(ready[1], &c, 1) != 1)
        return 3;
    for (;;) /* until killed (or the alarm goes off) */
        pause();
}

static pid_t spawn_holder(const struct holder *h) {
    if (pipe(ready) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t pid = spawn(hold, (void *)h);
    char c;
    CHECK(read(ready[0], &c, 1) == 1, "the holder said it holds it");
    return pid;
}

/* Kill the holder `pid` (SIGKILL: no clean-up of any kind) and reap it. */
static void kill_holder(pid_t pid) {
    int status = 0;
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status), "killed child %d", (int)pid);
    close(ready[0]);
    close(ready[1]);
}

/* ---------------------------------------------------------------- locks */

#define INCREMENTS 100000

/* Add 1 to the counter INCREMENTS times under the lock, non-atomically. */
static int count(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsLock *lock = NULL;
    ShmdsArray *array = NULL;
    must(shmds_lock_open(seg, "mutex", &lock), "open mutex");
    volatile uint64_t *cells = cells_of(seg, &array);
    /* Start together, so that the two really contend. */
    __atomic_fetch_add(&cells[STARTED], 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&cells[STARTED], __ATOMIC_SEQ_CST) < 2)
        ;
    int bad = 0;
    for (int i = 0; i < INCREMENTS; i++) {
        if (shmds_lock_acquire(lock, -1) != SHMDS_OK) {
            bad++;
            continue;
        }
        uint64_t v = cells[COUNTER];
        cells[COUNTER] = v + 1;
        if (shmds_lock_release(lock) != SHMDS_OK)
            bad++;
    }
    CHECK(bad == 0, "%d acquires or releases failed", bad);
    shmds_array_close(array);
    shmds_lock_close(lock);
    return 0;
}

static int take_lock(ShmdsSegment *seg) {
    ShmdsLock *lock = NULL;
    must(shmds_lock_open(seg, "mutex", &lock), "open mutex");
    return shmds_lock_acquire(lock, PATIENCE);
}
static const struct holder lock_holder = {take_lock, SHMDS_OK};

static void test_lock(ShmdsSegment *seg, uint64_t *cells) {
    ShmdsLock *lock = NULL, *other = NULL;
    must(shmds_lock_create(seg, "mutex", &lock), "create mutex");
    EXPECT(shmds_lock_create(seg, "mutex", &other), SHMDS_E_EXISTS, no_text);
    EXPECT(shmds_lock_open_or_create(seg, "mutex", &other), SHMDS_OK, no_text);
    shmds_lock_close(other);
    EXPECT(shmds_lock_open(seg, "nope", &other), SHMDS_E_NOT_FOUND, no_text);
    EXPECT(shmds_lock_open(seg, "cells", &other), SHMDS_E_TYPE, no_text);
    EXPECT(shmds_lock_open(seg, "mutex", NULL), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_lock_acquire(NULL, 0), SHMDS_E_INVALID, "NULL");
    EXPECT(shmds_lock_release(NULL), SHMDS_E_INVALID, "NULL");
    CHECK(!shmds_lock_is_locked(NULL), "NULL is not locked");

    /* Two processes, 100,000 increments each, no lost update. */
    cells[COUNTER] = cells[STARTED] = 0;
    pid_t child = spawn(count, NULL);
    count(seg, NULL);
    reap(child, "counter");
    CHECK(cells[COUNTER] == 2 * INCREMENTS, "counter %" PRIu64 ", not %d", cells[COUNTER],
          2 * INCREMENTS);

    /* Held by this process: its pid and thread; not reentrant. */
    uint32_t pid = 0, tid = 0;
    EXPECT(shmds_lock_holder(lock, &pid, &tid), 0, no_text);
    CHECK(pid == 0 && tid == 0, "free lock: holder %u thread %u", pid, tid);
    EXPECT(shmds_lock_acquire(lock, 0), SHMDS_OK, no_text);
    CHECK(shmds_lock_is_locked(lock), "locked");
    EXPECT(shmds_lock_holder(lock, &pid, &tid), 1, no_text);
    CHECK(pid == (uint32_t)getpid() && tid != 0, "holder %u thread %u", pid, tid);
    EXPECT(shmds_lock_acquire(lock, 10 * MS), SHMDS_E_TIMEOUT, "timed out waiting for lock");
    EXPECT(shmds_lock_release(lock), SHMDS_OK, no_text);
    EXPECT(shmds_lock_release(lock), SHMDS_E_NOT_OWNER, no_text);
    CHECK(!shmds_lock_is_locked(lock), "unlocked");

    /* A holder killed while it holds the lock. */
    child = spawn_holder(&lock_holder);
    EXPECT(shmds_lock_holder(lock, &pid, NULL), 1, no_text);
    CHECK(pid == (uint32_t)child, "holder %u, not the child %d", pid, (int)child);
    EXPECT(shmds_lock_acquire(lock, 0), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_lock_acquire(lock, 30 * MS), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_lock_release(lock), SHMDS_E_NOT_OWNER, no_text);
    kill_holder(child);
    CHECK(shmds_lock_owner_deaths(lock) == 0, "no death yet");
    EXPECT(shmds_lock_acquire(lock, PATIENCE), SHMDS_E_OWNER_DEAD, "died holding lock");
    EXPECT(shmds_lock_holder(lock, &pid, NULL), 1, no_text);
    CHECK(pid == (uint32_t)getpid(), "held by this process after the death: %u", pid);
    CHECK(shmds_lock_owner_deaths(lock) == 1, "one death: %" PRIu64,
          shmds_lock_owner_deaths(lock));
    EXPECT(shmds_lock_release(lock), SHMDS_OK, no_text);
    EXPECT(shmds_lock_acquire(lock, 0), SHMDS_OK, no_text);
    EXPECT(shmds_lock_release(lock), SHMDS_OK, no_text);
    shmds_lock_close(lock);
    shmds_lock_close(NULL);
}

/* ---------------------------------------------------------------- rwlocks */

static int rw_outsider(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsRwLock *rw = NULL;
    must(shmds_rwlock_open(seg, "rw", &rw), "open rw");
    /* The parent reads: no writer gets in, and its one slot is taken. */
    EXPECT(shmds_rwlock_write_acquire(rw, 0), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_rwlock_write_acquire(rw, 20 * MS), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_rwlock_read_acquire(rw, 0), SHMDS_E_READER_SLOTS_FULL, "reader slots");
    shmds_rwlock_close(rw);
    return 0;
}

static int take_write_lock(ShmdsSegment *seg) {
    ShmdsRwLock *rw = NULL;
    must(shmds_rwlock_open(seg, "rw", &rw), "open rw");
    return shmds_rwlock_write_acquire(rw, PATIENCE);
}
static const struct holder writer = {take_write_lock, SHMDS_OK};

static void test_rwlock(ShmdsSegment *seg) {
    ShmdsRwLock *rw = NULL, *other = NULL;
    must(shmds_rwlock_create(seg, "rw", 1, &rw), "create rw");
    EXPECT(shmds_rwlock_open_or_create(seg, "rw", 2, &other), SHMDS_E_SHAPE, no_text);
    EXPECT(shmds_rwlock_open_or_create(seg, "rw", 1, &other), SHMDS_OK, no_text);
    shmds_rwlock_close(other);

    EXPECT(shmds_rwlock_read_acquire(rw, 0), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_read_acquire(rw, 0), SHMDS_OK, no_text); /* a second reader thread */
    CHECK(shmds_rwlock_readers(rw) == 2, "readers %" PRIu64, shmds_rwlock_readers(rw));
    reap(spawn(rw_outsider, NULL), "rwlock outsider");
    EXPECT(shmds_rwlock_read_release(rw), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_read_release(rw), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_read_release(rw), SHMDS_E_NOT_OWNER, no_text);
    EXPECT(shmds_rwlock_write_acquire(rw, 0), SHMDS_OK, no_text);
    CHECK(shmds_rwlock_writer(rw) == (uint32_t)getpid(), "writer %u", shmds_rwlock_writer(rw));
    EXPECT(shmds_rwlock_read_acquire(rw, 10 * MS), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_rwlock_write_release(rw), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_write_release(rw), SHMDS_E_NOT_OWNER, no_text);
    CHECK(shmds_rwlock_writer(rw) == 0, "no writer");

    /* A writer killed holding it: the next reader is told, and reads. */
    pid_t child = spawn_holder(&writer);
    CHECK(shmds_rwlock_writer(rw) == (uint32_t)child, "writer %u", shmds_rwlock_writer(rw));
    kill_holder(child);
    EXPECT(shmds_rwlock_read_acquire(rw, PATIENCE), SHMDS_E_OWNER_DEAD, "died holding rwlock");
    CHECK(shmds_rwlock_readers(rw) == 1, "read lock held after the death");
    EXPECT(shmds_rwlock_read_release(rw), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_write_acquire(rw, 0), SHMDS_OK, no_text);
    EXPECT(shmds_rwlock_write_release(rw), SHMDS_OK, no_text);
    shmds_rwlock_close(rw);
}

/* ---------------------------------------------------------------- conditions */

static int notifier(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsCondition *cond = NULL;
    ShmdsArray *array = NULL;
    must(shmds_condition_open(seg, "cond", &cond), "open cond");
    uint64_t *cells = cells_of(seg, &array);
    /* The parent holds the lock until it waits. */
    EXPECT(shmds_condition_acquire(cond, PATIENCE), SHMDS_OK, no_text);
    cells[COND_FLAG] = 1;
    EXPECT(shmds_condition_notify(cond, 1), SHMDS_OK, no_text);
    EXPECT(shmds_condition_release(cond), SHMDS_OK, no_text);
    shmds_array_close(array);
    shmds_condition_close(cond);
    return 0;
}

static int take_condition(ShmdsSegment *seg) {
    ShmdsCondition *cond = NULL;
    must(shmds_condition_open(seg, "cond", &cond), "open cond");
    return shmds_condition_acquire(cond, PATIENCE);
}
static const struct holder condition_holder = {take_condition, SHMDS_OK};

static void test_condition(ShmdsSegment *seg, uint64_t *cells) {
    ShmdsCondition *cond = NULL;
    must(shmds_condition_create(seg, "cond", &cond), "create cond");
    EXPECT(shmds_condition_wait(cond, 0), SHMDS_E_NOT_OWNER, no_text);
    EXPECT(shmds_condition_release(cond), SHMDS_E_NOT_OWNER, no_text);
    EXPECT(shmds_condition_notify_all(cond), SHMDS_OK, no_text);
    EXPECT(shmds_condition_notify(NULL, 1), SHMDS_E_INVALID, "NULL");

    /* Nobody notifies: a timed wait times out with the lock held again. */
    EXPECT(shmds_condition_acquire(cond, 0), SHMDS_OK, no_text);
    EXPECT(shmds_condition_wait(cond, 10 * MS), SHMDS_E_TIMEOUT, "notify");
    EXPECT(shmds_condition_release(cond), SHMDS_OK, no_text);

    /* A child notifies; the parent waits for the flag it sets. */
    cells[COND_FLAG] = 0;
    EXPECT(shmds_condition_acquire(cond, PATIENCE), SHMDS_OK, no_text);
    pid_t child = spawn(notifier, NULL);
    int waits = 0, rc = SHMDS_OK;
    while (cells[COND_FLAG] == 0 && waits++ < 100) {
        rc = shmds_condition_wait(cond, PATIENCE);
        CHECK(rc == SHMDS_OK || rc == SHMDS_E_TIMEOUT, "wait: %d", rc);
    }
    CHECK(cells[COND_FLAG] == 1, "the flag, set under the lock, is seen after the wait");
    EXPECT(shmds_condition_release(cond), SHMDS_OK, no_text);
    reap(child, "notifier");

    /* A holder of the condition's lock killed: retaken with the news. */
    child = spawn_holder(&condition_holder);
    EXPECT(shmds_condition_acquire(cond, 0), SHMDS_E_TIMEOUT, no_text);
    kill_holder(child);
    EXPECT(shmds_condition_acquire(cond, PATIENCE), SHMDS_E_OWNER_DEAD, "died holding");
    EXPECT(shmds_condition_release(cond), SHMDS_OK, no_text);
    shmds_condition_close(cond);
}

/* ---------------------------------------------------------------- semaphores */

static int give_permits(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsSemaphore *sem = NULL;
    must(shmds_semaphore_open(seg, "sem", &sem), "open sem");
    nap_ms(20);
    EXPECT(shmds_semaphore_release(sem, 3), SHMDS_OK, no_text);
    shmds_semaphore_close(sem);
    return 0;
}

static void test_semaphore(ShmdsSegment *seg) {
    ShmdsSemaphore *sem = NULL, *bounded = NULL, *other = NULL;
    must(shmds_semaphore_create(seg, "sem", 0, &sem), "create sem");
    EXPECT(shmds_semaphore_open_or_create(seg, "sem", 5, &other), SHMDS_E_SHAPE, no_text);
    EXPECT(shmds_semaphore_acquire(sem, 0), SHMDS_E_TIMEOUT, "permit");
    pid_t child = spawn(give_permits, NULL);
    for (int i = 0; i < 3; i++)
        EXPECT(shmds_semaphore_acquire(sem, PATIENCE), SHMDS_OK, no_text);
    reap(child, "semaphore");
    EXPECT(shmds_semaphore_acquire(sem, 0), SHMDS_E_TIMEOUT, no_text);
    CHECK(shmds_semaphore_value(sem) == 0, "value %u", shmds_semaphore_value(sem));
    EXPECT(shmds_semaphore_release(sem, 2), SHMDS_OK, no_text);
    CHECK(shmds_semaphore_value(sem) == 2, "value %u", shmds_semaphore_value(sem));
    EXPECT(shmds_bounded_semaphore_open_or_create(seg, "sem", 0, &other), SHMDS_E_TYPE, no_text);

    must(shmds_bounded_semaphore_create(seg, "bsem", 1, &bounded), "create bsem");
    EXPECT(shmds_semaphore_release(bounded, 1), SHMDS_E_TOO_MANY_RELEASES, no_text);
    EXPECT(shmds_semaphore_acquire(bounded, 0), SHMDS_OK, no_text);
    EXPECT(shmds_semaphore_release(bounded, 2), SHMDS_E_TOO_MANY_RELEASES, no_text);
    EXPECT(shmds_semaphore_release(bounded, 1), SHMDS_OK, no_text);
    CHECK(shmds_semaphore_value(bounded) == 1, "value %u", shmds_semaphore_value(bounded));
    EXPECT(shmds_semaphore_open_or_create(seg, "bsem", 1, &other), SHMDS_E_TYPE, no_text);
    EXPECT(shmds_bounded_semaphore_open_or_create(seg, "bsem", 1, &other), SHMDS_OK, no_text);
    shmds_semaphore_close(other);
    EXPECT(shmds_semaphore_open(seg, "bsem", &other), SHMDS_OK, no_text);
    EXPECT(shmds_semaphore_release(other, 1), SHMDS_E_TOO_MANY_RELEASES, no_text);
    shmds_semaphore_close(other);
    shmds_semaphore_close(bounded);
    shmds_semaphore_close(sem);
}

/* ---------------------------------------------------------------- events, latches */

static int set_event(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsEvent *event = NULL;
    must(shmds_event_open(seg, "event", &event), "open event");
    nap_ms(20);
    EXPECT(shmds_event_set(event), SHMDS_OK, no_text);
    shmds_event_close(event);
    return 0;
}

static void test_event(ShmdsSegment *seg) {
    ShmdsEvent *event = NULL;
    must(shmds_event_create(seg, "event", &event), "create event");
    CHECK(!shmds_event_is_set(event), "clear at first");
    EXPECT(shmds_event_wait(event, 0), SHMDS_E_TIMEOUT, no_text);
    EXPECT(shmds_event_wait(event, 10 * MS), SHMDS_E_TIMEOUT, "event");
    pid_t child = spawn(set_event, NULL);
    EXPECT(shmds_event_wait(event, PATIENCE), SHMDS_OK, no_text);
    reap(child, "event");
    CHECK(shmds_event_is_set(event), "set");
    EXPECT(shmds_event_wait(event, 0), SHMDS_OK, no_text);
    EXPECT(shmds_event_clear(event), SHMDS_OK, no_text);
    CHECK(!shmds_event_is_set(event), "cleared");
    EXPECT(shmds_event_set(NULL), SHMDS_E_INVALID, "NULL");
    shmds_event_close(event);
}

static int count_down(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsLatch *latch = NULL;
    must(shmds_latch_open(seg, "latch", &latch), "open latch");
    nap_ms(10);
    EXPECT(shmds_latch_count_down(latch, 1), SHMDS_OK, no_text);
    shmds_latch_close(latch);
    return 0;
}

static void test_latch(ShmdsSegment *seg) {
    ShmdsLatch *latch = NULL, *other = NULL;
    must(shmds_latch_create(seg, "latch", 2, &latch), "create latch");
    EXPECT(shmds_latch_open_or_create(seg, "latch", 3, &other), SHMDS_E_SHAPE, no_text);
    CHECK(shmds_latch_count(latch) == 2, "count %u", shmds_latch_count(latch));
    EXPECT(shmds_latch_wait(latch, 10 * MS), SHMDS_E_TIMEOUT, "latch");
    pid_t a = spawn(count_down, NULL), b = spawn(count_down, NULL);
    EXPECT(shmds_latch_wait(latch, PATIENCE), SHMDS_OK, no_text);
    reap(a, "latch a");
    reap(b, "latch b");
    CHECK(shmds_latch_count(latch) == 0, "count %u", shmds_latch_count(latch));
    EXPECT(shmds_latch_count_down(latch, 1), SHMDS_E_INVALID, "fewer than");
    EXPECT(shmds_latch_wait(latch, 0), SHMDS_OK, no_text);
    shmds_latch_close(latch);
}

/* ---------------------------------------------------------------- barriers */

#define ROUNDS 5

static int barrier_party(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsBarrier *barrier = NULL;
    ShmdsArray *array = NULL;
    must(shmds_barrier_open(seg, "barrier", &barrier), "open barrier");
    uint64_t *cells = cells_of(seg, &array);
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t index = 99;
        EXPECT(shmds_barrier_wait(barrier, PATIENCE, &index), SHMDS_OK, no_text);
        cells[BARRIER_INDEX + r] = index;
    }
    shmds_array_close(array);
    shmds_barrier_close(barrier);
    return 0;
}

static int broken_waiter(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsBarrier *barrier = NULL;
    must(shmds_barrier_open(seg, "barrier", &barrier), "open barrier");
    EXPECT(shmds_barrier_wait(barrier, PATIENCE, NULL), SHMDS_E_BROKEN, "broken");
    shmds_barrier_close(barrier);
    return 0;
}

static void test_barrier(ShmdsSegment *seg, uint64_t *cells) {
    ShmdsBarrier *barrier = NULL, *other = NULL;
    must(shmds_barrier_create(seg, "barrier", 2, &barrier), "create barrier");
    EXPECT(shmds_barrier_open_or_create(seg, "barrier", 3, &other), SHMDS_E_SHAPE, no_text);
    CHECK(shmds_barrier_parties(barrier) == 2, "parties %u", shmds_barrier_parties(barrier));

    pid_t child = spawn(barrier_party, NULL);
    uint32_t mine[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        mine[r] = 99;
        EXPECT(shmds_barrier_wait(barrier, PATIENCE, &mine[r]), SHMDS_OK, no_text);
    }
    reap(child, "barrier party");
    for (int r = 0; r < ROUNDS; r++)
        CHECK(mine[r] + cells[BARRIER_INDEX + r] == 1 && mine[r] <= 1,
              "round %d: indices %u and %" PRIu64, r, mine[r], cells[BARRIER_INDEX + r]);

    /* Alone, with a timeout: the wait times out and breaks the barrier. */
    EXPECT(shmds_barrier_wait(barrier, 10 * MS, NULL), SHMDS_E_TIMEOUT, no_text);
    CHECK(shmds_barrier_is_broken(barrier), "broken by the timeout");
    EXPECT(shmds_barrier_wait(barrier, 0, NULL), SHMDS_E_BROKEN, no_text);
    EXPECT(shmds_barrier_reset(barrier), SHMDS_OK, no_text);
    CHECK(!shmds_barrier_is_broken(barrier), "reset");

    /* A waiting child is woken by an abort. */
    child = spawn(broken_waiter, NULL);
    for (int i = 0; i < 1000 && shmds_barrier_n_waiting(barrier) == 0; i++)
        nap_ms(5);
    CHECK(shmds_barrier_n_waiting(barrier) == 1, "one waiting: %u",
          shmds_barrier_n_waiting(barrier));
    EXPECT(shmds_barrier_abort(barrier), SHMDS_OK, no_text);
    reap(child, "broken waiter");
    CHECK(shmds_barrier_is_broken(barrier), "aborted");
    EXPECT(shmds_barrier_reset(barrier), SHMDS_OK, no_text);
    shmds_barrier_close(barrier);
}

/* ---------------------------------------------------------------- once */

/* Run the initialiser (count the run) unless another process did. */
static int run_once(ShmdsSegment *seg, void *arg) {
    (void)arg;
    ShmdsOnce *once = NULL;
    ShmdsArray *array = NULL;
    must(shmds_once_open(seg, "once", &once), "open once");
    uint64_t *cells = cells_of(seg, &array);
    int rc = shmds_once_begin(once, PATIENCE);
    CHECK(rc == 0 || rc == 1, "begin: %d", rc);
    if (rc == 1) {
        cells[ONCE_RUNS]++;
        nap_ms(20);
        EXPECT(shmds_once_finish(once, true), SHMDS_OK, no_text);
    }
    CHECK(shmds_once_is_done(once), "done after begin");
    shmds_array_close(array);
    shmds_once_close(once);
    return 0;
}

static int begin_run(ShmdsSegment *seg) {
    ShmdsOnce *once = NULL;
    must(shmds_once_open(seg, "once-dies", &once), "open once-dies");
    return shmds_once_begin(once, PATIENCE);
}
static const struct holder runner = {begin_run, 1};

static void test_once(ShmdsSegment *seg, uint64_t *cells) {
    ShmdsOnce *once = NULL, *dies = NULL;
    must(shmds_once_create(seg, "once", &once), "create once");
    EXPECT(shmds_once_finish(once, true), SHMDS_E_NOT_OWNER, no_text);
    cells[ONCE_RUNS] = 0;
    pid_t child = spawn(run_once, NULL);
    run_once(seg, NULL);
    reap(child, "once");
    CHECK(cells[ONCE_RUNS] == 1, "the initialiser ran %" PRIu64 " times", cells[ONCE_RUNS]);
    EXPECT(shmds_once_begin(once, 0), 0, no_text);
    EXPECT(shmds_once_begin(NULL, 0), SHMDS_E_INVALID, "NULL");
    shmds_once_close(once);

    /* A runner killed mid-run: the next caller runs it; an undone finish
     * leaves it to the next again. */
    must(shmds_once_create(seg, "once-dies", &dies), "create once-dies");
    child = spawn_holder(&runner);
    EXPECT(shmds_once_begin(dies, 0), SHMDS_E_TIMEOUT, no_text);
    kill_holder(child);
    EXPECT(shmds_once_begin(dies, PATIENCE), 1, no_text);
    EXPECT(shmds_once_finish(dies, false), SHMDS_OK, no_text);
    CHECK(!shmds_once_is_done(dies), "not done after a failed run");
    EXPECT(shmds_once_begin(dies, 0), 1, no_text);
    EXPECT(shmds_once_finish(dies, true), SHMDS_OK, no_text);
    CHECK(shmds_once_is_done(dies), "done");
    EXPECT(shmds_once_finish(dies, true), SHMDS_E_NOT_OWNER, no_text);
    shmds_once_close(dies);
}

/* ---------------------------------------------------------------- main */

static void test_kinds(ShmdsSegment *seg) {
    static const struct {
        const char *name;
        uint32_t kind;
    } want[] = {{"mutex", SHMDS_KIND_LOCK},         {"rw", SHMDS_KIND_RWLOCK},
                {"cond", SHMDS_KIND_CONDITION},     {"sem", SHMDS_KIND_SEMAPHORE},
                {"barrier", SHMDS_KIND_BARRIER},    {"event", SHMDS_KIND_EVENT},
                {"latch", SHMDS_KIND_LATCH},        {"once", SHMDS_KIND_ONCE}};
    ShmdsEntryInfo all[32];
    size_t count = 0;
    must(shmds_segment_entries(seg, all, sizeof all, &count), "entries");
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (size_t i = 0; i < count && i < 32; i++)
            if (strcmp(all[i].name, want[w].name) == 0)
                found = all[i].kind == want[w].kind;
        CHECK(found, "entry %s of kind %u", want[w].name, want[w].kind);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PREFIX\n", argv[0]);
        return 2;
    }
    alarm(300);
    char name[256];
    snprintf(name, sizeof name, "%s-coord", argv[1]);
    seg_name = name;
    ShmdsSegment *seg;
    ShmdsArray *array;
    must(shmds_segment_create(name, 1 << 20, &seg), "create segment");
    must(shmds_array_create(seg, "cells", sizeof(uint64_t), "<Q", CELLS, false, &array), "cells");
    uint64_t *cells = shmds_array_data(array);
    test_lock(seg, cells);
    test_rwlock(seg);
    test_condition(seg, cells);
    test_semaphore(seg);
    test_event(seg);
    test_latch(seg);
    test_barrier(seg, cells);
    test_once(seg, cells);
    test_kinds(seg);
    shmds_array_close(array);
    shmds_segment_close(seg);
    must(shmds_segment_remove(name), "remove segment");
    printf("c coord: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
