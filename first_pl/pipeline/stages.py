"""Stages cached by the hash of their configuration.

A stage's key hashes its own settings and the keys of the stages it reads, so a changed config
reruns that stage and everything downstream of it, and nothing else. A stage folder counts as
done only when its `stage.json` exists, written last and atomically, and every output it recorded
inside its folder still exists; a crashed stage is rerun in its folder (its own steps, such as
extraction, resume from their partial files), a stage whose output was deleted is moved aside
and rerun.

A key names a configuration, not a result: a deleted stage folder is recomputed under the same
key, and a training run need not give the same weights twice (`precision auto` resolves per
machine and is not in the key). So every finished stage records a run id, and each stage
records the run ids of the stages it read; a stage whose upstream has been recomputed since is
moved aside (`<folder>.stale-<run id>`) and rerun, instead of mixing the old result with the new
upstream.

One process at a time runs stages in a root: the runner holds the root's folder lock
(`first_pl.fileio.lock.lock_folder`) from construction to `close()` (or process exit, also a
kill), and a second process is refused at once instead of interleaving its writes with the
first one's.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_pl.fileio.atomic import write_json_atomic
from first_pl.fileio.lock import lock_folder, unlock_folder
from first_pl.fileio.run_files import STAGE_FILE, STALE_MARK
from first_pl.runner import free_memory


def stable_hash(value: Any) -> str:
    """Short hash of a JSON-able value (keys sorted, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def rss_gib() -> float | None:
    """This process's resident set now, in GiB (None where /proc is not there): beside the
    peak, what a finished stage left behind."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * resource.getpagesize() / 2**30


def peak_rss_gib() -> float:
    """The largest resident set of this process or of any child it waited for, in GiB: the
    stage at which it grows is the one that decides the job's peak memory."""
    kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return kib / 2**20


@dataclass
class StageResult:
    """Where a stage's outputs are and what it reported."""

    name: str
    key: str
    folder: Path
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    run_id: str | None = None  # None: a stage.json written before run ids were recorded


def print_flushed(line: str) -> None:
    """A stage line, flushed at once: a redirected log shows each stage as it starts."""
    print(line, flush=True)


class StageRunner:
    """Runs stages under `root/<name>-<key>/`, skipping those already done, and shows progress."""

    def __init__(self, root: Path, log: Callable[[str], None] = print_flushed) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_folder(self.root)
        self._locked = True
        self.log = log
        self.started = time.monotonic()
        self.results: list[StageResult] = []

    def close(self) -> None:
        """Release the output folder's lock (idempotent; process exit releases it too)."""
        if getattr(self, "_locked", False):
            self._locked = False
            unlock_folder(self.root)

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def run(
        self,
        name: str,
        settings: dict[str, Any],
        body: Callable[[Path], dict[str, Any]],
        after: list[StageResult] | None = None,
    ) -> StageResult:
        """Run `body(folder)` unless a finished stage with the same key exists.

        `body` returns the stage's outputs (JSON-able: paths, figures); they are recorded in
        the stage's `stage.json` together with its settings and upstream keys.
        """
        upstream = {r.name: r.key for r in after or []}
        upstream_runs = {r.name: r.run_id for r in after or []}
        key = stable_hash({"settings": settings, "upstream": upstream})
        folder = self.root / f"{name}-{key}"
        done = folder / STAGE_FILE
        record = json.loads(done.read_text()) if done.is_file() else None
        if record is not None and (
            self._upstream_rerun(name, folder, record, upstream_runs)
            or self._outputs_lost(name, folder, record)
        ):
            record = None
        if record is not None:
            result = StageResult(name, key, folder, record["outputs"], record["seconds"],
                                 cached=True, run_id=record.get("run_id"))  # fmt: skip
            self.log(f"[{self.elapsed()}] {name}: done before ({folder.name}), skipped")
        else:
            if folder.exists():
                self.log(
                    f"[{self.elapsed()}] {name}: {folder.name} holds an unfinished run (no "
                    f"{STAGE_FILE}); running the stage again there"
                )
            self.log(f"[{self.elapsed()}] {name}: running in {folder}")
            folder.mkdir(parents=True, exist_ok=True)
            start = time.monotonic()
            outputs = body(folder)
            free_memory()  # what the stage's frames held is garbage now: the next stage starts lean
            seconds = time.monotonic() - start
            run_id = uuid.uuid4().hex
            write_json_atomic(
                done,
                {
                    "name": name,
                    "settings": settings,
                    "upstream": upstream,
                    "upstream_runs": upstream_runs,
                    "outputs": outputs,
                    "seconds": seconds,
                    "run_id": run_id,
                },
            )
            result = StageResult(name, key, folder, outputs, seconds, run_id=run_id)
            now = rss_gib()
            held = "" if now is None else f", {now:.2f} GiB held after it"
            self.log(f"[{self.elapsed()}] {name}: finished in {seconds:.0f} s (peak RSS so far {peak_rss_gib():.2f} GiB{held})")
        self.results.append(result)
        return result

    def _upstream_rerun(
        self, name: str, folder: Path, record: dict[str, Any], runs: dict[str, str | None]
    ) -> bool:
        """True (and the folder moved aside) when a stage this one read has been recomputed
        since it ran; stages recorded before run ids existed cannot tell and are kept."""
        recorded = record.get("upstream_runs") or {}
        changed = [u for u, run in runs.items() if None not in (run, recorded.get(u))
                   and recorded[u] != run]  # fmt: skip
        if not changed:
            return False
        self._move_aside(name, folder, record, f"{', '.join(changed)} recomputed since it ran")
        return True

    def _outputs_lost(self, name: str, folder: Path, record: dict[str, Any]) -> bool:
        """True (and the folder moved aside) when an output the stage recorded in its own folder
        is gone, such as a deleted teacher checkpoint: the stage is not done, whatever its
        `stage.json` says, and every stage reading it would fail or read nothing."""
        lost = [
            f"{key} {value}" for key, value in record["outputs"].items()
            if isinstance(value, str) and Path(value).is_relative_to(folder)
            and not Path(value).exists()
        ]  # fmt: skip
        if not lost:
            return False
        self._move_aside(name, folder, record, f"its output {'; '.join(lost)} no longer exists")
        return True

    def _move_aside(self, name: str, folder: Path, record: dict[str, Any], reason: str) -> None:
        """Keep a result that no longer counts as `<folder>.stale-<run id>`, never deleting it."""
        stale = folder.with_name(f"{folder.name}{STALE_MARK}{(record.get('run_id') or 'old')[:8]}")
        folder.rename(stale)
        self.log(
            f"[{self.elapsed()}] {name}: {reason} ({folder.name}); its old result moved to "
            f"{stale.name}, rerunning"
        )
