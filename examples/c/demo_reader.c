#define _POSIX_C_SOURCE 200809L
/*
 * The C reader of the shmds demo (started by examples/demo.rs): attach to
 * the segment by name and watch the producer and the consumer work,
 * reading the queue's fill level and the shared map as they change.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmds.h"
#include "str16.h"

static uint64_t lookup(ShmdsMap *tally, const char *name) {
    struct str16 k = str16(name);
    uint64_t v = 0;
    return shmds_map_get(tally, &k, sizeof k, &v, sizeof v) == 1 ? v : 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SEGMENT\n", argv[0]);
        return 2;
    }
    int pid = (int)getpid();
    ShmdsSegment *seg;
    ShmdsQueue *jobs;
    ShmdsMap *tally;
    int rc = shmds_segment_open(argv[1], &seg);
    if (rc == 0) rc = shmds_queue_open(seg, "jobs", sizeof(uint64_t), "<Q", &jobs);
    if (rc == 0) rc = shmds_map_open(seg, "tally", sizeof(struct str16), STR16_TYPE, sizeof(uint64_t), "<Q", &tally);
    if (rc != 0) {
        fprintf(stderr, "[c      %d] %s\n", pid, shmds_last_error());
        return 1;
    }
    printf("[c      %d] attached to \"%s\" (%" PRIu64 " bytes); watching queue 'jobs' and map 'tally'\n",
           pid, argv[1], shmds_segment_size(seg));
    fflush(stdout);
    uint64_t last = UINT64_MAX;
    int lines = 0;
    /* Sample every millisecond for up to 30 s, until the consumer reports. */
    for (int i = 0; i < 30000 && lookup(tally, "python popped") == 0; i++) {
        uint64_t pushed = lookup(tally, "rust pushed");
        size_t queued = shmds_queue_len(jobs);
        if (pushed != last && pushed > 0 && lines < 3 && (lines == 0 || pushed >= (uint64_t)lines * 400000)) {
            printf("[c      %d] saw %" PRIu64 " jobs pushed so far, %zu waiting in the queue\n",
                   pid, pushed, queued);
            fflush(stdout);
            lines++;
        }
        last = pushed;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    printf("[c      %d] done: the map says %" PRIu64 " pushed, %" PRIu64 " popped\n", pid,
           lookup(tally, "rust pushed"), lookup(tally, "python popped"));
    shmds_map_close(tally);
    shmds_queue_close(jobs);
    shmds_segment_close(seg);
    return 0;
}
