/*
 * shmds/messages.hpp: part of shmds.hpp (include that). Variable-length
 * messages: Bytes (a view of what is sent), channels (Channel, Sender,
 * Receiver, Message, Reservation) and topics (Topic, Subscriber,
 * TopicMessage, TopicReservation).
 */
#ifndef SHMDS_MESSAGES_HPP
#define SHMDS_MESSAGES_HPP

#include "error.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shmds {

// ======================================================================
// Byte views (channel and topic messages)
// ======================================================================

/// A read-only view of message bytes: from a pointer and a length, a
/// std::string_view (or string, or string literal), or a vector or array
/// of bytes. It does not own them.
class Bytes {
public:
    /// `size` bytes at `data` (NULL allowed for 0).
    Bytes(const void* data, std::size_t size) noexcept : data_(data), size_(size) {}
    /// The bytes of `s`.
    Bytes(std::string_view s) noexcept : data_(s.data()), size_(s.size()) {}
    /// The bytes of `s`.
    Bytes(const std::string& s) noexcept : data_(s.data()), size_(s.size()) {}
    /// The bytes of a NUL-terminated string (without the NUL).
    Bytes(const char* s) noexcept : data_(s), size_(s ? std::strlen(s) : 0) {}
    /// The bytes of `v`.
    Bytes(const std::vector<std::uint8_t>& v) noexcept : data_(v.data()), size_(v.size()) {}
    /// The bytes of `v`.
    Bytes(const std::vector<char>& v) noexcept : data_(v.data()), size_(v.size()) {}
    /// The bytes of `a`.
    template <std::size_t N>
    Bytes(const std::array<std::uint8_t, N>& a) noexcept : data_(a.data()), size_(N) {}

    const void* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    const void* data_;
    std::size_t size_;
};

/// Fixed-size structures' and message rings' receive buffers start at
/// this many bytes (or max_message if smaller) and grow to what a message
/// needs.
constexpr std::size_t initial_receive_buffer = 4096;

// ======================================================================
// Channels
// ======================================================================

/// How to create a channel: the largest message (0: the default, the
/// capacity up to 1 GiB), one sender and one receiver (SHMDS_SPSC), a
/// CRC32C per message (SHMDS_CHECKSUM).
struct ChannelOptions {
    std::uint64_t max_message = 0;
    bool spsc = false;
    bool checksum = false;

    /// The C flags.
    std::uint32_t flags() const noexcept {
        return (spsc ? static_cast<std::uint32_t>(SHMDS_SPSC) : 0u) |
               (checksum ? static_cast<std::uint32_t>(SHMDS_CHECKSUM) : 0u);
    }
};

