//! Remote channels and topics: messages of any length (up to the entry's
//! largest message) in Redis streams.
//!
//! A **channel** is the stream `d:G:E` read through the consumer group
//! `shmds`, with `i:G:E` counting the messages held (sent and not yet
//! acknowledged), which [`Channel::try_send`] keeps at most `capacity`.
//! [`Channel::recv`] is at most once (the script reads, acknowledges and
//! deletes the message in one step); [`Channel::take`] is at least once: the
//! message stays pending for this consumer until [`ChannelDelivery::ack`],
//! and a message pending for longer than the lease is claimed by the next
//! `take` of anyone (`XAUTOCLAIM`) and delivered again.
//!
//! A **topic** is the stream `d:G:E` trimmed to `capacity` messages, each
//! with its sequence number (`i:G:E` counts them); every subscriber reads
//! all messages from its own cursor, and one that fell more than
//! `capacity` behind is told how many it missed ([`Error::Lagged`]).

use super::entry::{Entry, Shape};
use super::{scripts, Deadline, Segment};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// A bounded multi-producer multi-consumer channel of byte messages on a
/// Redis server.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    entry: Entry,
    data: String,
    held: String,
    items: String,
    room: String,
    consumer: String,
    max_message: usize,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Channel")
            .field("segment", &self.inner.entry.seg.name())
            .field("name", &self.inner.entry.name)
            .finish()
    }
}

/// A message taken with [`Channel::take`]: acknowledge it once handled.
pub struct ChannelDelivery {
    message: Vec<u8>,
    id: String,
    channel: Channel,
}

impl std::fmt::Debug for ChannelDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelDelivery")
            .field("id", &self.id)
            .field("len", &self.message.len())
            .finish()
    }
}

impl ChannelDelivery {
    /// The message.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Acknowledge it: it leaves the server. `Ok(false)` if it had already
    /// been acknowledged (its lease ran out and another consumer took it).
    pub fn ack(self) -> Result<bool> {
        let c = &self.channel.inner;
        let n: i64 = c.entry.run(false, |con| {
            c.entry
                .invocation(&scripts::CHANNEL_ACK)
                .key(&c.data)
                .key(&c.held)
                .key(&c.room)
                .arg(&self.id)
                .invoke(con)
        })?;
        Ok(n == 1)
    }
}

impl Channel {
    fn too_large(&self, len: usize) -> Error {
        Error::MessageTooLarge {
            name: self.inner.entry.name.clone(),
            len: len as u64,
            max: self.inner.max_message as u64,
        }
    }

    /// Send `msg` if the channel holds fewer than `capacity` messages now;
    /// [`Error::Full`] otherwise.
    pub fn try_send(&self, msg: &[u8]) -> Result<()> {
        let c = &self.inner;
        if msg.len() > c.max_message {
            return Err(self.too_large(msg.len()));
        }
        let sent: i64 = c.entry.run(false, |con| {
            c.entry
                .invocation(&scripts::CHANNEL_SEND)
                .key(&c.data)
                .key(&c.held)
                .key(&c.items)
                .arg(c.entry.record.capacity)
                .arg(msg)
                .invoke(con)
        })?;
        if sent == 1 {
            Ok(())
        } else {
            Err(Error::Full {
                name: c.entry.name.clone(),
            })
        }
    }

    /// Send `msg`, waiting for room (forever when `timeout` is `None`).
    pub fn send(&self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        let deadline = Deadline::after(timeout);
        loop {
            match self.try_send(msg) {
                Err(Error::Full { .. }) => {}
                other => return other,
            }
            let Some(left) = deadline.left() else {
                return Err(Error::Timeout {
                    name: self.inner.entry.name.clone(),
                });
            };
            let c = &self.inner;
            c.entry.seg.wait_signal(&c.entry.name, &c.room, left)?;
        }
    }

