"""Durable segments (a file path as the name) and snapshots (shmds.Store)."""

import datetime
import gc
import os
import pathlib
import pickle

import numpy as np
import pytest

import shmds


@pytest.fixture
def second_name(segname):
    """Another unique /dev/shm name (a restore target), removed afterwards."""
    name = segname + "-copy"
    yield name
    try:
        shmds.remove(name)
    except FileNotFoundError:
        pass


def _fill(seg):
    arr = seg.array("temps", "<f8", 100)
    arr.numpy()[:] = np.arange(100) * 0.5
    jobs = seg.queue("jobs", "<u8", capacity=16)
    for i in range(5):
        jobs.put(i)
    prices = seg.map("prices", key="S16", value="<f8", capacity=32)
    prices["AAPL"] = 189.5
    prices["MSFT"] = 410.25
    return arr, jobs, prices


def _check(seg):
    assert np.array_equal(seg.open_array("temps").numpy(), np.arange(100) * 0.5)
    jobs = seg.open_queue("jobs")
    items = [jobs.get_nowait() for _ in range(jobs.qsize())]
    assert items == [0, 1, 2, 3, 4]
    for item in items:  # put back, for the next check
        jobs.put_nowait(item)
    assert dict(seg.open_map("prices").items()) == {"AAPL": 189.5, "MSFT": 410.25}


def _flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


def _write_durable(path):
    """Create the durable segment `path`, fill it, and drop every handle
    (the last close seals the file). Returns the file offset of a byte of
    the array's elements."""
    seg = shmds.Segment(path, 1 << 20, create=True)
    handles = _fill(seg)
    del handles, seg
    gc.collect()
    with open(path, "rb") as f:
        at = f.read().find((np.arange(100) * 0.5).tobytes())
    assert at > 0
    return at + 400


# ------------------------------------------------------------ durable segments


def test_a_durable_segment_outlives_its_handles(tmp_path):
    path = str(tmp_path / "state.shmds")
    seg = shmds.Segment(path, 1 << 20)
    assert seg.is_durable
    assert seg.name == path
    _fill(seg)
    seg.flush()
    assert os.path.isfile(path)
    seg.close()
    gc.collect()

    again = shmds.Segment(path, create=False)
    assert again.is_durable
    _check(again)
    again.flush()
    again.close()
    shmds.remove(path)
    assert not os.path.exists(path)


