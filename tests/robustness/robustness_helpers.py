"""Subprocess helpers for the robustness tests: run `first-pl` as a user does, and kill it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(
            [
                str(REPO),
                str(REPO / "tests"),
                str(REPO / "tests" / "robustness"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }


def spawn(code: str, log: Path) -> subprocess.Popen:
    """A Python subprocess running `code`, its output in `log` (read it when a test fails)."""
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env(), stdout=handle, stderr=subprocess.STDOUT
    )


def first_pl(
    args: list[str], log: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m first_pl <args>` as a user types it; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "first_pl", *args], cwd=REPO, env=env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def wait_for(
    condition, proc: subprocess.Popen, log: Path, timeout: float = 240, poll: float = 0.05
) -> None:
    """Poll until `condition()` holds; fail with the subprocess's log if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        if proc.poll() is not None:
            pytest.fail(
                f"the process ended (rc {proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}"
            )
        time.sleep(poll)
    proc.kill()
    pytest.fail(f"kill point not reached in {timeout} s:\n{log.read_text()[-3000:]}")


def kill9(proc: subprocess.Popen) -> None:
    """A real SIGKILL: no handler, no cleanup, no flush."""
    os.kill(proc.pid, 9)
    proc.wait(timeout=30)
    assert proc.returncode == -9
