//! # The same named structures on a Redis server
//!
//! When workers move to other machines, a [`Segment`] opened with
//! [`Segment::connect`] gives them the structures they used in shared
//! memory, under the same names and with the same element types, kept on a
//! Redis server (6.2 or later; Redis Cluster too). Code written against a
//! local [`crate::Segment`] runs against a remote one by changing how the
//! segment is opened:
//!
//! ```no_run
//! use shmds::remote::Segment;
//! let seg = Segment::connect("redis://127.0.0.1:6379/0", "jobs")?;
//! let q = seg.open_or_create_queue::<u64>("work", 1024)?;
//! q.push(7, None)?;
//! assert_eq!(q.pop(None)?, 7);
//! # Ok::<(), shmds::Error>(())
//! ```
//!
//! ## Keys
//! Every key of segment `S` starts with `shmds:{S}:`, so in a cluster all of
//! them live in the hash slot of the tag `S` and each operation is one Lua
//! script run atomically on one node. `shmds:{S}:seg` holds the remote
//! format (`format` = [`FORMAT`]); `shmds:{S}:meta` maps each entry name to
//! its record `1|kind|generation|capacity|element type|key type`, the same
//! canonical type descriptors a local segment stores; `shmds:{S}:gen`
//! counts generations. An entry's data key is `shmds:{S}:d:GEN:NAME`: a list
//! (queue, stack), a hash (map), a string of `len × size` bytes (array) or a
//! token string with an expiry (lock). Values are the element's bytes, the
//! same little-endian bytes a local segment holds, so Rust writes and Python
//! reads. Every script first checks that the entry's record is still the
//! one the handle opened: a handle to an erased (or erased and re-created)
//! entry fails with [`Error::Stale`], as locally.
//!
//! ## What a reply promises
//! - A call that returns `Ok` took effect on the server, exactly once.
//! - A call that fails with [`Error::Unavailable`] may or may not have taken
//!   effect (the request may have run and its reply been lost). Reads and
//!   plain overwrites (`get`, `set`, `insert`, `write`, `len`) are retried once
//!   on a fresh connection when a pooled connection turns out to be dead;
//!   pushes, pops, `fetch_add` and lock calls are never retried by the client.
//! - [`Queue::try_pop`]/[`Queue::pop`] (and the stack's) are **at most once**:
//!   the element leaves the server when the script runs; if the reply is then
//!   lost, or the process dies before using it, it is gone.
//! - [`Queue::take`] is **at least once**: the element moves atomically to
//!   the consumer's pending list; [`Delivery::ack`] removes it there. Elements
//!   of a consumer that did not renew its lease (`Options::lease`; every take
//!   renews it) go back to the front of the queue at the next take or
//!   [`Queue::recover`] by anyone, and may be delivered twice.
//! - Durability is the server's: with `appendonly yes` and `appendfsync
//!   always`, an acknowledged push survives a server crash; with the default
//!   `everysec`, up to a second of acknowledged writes may be lost.
//!
//! ## Failure injection
//! [`Segment::faults`] makes a segment unavailable, slow, flaky, or makes it
//! lose replies after the server ran a call, from a test and without
//! touching the server (see [`Faults`]).
//!
//! ## Blocking
//! Blocking calls wait on the server (`BLPOP` on a signal list the opposite
//! operation fills), not in a sleep loop; each wait is cut into slices of at
//! most [`WAIT_SLICE`], after which the call re-checks its structure.

/// The three `Segment` methods of a kind (create, open, open or create),
/// written once over the kind's builder `$build(name, args.., create)`
/// (`create`: `Some(open_ok)` to create, `None` to open).
macro_rules! entry_methods {
    ($what:literal, $ty:ty, [$($g:ident: $gb:path),*], $build:ident,
     $create:ident, $open:ident, $open_or_create:ident,
     ($($arg:ident: $argty:ty),*), ($($zero:expr),*)) => {
        impl $crate::remote::Segment {
            #[doc = concat!("Create ", $what, "; [`Error::EntryExists`](crate::Error::EntryExists) if `name` exists.")]
            pub fn $create<$($g: $gb),*>(&self, name: &str $(, $arg: $argty)*) -> $crate::Result<$ty> {
                self.$build(name $(, $arg)*, Some(false))
            }

            #[doc = concat!("Open `name`, which must be ", $what, " (its shape as it was created).")]
            pub fn $open<$($g: $gb),*>(&self, name: &str) -> $crate::Result<$ty> {
                self.$build(name $(, $zero)*, None)
            }

            #[doc = concat!("Open `name`, creating ", $what, " if it does not exist; an existing one")]
            /// must have this kind, type and capacity.
            pub fn $open_or_create<$($g: $gb),*>(&self, name: &str $(, $arg: $argty)*) -> $crate::Result<$ty> {
                self.$build(name $(, $arg)*, Some(true))
            }
        }
    };
}
pub(crate) use entry_methods;