/// A message held in place in the channel's ring by a receiver
/// (Receiver::recv_ref): data()/size() are its bytes, valid until it is
/// released: by release() or by its destructor. At most one per receiver
/// at a time (the receiver's other calls are refused until then); it must
/// not outlive its Receiver. Move-only.
class Message {
public:
    /// No message.
    Message() noexcept = default;
    Message(Message&& o) noexcept
        : rx_(std::exchange(o.rx_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Message& operator=(Message&& o) noexcept {
        if (this != &o) {
            reset();
            rx_ = std::exchange(o.rx_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;
    /// Releases the message (errors ignored).
    ~Message() { reset(); }

    /// Its bytes in shared memory.
    const std::uint8_t* data() const noexcept { return static_cast<const std::uint8_t*>(data_); }
    /// Its length in bytes.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is empty (zero bytes, or no message).
    bool empty() const noexcept { return size_ == 0; }
    /// Whether it holds a message.
    explicit operator bool() const noexcept { return rx_ != nullptr; }
    /// Its bytes as a string_view.
    std::string_view view() const noexcept { return std::string_view(static_cast<const char*>(data_), size_); }
    /// A copy of its bytes.
    std::vector<std::uint8_t> bytes() const { return std::vector<std::uint8_t>(data(), data() + size_); }

    /// Free its room for senders now (throws on a C failure). Its data is
    /// invalid from then on.
    void release() {
        if (rx_ == nullptr) return;
        const ShmdsReceiver* rx = std::exchange(rx_, nullptr);
        data_ = nullptr;
        size_ = 0;
        detail::check(shmds_receiver_release(rx));
    }

private:
    friend class Receiver;
    Message(const ShmdsReceiver* rx, const void* data, std::size_t size) noexcept : rx_(rx), data_(data), size_(size) {}
    void reset() noexcept {
        if (rx_ != nullptr) (void)shmds_receiver_release(rx_);
        rx_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsReceiver* rx_ = nullptr;
    const void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// Room reserved for one message in a channel's ring (Sender::reserve):
/// write its size() bytes at data(), then commit() to send them. Dropped
/// unsent (aborted) if destroyed before commit. At most one per sender at
/// a time; it must not outlive its Sender. Move-only.
class Reservation {
public:
    Reservation() noexcept = default;
    Reservation(Reservation&& o) noexcept
        : tx_(std::exchange(o.tx_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Reservation& operator=(Reservation&& o) noexcept {
        if (this != &o) {
            reset();
            tx_ = std::exchange(o.tx_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    /// Aborts an uncommitted reservation (errors ignored).
    ~Reservation() { reset(); }

    /// The reserved bytes, writable until commit() or abort().
    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(data_); }
    /// The message's length.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is still open.
    explicit operator bool() const noexcept { return tx_ != nullptr; }

    /// Send the written bytes.
    void commit() { finish(true); }
    /// Drop the message unsent.
    void abort() { finish(false); }

private:
    friend class Sender;
    Reservation(const ShmdsSender* tx, void* data, std::size_t size) noexcept : tx_(tx), data_(data), size_(size) {}
    void finish(bool send) {
        if (tx_ == nullptr) throw Error(SHMDS_E_INVALID, "no open reservation");
        const ShmdsSender* tx = std::exchange(tx_, nullptr);
        data_ = nullptr;
        size_ = 0;
        detail::check(send ? shmds_sender_commit(tx) : shmds_sender_abort(tx));
    }
    void reset() noexcept {
        if (tx_ != nullptr) (void)shmds_sender_abort(tx_);
        tx_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsSender* tx_ = nullptr;
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// An attached sending end of a channel (Channel::sender()); detaches when
/// destroyed. A full channel is false or nullopt from the try_ and _for
/// forms; SHMDS_E_DISCONNECTED (no receiver left), SHMDS_E_SHUT_DOWN and
/// SHMDS_E_MESSAGE_TOO_LARGE throw.
class Sender {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Sender(ShmdsSender* h = nullptr) noexcept : h_(h) {}
    Sender(Sender&&) noexcept = default;
    Sender& operator=(Sender&&) noexcept = default;
    Sender(const Sender&) = delete;
    Sender& operator=(const Sender&) = delete;
    ~Sender() = default;

    /// The C handle (still owned by this object).
    ShmdsSender* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSender* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Send `msg` if there is room now (false if full). Never sleeps.
    bool try_send(Bytes msg) const {
        const int rc = shmds_sender_try_send(get(), msg.data(), msg.size());
        if (rc == SHMDS_E_FULL) return false;
        detail::check(rc);
        return true;
    }
    /// Send `size` bytes at `data` if there is room now.
    bool try_send(const void* data, std::size_t size) const { return try_send(Bytes(data, size)); }

    /// Send `msg`, waiting for room as long as it takes.
    void send(Bytes msg) const { detail::check(shmds_sender_send(get(), msg.data(), msg.size(), -1)); }
    /// Send `size` bytes at `data`, waiting as long as it takes.
    void send(const void* data, std::size_t size) const { send(Bytes(data, size)); }

    /// Send `msg`, waiting for room up to `timeout` (false if it passed).
    template <class Rep, class Period>
    bool send_for(Bytes msg, const std::chrono::duration<Rep, Period>& timeout) const {
        const int rc = shmds_sender_send(get(), msg.data(), msg.size(), detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return false;
        detail::check(rc);
        return true;
    }
    /// Send `size` bytes at `data`, waiting up to `timeout`.
    template <class Rep, class Period>
    bool send_for(const void* data, std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        return send_for(Bytes(data, size), timeout);
    }

    /// Reserve room for a message of `size` bytes if there is room now
    /// (nullopt if full): write it in place, then commit().
    std::optional<Reservation> try_reserve(std::size_t size) const {
        void* data = nullptr;
        const int rc = shmds_sender_try_reserve(get(), size, &data);
        if (rc == SHMDS_E_FULL) return std::nullopt;
        detail::check(rc);
        return Reservation(get(), data, size);
    }
    /// Reserve room for `size` bytes, waiting as long as it takes.
    Reservation reserve(std::size_t size) const {
        void* data = nullptr;
        detail::check(shmds_sender_reserve(get(), size, &data, -1));
        return Reservation(get(), data, size);
    }
    /// Reserve room for `size` bytes, waiting up to `timeout`.
    template <class Rep, class Period>
    std::optional<Reservation> reserve_for(std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        void* data = nullptr;
        const int rc = shmds_sender_reserve(get(), size, &data, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return Reservation(get(), data, size);
    }

private:
    detail::Owned<ShmdsSender, shmds_sender_close> h_;
};

/// An attached receiving end of a channel (Channel::receiver()); detaches
/// when destroyed. An empty channel is nullopt from the try_ and _for
/// forms; SHMDS_E_DISCONNECTED (empty and no sender left) and
/// SHMDS_E_SHUT_DOWN (drained after a shutdown) throw. (The library looks
/// at the peers' liveness in a try_ call only now and then, so a try_
/// call may report empty for a while before it reports disconnected; a
/// waiting call reports it before it sleeps.) Copying receives
/// size their buffer with the C protocol (SHMDS_E_BUFFER_TOO_SMALL and the
/// length needed, then a retry); recv_ref and try_recv_ref receive in
/// place, without a copy.
class Receiver {
public:
    /// Take ownership of a C handle (NULL: an empty handle); receive
    /// buffers start at `initial_buffer` bytes.
    explicit Receiver(ShmdsReceiver* h = nullptr, std::size_t initial_buffer = initial_receive_buffer) noexcept
        : h_(h), initial_(initial_buffer) {}
    Receiver(Receiver&&) noexcept = default;
    Receiver& operator=(Receiver&&) noexcept = default;
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;
    ~Receiver() = default;

    /// The C handle (still owned by this object).
    ShmdsReceiver* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsReceiver* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// The next message if one is there now (nullopt if empty). Never sleeps.
    std::optional<std::vector<std::uint8_t>> try_recv() const { return receive(false, 0); }
    /// The next message, waiting as long as it takes.
    std::vector<std::uint8_t> recv() const { return *receive(true, -1); }
    /// The next message, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::vector<std::uint8_t>> recv_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return receive(true, detail::to_ns(timeout));
    }

    /// Receive the next message into `buf` (`size` bytes; NULL allowed
    /// for 0) if one is there now: its length, or nullopt if empty. A
    /// returned length larger than `size` means it did not fit: nothing was
    /// received, the message stays first in the channel, and a buffer of
    /// that many bytes takes it (the C SHMDS_E_BUFFER_TOO_SMALL protocol).
    std::optional<std::size_t> try_recv_into(void* buf, std::size_t size) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_try_recv(get(), buf, size, &len);
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }
    /// As try_recv_into, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::size_t> recv_into_for(void* buf, std::size_t size,
                                             const std::chrono::duration<Rep, Period>& timeout) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_recv(get(), buf, size, &len, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }
    /// As try_recv_into, waiting as long as it takes.
    std::size_t recv_into(void* buf, std::size_t size) const {
        std::size_t len = 0;
        const int rc = shmds_receiver_recv(get(), buf, size, &len, -1);
        if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > size) return len;
        detail::check(rc);
        return len;
    }

    /// The next message in place if one is there now (nullopt if empty).
    std::optional<Message> try_recv_ref() const {
        const void* data = nullptr;
        std::size_t len = 0;
        const int rc = shmds_receiver_try_recv_ref(get(), &data, &len);
        if (rc == SHMDS_E_EMPTY) return std::nullopt;
        detail::check(rc);
        return Message(get(), data, len);
    }
    /// The next message in place, waiting as long as it takes.
    Message recv_ref() const {
        const void* data = nullptr;
        std::size_t len = 0;
        detail::check(shmds_receiver_recv_ref(get(), &data, &len, -1));
        return Message(get(), data, len);
    }
    /// The next message in place, waiting up to `timeout`.
    template <class Rep, class Period>
    std::optional<Message> recv_ref_for(const std::chrono::duration<Rep, Period>& timeout) const {
        const void* data = nullptr;
        std::size_t len = 0;
        const int rc = shmds_receiver_recv_ref(get(), &data, &len, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return Message(get(), data, len);
    }

private:
    /// One copying receive; timeout_ns < 0 waits forever. On
    /// SHMDS_E_BUFFER_TOO_SMALL the buffer grows to the length the C call
    /// reports and the receive is made again (another receiver may have
    /// taken that message meanwhile: then it is the next one's turn).
    std::optional<std::vector<std::uint8_t>> receive(bool wait, std::int64_t timeout_ns) const {
        const bool timed = wait && timeout_ns >= 0;
        const auto deadline = detail::deadline_in(timed ? timeout_ns : 0);
        std::vector<std::uint8_t> buf(initial_);
        for (;;) {
            std::size_t len = 0;
            const int rc = wait ? shmds_receiver_recv(get(), buf.data(), buf.size(), &len, timeout_ns)
                                : shmds_receiver_try_recv(get(), buf.data(), buf.size(), &len);
            if (rc == SHMDS_OK) {
                buf.resize(len);
                return buf;
            }
            if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > buf.size()) {
                buf.resize(len);
                if (timed) timeout_ns = detail::ns_until(deadline);
                continue;
            }
            if (rc == SHMDS_E_EMPTY || rc == SHMDS_E_TIMEOUT) return std::nullopt;
            detail::raise(rc);
        }
    }

    detail::Owned<ShmdsReceiver, shmds_receiver_close> h_;
    std::size_t initial_;
};

/// A bounded channel of variable-length messages (Segment::create_channel).
/// Attach senders and receivers to move messages; they stay usable after
/// the channel handle is closed.
class Channel {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Channel(ShmdsChannel* h = nullptr) noexcept : h_(h) {}
    Channel(Channel&&) noexcept = default;
    Channel& operator=(Channel&&) noexcept = default;
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;
    ~Channel() = default;

    /// The C handle (still owned by this object).
    ShmdsChannel* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsChannel* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Attach a sender (SHMDS_E_ALREADY_ATTACHED on an SPSC channel with a
    /// live one, SHMDS_E_TOO_MANY_ATTACHED past 32 processes).
    Sender sender() const {
        ShmdsSender* out = nullptr;
        detail::check(shmds_channel_attach_sender(get(), &out));
        return Sender(out);
    }
    /// Attach a receiver (refusals as for a sender).
    Receiver receiver() const {
        ShmdsReceiver* out = nullptr;
        detail::check(shmds_channel_attach_receiver(get(), &out));
        return Receiver(out, buffer_hint());
    }

    /// Shut the channel down for every process: sends throw
    /// SHMDS_E_SHUT_DOWN from now on; receivers get what is left, then the
    /// same.
    void shutdown() const { detail::check(shmds_channel_shutdown(get())); }
    /// Whether it was shut down.
    bool is_shut_down() const noexcept { return shmds_channel_is_shut_down(get()); }

    /// Messages held (approximate).
    std::size_t size() const noexcept { return shmds_channel_len(get()); }
    /// Whether no message is held.
    bool empty() const noexcept { return shmds_channel_is_empty(get()); }
    /// Whether not even an empty message fits.
    bool full() const noexcept { return shmds_channel_is_full(get()); }
    /// The ring's data capacity in bytes.
    std::uint64_t capacity() const noexcept { return shmds_channel_capacity(get()); }
    /// The largest message in bytes.
    std::uint64_t max_message() const noexcept { return shmds_channel_max_message(get()); }
    /// The C flags it was created with (SHMDS_SPSC, SHMDS_CHECKSUM).
    std::uint32_t flags() const noexcept { return shmds_channel_flags(get()); }
    /// Whether it is single-producer single-consumer.
    bool spsc() const noexcept { return (flags() & SHMDS_SPSC) != 0; }
    /// Whether its messages carry a checksum.
    bool checksum() const noexcept { return (flags() & SHMDS_CHECKSUM) != 0; }
    /// Throws Error (SHMDS_E_STALE) once the channel was erased.
    void check() const { detail::check(shmds_channel_check(get())); }

private:
    std::size_t buffer_hint() const noexcept {
        const std::uint64_t m = max_message();
        return static_cast<std::size_t>(std::min<std::uint64_t>(m, initial_receive_buffer));
    }
    detail::Owned<ShmdsChannel, shmds_channel_close> h_;
};

// ======================================================================
// Topics
// ======================================================================

/// How to create a topic: the largest message (0: the default, half the
/// capacity) and a CRC32C per message.
struct TopicOptions {
    std::uint64_t max_message = 0;
    bool checksum = false;

    /// The C flags.
    std::uint32_t flags() const noexcept { return checksum ? static_cast<std::uint32_t>(SHMDS_CHECKSUM) : 0u; }
};

/// A message received from a topic: its bytes, its sequence number, and
/// how many messages this subscriber lost (overwritten before it read
/// them) just before this one.
struct TopicMessage {
    std::vector<std::uint8_t> data;
    std::uint64_t seq = 0;
    std::uint64_t missed = 0;
};

/// Room reserved for one message of a topic (Topic::reserve): write it,
/// then commit() publishes it. The topic's publish lock is held until
/// then; destroyed uncommitted, it is aborted. It must not outlive its
/// Topic handle. Move-only.
class TopicReservation {
public:
    TopicReservation() noexcept = default;
    TopicReservation(TopicReservation&& o) noexcept
        : t_(std::exchange(o.t_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    TopicReservation& operator=(TopicReservation&& o) noexcept {
        if (this != &o) {
            reset();
            t_ = std::exchange(o.t_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    TopicReservation(const TopicReservation&) = delete;
    TopicReservation& operator=(const TopicReservation&) = delete;
    /// Aborts an uncommitted reservation (errors ignored).
    ~TopicReservation() { reset(); }

    /// The reserved bytes.
    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(data_); }
    /// The message's length.
    std::size_t size() const noexcept { return size_; }
    /// Whether it is still open.
    explicit operator bool() const noexcept { return t_ != nullptr; }

    /// Publish the written bytes; returns the message's sequence number.
    std::uint64_t commit() {
        const ShmdsTopic* t = take();
        std::uint64_t seq = 0;
        detail::check(shmds_topic_commit(t, &seq));
        return seq;
    }
    /// Drop the message unpublished.
    void abort() { detail::check(shmds_topic_abort(take())); }

private:
    friend class Topic;
    TopicReservation(const ShmdsTopic* t, void* data, std::size_t size) noexcept : t_(t), data_(data), size_(size) {}
    const ShmdsTopic* take() {
        if (t_ == nullptr) throw Error(SHMDS_E_INVALID, "no open reservation");
        data_ = nullptr;
        size_ = 0;
        return std::exchange(t_, nullptr);
    }
    void reset() noexcept {
        if (t_ != nullptr) (void)shmds_topic_abort(t_);
        t_ = nullptr;
        data_ = nullptr;
        size_ = 0;
    }
    const ShmdsTopic* t_ = nullptr;
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// A reader of a topic with its own position (Topic::subscribe). Nothing
/// new is nullopt from the try_ and _for forms. Falling behind
/// (SHMDS_E_LAGGED in C) does not throw: the count of lost messages is
/// carried into the `missed` of the next message returned, which is the
/// oldest one the topic still holds.
class Subscriber {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Subscriber(ShmdsSubscriber* h = nullptr, std::size_t initial_buffer = initial_receive_buffer) noexcept
        : h_(h), initial_(initial_buffer) {}
    Subscriber(Subscriber&& o) noexcept
        : h_(std::move(o.h_)), initial_(o.initial_), missed_(o.missed_.exchange(0)) {}
    Subscriber& operator=(Subscriber&& o) noexcept {
        h_ = std::move(o.h_);
        initial_ = o.initial_;
        missed_.store(o.missed_.exchange(0));
        return *this;
    }
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    ~Subscriber() = default;

    /// The C handle (still owned by this object).
    ShmdsSubscriber* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsSubscriber* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// The next message if there is one now (nullopt if none). Never sleeps.
    std::optional<TopicMessage> try_recv() const { return receive(Mode::now, 0); }
    /// The next message, waiting as long as it takes.
    TopicMessage recv() const { return *receive(Mode::wait, -1); }
    /// The next message, waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<TopicMessage> recv_for(const std::chrono::duration<Rep, Period>& timeout) const {
        return receive(Mode::wait, detail::to_ns(timeout));
    }
    /// The newest message, skipping every one before it (nullopt if
    /// nothing was published yet). Never sleeps.
    std::optional<TopicMessage> recv_latest() const { return receive(Mode::latest, 0); }

    /// Messages published that it has not read yet (an estimate).
    std::uint64_t pending() const noexcept { return shmds_subscriber_pending(get()); }

private:
    enum class Mode { now, wait, latest };

    std::optional<TopicMessage> receive(Mode mode, std::int64_t timeout_ns) const {
        const bool timed = mode == Mode::wait && timeout_ns >= 0;
        const auto deadline = detail::deadline_in(timed ? timeout_ns : 0);
        TopicMessage m;
        m.data.resize(initial_);
        for (;;) {
            std::size_t len = 0;
            std::uint64_t seq = 0, missed = 0;
            int rc;
            switch (mode) {
            case Mode::now:
                rc = shmds_subscriber_try_recv(get(), m.data.data(), m.data.size(), &len, &seq, &missed);
                break;
            case Mode::wait:
                rc = shmds_subscriber_recv(get(), m.data.data(), m.data.size(), &len, &seq, &missed, timeout_ns);
                break;
            default:
                rc = shmds_subscriber_recv_latest(get(), m.data.data(), m.data.size(), &len, &seq);
                break;
            }
            if (rc == SHMDS_OK) {
                m.data.resize(len);
                m.seq = seq;
                m.missed = missed_.exchange(0) + missed;
                return m;
            }
            if (rc == SHMDS_E_LAGGED) {
                missed_.fetch_add(missed);
            } else if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > m.data.size()) {
                m.data.resize(len);
            } else if (rc == SHMDS_E_EMPTY || rc == SHMDS_E_TIMEOUT) {
                return std::nullopt;
            } else {
                detail::raise(rc);
            }
            if (timed) timeout_ns = detail::ns_until(deadline);
        }
    }

    detail::Owned<ShmdsSubscriber, shmds_subscriber_close> h_;
    std::size_t initial_;
    mutable std::atomic<std::uint64_t> missed_{0};  // lost before the next message returned
};

/// A broadcast topic of variable-length messages (Segment::create_topic):
/// publish to every subscriber; the oldest messages are overwritten.
class Topic {
public:
    /// Take ownership of a C handle (NULL: an empty handle).
    explicit Topic(ShmdsTopic* h = nullptr) noexcept : h_(h) {}
    Topic(Topic&&) noexcept = default;
    Topic& operator=(Topic&&) noexcept = default;
    Topic(const Topic&) = delete;
    Topic& operator=(const Topic&) = delete;
    ~Topic() = default;

    /// The C handle (still owned by this object).
    ShmdsTopic* get() const noexcept { return h_.get(); }
    /// Give up ownership of the C handle (the caller closes it).
    ShmdsTopic* release() noexcept { return h_.release(); }
    /// Whether it holds a handle.
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Publish `msg`, waiting for another publisher as long as it takes
    /// (never for subscribers); returns its sequence number.
    std::uint64_t publish(Bytes msg) const {
        std::uint64_t seq = 0;
        detail::check(shmds_topic_publish(get(), msg.data(), msg.size(), &seq, -1));
        return seq;
    }
    /// Publish `size` bytes at `data`.
    std::uint64_t publish(const void* data, std::size_t size) const { return publish(Bytes(data, size)); }
    /// Publish `msg`, waiting for another publisher up to `timeout`
    /// (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<std::uint64_t> publish_for(Bytes msg, const std::chrono::duration<Rep, Period>& timeout) const {
        std::uint64_t seq = 0;
        const int rc = shmds_topic_publish(get(), msg.data(), msg.size(), &seq, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return seq;
    }

    /// Reserve room for a message of `size` bytes (holding the publish
    /// lock until commit or abort), waiting as long as it takes.
    TopicReservation reserve(std::size_t size) const {
        void* data = nullptr;
        detail::check(shmds_topic_reserve(get(), size, &data, -1));
        return TopicReservation(get(), data, size);
    }
    /// As reserve(), waiting up to `timeout` (nullopt if it passed).
    template <class Rep, class Period>
    std::optional<TopicReservation> reserve_for(std::size_t size, const std::chrono::duration<Rep, Period>& timeout) const {
        void* data = nullptr;
        const int rc = shmds_topic_reserve(get(), size, &data, detail::to_ns(timeout));
        if (rc == SHMDS_E_TIMEOUT) return std::nullopt;
        detail::check(rc);
        return TopicReservation(get(), data, size);
    }

    /// The newest message and its sequence number (missed is 0), or nullopt
    /// if nothing was published yet.
    std::optional<TopicMessage> latest() const {
        TopicMessage m;
        m.data.resize(buffer_hint());
        for (;;) {
            std::size_t len = 0;
            const int rc = shmds_topic_latest(get(), m.data.data(), m.data.size(), &len, &m.seq);
            if (rc == SHMDS_OK) {
                m.data.resize(len);
                return m;
            }
            if (rc == SHMDS_E_EMPTY) return std::nullopt;
            if (rc == SHMDS_E_BUFFER_TOO_SMALL && len > m.data.size()) {
                m.data.resize(len);
                continue;
            }
            detail::raise(rc);
        }
    }

    /// A subscriber receiving what is published from now on, or with
    /// `from_oldest` from the oldest message the topic still holds.
    Subscriber subscribe(bool from_oldest = false) const {
        ShmdsSubscriber* out = nullptr;
        detail::check(shmds_topic_subscribe(get(), from_oldest, &out));
        return Subscriber(out, buffer_hint());
    }

    /// Messages published since it was created (the next sequence number).
    std::uint64_t published() const noexcept { return shmds_topic_published(get()); }
    /// Messages held.
    std::size_t size() const noexcept { return shmds_topic_len(get()); }
    /// Whether no message is held.
    bool empty() const noexcept { return shmds_topic_is_empty(get()); }
    /// The ring's data capacity in bytes.
    std::uint64_t capacity() const noexcept { return shmds_topic_capacity(get()); }
    /// The largest message in bytes.
    std::uint64_t max_message() const noexcept { return shmds_topic_max_message(get()); }
    /// The C flags it was created with (SHMDS_CHECKSUM).
    std::uint32_t flags() const noexcept { return shmds_topic_flags(get()); }
    /// Throws Error (SHMDS_E_STALE) once the topic was erased.
    void check() const { detail::check(shmds_topic_check(get())); }

private:
    std::size_t buffer_hint() const noexcept {
        return static_cast<std::size_t>(std::min<std::uint64_t>(max_message(), initial_receive_buffer));
    }
    detail::Owned<ShmdsTopic, shmds_topic_close> h_;
};

}  // namespace shmds

#endif /* SHMDS_MESSAGES_HPP */