    /// `lease`: "1" acknowledges at once; a number of ms reclaims
    /// messages pending that long.
    fn recv_once(&self, mode: &str) -> Result<Option<(String, Vec<u8>)>> {
        let c = &self.inner;
        let reply: Vec<redis::Value> = c.entry.run(false, |con| {
            c.entry
                .invocation(&scripts::CHANNEL_RECV)
                .key(&c.data)
                .key(&c.held)
                .key(&c.room)
                .arg(&c.consumer)
                .arg(mode)
                .invoke(con)
        })?;
        if reply.is_empty() {
            return Ok(None);
        }
        let id = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        let msg = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok());
        match (id, msg) {
            (Some(id), Some(msg)) if msg.len() <= c.max_message => Ok(Some((id, msg))),
            _ => Err(c.entry.corrupt("a stream entry is not a shmds message")),
        }
    }

    fn wait<T>(
        &self,
        timeout: Option<Duration>,
        mut attempt: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(v) = attempt()? {
                return Ok(v);
            }
            let Some(left) = deadline.left() else {
                return Err(Error::Timeout {
                    name: self.inner.entry.name.clone(),
                });
            };
            let c = &self.inner;
            c.entry.seg.wait_signal(&c.entry.name, &c.items, left)?;
        }
    }

    /// The oldest message if there is one now, at most once.
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.recv_once("1")?.map(|(_, m)| m))
    }

    /// The oldest message, waiting (forever when `timeout` is `None`); at
    /// most once.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.wait(timeout, || self.try_recv())
    }

    /// Take a message **at least once** if there is one now: first one
    /// another consumer left pending for longer than the lease, else the
    /// oldest new one.
    pub fn try_take(&self) -> Result<Option<ChannelDelivery>> {
        let lease = self.inner.entry.seg.options().lease.as_millis().max(2) as u64;
        Ok(self
            .recv_once(&lease.to_string())?
            .map(|(id, message)| ChannelDelivery {
                message,
                id,
                channel: self.clone(),
            }))
    }

    /// [`try_take`](Self::try_take), waiting (forever when `timeout` is
    /// `None`). A message left pending by a dead consumer is found when
    /// its lease has run out and this call next looks (at least once a
    /// [`WAIT_SLICE`](super::WAIT_SLICE)).
    pub fn take(&self, timeout: Option<Duration>) -> Result<ChannelDelivery> {
        self.wait(timeout, || self.try_take())
    }

    /// Messages held: sent and not yet acknowledged.
    pub fn len(&self) -> Result<usize> {
        let c = &self.inner;
        c.entry.run(true, |con| {
            c.entry
                .invocation(&scripts::CHANNEL_LEN)
                .key(&c.held)
                .invoke(con)
        })
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The most messages it holds.
    pub fn capacity(&self) -> usize {
        self.inner.entry.record.capacity as usize
    }

    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.inner.max_message
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.inner.entry.name
    }
}

/// A broadcast topic of byte messages on a Redis server: every subscriber
/// sees every message published after it subscribed, while it keeps up
/// within the topic's capacity.
#[derive(Clone)]
pub struct Topic {
    inner: Arc<TopicInner>,
}

struct TopicInner {
    entry: Entry,
    data: String,
    seq: String,
    max_message: usize,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Topic")
            .field("segment", &self.inner.entry.seg.name())
            .field("name", &self.inner.entry.name)
            .finish()
    }
}

/// One reader of a [`Topic`], with its own cursor.
pub struct Subscriber {
    topic: Topic,
    /// The stream id of the last message read ("-": before the oldest).
    cursor: String,
    /// The sequence number expected next (`None`: whatever comes first).
    expected: Option<u64>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Subscriber")
            .field("topic", &self.topic.inner.entry.name)
            .field("expected", &self.expected)
            .finish()
    }
}

impl Topic {
    /// Publish `msg` to every subscriber; returns its sequence number.
    pub fn publish(&self, msg: &[u8]) -> Result<u64> {
        let t = &self.inner;
        if msg.len() > t.max_message {
            return Err(Error::MessageTooLarge {
                name: t.entry.name.clone(),
                len: msg.len() as u64,
                max: t.max_message as u64,
            });
        }
        t.entry.run(false, |con| {
            t.entry
                .invocation(&scripts::TOPIC_PUBLISH)
                .key(&t.data)
                .key(&t.seq)
                .arg(t.entry.record.capacity)
                .arg(msg)
                .invoke(con)
        })
    }

    fn tail(&self) -> Result<(String, u64)> {
        let t = &self.inner;
        t.entry.run(true, |con| {
            t.entry
                .invocation(&scripts::TOPIC_TAIL)
                .key(&t.data)
                .key(&t.seq)
                .invoke(con)
        })
    }

    /// A subscriber that sees the messages published from now on.
    pub fn subscribe(&self) -> Result<Subscriber> {
        let (cursor, next) = self.tail()?;
        Ok(Subscriber {
            topic: self.clone(),
            cursor,
            expected: Some(next),
        })
    }

    /// A subscriber that starts with the oldest message held.
    pub fn subscribe_from_oldest(&self) -> Result<Subscriber> {
        self.tail()?; // the entry exists
        Ok(Subscriber {
            topic: self.clone(),
            cursor: "-".into(),
            expected: None,
        })
    }

