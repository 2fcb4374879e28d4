/*
 * shmds.hpp: a header-only C++17 layer over the C API of shmds (shmds.h).
 *
 * Typed, move-only RAII handles for segments, the structures in them
 * (arrays, queues, stacks, maps, sets, channels, topics) and the
 * coordination primitives (locks, rwlocks, conditions, semaphores,
 * barriers, events, latches, once cells). Failures throw shmds::Error,
 * whose code() is the SHMDS_E_* value; the expected outcomes of a
 * non-blocking or timed call (full, empty, timed out) are a bool or an
 * empty std::optional instead. Link with libshmds (see shmds.h).
 *
 * Example (a complete program):
 *
 *     #include "shmds.hpp"
 *
 *     #include <cstdio>
 *     #include <mutex>
 *
 *     struct Quote { std::uint8_t venue; double price; std::uint32_t size; };
 *     SHMDS_RECORD(Quote, venue, price, size);   // T{B:venue:7x<d:price:<I:size:4x}
 *
 *     int main() try {
 *         auto seg = shmds::Segment::open_or_create("demo", 1 << 20);
 *
 *         auto jobs = seg.open_or_create_queue<std::uint64_t>("jobs", 128);
 *         jobs.push(42);                                  // blocks while full
 *         if (auto v = jobs.pop_for(std::chrono::milliseconds(10)))
 *             std::printf("job %llu\n", static_cast<unsigned long long>(*v));
 *         jobs.push_many(std::vector<std::uint64_t>{1, 2, 3});   // one claim for the run
 *         std::vector<std::uint64_t> batch = jobs.try_pop_many(16);  // {1, 2, 3}
 *
 *         auto quotes = seg.open_or_create_array<Quote>("quotes", 3);
 *         quotes.set(0, Quote{1, 100.5, 10});
 *
 *         using Key = shmds::FixedStr<16>;
 *         auto prices = seg.open_or_create_map<Key, double>("prices", 64);
 *         prices.insert(Key("AAPL"), 189.5);
 *         std::optional<double> p = prices.get(Key("AAPL"));
 *         for (const auto& [sym, price] : prices)         // weakly consistent walk
 *             std::printf("%s %g\n", sym.str().c_str(), price);
 *
 *         auto lock = seg.open_or_create_lock("guard");
 *         {
 *             std::lock_guard<shmds::Lock> hold(lock);
 *             if (lock.owner_died()) { } // repair what it guards
 *         }
 *
 *         auto events = seg.open_or_create_channel("events", 64 << 10,
 *                                                  {4096, false, true});  // max_message, spsc, checksum
 *         auto tx = events.sender();
 *         auto rx = events.receiver();
 *         tx.send("hello");
 *         std::vector<std::uint8_t> msg = rx.recv();
 *         if (auto m = rx.try_recv_ref()) { }             // zero-copy: m->view()
 *         return p && msg.size() == 5 ? 0 : 1;
 *     } catch (const shmds::Error& e) {                   // e.code() is SHMDS_E_*
 *         std::fprintf(stderr, "%s\n", e.what());
 *         return 2;
 *     }
 *
 * Types: every typed open and create states sizeof(T) and the descriptor
 * shmds::element<T>::descriptor() (FORMAT.md, "Type descriptors"), so a
 * structure holding another type is refused with SHMDS_E_TYPE. Supported:
 * the fixed-width integers, float, double, char ("c"), bool ("?"),
 * std::byte ("B"), std::array<T, N> and T[N] of supported types
 * (std::array<std::uint8_t, N> is "Ns", as Rust's [u8; N]),
 * shmds::FixedStr<N>, and structs declared with SHMDS_RECORD. Another type
 * fails to compile with a static_assert naming the problem.
 *
 * Threads: every handle may be used from several threads at once, as the
 * C handles may, except where a class says otherwise. A moved-from handle
 * holds nothing: destroying it does nothing, and calling it throws
 * SHMDS_E_INVALID (getters return 0 or false). Destructors never throw.
 *
 * Durations: any std::chrono::duration; negative ones count as zero (the
 * C API's "negative waits forever" is reached only through the untimed
 * forms, e.g. pop() instead of pop_for()).
 *
 * Layout: this header includes the parts in shmds/ (error.hpp: Error and
 * the detail helpers; element.hpp: FixedStr, element descriptors,
 * SHMDS_RECORD; structures.hpp: Array, Queue, Stack, Map, Set;
 * messages.hpp: Bytes, channels, topics; coord.hpp: locks and the other
 * coordination primitives; segment.hpp: Segment). Include this header;
 * each part also compiles on its own and includes what it needs, by
 * paths relative to itself, so any -I that finds shmds.hpp will do.
 */
#ifndef SHMDS_HPP
#define SHMDS_HPP

#include "shmds.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmds/error.hpp"
#include "shmds/element.hpp"
#include "shmds/structures.hpp"
#include "shmds/messages.hpp"
#include "shmds/coord.hpp"
#include "shmds/segment.hpp"

#endif /* SHMDS_HPP */
