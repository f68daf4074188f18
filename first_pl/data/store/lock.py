"""An exclusive, non-blocking file lock: a second writer of a store fails at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from first_pl.data.store.format import TeacherStoreError


class FileLock:
    """Exclusive, non-blocking ``flock`` on ``<path>.lock``: a second writer fails at once.

    The lock file is removed on release; a process that locked a file already unlinked by the
    previous holder notices (inode mismatch) and retries on the fresh file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TeacherStoreError(
                    f"{what} is being written by another process (lock {self.path} is held); "
                    "wait for it to finish or stop it first"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None