    /// Messages published so far.
    pub fn published(&self) -> Result<u64> {
        Ok(self.tail()?.1)
    }

    /// The most messages it keeps for slow subscribers.
    pub fn capacity(&self) -> usize {
        self.inner.entry.record.capacity as usize
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.inner.entry.name
    }
}

impl Subscriber {
    /// The next message if there is one now. [`Error::Lagged`] (once) if
    /// messages were trimmed before this subscriber read them; the next
    /// call returns the oldest one held.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        let t = &self.topic.inner;
        let reply: Vec<redis::Value> = t.entry.run(true, |con| {
            t.entry
                .invocation(&scripts::TOPIC_READ)
                .key(&t.data)
                .key(&t.seq)
                .arg(&self.cursor)
                .invoke(con)
        })?;
        if reply.is_empty() {
            return Ok(None);
        }
        let id = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        let seq = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok());
        let msg = reply
            .get(2)
            .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok());
        let (Some(id), Some(seq), Some(msg)) = (id, seq, msg) else {
            return Err(t.entry.corrupt("a stream entry is not a shmds message"));
        };
        if msg.len() > t.max_message {
            return Err(t.entry.corrupt("a message is larger than the topic allows"));
        }
        if let Some(expected) = self.expected {
            if seq > expected {
                self.expected = Some(seq);
                return Err(Error::Lagged {
                    name: t.entry.name.clone(),
                    missed: seq - expected,
                });
            }
        }
        self.cursor = id;
        self.expected = Some(seq + 1);
        Ok(Some(msg))
    }

    /// The next message, waiting (forever when `timeout` is `None`) on the
    /// server (`XREAD BLOCK`).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(m) = self.try_recv()? {
                return Ok(m);
            }
            let Some(left) = deadline.left() else {
                return Err(Error::Timeout {
                    name: self.topic.inner.entry.name.clone(),
                });
            };
            let left = left.min(super::WAIT_SLICE);
            let t = &self.topic.inner;
            let cursor = if self.cursor == "-" {
                "0-0"
            } else {
                &self.cursor
            };
            let ms = left.as_millis().max(1) as u64;
            t.entry
                .seg
                .run_with_timeout(&t.entry.name, false, Some(left), &mut |con| {
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(ms)
                        .arg("STREAMS")
                        .arg(&t.data)
                        .arg(cursor)
                        .query::<redis::Value>(con)
                })?;
        }
    }
}

impl Segment {
    fn messages(
        &self,
        name: &str,
        kind: &'static str,
        capacity: usize,
        max_message: usize,
        create: Option<bool>,
    ) -> Result<Entry> {
        if create.is_some() && !(1..=super::entry::MAX_BYTES as usize).contains(&max_message) {
            return Err(Error::InvalidArgument(format!(
                "a remote {kind}'s largest message is 1 byte to 512 MiB, not {max_message}"
            )));
        }
        let max = max_message.to_string();
        let shape = Shape {
            kind,
            elem_type: create.map(|_| max.as_str()),
            key_type: Some(""),
            capacity: capacity as u64,
            bytes: 0,
        };
        match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok),
            None => self.open_entry(name, shape),
        }
    }

    fn channel(
        &self,
        name: &str,
        capacity: usize,
        max: usize,
        create: Option<bool>,
    ) -> Result<Channel> {
        let entry = self.messages(name, "channel", capacity, max, create)?;
        let max_message = entry.record.elem_type.parse().unwrap_or(0);
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                data: entry.key("d"),
                held: entry.key("i"),
                items: entry.key("s"),
                room: entry.key("r"),
                consumer: super::queue::consumer_name(),
                max_message,
                entry,
            }),
        })
    }

    fn topic(
        &self,
        name: &str,
        capacity: usize,
        max: usize,
        create: Option<bool>,
    ) -> Result<Topic> {
        let entry = self.messages(name, "topic", capacity, max, create)?;
        let max_message = entry.record.elem_type.parse().unwrap_or(0);
        Ok(Topic {
            inner: Arc::new(TopicInner {
                data: entry.key("d"),
                seq: entry.key("i"),
                max_message,
                entry,
            }),
        })
    }
}

super::entry_methods!(
    "a channel of at most `capacity` messages of at most `max_message` bytes each",
    Channel, [], channel, create_channel, open_channel, open_or_create_channel,
    (capacity: usize, max_message: usize), (0, 0)
);
super::entry_methods!(
    "a topic keeping the last `capacity` messages of at most `max_message` bytes each",
    Topic, [], topic, create_topic, open_topic, open_or_create_topic,
    (capacity: usize, max_message: usize), (0, 0)
);
