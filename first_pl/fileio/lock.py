"""One exclusive file lock for everything first_pl writes: teacher stores and run folders.

A second writer fails at once (non-blocking ``flock``) instead of interleaving its bytes with the
first one's. The holder writes its process id into the lock file so the refusal can name it, and
removes the file on release; a process that opened a lock file the previous holder had just
unlinked notices (inode mismatch) and retries on the fresh file.

Run folders add one rule on top (:func:`lock_folder`): callers in one process share the folder's
lock (the pipeline's stage runner and a sweep on the same output folder), counted, so the last
release frees it. A store's lock is never shared: two writers of one store are refused even in
one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import Counter
from pathlib import Path

from first_pl.fileio.run_files import LOCK_FILE


class LockHeldError(RuntimeError):
    """Another process (or, for a store, another writer) holds the lock."""

    def __init__(self, path: Path, holder: str, message: str | None = None) -> None:
        super().__init__(message or f"lock {path} is held by process {holder}")
        self.path = path
        self.holder = holder


class OutputDirLockedError(LockHeldError):
    """Another process is running stages, or a fit, in the same output folder."""


def lock_path(path: Path) -> Path:
    """The lock file that guards writing `path` (a file): `<path>.lock` beside it."""
    return Path(f"{os.fspath(path)}{LOCK_FILE}")


class FileLock:
    """Exclusive, non-blocking ``flock`` on `path`, removed on release."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise `LockHeldError` naming the holding process at once."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockHeldError(self.path, holder) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent; process exit drops it too)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


# Callers of one process on the same (resolved) folder share its lock; the count of their holds.
_HELD: dict[Path, FileLock] = {}
_HOLDS: Counter[Path] = Counter()


def lock_folder(root: Path) -> None:
    """Take `<root>/.lock` for this process (shared by its callers), or refuse at once."""
    key = Path(root).resolve()
    if key in _HELD:
        _HOLDS[key] += 1
        return
    lock = FileLock(key / LOCK_FILE)
    try:
        lock.acquire()
    except LockHeldError as err:
        raise OutputDirLockedError(
            err.path,
            err.holder,
            f"output folder {root} is in use by another first-pl process (process {err.holder} "
            f"holds {err.path}); wait for it to finish, stop it, or use another output folder",
        ) from None
    _HELD[key], _HOLDS[key] = lock, 1


def unlock_folder(root: Path) -> None:
    """Drop one hold on `<root>/.lock`; the last one releases it."""
    key = Path(root).resolve()
    if key not in _HELD:
        return
    _HOLDS[key] -= 1
    if _HOLDS[key] == 0:
        del _HOLDS[key]
        _HELD.pop(key).release()
