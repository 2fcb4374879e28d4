// A C++ consumer built against an installed shmds (tests/install/run.sh):
// it opens the queue "jobs" of uint64_t in the segment argv[1] through
// shmds.hpp and prints the job it pops, as the README's C program does.
#include <shmds.hpp>

#include <chrono>
#include <cstdint>
#include <iostream>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: consumer SEGMENT\n";
        return 2;
    }
    try {
        auto seg = shmds::Segment::open(argv[1]);
        auto jobs = seg.open_queue<std::uint64_t>("jobs");
        if (auto job = jobs.pop_for(std::chrono::seconds(1))) {
            std::cout << "job " << *job << "\n";
            return 0;
        }
        std::cout << "no job within 1 s\n";
        return 0;
    } catch (const shmds::Error &e) {
        std::cerr << "consumer: " << e.what() << "\n";
        return 1;
    }
}
