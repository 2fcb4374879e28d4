//! Helpers shared by the integration tests: unique segment names that are
//! removed even when a test fails, and re-running this test binary as a
//! child process.
#![allow(dead_code)]

pub mod private_shm;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique segment name, removed from /dev/shm when dropped.
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> ShmName {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        ShmName(format!("shmds-test-{tag}-{}-{n}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/{}", self.0))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmds::Segment::remove(&self.0);
    }
}

/// A temporary file path for pause markers, removed when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(tag: &str) -> TempPath {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("shmds-{tag}-{}-{n}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Environment variable that tells a re-run test binary which role to play.
pub const ROLE: &str = "SHMDS_TEST_ROLE";

/// Run the test function `test` of this test binary as a child process with
/// the given environment (it should check `ROLE` and act as the child).
pub fn spawn_self(test: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::null());
    cmd.spawn().expect("spawn child test process")
}

/// The environment of a child playing `role` on the segment `seg` (in
/// `SHMDS_SEGMENT`), plus `extra`.
pub fn role_env(
    role: &str,
    seg: &ShmName,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut v = vec![(ROLE, role.to_owned()), ("SHMDS_SEGMENT", seg.0.clone())];
    v.extend_from_slice(extra);
    v
}

/// Kills and reaps a child when dropped (so a failing test leaves no orphan).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `path` exists (a child reached its pause point).
pub fn wait_for_file(path: &std::path::Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Send SIGKILL to a child and reap it.
pub fn kill_and_reap(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A small deterministic random number generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
