//! Remote locks: the lock key `d:G:E` holds the holder's token
//! (`pid:host:random`) with an expiry of one lease ([`Options::lease`]);
//! the marker `h:G:E` holds the same token without expiry until a clean
//! unlock deletes both. A taker that finds the marker of another token
//! knows its holder let the lease run out (it died, hung or lost the
//! network) and is told so with [`LockError::OwnerDied`], as a local lock
//! reports a dead holder. Releases signal `r:G:E`, where waiters block.
//!
//! [`Options::lease`]: super::Options::lease

use super::entry::{Entry, Shape};
use super::{scripts, Deadline, Segment};
use crate::coord::{LockError, LockResult, OwnerDied, TryLockResult};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// A mutual-exclusion lock on a Redis server with an owner token and a
/// lease: held until unlocked, or until the holder fails to renew it
/// within its lease ([`LockGuard::extend`]).
#[derive(Clone)]
pub struct Lock {
    entry: Arc<Entry>,
    key: Arc<str>,
    marker: Arc<str>,
    signal: Arc<str>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Lock")
            .field("segment", &self.entry.seg.name())
            .field("name", &self.entry.name)
            .finish()
    }
}

/// Holding a [`Lock`] (owning a handle to it, so it can be kept anywhere);
/// dropping it unlocks.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    lock: Lock,
    token: String,
    released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::LockGuard")
            .field("lock", &self.lock.entry.name)
            .finish()
    }
}

impl Lock {
    fn lease_ms(&self) -> u64 {
        self.entry.seg.options().lease.as_millis() as u64
    }

    /// One attempt: `Ok(Ok(previous marker))` if taken, else
    /// `Ok(Err(ms the holder's lease has left))`.
    fn attempt(&self, token: &str) -> Result<std::result::Result<String, u64>> {
        let reply: Vec<redis::Value> = self.entry.run(false, |con| {
            self.entry
                .invocation(&scripts::LOCK_ACQUIRE)
                .key(&*self.key)
                .key(&*self.marker)
                .arg(token)
                .arg(self.lease_ms())
                .invoke(con)
        })?;
        let code = reply
            .first()
            .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
        let text = |i: usize| {
            reply
                .get(i)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        match code {
            Some(1) => Ok(Ok(text(1).unwrap_or_default())),
            Some(0) => {
                let left = reply
                    .get(2)
                    .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                    .unwrap_or(0);
                Ok(Err(left.max(1) as u64))
            }
            _ => Err(self
                .entry
                .corrupt("the lock script's answer cannot be read")),
        }
    }

    fn take(&self, timeout: Option<Duration>) -> TryLockResult<LockGuard> {
        let token = new_token();
        let deadline = Deadline::after(timeout);
        loop {
            match self.attempt(&token)? {
                Ok(previous) => {
                    let guard = LockGuard {
                        lock: self.clone(),
                        token,
                        released: false,
                    };
                    if previous.is_empty() {
                        return Ok(Some(guard));
                    }
                    return Err(LockError::OwnerDied(OwnerDied {
                        guard,
                        pid: pid_of(&previous),
                        name: self.entry.name.clone(),
                    }));
                }
                Err(lease_left) => {
                    let Some(left) = deadline.left() else {
                        return Ok(None);
                    };
                    // Wake at a release, or when the holder's lease ends.
                    let wait = left.min(Duration::from_millis(lease_left));
                    self.entry
                        .seg
                        .wait_signal(&self.entry.name, &self.signal, wait)?;
                }
            }
        }
    }

    /// Take the lock, waiting as long as it takes.
    /// [`LockError::OwnerDied`] (with the guard inside) when the previous
    /// holder let its lease run out without unlocking.
    pub fn lock(&self) -> LockResult<LockGuard> {
        match self.take(None) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => Err(LockError::Failed(Error::Timeout {
                name: self.entry.name.clone(),
            })),
            Err(e) => Err(e),
        }
    }

    /// Take the lock if it is free now: `Ok(None)` if it is held.
    pub fn try_lock(&self) -> TryLockResult<LockGuard> {
        self.take(Some(Duration::ZERO))
    }

    /// Take the lock, waiting at most `timeout`: `Ok(None)` if it stayed
    /// held.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard> {
        self.take(Some(timeout))
    }

    /// Whether anyone holds it now (within its lease).
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.holder()?.is_some())
    }

    /// The pid in the holder's token (a pid on the holder's machine), if
    /// anyone holds it.
    pub fn holder(&self) -> Result<Option<u32>> {
        let (token, _left): (String, i64) = self.entry.run(true, |con| {
            self.entry
                .invocation(&scripts::LOCK_STATE)
                .key(&*self.key)
                .invoke(con)
        })?;
        Ok((!token.is_empty()).then(|| pid_of(&token)))
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }
}

impl LockGuard {
    /// Renew the lease for another [`Options::lease`](super::Options::lease).
    /// [`Error::NotOwner`] if the lease had already run out and another
    /// holder took the lock.
    pub fn extend(&self) -> Result<()> {
        let lock = &self.lock;
        let renewed: i64 = lock.entry.run(false, |con| {
            lock.entry
                .invocation(&scripts::LOCK_EXTEND)
                .key(&*lock.key)
                .arg(&self.token)
                .arg(lock.lease_ms())
                .invoke(con)
        })?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(self.not_owner())
        }
    }

    /// Unlock, reporting what dropping cannot: [`Error::NotOwner`] if the
    /// lease ran out and another holder took the lock meanwhile (so what it
    /// guards may have been changed under this holder).
    pub fn unlock(mut self) -> Result<()> {
        self.released = true;
        self.release()
    }

    fn release(&self) -> Result<()> {
        let lock = &self.lock;
        let released: i64 = lock.entry.run(false, |con| {
            lock.entry
                .invocation(&scripts::LOCK_RELEASE)
                .key(&*lock.key)
                .key(&*lock.marker)
                .key(&*lock.signal)
                .arg(&self.token)
                .invoke(con)
        })?;
        if released == 1 {
            Ok(())
        } else {
            Err(self.not_owner())
        }
    }

    fn not_owner(&self) -> Error {
        let holder = self.lock.holder().ok().flatten().unwrap_or(0);
        Error::NotOwner {
            name: self.lock.entry.name.clone(),
            holder,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            // A failed release (server gone, lease lost) leaves the lock to
            // expire with its lease; the next taker is told OwnerDied.
            let _ = self.release();
        }
    }
}

/// A new owner token: `pid:host:random`.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!("{}:{host}:{:016x}", std::process::id(), h.finish())
}

fn pid_of(token: &str) -> u32 {
    token
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

impl Segment {
    fn lock_entry(&self, name: &str, create: Option<bool>) -> Result<Lock> {
        let shape = Shape {
            kind: "lock",
            elem_type: Some(""),
            key_type: Some(""),
            capacity: 0,
            bytes: 0,
        };
        let entry = match create {
            Some(open_ok) => self.create_entry(name, shape, open_ok)?,
            None => self.open_entry(name, shape)?,
        };
        Ok(Lock {
            key: entry.key("d").into(),
            marker: entry.key("h").into(),
            signal: entry.key("r").into(),
            entry: Arc::new(entry),
        })
    }
}

super::entry_methods!(
    "a lock, free",
    Lock,
    [],
    lock_entry,
    create_lock,
    open_lock,
    open_or_create_lock,
    (),
    ()
);
