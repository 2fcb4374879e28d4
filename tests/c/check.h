/*
 * The checks of the C test programs (tests/c/safety.c, tests/c/coord.c):
 * each counts into `passed` and `failed` and prints what failed, with the
 * library's last error message.
 */
#ifndef SHMDS_TESTS_CHECK_H
#define SHMDS_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmds.h"

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, " (last error: %s)\n", shmds_last_error());       \
        }                                                                    \
    } while (0)

/* `call` returned `want`, and on failure left a message containing `text`. */
#define EXPECT(call, want, text)                                                      \
    do {                                                                              \
        int rc_ = (call);                                                             \
        CHECK(rc_ == (want), "%s returned %d (%s), expected %d", #call, rc_,         \
              shmds_strerror(rc_), (want));                                           \
        if (rc_ < 0 && (text) != NULL)                                                \
            CHECK(strstr(shmds_last_error(), (text)) != NULL,                         \
                  "%s: message \"%s\" lacks \"%s\"", #call, shmds_last_error(), (text)); \
    } while (0)

static const char *no_text = NULL;

/* Stop on a failed set-up call. */
static void must(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "set-up failed: %s: %s (%s)\n", what, shmds_strerror(rc),
                shmds_last_error());
        exit(2);
    }
}

#endif
