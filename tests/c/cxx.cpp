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
    static_assert(sizeof(shmds_segment_header) == 1024, "layout from C++");
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
    // A channel and a topic: send, receive in place, publish, subscribe.
    ShmdsChannel *ch = nullptr;
    ShmdsSender *tx = nullptr;
    ShmdsReceiver *rx = nullptr;
    const void *data = nullptr;
    std::size_t len = 0;
    if (shmds_channel_create(seg, "events", 4096, 0, SHMDS_SPSC, false, &ch) != SHMDS_OK ||
        shmds_channel_attach_sender(ch, &tx) != SHMDS_OK ||
        shmds_channel_attach_receiver(ch, &rx) != SHMDS_OK ||
        shmds_sender_send(tx, "hi", 2, -1) != SHMDS_OK ||
        shmds_receiver_recv_ref(rx, &data, &len, 0) != SHMDS_OK || len != 2 ||
        std::memcmp(data, "hi", 2) != 0 || shmds_receiver_release(rx) != SHMDS_OK)
        failures++;
    shmds_sender_close(tx);
    shmds_receiver_close(rx);
    shmds_channel_close(ch);
    ShmdsTopic *topic = nullptr;
    ShmdsSubscriber *sub = nullptr;
    char buf[8];
    std::uint64_t seq = 1, missed = 1;
    if (shmds_topic_create(seg, "ticks", 4096, 0, 0, false, &topic) != SHMDS_OK ||
        shmds_topic_subscribe(topic, false, &sub) != SHMDS_OK ||
        shmds_topic_publish(topic, "t", 1, &seq, -1) != SHMDS_OK ||
        shmds_subscriber_recv(sub, buf, sizeof buf, &len, &seq, &missed, 0) != SHMDS_OK ||
        len != 1 || seq != 0 || missed != 0)
        failures++;
    shmds_subscriber_close(sub);
    shmds_topic_close(topic);
    shmds_segment_close(seg);
    shmds_segment_remove(name.c_str());
    // A temporary segment goes with its last handle.
    ShmdsSegmentOptions opts{};
    opts.flags = SHMDS_TEMPORARY;
    ShmdsSegment *temp = nullptr;
    if (shmds_segment_create_with(name.c_str(), &opts, &temp) != SHMDS_OK ||
        shmds_segment_is_temporary(temp) != 1)
        failures++;
    shmds_segment_close(temp);
    if (shmds_segment_open(name.c_str(), &temp) != SHMDS_E_NOT_FOUND) failures++;
    std::printf("cxx: %d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
