//! The `shmds` command against real segments.

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
        text.contains("prices") && text.contains("<d") && text.contains("array"),
        "{text}"
    );

    let out = shmds(&["info", &name.0, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"][0]["name"], "prices");
    assert_eq!(doc["entries"][0]["type"], "<d");
    assert_eq!(doc["entries"][0]["capacity"], 10);
    assert_eq!(doc["entries"][1]["kind"], "array");
    assert_eq!(doc["table_capacity"], 64);

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