mod array;
mod cache;
mod channel;
mod entry;
mod faults;
mod lock;
mod map;
mod queue;
mod scripts;

pub use array::{Array, RawArray};
pub use channel::{Channel, ChannelDelivery, Subscriber, Topic};
pub use entry::EntryInfo;
pub use faults::{node_faults, Faults};
pub use lock::{Lock, LockGuard};
pub use map::{Map, RawMap};
pub use queue::{Delivery, Queue, RawQueue, Stack};

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The remote format this build reads and writes (`shmds:{S}:seg`'s
/// `format` field); a segment of another format is refused with
/// [`Error::Incompatible`].
pub const FORMAT: &str = "shmds-remote-1";

/// The longest a blocking call waits on the server before it checks its
/// structure again (it goes on waiting if nothing changed).
pub const WAIT_SLICE: Duration = Duration::from_secs(1);

/// Connection pooling keeps at most this many idle connections per segment.
const IDLE_CONNECTIONS: usize = 16;

/// How a remote segment talks to its server.
#[derive(Clone, Debug)]
pub struct Options {
    /// The longest one command may take (reading its reply included) before
    /// the call fails with [`Error::Unavailable`]. Default 2 s.
    pub timeout: Duration,
    /// The longest connecting may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long a lock holder or a consumer of [`Queue::take`] stays the
    /// owner without renewing: after that, it counts as dead (a lock is
    /// taken over with [`crate::LockError::OwnerDied`], its taken elements
    /// go back to the queue). Default 30 s.
    pub lease: Duration,
    /// Serve reads of maps and arrays from a local cache kept coherent by
    /// the server's invalidations (`CLIENT TRACKING`), each value for at
    /// most this long: a hot read then costs no round trip, and a write
    /// anywhere drops every cached copy as soon as its invalidation
    /// arrives. `None` (the default) reads from the server every time. One
    /// server only (not a cluster). See the staleness bound in the module
    /// docs.
    pub cache: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            cache: None,
        }
    }
}

