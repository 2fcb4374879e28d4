"""Segment lifetime from Python: attached processes, temporary segments,
abandoned segments, and a clean exit (no resource-tracker warnings)."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import shmds


def shm_exists(name):
    return os.path.exists(f"/dev/shm/{name}")


def run_child(code, *args):
    """Start a Python child running ``code`` (with ``args`` in sys.argv);
    it prints "ready" once set up, then waits for a line on stdin."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    assert line.strip() == "ready", (line, child.stderr.read() if child.poll() is not None else "")
    return child


HOLD = """
import sys, shmds
how = sys.argv[2]
if how == "open":
    seg = shmds.Segment(sys.argv[1], create=False)
else:
    seg = shmds.Segment(sys.argv[1], 1 << 20, create=True, temporary=(how == "temporary"))
    seg.array("data", "<u8", 4)[0] = 7
print("ready", flush=True)
sys.stdin.readline()
"""


def test_attachers_and_flags(segname):
    seg = shmds.Segment(segname, 1 << 20)
    (me,) = seg.attachers
    assert isinstance(me, shmds.Attacher)
    assert me.pid == os.getpid() and me.handles == 1 and me.alive and me.start_time > 0
    assert not seg.temporary and not seg.wipe_on_erase
    assert seg.creator_pid == os.getpid() and seg.creator_alive
    assert not seg.abandoned
    assert seg.attach_overflow == 0
    other = shmds.Segment(segname, create=False)
    assert seg.attachers[0].handles == 2
    other.close()
    assert seg.attachers[0].handles == 1
    st = shmds.segment_status(segname)
    assert isinstance(st, shmds.SegmentStatus)
    assert st.name == segname and st.size == 1 << 20 and not st.temporary
    assert st.attachers == seg.attachers, "segment_status does not attach"
    assert not st.abandoned and st.overflow == 0 and st.creator_alive
    seg.close()
    st = shmds.segment_status(segname)
    assert st.abandoned and st.attachers == []
    assert shm_exists(segname), "a persistent segment stays"


def test_options_of_a_new_segment(segname):
    seg = shmds.Segment(segname, 1 << 20, max_size=8 << 20, wipe_on_erase=True)
    assert seg.wipe_on_erase and not seg.temporary
    seg.close()


def test_temporary_goes_with_its_last_handle(segname):
    seg = shmds.Segment(segname, 1 << 20, temporary=True)
    assert seg.temporary
    arr = seg.array("a", "<u8", 8)
    seg.close()
    assert shm_exists(segname), "the array keeps the segment open"
    arr[0] = 1
    arr.close()
    assert not shm_exists(segname)
    with pytest.raises(FileNotFoundError):
        shmds.Segment(segname, create=False)


def test_temporary_goes_with_the_last_process(segname):
    seg = shmds.Segment(segname, 1 << 20, temporary=True)
    children = [run_child(HOLD, segname, "open") for _ in range(2)]
    pids = {a.pid for a in seg.attachers if a.alive}
    assert pids == {os.getpid()} | {c.pid for c in children}
    seg.close()
    for i, child in enumerate(children):
        child.stdin.write("bye\n")
        child.stdin.flush()
        assert child.wait(timeout=20) == 0
        assert child.stderr.read() == ""
        assert shm_exists(segname) == (i == 0)


def test_killed_creator_is_dead_and_abandoned(segname):
    child = run_child(HOLD, segname, "persistent")
    st = shmds.segment_status(segname)
    assert [(a.pid, a.alive) for a in st.attachers] == [(child.pid, True)]
    assert st.creator_pid == child.pid and st.creator_alive and not st.abandoned
    child.kill()
    child.wait()
    st = shmds.segment_status(segname)
    assert [(a.pid, a.alive) for a in st.attachers] == [(child.pid, False)]
    assert not st.creator_alive and st.abandoned
    # Opening it (a persistent one) attaches as usual and frees the record.
    seg = shmds.Segment(segname, create=False)
    assert [a.pid for a in seg.attachers] == [os.getpid()]
    assert seg.open("data")[0] == 7


def test_abandoned_temporary_is_replaced(segname):
    for how in ("open", "open_or_create"):
        child = run_child(HOLD, segname, "temporary")
        child.kill()
        child.wait()
        assert shm_exists(segname) and shmds.segment_status(segname).abandoned
        if how == "open":
            with pytest.raises(FileNotFoundError):
                shmds.Segment(segname, create=False)
            assert not shm_exists(segname), "the open removed it"
        else:
            seg = shmds.Segment(segname, 1 << 20, temporary=True)
            assert seg.creator_pid == os.getpid(), "a fresh segment"
            assert seg.entries() == []
            seg.close()
            assert not shm_exists(segname)


EXIT_QUIETLY = """
import sys, shmds, multiprocessing as mp

def child(seg):
    seg.array("from_child", "<u8", 1)[0] = 1

if __name__ == "__main__":
    seg = shmds.Segment(sys.argv[1], 1 << 20, temporary=True)
    arr = seg.array("a", "<u8", 4)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=child, args=(seg,))
    p.start(); p.join()
    assert p.exitcode == 0
    assert seg.open("from_child")[0] == 1
    print("ready", flush=True)
    sys.stdin.readline()
    # Exit without closing anything.
"""


def test_exit_leaves_nothing_and_says_nothing(segname, tmp_path):
    # A file, not -c: spawned multiprocessing children import the main module.
    script = tmp_path / "exit_quietly.py"
    script.write_text(textwrap.dedent(EXIT_QUIETLY))
    child = subprocess.Popen(
        [sys.executable, "-W", "always", str(script), segname],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    assert shm_exists(segname)
    out, err = child.communicate("bye\n", timeout=60)
    assert child.returncode == 0, err
    assert err == "", "no warning at exit"
    assert not shm_exists(segname), "removed at exit"


def test_erase_with_wipe_and_heap(segname):
    seg = shmds.Segment(segname, 1 << 20)
    seg.array("a", "<u8", 8)
    seg.array("b", "<u8", 8)
    seg.erase("a", wipe=True)
    seg.erase("b")
    assert seg.entries() == []
    heap = seg.heap
    assert isinstance(heap, shmds.HeapStats)
    assert all(isinstance(v, int) for v in heap[:8])
    assert isinstance(heap.fragmentation, float)
    assert 0.0 <= heap.fragmentation <= 1.0


PRIVATE_SHM = """
import os, shmds
assert shmds.list_segments() == []
shmds.Segment("left", 1 << 20).close()
kept = shmds.Segment("kept", 1 << 20)
old = bytearray(4096)
old[:8] = b"SHMDS\\0\\x01\\0"
old[8:12] = (3).to_bytes(4, "little")
old[64:68] = (2).to_bytes(4, "little")
open("/dev/shm/older", "wb").write(old)
try:
    shmds.segment_status("older")
    raise SystemExit("an older format was read")
except shmds.IncompatibleError:
    pass
assert shmds.remove_abandoned() == ["left"]
assert shmds.list_segments() == ["kept", "older"]
kept.close()
assert shmds.remove_abandoned() == ["kept"]
assert shmds.list_segments() == ["older"]
print("ok")
"""


def test_remove_abandoned_in_a_private_dev_shm():
    """remove_abandoned() removes every abandoned segment of the machine,
    so it runs in a child with a /dev/shm of its own (root only)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /dev/shm")
    script = (
        "mount --make-rprivate / && mount -t tmpfs tmpfs /dev/shm && "
        f'exec "{sys.executable}" -c "$0"'
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, textwrap.dedent(PRIVATE_SHM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("no private mount namespace here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
