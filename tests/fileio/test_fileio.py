"""The ground floor for files: one lock, one atomic write, the names of a run's files."""

from __future__ import annotations

import json
import os

import pytest

from first_pl.fileio.atomic import atomic_folder, atomic_write, write_json_atomic
from first_pl.fileio.lock import (
    FileLock,
    LockHeldError,
    OutputDirLockedError,
    lock_folder,
    lock_path,
    unlock_folder,
)
from first_pl.fileio.run_files import (
    LOCK_FILE,
    TEST_METRICS_FILE,
    metrics_file,
    predictions_file,
    reliability_file,
)


def test_a_second_lock_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    first, second = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    first.acquire()
    assert (tmp_path / "x.lock").read_text() == str(os.getpid())
    with pytest.raises(LockHeldError, match=rf"lock .*x\.lock is held by process {os.getpid()}$"):
        second.acquire()
    assert not second.held
    first.release()
    assert not (tmp_path / "x.lock").exists()  # removed on release
    second.acquire()  # free again
    assert second.held
    second.release()
    second.release()  # idempotent


def test_a_lock_file_unlinked_by_its_last_holder_is_retried_on_the_fresh_one(tmp_path, monkeypatch):
    """Open, then the holder unlinks and releases, then flock: the lock taken is on a file no one
    else can see, so the lock retries on the path's current file."""
    import first_pl.fileio.lock as lock_module

    path = tmp_path / "x.lock"
    real_open, opened = os.open, []

    def open_then_lose_race(name, flags, mode=0o777):
        fd = real_open(name, flags, mode)
        if not opened:
            os.unlink(name)  # the previous holder released between our open and our flock
        opened.append(fd)
        return fd

    monkeypatch.setattr(lock_module.os, "open", open_then_lose_race)
    lock = FileLock(path)
    lock.acquire()
    assert len(opened) == 2 and lock._fd == opened[1]
    assert os.stat(path).st_ino == os.fstat(lock._fd).st_ino
    lock.release()


def test_a_store_lock_sits_beside_the_store():
    from pathlib import Path

    assert lock_path(Path("/d/teacher_train.h5")) == Path("/d/teacher_train.h5.lock")


def test_folder_lock_is_shared_in_a_process_and_freed_by_its_last_holder(tmp_path):
    lock_folder(tmp_path)
    lock_folder(tmp_path)  # a second runner of the same process on the same folder
    other = FileLock(tmp_path / LOCK_FILE)  # what another process would try
    with pytest.raises(LockHeldError):
        other.acquire()
    unlock_folder(tmp_path)
    with pytest.raises(LockHeldError):
        other.acquire()
    unlock_folder(tmp_path)
    other.acquire()
    with pytest.raises(
        OutputDirLockedError,
        match=rf"output folder {tmp_path} is in use by another first-pl process \(process "
        rf"{os.getpid()} holds {tmp_path}/\.lock\); wait for it to finish",
    ):
        lock_folder(tmp_path)
    other.release()


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}

    def half_then_crash(tmp):
        tmp.write_text('{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary left


def test_atomic_write_gives_the_writer_a_name_with_the_target_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "figure.png", lambda tmp: seen.append(tmp) or tmp.write_bytes(b"x"))
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path
    assert (tmp_path / "figure.png").read_bytes() == b"x"


def test_atomic_folder_appears_whole_replaces_the_old_one_or_leaves_it(tmp_path):
    target = tmp_path / "export"

    def write(folder, marker="new"):
        (folder / "a.txt").write_text(marker)
        (folder / "b.txt").write_text(marker)

    assert atomic_folder(target, write) == target
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]

    def fail(folder):
        (folder / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_folder(target, fail)
    assert (target / "a.txt").read_text() == "new"  # the old folder, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left

    atomic_folder(target, lambda folder: (folder / "c.txt").write_text("newer"))
    assert [p.name for p in target.iterdir()] == ["c.txt"]  # replaced, not merged


def test_run_file_names():
    assert TEST_METRICS_FILE == metrics_file("test") == "metrics_test.json"
    assert predictions_file("test", "bbh/date understanding") == (
        "predictions/test_bbh_date_understanding.csv"
    )
    assert reliability_file("val", "a:b") == "reliability/val_a_b.png"
