//! Segment lifetime with real processes: attached processes are recorded
//! (and noticed dead when killed), temporary segments go with their last
//! attached process, abandoned segments are found and removed.

mod common;
use common::*;
use shmds::{Error, Segment};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg_name = std::env::var("SHMDS_SEGMENT").unwrap_or_default();
    let ready = std::env::var("SHMDS_READY_FILE").ok();
    let release = std::env::var("SHMDS_RELEASE_FILE").ok();
    match role.as_str() {
        // Attach (creating the segment if SHMDS_CREATE says how), say so,
        // and hold it until the release file appears (or for ever).
        "hold" => {
            let seg = match std::env::var("SHMDS_CREATE").as_deref() {
                Ok("temporary") => Segment::options()
                    .size(1 << 20)
                    .temporary(true)
                    .create(&seg_name),
                Ok("persistent") => Segment::create(&seg_name, 1 << 20),
                _ => Segment::open(&seg_name),
            }
            .unwrap();
            if std::env::var_os("SHMDS_WITH_DATA").is_some() {
                seg.create_array::<u64>("data", 4)
                    .unwrap()
                    .set(0, 7)
                    .unwrap();
            }
            std::fs::write(ready.unwrap(), "attached").unwrap();
            loop {
                if release.as_deref().is_some_and(|r| Path::new(r).exists()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(seg);
        }
        "fan-out" => fan_out(&seg_name),
        "churn" => {
            let go = release.unwrap();
            while !Path::new(&go).exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            churn(&seg_name)
        }
        "private-shm" => private_shm(),
        other => panic!("unknown role {other}"),
    }
}

fn hold(seg: &ShmName, create: Option<&str>, ready: &TempPath, release: &TempPath) -> Child {
    let mut env = vec![
        (ROLE, "hold".to_string()),
        ("SHMDS_SEGMENT", seg.0.clone()),
        ("SHMDS_READY_FILE", ready.0.display().to_string()),
        ("SHMDS_RELEASE_FILE", release.0.display().to_string()),
    ];
    if let Some(how) = create {
        env.push(("SHMDS_CREATE", how.to_string()));
        env.push(("SHMDS_WITH_DATA", "1".to_string()));
    }
    let child = spawn_self("child_role", &env);
    assert!(wait_for_file(&ready.0, WAIT), "the child did not attach");
    child
}

fn exists(seg: &ShmName) -> bool {
    seg.path().exists()
}

/// A child attaches and is killed: it is listed dead, the segment is
/// abandoned, and removing abandoned segments removes it.
#[test]
fn killed_attacher_is_dead_and_its_segment_abandoned() {
    let name = ShmName::new("killed");
    let (ready, release) = (TempPath::new("ready"), TempPath::new("release"));
    let mut child = KillOnDrop(hold(&name, Some("persistent"), &ready, &release));
    let pid = child.0.id();

    let status = shmds::segment_status(name.as_str()).unwrap();
    let listed = status.attachers.iter().find(|a| a.pid == pid).unwrap();
    assert!(listed.alive && listed.handles == 1 && listed.start_time != 0);
    assert_eq!(status.creator_pid, pid);
    assert!(status.creator_alive);
    assert!(!status.abandoned && !status.temporary);
    assert!(!shmds::remove_if_abandoned(name.as_str()).unwrap());
    assert!(exists(&name));

    kill_and_reap(&mut child.0);
    let status = shmds::segment_status(name.as_str()).unwrap();
    let listed = status.attachers.iter().find(|a| a.pid == pid).unwrap();
    assert!(!listed.alive, "a killed attacher is dead");
    assert!(!status.creator_alive);
    assert!(status.abandoned);
    // Still there: a persistent segment stays until removed.
    let ro = Segment::options()
        .read_only(true)
        .open(name.as_str())
        .unwrap();
    assert!(ro.is_abandoned());
    assert_eq!(ro.entries().unwrap().len(), 1, "its data is intact");
    drop(ro);
    assert!(shmds::remove_if_abandoned(name.as_str()).unwrap());
    assert!(!exists(&name));
}

/// Three processes attached to a temporary segment: it goes when the last
/// one detaches, not before.
#[test]
fn temporary_goes_with_the_last_of_three() {
    let name = ShmName::new("three");
    let seg = Segment::options()
        .size(1 << 20)
        .temporary(true)
        .create(name.as_str())
        .unwrap();
    let files: Vec<(TempPath, TempPath)> = (0..2)
        .map(|_| (TempPath::new("ready"), TempPath::new("release")))
        .collect();
    let mut children: Vec<KillOnDrop> = files
        .iter()
        .map(|(ready, release)| KillOnDrop(hold(&name, None, ready, release)))
        .collect();
    let live = seg.attachers().iter().filter(|a| a.alive).count();
    assert_eq!(live, 3);
    assert!(seg.is_temporary());

    drop(seg);
    assert!(exists(&name), "two processes are still attached");
    for (i, (_, release)) in files.iter().enumerate() {
        std::fs::write(&release.0, "go").unwrap();
        let status = children[i].0.wait().unwrap();
        assert!(status.success());
        if i == 0 {
            assert!(exists(&name), "one process is still attached");
            let status = shmds::segment_status(name.as_str()).unwrap();
            assert_eq!(status.attachers.iter().filter(|a| a.alive).count(), 1);
        }
    }
    assert!(!exists(&name), "the last one removed it");
    children.clear();
}

/// A temporary segment whose only attacher was killed is abandoned: the
/// next open removes it and fails as for a missing segment, and
/// open_or_create makes a fresh one.
#[test]
fn abandoned_temporary_is_removed_by_the_next_open() {
    let name = ShmName::new("abandoned-temp");
    for round in 0..2 {
        let (ready, release) = (TempPath::new("ready"), TempPath::new("release"));
        let mut child = KillOnDrop(hold(&name, Some("temporary"), &ready, &release));
        kill_and_reap(&mut child.0);
        assert!(exists(&name), "nobody noticed the death yet");
        let status = shmds::segment_status(name.as_str()).unwrap();
        assert!(status.temporary && status.abandoned);
        assert!(status.attachers.iter().all(|a| !a.alive));
        if round == 0 {
            assert!(matches!(
                Segment::open(name.as_str()),
                Err(Error::SegmentNotFound { .. })
            ));
            assert!(!exists(&name), "the open removed it");
        } else {
            let fresh = Segment::options()
                .size(1 << 20)
                .temporary(true)
                .open_or_create(name.as_str())
                .unwrap();
            assert!(fresh.entries().unwrap().is_empty(), "a new segment");
            assert_eq!(fresh.creator_pid(), std::process::id());
            drop(fresh);
            assert!(!exists(&name));
        }
    }
}

/// A slot with our pid but another start time is a process that had our
/// pid before: dead, so it keeps no temporary segment alive.
#[test]
fn reused_pid_counts_as_dead() {
    let name = ShmName::new("reuse");
    let seg = Segment::options()
        .size(1 << 20)
        .temporary(true)
        .create(name.as_str())
        .unwrap();
    let me = seg.attachers()[0];
    assert_eq!(me.pid, std::process::id());
    // Write the impostor into a free slot, through the raw layout.
    let slots = seg
        .as_ptr()
        .wrapping_add(shmds::layout::SEGMENT_HEADER_SIZE as usize);
    // SAFETY: the segment maps the header and ATTACH_SLOTS slots of
    // repr(C) atomics at SEGMENT_HEADER_SIZE; `seg` keeps it mapped.
    let slots = unsafe {
        std::slice::from_raw_parts(
            slots.cast::<shmds::layout::AttachSlot>(),
            shmds::layout::ATTACH_SLOTS,
        )
    };
    use std::sync::atomic::Ordering::SeqCst;
    let free = slots
        .iter()
        .position(|s| s.process.load(SeqCst) == 0)
        .unwrap();
    slots[free]
        .process
        .store(u64::from(me.pid) | 1 << 32, SeqCst);
    slots[free].start_time.store(me.start_time + 50, SeqCst);
    let status = shmds::segment_status(name.as_str()).unwrap();
    assert_eq!(status.attachers.len(), 2);
    let impostor = status
        .attachers
        .iter()
        .find(|a| a.start_time == me.start_time + 50)
        .unwrap();
    assert!(!impostor.alive, "our pid, another start time: not us");
    assert!(status.attachers.iter().any(|a| a.alive && a.pid == me.pid));
    drop(seg);
    assert!(!exists(&name), "the impostor does not keep it");
}

const CHURNERS: usize = 4;
const CHURN_ROUNDS: usize = 400;

/// Processes attach to and detach from one temporary segment over and
/// over (each attach may meet the last detach of another): whoever holds
/// a handle finds the name still naming its segment, never one removed
/// under it.
#[test]
fn attach_and_last_detach_race() {
    let name = ShmName::new("churn");
    let go = TempPath::new("go");
    let mut children: Vec<KillOnDrop> = (0..CHURNERS)
        .map(|i| {
            KillOnDrop(spawn_self(
                "child_role",
                &[
                    (ROLE, "churn".into()),
                    ("SHMDS_SEGMENT", name.0.clone()),
                    ("SHMDS_RELEASE_FILE", go.0.display().to_string()),
                    // With fault injection, half of them pause as
                    // removers between their last look and the
                    // announcement, half as attachers between their look
                    // and joining: attachers come in just as a removal
                    // starts (the remover must see them).
                    (
                        "SHMDS_PAUSE_AT",
                        if i % 2 == 0 {
                            "lifetime.remove.before_announce".into()
                        } else {
                            "lifetime.attach.before_join".into()
                        },
                    ),
                    ("SHMDS_PAUSE_MS", "1".into()),
                ],
            ))
        })
        .collect();
    // Let them all start before any begins.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(&go.0, "go").unwrap();
    for child in &mut children {
        assert!(child.0.wait().unwrap().success());
    }
    assert!(!exists(&name), "the last one removed it");
}

fn churn(seg_name: &str) {
    use std::os::unix::fs::FileExt;
    let seed_at = std::mem::offset_of!(shmds::layout::SegmentHeader, seed) as u64;
    let mut rng = Rng(u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut created = 0;
    for _ in 0..CHURN_ROUNDS {
        let seg = Segment::options()
            .size(1 << 16)
            .temporary(true)
            .open_or_create(seg_name)
            .unwrap();
        if seg.creator_pid() == std::process::id() {
            created += 1;
        }
        // Hold it a while (others come and go), then look at the name.
        std::thread::sleep(Duration::from_micros(rng.next() % 2000));
        let file = std::fs::File::open(format!("/dev/shm/{seg_name}"))
            .expect("the name of a segment we hold is there");
        let mut seed = [0u8; 8];
        file.read_exact_at(&mut seed, seed_at).unwrap();
        assert_eq!(
            u64::from_ne_bytes(seed),
            seg.seed(),
            "the name is our segment's"
        );
        drop(seg);
    }
    eprintln!("churn: created {created} of {CHURN_ROUNDS}");
}

const FAN_OUT: usize = 199;

/// 200 processes attached to a temporary segment: 128 records, 72
/// counted in the overflow. The segment is kept while any overflowed one
/// is attached, and goes with the last of them.
#[test]
fn overflowed_attachers_are_counted_and_keep_a_temporary() {
    let name = ShmName::new("overflow");
    let seg = Segment::options()
        .size(1 << 20)
        .temporary(true)
        .create(name.as_str())
        .unwrap();
    let (ready, phase1, phase1_done, phase2) = (
        TempPath::new("ready"),
        TempPath::new("phase1"),
        TempPath::new("phase1-done"),
        TempPath::new("phase2"),
    );
    let env = [
        (ROLE, "fan-out".to_string()),
        ("SHMDS_SEGMENT", name.0.clone()),
        ("SHMDS_READY_FILE", ready.0.display().to_string()),
        ("SHMDS_PHASE1", phase1.0.display().to_string()),
        ("SHMDS_PHASE1_DONE", phase1_done.0.display().to_string()),
        ("SHMDS_PHASE2", phase2.0.display().to_string()),
    ];
    let mut helper = KillOnDrop(spawn_self("child_role", &env));
    assert!(
        wait_for_file(&ready.0, WAIT * 3),
        "the children did not attach"
    );
    // The file exists a moment before its contents are written.
    let start = std::time::Instant::now();
    let counts = loop {
        let text = std::fs::read_to_string(&ready.0).unwrap();
        if !text.is_empty() || start.elapsed() > WAIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let status = shmds::segment_status(name.as_str()).unwrap();
    let live = status.attachers.iter().filter(|a| a.alive).count();
    assert_eq!(live, shmds::layout::ATTACH_SLOTS, "{counts}");
    assert_eq!(status.overflow as usize, FAN_OUT + 1 - live, "{counts}");
    assert_eq!(
        counts,
        format!("slots={} overflow={}", live - 1, status.overflow)
    );
    assert!(!status.abandoned);

    // We and every child holding a record leave: the overflowed ones keep it.
    drop(seg);
    std::fs::write(&phase1.0, "go").unwrap();
    assert!(wait_for_file(&phase1_done.0, WAIT), "phase 1 did not end");
    assert!(exists(&name), "overflowed attachers keep the segment");
    let status = shmds::segment_status(name.as_str()).unwrap();
    assert_eq!(status.attachers.iter().filter(|a| a.alive).count(), 0);
    assert_eq!(status.overflow, 72);
    assert!(!status.abandoned);

    // The overflowed ones leave too: the last one removes it.
    std::fs::write(&phase2.0, "go").unwrap();
    assert!(helper.0.wait().unwrap().success());
    assert!(!exists(&name), "the last overflowed attacher removed it");
}

/// The fan-out helper: forks FAN_OUT children that attach, tell whether
/// they got a record, and leave in two phases (record holders first).
/// This process runs one test on one thread (`--test-threads=1`), so the
/// children may allocate after the fork.
fn fan_out(seg_name: &str) {
    let env = |k: &str| std::env::var(k).unwrap();
    let pipe = || {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        fds
    };
    let (report, slot_gate, overflow_gate) = (pipe(), pipe(), pipe());
    let mut pids = Vec::new();
    for _ in 0..FAN_OUT {
        // SAFETY: see the function docs; the child only uses the segment,
        // the pipes and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: die with the helper (no orphan is left if a test
            // fails), and close the ends this child does not use: holding a
            // gate's write end would keep its own read from ever ending.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::close(report[0]);
                libc::close(slot_gate[1]);
                libc::close(overflow_gate[1]);
            }
            let code = fanned_child(seg_name, report[1], [slot_gate[0], overflow_gate[0]]);
            // SAFETY: end the forked child without the harness's exit path.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    // SAFETY: the parent's copies of the ends it does not use.
    unsafe {
        libc::close(report[1]);
        libc::close(slot_gate[0]);
        libc::close(overflow_gate[0]);
    }
    let mut places = Vec::new();
    for _ in 0..FAN_OUT {
        let mut byte = 0u8;
        // SAFETY: read one byte into a local.
        let n = unsafe { libc::read(report[0], (&mut byte as *mut u8).cast(), 1) };
        assert_eq!(n, 1, "a child failed to attach");
        places.push(byte);
    }
    let slots = places.iter().filter(|&&b| b == b'S').count();
    std::fs::write(
        env("SHMDS_READY_FILE"),
        format!("slots={slots} overflow={}", FAN_OUT - slots),
    )
    .unwrap();
    let reap = |n: usize| {
        for _ in 0..n {
            let mut status = 0;
            // SAFETY: waiting for any of our children.
            let pid = unsafe { libc::wait(&mut status) };
            assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
    };
    let phase1 = env("SHMDS_PHASE1");
    while !Path::new(&phase1).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: closing the gate's write end ends the record holders' reads.
    unsafe { libc::close(slot_gate[1]) };
    reap(slots);
    std::fs::write(env("SHMDS_PHASE1_DONE"), "done").unwrap();
    let phase2 = env("SHMDS_PHASE2");
    while !Path::new(&phase2).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: as above, for the overflowed children.
    unsafe { libc::close(overflow_gate[1]) };
    reap(FAN_OUT - slots);
}

/// One forked child of `fan_out`: attach, report `S` (a record) or `O`
/// (overflow), wait for its gate to close, detach. Its exit code.
fn fanned_child(seg_name: &str, report: i32, gates: [i32; 2]) -> i32 {
    let Ok(seg) = Segment::open(seg_name) else {
        return 1;
    };
    let me = std::process::id();
    let in_slot = seg.attachers().iter().any(|a| a.pid == me);
    let byte = if in_slot { b'S' } else { b'O' };
    // SAFETY: write one byte from a local; then block reading the gate
    // until every write end is closed.
    unsafe {
        libc::write(report, (&byte as *const u8).cast(), 1);
        let gate = gates[usize::from(!in_slot)];
        let mut b = 0u8;
        while libc::read(gate, (&mut b as *mut u8).cast(), 1) > 0 {}
    }
    drop(seg);
    0
}

/// `remove_abandoned` removes every abandoned segment of the machine, so
/// it runs in a child with a /dev/shm of its own (a private mount
/// namespace; root only): abandoned persistent and temporary segments go,
/// attached ones and those of another format version stay.
#[test]
fn remove_abandoned_in_a_private_dev_shm() {
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &[(ROLE, "private-shm".to_string())],
    ));
    let status = child.0.wait().unwrap();
    if status.code() == Some(77) {
        eprintln!("skipped: no private mount namespace (needs root)");
        return;
    }
    assert!(
        status.success(),
        "the private /dev/shm run failed: {status:?}"
    );
}

fn private_shm() {
    let private = common::private_shm::private_mount_namespace();
    if !private {
        std::process::exit(77);
    }
    assert!(shmds::list_segments().unwrap().is_empty(), "a new /dev/shm");
    // Abandoned: persistent, nobody attached.
    drop(Segment::create("left", 1 << 20).unwrap());
    // Attached: kept.
    let kept = Segment::create("kept", 1 << 20).unwrap();
    // Abandoned: a temporary whose only attacher was killed.
    let (ready, release) = (TempPath::new("ready"), TempPath::new("release"));
    let temp = ShmName("killed-temp".into());
    let mut child = KillOnDrop(hold(&temp, Some("temporary"), &ready, &release));
    kill_and_reap(&mut child.0);
    // Made by an older shmds: unreadable, never removed.
    let mut old = vec![0u8; 4096];
    old[..8].copy_from_slice(&shmds::layout::MAGIC);
    old[8..12].copy_from_slice(&3u32.to_ne_bytes());
    old[64..68].copy_from_slice(&2u32.to_ne_bytes()); // state: ready
    std::fs::write("/dev/shm/older", &old).unwrap();
    assert!(matches!(
        shmds::segment_status("older"),
        Err(Error::Incompatible { .. })
    ));

    let removed = shmds::remove_abandoned().unwrap();
    assert_eq!(removed, ["killed-temp", "left"]);
    assert_eq!(shmds::list_segments().unwrap(), ["kept", "older"]);
    assert!(shmds::remove_abandoned().unwrap().is_empty());
    drop(kept);
    assert_eq!(shmds::remove_abandoned().unwrap(), ["kept"]);
    assert_eq!(shmds::list_segments().unwrap(), ["older"]);
}
