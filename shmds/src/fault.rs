//! Test-only pause points (feature `fault-injection`).
//!
//! With the feature on, a process whose environment has
//! `SHMDS_PAUSE_AT=<point>` pauses when it reaches that point, after creating
//! the file named by `SHMDS_PAUSE_FILE`: for `SHMDS_PAUSE_MS` milliseconds if
//! set, otherwise for good. A test waits for the file and then kills the
//! process with SIGKILL: a crash at a known instruction. Without the feature,
//! pause points compile to nothing.

#[cfg(feature = "fault-injection")]
pub(crate) fn pause_point(point: &str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("SHMDS_PAUSE_AT").ok());
    if target.as_deref() != Some(point) {
        return;
    }
    if let Ok(path) = std::env::var("SHMDS_PAUSE_FILE") {
        let _ = std::fs::write(path, point);
    }
    let ms = std::env::var("SHMDS_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    match ms {
        Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        None => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn pause_point(_point: &str) {}