def test_path_like_names_are_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seg = shmds.Segment(pathlib.Path("state.shmds"), 1 << 20, flush_on_close=True)
    try:
        assert seg.is_durable
        assert seg.name == "./state.shmds"
        assert (tmp_path / "state.shmds").is_file()
        seg.array("a", "<u4", 4)[0] = 7
        status = shmds.segment_status(pathlib.Path("state.shmds"))
        assert status.size == seg.size
        # Pickles as "attach by name", which is the path.
        other = pickle.loads(pickle.dumps(seg))
        assert other.is_durable and other.open_array("a")[0] == 7
        other.close()
    finally:
        seg.close()
        gc.collect()
    shmds.remove(tmp_path / "state.shmds")
    assert not (tmp_path / "state.shmds").exists()
    with pytest.raises(TypeError, match="os.PathLike"):
        shmds.Segment(b"./x", 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        shmds.Segment(3, 1 << 20)  # type: ignore[arg-type]


def test_a_dev_shm_segment_is_not_durable(segname):
    with shmds.Segment(segname, 1 << 20) as seg:
        assert not seg.is_durable
        seg.flush()  # nothing to do


def test_a_damaged_sealed_file_is_refused(tmp_path):
    path = str(tmp_path / "d.shmds")
    at = _write_durable(path)
    _flip(path, at)
    with pytest.raises(shmds.CorruptError):
        shmds.Segment(path, create=False)
    with pytest.raises(shmds.CorruptError):  # the refused open changed nothing
        shmds.Segment(path, create=False)
    _flip(path, at)
    with shmds.Segment(path, create=False) as seg:
        _check(seg)


def test_closed_durable_handles_raise(tmp_path):
    seg = shmds.Segment(str(tmp_path / "c.shmds"), 1 << 20)
    seg.close()
    with pytest.raises(ValueError):
        seg.flush()
    with pytest.raises(ValueError):
        seg.is_durable


# ------------------------------------------------------------------ snapshots


def test_snapshot_and_restore(tmp_path, segname, second_name):
    store = shmds.Store(tmp_path / "store")
    assert store.path == tmp_path / "store"
    assert isinstance(store.path, pathlib.Path)
    assert repr(store) == f"<shmds.Store {str(tmp_path / 'store')!r}>"
    with shmds.Segment(segname, 1 << 20) as seg:
        handles = _fill(seg)
        info = store.snapshot(seg)
        assert isinstance(info, shmds.SnapshotInfo)
        assert len(info.id) == 64 and int(info.id, 16) >= 0
        assert info.source == segname
        assert info.size == seg.size
        assert info.entries == 3
        assert info.chunks == -(-info.size // 65536)
        assert 0 < info.distinct_chunks <= info.chunks
        assert info.new_chunks == info.distinct_chunks
        assert info.new_bytes > 0
        assert info.paused_processes == 0 and info.paused_for == 0.0
        assert info.created.tzinfo is datetime.timezone.utc
        assert abs(info.created - datetime.datetime.now(datetime.timezone.utc)) < \
            datetime.timedelta(minutes=5)
        assert info.created_unix_ns // 1000 == \
            (info.created - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) \
            // datetime.timedelta(microseconds=1)
        assert info.id[:12] in repr(info) and repr(segname) in repr(info)

        # Nothing changed: the second snapshot writes no chunk.
        again = seg.snapshot(store)
        assert again.new_chunks == 0 and again.new_bytes == 0
        assert again.id != info.id  # another time, another id
        del handles

    with pytest.raises(AttributeError):
        info.size = 1  # type: ignore[misc]
    assert [s.id for s in store.snapshots()] == [info.id, again.id]
    listed = store.snapshots()[0]
    assert listed == info  # nothing paused: the listing says the same
    assert hash(listed) == hash(info)
    assert store.resolve(info.id[:8]) == info.id
    assert store.resolve(info.id.upper()) == info.id

    copy = store.restore(info.id[:10], second_name)
    assert type(copy) is shmds.Segment
    with copy:
        assert not copy.is_durable
        _check(copy)
    with store.restore(info.id, tmp_path / "restored.shmds") as durable:
        assert durable.is_durable
        _check(durable)
    gc.collect()
    with shmds.Segment(str(tmp_path / "restored.shmds"), create=False) as reopened:
        _check(reopened)

    with pytest.raises(FileExistsError):
        store.restore(info.id, second_name)


def test_segment_snapshot_takes_a_path(tmp_path, segname):
    with shmds.Segment(segname, 1 << 20) as seg:
        seg.array("a", "<u8", 4)[1] = 9
        info = seg.snapshot(tmp_path / "store")
        info2 = seg.snapshot(str(tmp_path / "store"))
    ids = [s.id for s in shmds.Store(tmp_path / "store").snapshots()]
    assert ids == [info.id, info2.id]


def test_verify_finds_damage_and_restore_refuses_it(tmp_path, segname, second_name):
    store = shmds.Store(tmp_path / "store")
    with shmds.Segment(segname, 1 << 20) as seg:
        _fill(seg)
        info = store.snapshot(seg)
    report = store.verify()
    assert report and report.ok
    assert report.snapshots == 1
    assert report.chunks == info.distinct_chunks
    assert report.bytes == info.new_bytes
    assert report.problems == []
    assert "ok" in repr(report)
    assert store.verify(info.id[:6])

    chunk = sorted(p for p in (tmp_path / "store" / "chunks").rglob("*") if p.is_file())[0]
    os.chmod(chunk, 0o644)
    _flip(chunk, 0)
    report = store.verify()
    assert not report and not report.ok
    assert len(report.problems) == 1
    assert chunk.parent.name + chunk.name in report.problems[0]
    assert "problems=1" in repr(report)
    with pytest.raises(shmds.CorruptError):
        store.restore(info.id, second_name)
    assert second_name not in shmds.list_segments()


def test_diff_remove_and_gc(tmp_path, segname):
    store = shmds.Store(tmp_path / "store")
    with shmds.Segment(segname, 1 << 20) as seg:
        arr, jobs, prices = _fill(seg)
        first = store.snapshot(seg)
        arr[3] = 123.0
        seg.array("added", "<u4", 8)
        second = store.snapshot(seg)
        key_type = next(e.key_type for e in seg.entries() if e.name == "prices")
        del arr, jobs, prices

    changes = store.diff(first.id, second.id)
    assert [c.name for c in changes] == sorted(c.name for c in changes)
    by_name = {c.name: c for c in changes}
    assert set(by_name) == {"added", "jobs", "prices", "temps"}

    temps = by_name["temps"]
    assert temps.change == "changed"
    assert temps.kind == "array" and temps.type == "<d"
    assert temps.before is not None and temps.after is not None
    assert temps.before.hash != temps.after.hash
    assert len(temps.after.hash) == 64
    assert temps.after.key_type is None

    added = by_name["added"]
    assert added.change == "added" and added.before is None and added.after is not None
    for name in ("jobs", "prices"):
        assert by_name[name].change == "unchanged"
        assert by_name[name].before == by_name[name].after
    assert by_name["prices"].after.key_type == key_type
    assert repr(temps) == "<shmds.EntryChange changed 'temps' array type='<d'>"
    assert repr(temps.after).startswith("<shmds.SnapshotEntry 'temps' array type='<d' offset=")

    back = store.diff(second.id, first.id)
    assert {c.name: c.change for c in back}["added"] == "removed"
    removed = next(c for c in back if c.name == "added")
    assert removed.after is None and removed.kind == "array"

    assert store.gc().chunks_removed == 0
    store.remove(first.id[:8])
    assert [s.id for s in store.snapshots()] == [second.id]
    with pytest.raises(FileNotFoundError):
        store.resolve(first.id)
    report = store.gc()
    assert isinstance(report, shmds.GcReport)
    assert report.chunks_removed >= 1
    assert report.bytes_freed > 0
    assert report.chunks_kept == second.distinct_chunks
    assert store.gc().chunks_removed == 0
    assert store.verify()


def test_unknown_snapshots(tmp_path, second_name):
    store = shmds.Store(str(tmp_path / "store"))
    with pytest.raises(FileNotFoundError):
        store.restore("abcd1234", second_name)
    with pytest.raises(FileNotFoundError):
        store.verify("abcd")
    with pytest.raises(ValueError):  # not 4 to 64 hex digits
        store.restore("nope", second_name)
    with pytest.raises(ValueError):
        store.resolve("ab")
    assert store.snapshots() == []
    assert store.verify().snapshots == 0


def test_a_directory_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(ValueError):
        shmds.Store(tmp_path)


def test_the_records_cannot_be_made_or_changed(tmp_path):
    store = shmds.Store(tmp_path / "store")
    assert pickle.loads(pickle.dumps(store)).path == store.path
    for cls in (shmds.SnapshotInfo, shmds.VerifyReport, shmds.GcReport,
                shmds.EntryChange, shmds.SnapshotEntry):
        with pytest.raises(TypeError):
            cls()
    report = store.gc()
    with pytest.raises(AttributeError):
        report.chunks_removed = 1  # type: ignore[misc]
