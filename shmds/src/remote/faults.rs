//! Failure injection for tests of code that uses remote segments.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Makes a remote segment misbehave on purpose, so a test can check what
/// its code does when the server is gone, slow or flaky, without stopping
/// the server. Every handle of the segment (and of its clones) obeys.
///
/// ```no_run
/// # let seg = shmds::remote::Segment::connect("redis://127.0.0.1/", "t")?;
/// let q = seg.open_or_create_queue::<u32>("q", 8)?;
/// seg.faults().make_unavailable();
/// assert!(matches!(q.try_push(1), Err(shmds::Error::Unavailable { .. })));
/// seg.faults().clear();
/// assert!(q.try_push(1)?);
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    down: bool,
    delay: Duration,
    /// Probability that a call fails before it is sent.
    flaky: f64,
    /// Probability that a call runs on the server but its reply is lost.
    lose_replies: f64,
    rng: u64,
    injected: u64,
}

impl Faults {
    /// Every call fails with [`Error::Unavailable`] (without being sent)
    /// until [`clear`](Faults::clear).
    pub fn make_unavailable(&self) {
        self.with(|s| s.down = true);
    }

    /// Every call first waits `delay` (a slow link; a delay beyond the
    /// caller's patience is the caller's timeout to handle).
    pub fn delay(&self, delay: Duration) {
        self.with(|s| s.delay = delay);
    }

    /// Each call fails with [`Error::Unavailable`] before it is sent with
    /// probability `p` (0 to 1), drawn from a generator seeded with `seed`
    /// (so a failing test can be repeated).
    pub fn flaky(&self, p: f64, seed: u64) {
        self.with(|s| {
            s.flaky = p.clamp(0.0, 1.0);
            s.rng = seed | 1;
        });
    }

    /// Each call runs on the server, and then with probability `p` its
    /// reply is lost: the caller gets [`Error::Unavailable`] although the
    /// call took effect, as when a connection drops at the wrong moment.
    /// Tests of at-least-once handling need this one.
    pub fn lose_replies(&self, p: f64, seed: u64) {
        self.with(|s| {
            s.lose_replies = p.clamp(0.0, 1.0);
            s.rng = seed | 1;
        });
    }

    /// Back to normal.
    pub fn clear(&self) {
        self.with(|s| {
            let injected = s.injected;
            *s = State {
                injected,
                ..State::default()
            };
        });
    }

    /// How many calls failed by injection so far.
    pub fn injected(&self) -> u64 {
        self.with(|s| s.injected)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Before a call is sent.
    pub(super) fn before(&self, segment: &str) -> Result<()> {
        let (fail, delay) = self.with(|s| {
            let fail = s.down || (s.flaky > 0.0 && s.draw() < s.flaky);
            if fail {
                s.injected += 1;
            }
            (fail, s.delay)
        });
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if fail {
            return Err(injected(segment, "the call was not sent"));
        }
        Ok(())
    }

    /// After a call ran on the server.
    pub(super) fn after(&self, segment: &str) -> Result<()> {
        let lost = self.with(|s| {
            let lost = s.lose_replies > 0.0 && s.draw() < s.lose_replies;
            if lost {
                s.injected += 1;
            }
            lost
        });
        if lost {
            return Err(injected(segment, "the call ran but its reply was lost"));
        }
        Ok(())
    }
}

impl State {
    /// A uniform draw in [0, 1) (xorshift64*).
    fn draw(&mut self) -> f64 {
        if self.rng == 0 {
            self.rng = 0x9e37_79b9_7f4a_7c15;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The failure injection of one Redis Cluster node, `host:port` as the
/// cluster names it (`CLUSTER SLOTS`): every remote segment of this process
/// whose slot that node serves obeys it, as if that node alone were down,
/// slow or flaky, while segments on the other nodes go on.
///
/// ```no_run
/// # let seg = shmds::remote::Segment::connect("redis+cluster://127.0.0.1:7000", "t")?;
/// shmds::remote::node_faults("127.0.0.1:7001").make_unavailable();
/// // ... segments served by 127.0.0.1:7001 now fail with Unavailable ...
/// shmds::remote::node_faults("127.0.0.1:7001").clear();
/// # Ok::<(), shmds::Error>(())
/// ```
pub fn node_faults(addr: &str) -> Arc<Faults> {
    let mut nodes = NODES.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(
        nodes
            .get_or_insert_with(HashMap::new)
            .entry(addr.to_owned())
            .or_default(),
    )
}

static NODES: Mutex<Option<HashMap<String, Arc<Faults>>>> = Mutex::new(None);

/// A copy of the node registry (empty unless a test used [`node_faults`]).
pub(super) fn nodes() -> HashMap<String, Arc<Faults>> {
    NODES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

fn injected(segment: &str, what: &str) -> Error {
    Error::Unavailable {
        segment: segment.to_owned(),
        cause: format!("failure injected by Faults ({what})"),
    }
}
