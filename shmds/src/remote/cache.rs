//! The coherent read cache of a remote segment (opt-in:
//! [`Options::cache`](super::Options::cache)): reads of maps and arrays are
//! served from memory, kept coherent by Redis's server-assisted client-side
//! caching. A listener thread holds two connections of its own: one
//! subscribed to `__redis__:invalidate`, and one that turned on `CLIENT
//! TRACKING … REDIRECT <the first> BCAST PREFIX shmds:{S}:d:`, so the server
//! announces every change of any data key of the segment, by whomever and
//! however made (scripts included).
//!
//! Coherence: every data key has an epoch, bumped by each invalidation. A
//! read samples the epoch before it asks the server and caches the reply
//! only if the epoch is unchanged afterwards and the listener is connected,
//! so a reply that raced an invalidation is never kept. This handle's own
//! writes bump the epoch themselves (read-your-writes without waiting for
//! the server's message). The listener's disconnection empties the cache
//! and turns it off until it has subscribed and tracked again.
//!
//! Staleness bound: a cached value is served at most `max_age` after it was
//! read, and while the listener is connected it is dropped as soon as the
//! invalidation of a change arrives (one server-to-client delivery after
//! the change, well under a millisecond on a LAN). So a read may miss a
//! change made elsewhere for that delivery time, and never for longer than
//! `max_age`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct KeyCache {
    epoch: u64,
    values: HashMap<Vec<u8>, (Option<Vec<u8>>, Instant)>,
}

pub(super) struct Cache {
    keys: Mutex<HashMap<String, KeyCache>>,
    /// The listener is subscribed and tracking: cached values are kept
    /// coherent.
    live: AtomicBool,
    stop: AtomicBool,
    max_age: Duration,
    /// Bounds memory: past this many cached values, the cache is emptied.
    max_values: usize,
}

/// A read's ticket: the epoch of its key when it started, if caching.
pub(super) struct Ticket(Option<u64>);

impl Cache {
    /// Start the listener for the keys starting with `prefix` on `client`.
    pub(super) fn start(client: redis::Client, prefix: String, max_age: Duration) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            keys: Mutex::new(HashMap::new()),
            live: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            max_age,
            max_values: 1 << 20,
        });
        let weak = Arc::downgrade(&cache);
        std::thread::Builder::new()
            .name("shmds-remote-cache".into())
            .spawn(move || listen(weak, client, prefix))
            .ok();
        cache
    }

    /// Stop the listener (when the segment's last handle goes).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyCache>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value of `field` of `key`: `Some(value)` on a hit
    /// (`value` itself `None` for a cached absence).
    pub(super) fn get(&self, key: &str, field: &[u8]) -> Option<Option<Vec<u8>>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let keys = self.keys();
        let (value, at) = keys.get(key)?.values.get(field)?;
        (at.elapsed() < self.max_age).then(|| value.clone())
    }

    /// Before asking the server for `key`.
    pub(super) fn ticket(&self, key: &str) -> Ticket {
        if !self.live.load(Ordering::Acquire) {
            return Ticket(None);
        }
        Ticket(Some(self.keys().get(key).map_or(0, |k| k.epoch)))
    }

    /// After the server answered `value` for `field` of `key`.
    pub(super) fn put(&self, ticket: Ticket, key: &str, field: &[u8], value: Option<Vec<u8>>) {
        let Some(epoch) = ticket.0 else { return };
        let mut keys = self.keys();
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let total: usize = keys.values().map(|k| k.values.len()).sum();
        if total >= self.max_values {
            keys.values_mut().for_each(|k| k.values.clear());
        }
        let k = keys.entry(key.to_owned()).or_default();
        if k.epoch == epoch {
            k.values.insert(field.to_vec(), (value, Instant::now()));
        }
    }

    /// `key` changed (an invalidation, or this handle wrote it).
    pub(super) fn invalidate(&self, key: &str) {
        let mut keys = self.keys();
        let k = keys.entry(key.to_owned()).or_default();
        k.epoch += 1;
        k.values.clear();
    }

    /// Everything may have changed (the listener lost its connection, or
    /// the server flushed).
    fn invalidate_all(&self) {
        let mut keys = self.keys();
        for k in keys.values_mut() {
            k.epoch += 1;
            k.values.clear();
        }
    }

    /// Whether the listener is connected (values are being cached).
    pub(super) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

/// The listener: (re)connect, subscribe, track; apply invalidations until
/// the cache is dropped or stopped.
fn listen(cache: std::sync::Weak<Cache>, client: redis::Client, prefix: String) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        if c.stop.load(Ordering::Relaxed) {
            return;
        }
        drop(c);
        let _ = session(&cache, &client, &prefix);
        if let Some(c) = cache.upgrade() {
            c.live.store(false, Ordering::Release);
            c.invalidate_all();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn session(
    cache: &std::sync::Weak<Cache>,
    client: &redis::Client,
    prefix: &str,
) -> redis::RedisResult<()> {
    let timeout = Duration::from_secs(2);
    let mut sub = client.get_connection_with_timeout(timeout)?;
    let mut tracker = client.get_connection_with_timeout(timeout)?;
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut sub)?;
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__redis__:invalidate")?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("REDIRECT")
        .arg(id)
        .arg("BCAST")
        .arg("PREFIX")
        .arg(prefix)
        .query::<()>(&mut tracker)?;
    pubsub.set_read_timeout(Some(Duration::from_millis(100)))?;
    match cache.upgrade() {
        Some(c) => {
            // Anything cached before now may have missed an invalidation.
            c.invalidate_all();
            c.live.store(true, Ordering::Release);
        }
        None => return Ok(()),
    }
    let mut last_ping = Instant::now();
    loop {
        let Some(c) = cache.upgrade() else {
            return Ok(());
        };
        if c.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match pubsub.get_message() {
            Ok(msg) => match msg.get_payload::<Option<Vec<String>>>() {
                Ok(Some(keys)) => keys.iter().for_each(|k| c.invalidate(k)),
                // A nil payload: the server flushed everything.
                Ok(None) | Err(_) => c.invalidate_all(),
            },
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        // The tracking connection must stay up: if it broke, tracking stopped.
        if last_ping.elapsed() > Duration::from_millis(500) {
            last_ping = Instant::now();
            redis::cmd("PING").query::<String>(&mut tracker)?;
        }
    }
}
