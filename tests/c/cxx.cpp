// include/shmds.h from C++ (`make test-header` builds this with -std=c++17
// and -std=c++20, -Wall -Wextra -Werror -pedantic, and runs it): the header
// compiles, its layout assertions hold, and the functions link with C
// names (extern "C").
#include "shmds.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

int main() {
    const std::string name = "shmds-cxxtest-" + std::to_string(getpid());
    static_assert(sizeof(shmds_segment_header) == 128, "layout from C++");
    ShmdsSegment *seg = nullptr;
    if (shmds_segment_create(name.c_str(), 1 << 20, &seg) != SHMDS_OK) {
        std::fprintf(stderr, "cxx: %s\n", shmds_last_error());
        return 1;
    }
    int failures = 0;
    ShmdsQueue *q = nullptr;
    std::uint64_t v = 7, got = 0;
    if (shmds_queue_create(seg, "jobs", sizeof v, "<Q", 4, false, &q) != SHMDS_OK ||
        shmds_queue_try_push(q, &v, sizeof v) != SHMDS_OK ||
        shmds_queue_pop(q, &got, sizeof got, 0) != SHMDS_OK || got != 7)
        failures++;
    if (shmds_queue_pop(q, &got, 4, 0) != SHMDS_E_INVALID) failures++;
    shmds_queue_close(q);
    ShmdsQueue *wrong = nullptr;
    if (shmds_queue_open(seg, "jobs", 4, nullptr, &wrong) != SHMDS_E_TYPE) failures++;
    if (std::strstr(shmds_last_error(), "not 4") == nullptr) failures++;
    if (std::strlen(shmds_strerror(SHMDS_E_SHAPE)) == 0) failures++;
    shmds_segment_close(seg);
    shmds_segment_remove(name.c_str());
    std::printf("cxx: %d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
