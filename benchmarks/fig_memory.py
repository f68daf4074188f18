"""Peak memory of extraction at 1x and 4x the data, each size in its own process.

Each probe process loads the teacher, tokenises the first `memory_examples` examples and repeats
them `copies` times under new ids (1x: once, 4x: four times), so both sizes see exactly the same
batch shapes and any difference in peak is growth with the amount of data, not a longer batch
that happens to occur in the larger set. It runs one warm-up batch (so lazy allocations are
made), then resets the kernel's peak-RSS mark (`/proc/self/clear_refs` = 5) and reads the
current RSS as the baseline. It then runs the library's `extract_shard` over all its examples
and reads the peak RSS (`VmHWM`), under a fixed glibc mmap threshold (`FIXED_MMAP`). The figure
compares the *increments* over that loaded-model baseline (what extraction itself adds; the goal applies to it); the ratio of whole
peaks, which the ~0.5 GB model dominates, is in the detail.

    python -m benchmarks.fig_memory --teacher smollm2-135m-instruct --examples 32 --copies 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import Goal, Row
from benchmarks.workbench import Settings, Workbench, repeated

ROOT = Path(__file__).resolve().parents[1]
# glibc's default mmap threshold adapts upwards once large blocks are freed, after which freed
# activations stay in the heap and the RSS peak depends on allocation history (two batches
# read +49 MB, eight +72 MB, with the same batch shapes). A fixed threshold (the default value,
# made static) returns every block >= 128 KiB to the system on free, so the peak follows live
# memory. It changes the probe's allocator, not first_pl.
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def probe(teacher: str, dtype: str, examples: int, copies: int, batch_size: int) -> dict[str, int]:
    """Run in a fresh process: RSS after loading, baseline after warm-up, peak of extraction."""
    import torch

    from first_pl.teacher.extract import extract_shard

    torch.set_num_threads(1)
    bench = Workbench(
        Settings(teacher=teacher, dtype=dtype, train_size=examples, batch_size=batch_size)
    )
    try:
        data, model = bench.data, bench.teacher
        examples_list = repeated(bench.examples, copies)
        loaded = _status_kb("VmRSS")
        bench.extract(bench.batches(1))  # warm-up
        Path("/proc/self/clear_refs").write_text("5")
        baseline = _status_kb("VmRSS")
        extract_shard(
            model,
            examples_list,
            data.collate_train,
            bench.fresh_path(),
            bench.metadata,
            batch_size=batch_size,
            progress=False,
        )
        return {"loaded_kb": loaded, "baseline_kb": baseline, "peak_kb": _status_kb("VmHWM")}
    finally:
        bench.close()


def run_module(module: str, args: list[str], what: str) -> dict[str, Any]:
    """``python -m <module> <args>`` in a fresh process (a process's peak RSS is only clean in
    a process of its own) under `FIXED_MMAP`; the JSON object on its last stdout line."""
    cmd = [sys.executable, "-m", module, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **FIXED_MMAP}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_probe(settings: Settings, copies: int) -> dict[str, int]:
    """`probe` in a subprocess."""
    args = [
        "--teacher", settings.teacher, "--dtype", settings.dtype,
        "--examples", str(settings.memory_examples), "--copies", str(copies),
        "--batch-size", str(settings.batch_size),
    ]  # fmt: skip
    return run_module("benchmarks.fig_memory", args, "memory probe")


def memory_rows(bench: Workbench) -> list[Row]:
    s = bench.settings
    one, four = (run_probe(s, copies) for copies in (1, 4))
    inc1 = one["peak_kb"] - one["baseline_kb"]
    inc4 = four["peak_kb"] - four["baseline_kb"]
    return [
        Row(
            "peak memory extracting 4x data / 1x (increment over loaded model)",
            inc4 / max(inc1, 1),
            goal=Goal("<=", 1.1),
            detail=(
                f"{s.memory_examples} vs {4 * s.memory_examples} examples: +{inc1 / 1024:.0f} MB vs "
                f"+{inc4 / 1024:.0f} MB over a {one['baseline_kb'] / 1024:.0f} MB baseline; "
                f"whole peak RSS {four['peak_kb'] / max(one['peak_kb'], 1):.2f}x"
            ),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="one extraction memory probe (JSON on stdout)")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    result = probe(args.teacher, args.dtype, args.examples, args.copies, args.batch_size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
