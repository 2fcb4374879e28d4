//! The `shmds` command against real segments.

#[path = "../../shmds/tests/common/private_shm.rs"]
mod private_shm;

use shmds::Segment;
use std::process::{Command, Output};

struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("shmds-test-cli-{tag}-{}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

fn shmds(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmds"))
        .args(args)
        .output()
        .expect("run shmds")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ls_info_check_rm() {
    let name = Name::new("main");
    let seg = Segment::create(&name.0, 1 << 20).unwrap();
    seg.create_array::<f64>("prices", 10).unwrap();
    seg.create_array::<u32>("ids", 3).unwrap();

    let out = shmds(&["ls"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains(&name.0));

    let out = shmds(&["ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.0.as_str())
        .expect("segment listed");
    assert_eq!(row["size"], 1 << 20);
    assert_eq!(row["entries"], 2);

    let out = shmds(&["info", &name.0]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("prices") && text.contains("f64") && text.contains("array"),
        "{text}"
    );

    let out = shmds(&["info", &name.0, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"][0]["name"], "prices");
    assert_eq!(doc["entries"][0]["type"], "<d");
    assert_eq!(doc["entries"][0]["type_name"], "f64");
    assert_eq!(doc["entries"][0]["capacity"], 10);
    assert_eq!(doc["entries"][1]["kind"], "array");
    assert_eq!(doc["table_capacity"], 64);
    // The heap: two structures, the rest one free block.
    assert_eq!(doc["heap"]["used_blocks"], 2, "{doc}");
    assert_eq!(doc["heap"]["free_blocks"], 1, "{doc}");
    assert_eq!(doc["heap"]["fragmentation"], 0.0, "{doc}");
    assert_eq!(
        doc["heap"]["used_bytes"].as_u64().unwrap() + doc["heap"]["free_bytes"].as_u64().unwrap(),
        doc["heap"]["heap_bytes"].as_u64().unwrap()
    );
    assert!(
        text.contains("heap: ") && text.contains("largest free block"),
        "{text}"
    );

    let out = shmds(&["check", &name.0]);
    assert!(out.status.success(), "{}", stdout(&out));

    let out = shmds(&["rm", &name.0]);
    assert!(out.status.success());
    assert!(Segment::open(&name.0).is_err());
    let out = shmds(&["info", &name.0]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn check_fails_on_damage() {
    let name = Name::new("damage");
    let seg = Segment::create(&name.0, 1 << 16).unwrap();
    seg.create_array::<u64>("a", 4).unwrap();
    let index = seg.entry("a").unwrap().unwrap().index;
    drop(seg);
    // Point the entry's block outside the segment.
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", name.0))
        .unwrap();
    f.seek(SeekFrom::Start(
        shmds::layout::TABLE_OFFSET + index * 320 + 32,
    ))
    .unwrap();
    f.write_all(&(1u64 << 30).to_ne_bytes()).unwrap();
    drop(f);
    let out = shmds(&["check", &name.0]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
}

#[test]
fn info_and_check_show_sets() {
    let name = Name::new("set");
    let seg = Segment::create(&name.0, 1 << 20).unwrap();
    let set = seg.create_set::<u64>("seen", 16).unwrap();
    set.insert(1).unwrap();
    set.insert(2).unwrap();
    seg.create_map::<u64, f64>("prices", 8).unwrap();
    let out = shmds(&["info", &name.0]);
    assert!(out.status.success());
    let text = stdout(&out);
    // Keys only; the fill is the number of keys.
    let seen = line_of(&text, "seen");
    // Types as people name them; --json also has the raw descriptors.
    assert_eq!(seen[..4], ["seen", "set", "u64", "16"], "{text}");
    assert_eq!(seen.last().unwrap(), "2/16", "{text}");
    assert_eq!(
        line_of(&text, "prices")[2..5],
        ["u64", "->", "f64"],
        "{text}"
    );
    let doc = json(&shmds(&["info", &name.0, "--json"]));
    let entry = row(&doc["entries"], "seen");
    assert_eq!(
        (&entry["kind"], &entry["key_type"]),
        (&"set".into(), &"<Q".into())
    );
    assert_eq!(
        (&entry["fill"], &entry["error"]),
        (&2.into(), &serde_json::Value::Null)
    );
    let out = shmds(&["check", &name.0]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn foreign_files_are_ignored_and_protected() {
    let name = Name::new("foreign");
    std::fs::write(format!("/dev/shm/{}", name.0), b"not ours").unwrap();
    assert!(!stdout(&shmds(&["ls"])).contains(&name.0));
    let out = shmds(&["rm", &name.0]);
    assert!(!out.status.success());
    assert!(std::path::Path::new(&format!("/dev/shm/{}", name.0)).exists());
    let out = shmds(&["rm", "--force", &name.0]);
    assert!(out.status.success());
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", name.0)).exists());
    let out = shmds(&["check", &name.0]);
    assert_eq!(out.status.code(), Some(1));
}

/// A FIFO planted under a segment's name (anyone can write /dev/shm) makes
/// no command hang: each says it is not a segment, and `rm` wants --force.
#[test]
fn fifo_named_like_a_segment_hangs_nothing() {
    let name = Name::new("fifo");
    let path = format!("/dev/shm/{}", name.0);
    assert!(Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    for args in [
        vec!["info", name.0.as_str()],
        vec!["check", name.0.as_str()],
        vec!["rm", name.0.as_str()],
        vec!["ls"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmds"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`shmds {}` hangs on a FIFO", args.join(" "));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let out = child.wait_with_output().unwrap();
        if args[0] == "ls" {
            assert!(status.success());
            assert!(!stdout(&out).contains(&name.0), "a FIFO is not listed");
        } else {
            assert!(!status.success(), "`shmds {}` succeeded", args.join(" "));
            let err = format!("{}{}", String::from_utf8_lossy(&out.stderr), stdout(&out));
            assert!(
                err.contains("FIFO") || err.contains("not a shmds segment"),
                "{err}"
            );
        }
    }
    assert!(
        std::path::Path::new(&path).exists(),
        "rm without --force keeps it"
    );
    assert!(shmds(&["rm", "--force", &name.0]).status.success());
    assert!(!std::path::Path::new(&path).exists());
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn row<'a>(rows: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed in {rows}"))
}

/// `ls` and `info` show who is attached, whether the creator lives and
/// the flags; `rm --abandoned NAME` removes only an abandoned one.
#[test]
fn ls_info_show_attachers_and_flags() {
    let (persistent, temporary) = (Name::new("attached"), Name::new("temporary"));
    let seg = Segment::create(&persistent.0, 1 << 20).unwrap();
    let temp = Segment::options()
        .size(1 << 20)
        .temporary(true)
        .create(&temporary.0)
        .unwrap();
    let me = std::process::id();

    let rows = json(&shmds(&["ls", "--json"]));
    let r = row(&rows, &persistent.0);
    assert_eq!(r["attached"], 1);
    assert_eq!(r["creator_alive"], true);
    assert_eq!(r["abandoned"], false);
    assert_eq!(r["temporary"], false);
    assert_eq!(r["overflow"], 0);
    assert_eq!(r["attachers"][0]["pid"], me);
    assert_eq!(r["attachers"][0]["handles"], 1);
    assert_eq!(r["attachers"][0]["alive"], true);
    assert_eq!(row(&rows, &temporary.0)["temporary"], true);

    let text = stdout(&shmds(&["ls"]));
    let header = text.lines().next().unwrap();
    for column in [
        "NAME", "SIZE", "USED", "ENTRIES", "ATTACHED", "CREATOR", "FLAGS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    // NAME, SIZE (2 words), USED (2 words), ENTRIES, ATTACHED, CREATOR, FLAGS
    assert_eq!(line_of(&text, &persistent.0)[6..], ["1", "alive", "-"]);
    assert_eq!(
        line_of(&text, &temporary.0)[6..],
        ["1", "alive", "temporary"]
    );

    let info = stdout(&shmds(&["info", &persistent.0]));
    assert!(
        info.contains("persistent, creator alive; 1 process attached"),
        "{info}"
    );
    assert!(info.contains(&format!("pid {me}")), "{info}");

    // Not abandoned: kept.
    let out = shmds(&["rm", "--abandoned", &persistent.0]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    assert!(Segment::options()
        .read_only(true)
        .open(&persistent.0)
        .is_ok());

    drop(seg);
    let rows = json(&shmds(&["ls", "--json"]));
    let r = row(&rows, &persistent.0);
    assert_eq!(
        (r["attached"].clone(), r["abandoned"].clone()),
        (0.into(), true.into())
    );
    assert_eq!(
        line_of(&stdout(&shmds(&["ls"])), &persistent.0)[6..],
        ["0", "alive", "abandoned"]
    );
    let doc = json(&shmds(&["info", &persistent.0, "--json"]));
    assert_eq!(doc["abandoned"], true);
    assert_eq!(doc["attachers"], serde_json::json!([]));
    let info = stdout(&shmds(&["info", &persistent.0]));
    assert!(info.contains("abandoned"), "{info}");

    let out = shmds(&["rm", "--abandoned", &persistent.0, &temporary.0]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("{}\n", persistent.0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept"));
    assert!(Segment::options()
        .read_only(true)
        .open(&persistent.0)
        .is_err());
    assert!(Segment::options()
        .read_only(true)
        .open(&temporary.0)
        .is_ok());
    drop(temp);
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", temporary.0)).exists());

    // --abandoned and --force do not go together; rm needs names or --abandoned.
    assert!(!shmds(&["rm", "--abandoned", "--force"]).status.success());
    assert!(!shmds(&["rm"]).status.success());
}

fn line_of(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `rm --abandoned` without names removes every abandoned segment of
/// the machine, so it runs in a child of this test with a /dev/shm of its
/// own (a private mount namespace; root only).
#[test]
fn rm_abandoned_in_a_private_dev_shm() {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "private_dev_shm_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMDS_CLI_PRIVATE_SHM", "1")
        .status()
        .unwrap();
    if status.code() == Some(77) {
        eprintln!("skipped: no private mount namespace (needs root)");
        return;
    }
    assert!(
        status.success(),
        "the private /dev/shm run failed: {status:?}"
    );
}

/// The child of `rm_abandoned_in_a_private_dev_shm` (does nothing as a
/// normal test).
#[test]
fn private_dev_shm_role() {
    if std::env::var_os("SHMDS_CLI_PRIVATE_SHM").is_none() {
        return;
    }
    if !private_shm::private_mount_namespace() {
        std::process::exit(77);
    }
    assert!(shmds::list_segments().unwrap().is_empty(), "a new /dev/shm");
    drop(Segment::create("left", 1 << 20).unwrap());
    let kept = Segment::create("kept", 1 << 20).unwrap();
    // Made by an older shmds: unreadable, never removed.
    let mut old = vec![0u8; 4096];
    old[..8].copy_from_slice(&shmds::layout::MAGIC);
    old[8..12].copy_from_slice(&3u32.to_ne_bytes());
    old[64..68].copy_from_slice(&2u32.to_ne_bytes());
    std::fs::write("/dev/shm/older", &old).unwrap();

    let text = stdout(&shmds(&["ls"]));
    assert!(
        line_of(&text, "older").contains(&"unknown:".to_owned()),
        "{text}"
    );
    let rows = json(&shmds(&["ls", "--json"]));
    assert_eq!(row(&rows, "older")["unknown"], true);

    let out = shmds(&["rm", "--abandoned"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "left\n");
    assert_eq!(shmds::list_segments().unwrap(), ["kept", "older"]);
    drop(kept);
    assert_eq!(stdout(&shmds(&["rm", "--abandoned"])), "kept\n");
    assert_eq!(stdout(&shmds(&["rm", "--abandoned"])), "");
    assert!(std::path::Path::new("/dev/shm/older").exists());
}

/// `info` shows each coordination primitive's state (text and JSON), and
/// `check` reports a lock whose holder died holding it: the holder is a
/// child (this test binary again, as `lock_holder_role`) that takes the
/// lock, says so, and is killed.
#[test]
fn info_and_check_show_a_dead_lock_holder() {
    let name = Name::new("dead-holder");
    let seg = Segment::create(&name.0, 1 << 20).unwrap();
    seg.create_lock("mutex").unwrap();
    let held = seg.create_lock("held").unwrap();
    let _guard = held.lock().unwrap();
    seg.create_event("ready").unwrap().set();
    seg.create_semaphore("permits", 3).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lock_holder_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMDS_CLI_LOCK_HOLDER", &name.0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    // (libtest may print "test lock_holder_role ... " before it.)
    let said = std::io::BufRead::lines(out)
        .map_while(Result::ok)
        .any(|l| l.ends_with("lock-held"));
    child.kill().unwrap(); // SIGKILL: the lock stays held by a dead process
    child.wait().unwrap();
    assert!(said, "the child did not take the lock");

    let text = stdout(&shmds(&["info", &name.0]));
    let state = |entry: &str| line_of(&text[text.find("STATE").unwrap()..], entry).join(" ");
    assert!(
        state("mutex").starts_with(&format!("mutex lock held by pid {pid} (thread ")),
        "{text}"
    );
    assert!(state("mutex").ends_with("which is dead"), "{text}");
    let me = std::process::id();
    assert!(
        state("held").starts_with(&format!("held lock held by pid {me} (thread ")),
        "{text}"
    );
    assert!(!state("held").contains("dead"), "{text}");
    assert_eq!(state("ready"), "ready event set", "{text}");
    assert!(
        state("permits").starts_with("permits semaphore 3"),
        "{text}"
    );

    let doc = json(&shmds(&["info", &name.0, "--json"]));
    let entries = &doc["entries"];
    let mutex = &row(entries, "mutex")["state"];
    assert_eq!(mutex["kind"], "lock", "{doc}");
    assert_eq!(mutex["holder_pid"], pid, "{doc}");
    assert_eq!(mutex["holder_alive"], false, "{doc}");
    assert!(mutex["holder_tid"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(mutex["waiters"], 0, "{doc}");
    assert_eq!(mutex["value"], 1, "{doc}");
    assert_eq!(mutex["owner_deaths"], 0, "{doc}");
    assert!(mutex["summary"].as_str().unwrap().contains("dead"), "{doc}");
    assert_eq!(row(entries, "held")["state"]["holder_alive"], true, "{doc}");
    assert_eq!(row(entries, "ready")["state"]["value"], 1, "{doc}");
    assert_eq!(row(entries, "permits")["state"]["value"], 3, "{doc}");

    let out = shmds(&["check", &name.0]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(report.contains("FAILED (1 problems)"), "{report}");
    assert!(
        report.contains(&format!(
            "lock is held by process {pid}, which died holding it"
        )),
        "{report}"
    );

    // Taken over by the next taker, which is told: then `check` is content.
    let mutex = seg.open_lock("mutex").unwrap();
    let died = mutex.lock().expect_err("told");
    assert!(matches!(&died, shmds::LockError::OwnerDied(d) if d.pid() == pid));
    drop(died);
    assert!(shmds(&["check", &name.0]).status.success());
    let text = stdout(&shmds(&["info", &name.0]));
    assert!(
        text.contains(&format!(
            "taken over 1 time from a dead holder (last pid {pid})"
        )),
        "{text}"
    );
}

/// The child of `info_and_check_show_a_dead_lock_holder` (does nothing as a
/// normal test): takes the lock "mutex", prints "lock-held", and waits to be
/// killed (a minute at most).
#[test]
fn lock_holder_role() {
    let Some(name) = std::env::var_os("SHMDS_CLI_LOCK_HOLDER") else {
        return;
    };
    let seg = Segment::open(name.to_str().unwrap()).unwrap();
    let lock = seg.open_lock("mutex").unwrap();
    lock.lock().unwrap().leak();
    println!("lock-held");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// `get`, `set`, `push`, `pop`, `send`, `recv` and `dump` move values in the
/// entries' own types, and their exit statuses say hit (0), miss (1) or
/// error (2).
#[test]
fn scripting_commands() {
    use shmds::{ChannelOptions, FixedStr};
    let name = Name::new("script");
    let n = name.0.as_str();
    let seg = Segment::create(n, 4 << 20).unwrap();
    shmds::record! {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Tick { ts: u64, price: f64 }
    }
    let ticks = seg.create_array::<Tick>("ticks", 4).unwrap();
    let prices = seg.create_map::<FixedStr<16>, f64>("prices", 8).unwrap();
    let jobs = seg.create_queue::<u64>("jobs", 2).unwrap();
    let seen = seg.create_set::<u32>("seen", 8).unwrap();
    let events = seg
        .create_channel("events", ChannelOptions::new(4096))
        .unwrap();
    let code = |o: &Output| o.status.code().unwrap_or(-1);

    // Arrays: records as JSON objects, both ways.
    let out = shmds(&["set", n, "ticks", "2", r#"{"ts": 7, "price": 1.5}"#]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(ticks.get(2).unwrap(), Tick { ts: 7, price: 1.5 });
    let out = shmds(&["get", n, "ticks", "2"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::json!({"ts": 7, "price": 1.5}));
    let out = shmds(&["get", n, "ticks", "9"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range for length 4"));
    let out = shmds(&["set", n, "ticks", "0", r#"{"ts": -1, "price": 0}"#]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a u64"));

    // Maps: string keys as text.
    prices
        .insert(FixedStr::new("AAPL").unwrap(), 189.5)
        .unwrap();
    assert_eq!(
        stdout(&shmds(&["get", n, "prices", "AAPL"])).trim(),
        "189.5"
    );
    assert_eq!(code(&shmds(&["get", n, "prices", "MSFT"])), 1);
    assert_eq!(code(&shmds(&["set", n, "prices", "MSFT", "410.25"])), 0);
    assert_eq!(prices.get("MSFT").unwrap(), Some(410.25));
    let out = shmds(&["dump", n, "prices", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");

    // Queues: push until full (exit 1), pop in order, empty is exit 1.
    assert_eq!(code(&shmds(&["push", n, "jobs", "1", "2", "3"])), 1);
    assert_eq!(jobs.len(), 2);
    // dump reads them in order and takes nothing.
    assert_eq!(stdout(&shmds(&["dump", n, "jobs"])), "[0] 1\n[1] 2\n");
    assert_eq!(jobs.len(), 2);
    let out = shmds(&["pop", n, "jobs", "-n", "5"]);
    assert_eq!(stdout(&out), "1\n2\n");
    assert_eq!(code(&shmds(&["pop", n, "jobs"])), 1);
    assert_eq!(code(&shmds(&["pop", n, "jobs", "--timeout", "0.05"])), 1);
    assert_eq!(code(&shmds(&["push", n, "jobs", "x"])), 2);
    // A huge count is capped by the capacity, not allocated.
    assert_eq!(
        code(&shmds(&["pop", n, "jobs", "-n", "18446744073709551615"])),
        1
    );

    // Sets.
    assert_eq!(code(&shmds(&["set", n, "seen", "42"])), 0);
    assert!(seen.contains(&42).unwrap());
    assert_eq!(code(&shmds(&["get", n, "seen", "42"])), 0);
    assert_eq!(code(&shmds(&["get", n, "seen", "43"])), 1);

    // Channels: the argument's bytes, or standard input's.
    assert_eq!(code(&shmds(&["send", n, "events", "hello"])), 0);
    let mut rx = events.receiver().unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"hello");
    drop(rx);
    events.sender().unwrap().send(b"a\x01").unwrap();
    let out = shmds(&["dump", n, "events", "--json"]);
    let msgs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(msgs, serde_json::json!([{"len": 2, "bytes": "a\\x01"}]));
    let out = shmds(&["recv", n, "events", "--json"]);
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(msg, serde_json::json!({"len": 2, "bytes": "a\\x01"}));
    assert_eq!(code(&shmds(&["recv", n, "events"])), 1);

    // The wrong kind, a missing entry: errors that say what to use.
    let out = shmds(&["pop", n, "prices"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pop is for queues and stacks"));
    assert_eq!(code(&shmds(&["get", n, "nope", "1"])), 2);
    let out = shmds(&["check", n, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    // A topic's dump: its newest messages, oldest of them first.
    let topic = seg
        .create_topic("news", shmds::TopicOptions::new(4096))
        .unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        topic.publish(m).unwrap();
    }
    let out = shmds(&["dump", n, "news", "--json", "--limit", "2"]);
    let msgs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let texts: Vec<&str> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["bytes"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "three"]);
    assert!(stdout(&shmds(&["completions", "bash"])).contains("shmds"));
}

/// `watch --once --json` reports the figures the test made (length,
/// capacity, running totals, a lock's holder); `hz` sees a queue that moves.
#[test]
fn watch_once_and_hz() {
    let name = Name::new("watch");
    let n = name.0.as_str();
    let seg = Segment::create(n, 4 << 20).unwrap();
    let jobs = seg.create_queue::<u64>("jobs", 16).unwrap();
    let lock = seg.create_lock("guard").unwrap();
    let seen = seg.create_set::<u64>("seen", 8).unwrap();
    for k in [1, 2, 3] {
        seen.insert(k).unwrap();
    }
    for v in 0..7 {
        jobs.try_push(v).unwrap();
    }
    for _ in 0..2 {
        jobs.try_pop().unwrap();
    }
    let _held = lock.lock().unwrap();
    let out = shmds(&["watch", n, "--once", "--json", "--interval", "0.05"]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs_row = row_of(&doc["entries"], "jobs");
    assert_eq!(jobs_row["len"], 5);
    assert_eq!(jobs_row["capacity"], 16);
    assert_eq!(jobs_row["totals"], serde_json::json!({"in": 7, "out": 2}));
    assert_eq!(jobs_row["in_per_s"], 0.0, "nothing moved during the window");
    let seen = row_of(&doc["entries"], "seen");
    assert_eq!(seen["len"], 3);
    assert!(seen["probe_bound_max"].as_u64().is_some(), "{seen}");
    let guard = row_of(&doc["entries"], "guard");
    let me = std::process::id().to_string();
    assert!(guard["state"].as_str().unwrap().contains(&me), "{guard}");
    // Text, and only the entries asked for.
    let text = stdout(&shmds(&[
        "watch",
        n,
        "jobs",
        "--once",
        "--interval",
        "0.05",
    ]));
    assert!(text.contains("5/16") && !text.contains("guard"), "{text}");
    assert_eq!(
        shmds(&["watch", n, "nope", "--once"]).status.code(),
        Some(2)
    );

    // hz on a queue another thread keeps moving.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (jobs, stop) = (jobs.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = jobs.try_push(1);
                let _ = jobs.try_pop();
            }
        })
    };
    let out = shmds(&["hz", n, "jobs", "--window", "0.2", "--count", "2", "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    mover.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["in_per_s"].as_f64().unwrap() > 0.0),
        "{lines:?}"
    );
    let out = shmds(&["hz", n, "guard", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hz measures queues"));
}

fn row_of<'a>(rows: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows}"))
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn snapshot_commands() {
    let dir = TempDir(std::env::temp_dir().join(format!("shmds-cli-snap-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let store = dir.0.join("store");
    let store = store.to_str().unwrap();
    let src = Name::new("snap");
    let copy = Name::new("snap-copy");
    let seg = Segment::create(&src.0, 1 << 20).unwrap();
    let a = seg.create_array::<u64>("a", 100).unwrap();
    a.set(3, 7).unwrap();
    // A snapshot pauses every attached process, so this test (which waits
    // for the command) lets go of its handles first.
    drop((a, seg));
    let out = shmds(&["snapshot", &src.0, store]);
    assert!(out.status.success(), "{out:?}");
    let first = stdout(&out).trim().to_owned();
    assert_eq!(first.len(), 64, "{first}");
    Segment::open(&src.0)
        .unwrap()
        .open_array::<u64>("a")
        .unwrap()
        .set(4, 8)
        .unwrap();
    let out = shmds(&["snapshot", &src.0, store, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let second = json(&out);
    assert_eq!(second["new_chunks"], 1, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    let out = shmds(&["snapshots", store, "--json"]);
    let rows = json(&out);
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let out = shmds(&["diff", store, &first[..8], &second[..8]]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("~ a"), "{}", stdout(&out));
    let out = shmds(&["restore", store, &first[..8], &copy.0]);
    assert!(out.status.success(), "{out:?}");
    let back = Segment::open(&copy.0).unwrap();
    let a = back.open_array::<u64>("a").unwrap();
    assert_eq!((a.get(3).unwrap(), a.get(4).unwrap()), (7, 0));
    // To a durable file, then checked by path.
    let file = dir.0.join("copy.shmds");
    let file = file.to_str().unwrap();
    assert!(shmds(&["restore", store, &second, file]).status.success());
    let out = shmds(&["check", file]);
    assert!(out.status.success(), "{out:?}");
    assert!(shmds(&["verify", store]).status.success());
    // Damage a chunk: verify says so with exit status 1.
    let chunks = dir.0.join("store/chunks");
    let sub = std::fs::read_dir(&chunks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let chunk = std::fs::read_dir(&sub)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&chunk, &bytes).unwrap();
    let out = shmds(&["verify", store]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
    // Unknown ids are errors that say what to do.
    let out = shmds(&["restore", store, "abcd1234", "whatever"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shmds snapshots"));
    assert!(shmds(&["forget", store, &first[..8]]).status.success());
    bytes[0] ^= 1;
    std::fs::write(&chunk, &bytes).unwrap();
    let out = shmds(&["gc", store]);
    assert!(out.status.success(), "{out:?}");
}

/// A private redis-server for the remote commands, killed when dropped.
struct Redis(std::process::Child, u16, std::path::PathBuf);

impl Redis {
    fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!("shmds-cli-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (make test installs it)");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Listening is not loading: wait for a real answer.
        while shmds::remote::Segment::connect(&format!("redis://127.0.0.1:{port}/0"), "probe")
            .is_err()
        {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        shmds::remote::Segment::remove(&format!("redis://127.0.0.1:{port}/0"), "probe").unwrap();
        Redis(child, port, dir)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

#[test]
fn remote_ls_info_and_bridge() {
    let server = Redis::start();
    let url = server.url();
    let shm = Name::new("bridge");
    let name = shm.0.clone();
    let seg = Segment::create(&name, 1 << 20).unwrap();
    let jobs = seg.create_queue::<u64>("jobs", 500).unwrap();
    jobs.push_slice(&(0..300).collect::<Vec<_>>(), None)
        .unwrap();
    let out = shmds(&[
        "bridge",
        &name,
        "jobs",
        &url,
        "--remote-segment",
        "farm",
        "--count",
        "300",
        "--batch",
        "64",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("forwarded 300 elements"),
        "{}",
        stdout(&out)
    );
    assert_eq!(jobs.len(), 0);

    let out = shmds(&["ls", &url, "--json"]);
    assert!(out.status.success());
    assert_eq!(json(&out)[0]["name"], "farm");
    let out = shmds(&["info", &url, "farm", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = json(&out);
    assert_eq!(info["entries"][0]["name"], "jobs");
    assert_eq!(info["entries"][0]["fill"], 300);
    assert_eq!(info["entries"][0]["capacity"], 500);
    let text = stdout(&shmds(&["info", &url, "farm"]));
    assert!(text.contains("u64") && text.contains("300"), "{text}");
    assert!(!shmds(&["info", &url, "nope"]).status.success());

    // And back, at least once: taken remotely, acknowledged once pushed here.
    let back = seg.create_queue::<u64>("back", 500).unwrap();
    let out = shmds(&[
        "bridge",
        &name,
        "back",
        &url,
        "--remote-segment",
        "farm",
        "--remote-entry",
        "jobs",
        "--from-remote",
        "--count",
        "300",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = vec![0u64; 400];
    let n = back.try_pop_into(&mut got).unwrap();
    assert_eq!(&got[..n], &(0..300).collect::<Vec<_>>()[..]);
    let remote = shmds::remote::Segment::connect(&url, "farm").unwrap();
    let q = remote.open_queue::<u64>("jobs").unwrap();
    assert_eq!((q.len().unwrap(), q.in_flight().unwrap()), (0, 0));

    // A channel, there and back.
    let ch = seg
        .create_channel(
            "events",
            shmds::ChannelOptions::new(1 << 16).max_message(100),
        )
        .unwrap();
    let mut tx = ch.sender().unwrap();
    for i in 0..50u8 {
        tx.send(&vec![i; i as usize]).unwrap();
    }
    let out = shmds(&[
        "bridge",
        &name,
        "events",
        &url,
        "--remote-segment",
        "farm",
        "--count",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rch = remote.open_channel("events").unwrap();
    assert_eq!((rch.len().unwrap(), rch.max_message()), (50, 100));
    let out = shmds(&[
        "bridge",
        &name,
        "events",
        &url,
        "--remote-segment",
        "farm",
        "--from-remote",
        "--count",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(tx);
    let mut rx = ch.receiver().unwrap();
    let mut buf = Vec::new();
    for i in 0..50u8 {
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, vec![i; i as usize]);
    }
    assert_eq!(rch.len().unwrap(), 0);
}