/// A named segment on a Redis server: cheap to clone (the clones share one
/// connection pool and one [`Faults`]), `Send + Sync`.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    url: String,
    client: Client,
    pool: Mutex<Vec<Conn>>,
    options: Options,
    faults: Faults,
    prefix: String,
    cache: Option<Arc<cache::Cache>>,
    /// In a cluster: the `host:port` of the node serving the segment's
    /// slot, looked up the first time a node has injected faults.
    node: std::sync::OnceLock<Option<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(c) = &self.cache {
            c.stop();
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Segment")
            .field("name", &self.inner.name)
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Segment {
    /// Connect to the segment `name` on the server at `url`
    /// (`redis://[user:password@]host:port/db`), or on the Redis Cluster
    /// reached through the nodes of `redis+cluster://host:port,host:port`,
    /// creating it if it does not exist yet. A server that cannot be reached gives
    /// [`Error::Unavailable`]; a segment of another remote format gives
    /// [`Error::Incompatible`].
    pub fn connect(url: &str, name: &str) -> Result<Segment> {
        Segment::connect_with(url, name, Options::default())
    }

    /// [`connect`](Segment::connect) with other timeouts or lease.
    pub fn connect_with(url: &str, name: &str, options: Options) -> Result<Segment> {
        Segment::build(url, name, options, true)
    }

    /// A handle to the segment; with `create_segment`, the segment is
    /// created if missing and its format checked.
    fn build(url: &str, name: &str, options: Options, create_segment: bool) -> Result<Segment> {
        validate_name(name)?;
        if options.timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "remote timeouts must be longer than zero".into(),
            ));
        }
        if options.lease < Duration::from_millis(10) {
            return Err(Error::InvalidArgument(
                "a remote lease must be at least 10 ms".into(),
            ));
        }
        let shown = redact(url);
        let client = Client::open(url, &options).map_err(|e| {
            Error::InvalidArgument(format!(
                "{shown:?} is not a Redis URL ({e}); write redis://host:port/db or redis+cluster://host:port,host:port"
            ))
        })?;
        let prefix = format!("shmds:{{{name}}}");
        let cache =
            match (&client, options.cache) {
                (_, None) => None,
                (Client::Single(c), Some(max_age)) => Some(cache::Cache::start(
                    c.clone(),
                    format!("{prefix}:d:"),
                    max_age,
                )),
                (Client::Cluster(_), Some(_)) => return Err(Error::InvalidArgument(
                    "the read cache works with one server, not a cluster: connect without `cache`"
                        .into(),
                )),
            };
        let seg = Segment {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                url: shown,
                client,
                pool: Mutex::new(Vec::new()),
                options,
                faults: Faults::default(),
                prefix,
                cache,
                node: std::sync::OnceLock::new(),
            }),
        };
        if !create_segment {
            return Ok(seg);
        }
        let format: String = seg.run("", true, |con| {
            scripts::SEGMENT.key(seg.key("seg")).arg(FORMAT).invoke(con)
        })?;
        if format != FORMAT {
            return Err(Error::Incompatible {
                name: name.to_owned(),
                detail: format!(
                    "it is remote format {format:?} and this build reads {FORMAT:?} (use the shmds version that made it, or remove it)"
                ),
            });
        }
        Ok(seg)
    }

    /// Delete every key of the remote segment `name` (its structures and
    /// their data). `Ok(false)` if it had none.
    pub fn remove(url: &str, name: &str) -> Result<bool> {
        let seg = Segment::build(url, name, Options::default(), false)?;
        // Entry by entry (each erase deletes that entry's keys), then the
        // segment's own keys: no key pattern scan, so it works in a cluster.
        let meta = seg.key("meta");
        let names: Vec<String> =
            seg.run("", true, |con| redis::cmd("HKEYS").arg(&meta).query(con))?;
        for entry in &names {
            match seg.erase(entry) {
                Ok(()) | Err(Error::EntryNotFound { .. }) => {}
                // A record that is not ours: drop it with the meta hash.
                Err(Error::InvalidName { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let keys = [seg.key("meta"), seg.key("gen"), seg.key("seg")];
        let existed: i64 = seg.run("", true, |con| {
            redis::cmd("DEL")
                .arg(&keys[0])
                .arg(&keys[1])
                .arg(&keys[2])
                .query(con)
        })?;
        Ok(existed > 0 || !names.is_empty())
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The server's URL, without its password.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The options it was connected with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The failure injection of this segment (and all its clones and
    /// handles), for tests.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Whether the read cache ([`Options::cache`]) is connected and
    /// caching (it is not while its listener (re)connects).
    pub fn cache_is_live(&self) -> bool {
        self.inner.cache.as_ref().is_some_and(|c| c.is_live())
    }

    /// The faults injected for the cluster node serving this segment, if
    /// any node has some (see [`node_faults`]).
    fn node_faults(&self) -> Option<Arc<Faults>> {
        if !matches!(self.inner.client, Client::Cluster(_)) {
            return None;
        }
        let registry = faults::nodes();
        if registry.is_empty() {
            return None;
        }
        let node = self.inner.node.get_or_init(|| self.serving_node().ok());
        registry.get(node.as_deref()?).cloned()
    }

    /// The `host:port` of the cluster node that serves this segment's slot
    /// (bypassing failure injection: it asks the real cluster).
    fn serving_node(&self) -> std::result::Result<String, ()> {
        let (mut con, _) = self.connection().map_err(|_| ())?;
        let key = self.key("seg");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(con.like())
            .map_err(|_| ())?;
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(con.like())
            .map_err(|_| ())?;
        for range in &slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let num = |i: usize| {
                parts
                    .get(i)
                    .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
            };
            let (Some(start), Some(end)) = (num(0), num(1)) else {
                continue;
            };
            if !(start..=end).contains(&slot) {
                continue;
            }
            let Some(redis::Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let host = master
                .first()
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            let port = master
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                self.give_back(con);
                return Ok(format!("{host}:{port}"));
            }
        }
        Err(())
    }

    /// The read cache, if on.
    fn cache(&self) -> Option<&cache::Cache> {
        self.inner.cache.as_deref()
    }

    /// One round trip to the server; returns how long it took.
    pub fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        self.run("", true, |con| redis::cmd("PING").query::<String>(con))?;
        Ok(start.elapsed())
    }

    /// The key `shmds:{S}:<suffix>`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.prefix)
    }

    /// Run `f` on a pooled connection, mapping failures to shmds errors
    /// about `entry`. `idempotent` calls are retried once on a fresh
    /// connection when a pooled one turns out to be dead.
    pub(crate) fn run<T>(
        &self,
        entry: &str,
        idempotent: bool,
        mut f: impl FnMut(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.run_with_timeout(entry, idempotent, None, &mut f)
    }

    /// [`run`](Segment::run) with the reply timeout raised by `extra` (for
    /// a command that blocks on the server that long).
    pub(crate) fn run_with_timeout<T>(
        &self,
        entry: &str,
        idempotent: bool,
        extra: Option<Duration>,
        f: &mut dyn FnMut(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let inner = &self.inner;
        inner.faults.before(&inner.name)?;
        let node = self.node_faults();
        if let Some(f) = &node {
            f.before(&inner.name)?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut con, pooled) = self.connection()?;
            if let Some(extra) = extra {
                if let Err(e) = con.set_read_timeout(Some(inner.options.timeout + extra)) {
                    return Err(self.unavailable(&e.to_string()));
                }
            }
            let result = f(con.like());
            if extra.is_some() && con.set_read_timeout(Some(inner.options.timeout)).is_err() {
                // The connection is dropped below unless it is returned.
                return result.map_err(|e| self.failure(entry, e));
            }
            match result {
                Ok(v) => {
                    self.give_back(con);
                    inner.faults.after(&inner.name)?;
                    if let Some(f) = &node {
                        f.after(&inner.name)?;
                    }
                    return Ok(v);
                }
                Err(e) if is_connection_failure(&e) => {
                    // The others in the pool are likely dead too (a server
                    // restart): start afresh.
                    inner.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    if pooled && idempotent && attempt == 1 {
                        continue;
                    }
                    return Err(self.failure(entry, e));
                }
                Err(e) => {
                    self.give_back(con);
                    return Err(self.failure(entry, e));
                }
            }
        }
    }

    fn connection(&self) -> Result<(Conn, bool)> {
        let inner = &self.inner;
        let pooled = inner.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(con) = pooled {
            return Ok((con, true));
        }
        let con = inner
            .client
            .connect(inner.options.connect_timeout)
            .map_err(|e| self.unavailable(&format!("cannot connect to {}: {e}", inner.url)))?;
        con.set_read_timeout(Some(inner.options.timeout))
            .and_then(|()| con.set_write_timeout(Some(inner.options.timeout)))
            .map_err(|e| self.unavailable(&e.to_string()))?;
        Ok((con, false))
    }

    fn give_back(&self, con: Conn) {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < IDLE_CONNECTIONS {
            pool.push(con);
        }
    }

    pub(crate) fn unavailable(&self, cause: &str) -> Error {
        Error::Unavailable {
            segment: self.inner.name.clone(),
            cause: cause.to_owned(),
        }
    }

    /// The shmds error for a failed command about `entry`: the scripts'
    /// own verdicts, data someone else rewrote, or the server not there.
    fn failure(&self, entry: &str, e: redis::RedisError) -> Error {
        let text = e.to_string();
        let code = e.code().unwrap_or("");
        let is = |c: &str| code == c || text.contains(c);
        if is("SHMDS_STALE") {
            Error::Stale {
                name: entry.to_owned(),
            }
        } else if is("SHMDS_FULL") {
            Error::Full {
                name: entry.to_owned(),
            }
        } else if is("SHMDS_CORRUPT") || is("WRONGTYPE") {
            Error::Corrupt {
                name: self.inner.name.clone(),
                detail: format!(
                    "the Redis keys of entry {entry:?} hold something shmds did not write ({text}); erase the entry and create it again"
                ),
            }
        } else if is_connection_failure(&e) {
            self.unavailable(&format!("{} at {}", text, self.inner.url))
        } else {
            self.unavailable(&format!(
                "the server at {} answered: {text}",
                self.inner.url
            ))
        }
    }

    /// Wait on the signal list `key` for at most `slice` (one token is
    /// taken), so a blocking call sleeps on the server.
    pub(crate) fn wait_signal(&self, entry: &str, key: &str, slice: Duration) -> Result<()> {
        let slice = slice.clamp(Duration::from_millis(1), WAIT_SLICE);
        let seconds = format!("{:.3}", slice.as_secs_f64());
        self.run_with_timeout(entry, false, Some(slice), &mut |con| {
            redis::cmd("BLPOP")
                .arg(key)
                .arg(&seconds)
                .query::<Option<(String, String)>>(con)
        })?;
        Ok(())
    }
}

/// The names of the remote segments on the server at `url`, sorted (one
/// server: a cluster's segments are spread over its nodes; list each node).
pub fn list_segments(url: &str) -> Result<Vec<String>> {
    let shown = redact(url);
    let fail = |e: redis::RedisError| Error::Unavailable {
        segment: String::new(),
        cause: format!("{shown}: {e}"),
    };
    let client = redis::Client::open(url)
        .map_err(|e| Error::InvalidArgument(format!("{shown:?} is not a Redis URL ({e})")))?;
    let timeout = Options::default().timeout;
    let mut con = client.get_connection_with_timeout(timeout).map_err(fail)?;
    con.set_read_timeout(Some(timeout)).map_err(fail)?;
    let mut names = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("shmds:{*}:seg")
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .map_err(fail)?;
        names.extend(batch.iter().filter_map(|k| {
            let name = k.strip_prefix("shmds:{")?.strip_suffix("}:seg")?;
            validate_name(name).is_ok().then(|| name.to_owned())
        }));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// A client of one server or of a cluster.
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to one server or to a cluster (which routes each call to
/// the node of its first key's slot, following redirections).
enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Client {
    fn open(url: &str, options: &Options) -> redis::RedisResult<Client> {
        let Some(rest) = url.strip_prefix("redis+cluster://") else {
            return redis::Client::open(url).map(Client::Single);
        };
        // redis+cluster://[user:pass@]h1:p1,h2:p2[/] → redis://[user:pass@]hN:pN
        let rest = rest.trim_end_matches('/');
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{auth}{h}"))
            .collect();
        redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.timeout)
            .build()
            .map(Client::Cluster)
    }

    fn connect(&self, timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Client::Single(c) => c.get_connection_with_timeout(timeout).map(Conn::Single),
            Client::Cluster(c) => c.get_connection().map(|c| Conn::Cluster(Box::new(c))),
        }
    }
}

impl Conn {
    fn like(&mut self) -> &mut dyn redis::ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    fn set_read_timeout(&self, d: Option<Duration>) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.set_read_timeout(d),
            Conn::Cluster(c) => c.set_read_timeout(d),
        }
    }

    fn set_write_timeout(&self, d: Option<Duration>) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.set_write_timeout(d),
            Conn::Cluster(c) => c.set_write_timeout(d),
        }
    }
}

/// Whether a client error means the connection is gone or timed out
/// (rather than a reply the server sent).
fn is_connection_failure(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Remote segment names: 1 to 200 ASCII letters, digits, `.`, `_` and `-`,
/// so a name is its own hash tag and no key pattern character.
fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "remote segment names cannot be empty"
    } else if name.len() > 200 {
        "remote segment names are at most 200 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        "remote segment names are ASCII letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// `url` with the password of its user part replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// A deadline for a blocking call: `None` waits forever.
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
    }

    /// How long is left (the whole wait slice when there is no deadline),
    /// `None` once it passed.
    pub(crate) fn left(&self) -> Option<Duration> {
        match self.0 {
            None => Some(WAIT_SLICE),
            Some(at) => at
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(validate_name("jobs-1.a_b").is_ok());
        for bad in ["", "a{b}", "a b", "a*", "a:b", &"x".repeat(201)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
