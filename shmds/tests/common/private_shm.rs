//! A /dev/shm of one's own, for tests of machine-wide operations
//! (`remove_abandoned`, `shmds rm --abandoned`) that must not touch other
//! segments of the machine. Shared by the shmds and shmds-cli tests.

/// Move this process into a mount namespace of its own with a fresh
/// tmpfs on /dev/shm; false if that is not allowed (not root).
pub fn private_mount_namespace() -> bool {
    // SAFETY: plain system calls with constant NUL-terminated strings; the
    // calling process runs one test on one thread.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev/shm".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=64m".as_ptr().cast(),
            ) == 0
    }
}
