"""Every performance figure of first_pl in one run: a table of ratios with goals, PASS/MISS.

    python benchmarks/run.py [--quick] [--output benchmarks/RESULTS.md]

Full: the real offline SmolLM2-135M-Instruct teacher and a keep_every=2 student on generated
task batches of 16, 5 repeats (about 5 minutes on 2 shared cores). --quick: the same models,
2 repeats, batch 8 and smaller sizes (under 2 minutes; a smoke check whose ratios swing by
+-10%, not a measurement). One thread per process: with 2 cores shared, more threads
spin-wait and make every figure noise. `benchmarks/NOTES.md` (profiles, causes of
misses, the GPU script's status) is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import Row  # noqa: E402
from benchmarks.fig_bucketing import bucketing_rows  # noqa: E402
from benchmarks.fig_data import data_rows  # noqa: E402
from benchmarks.fig_lora import lora_rows  # noqa: E402
from benchmarks.fig_memory import memory_rows  # noqa: E402
from benchmarks.fig_metrics import calibrate_rows, metric_rows  # noqa: E402
from benchmarks.fig_offline_online import offline_online_rows  # noqa: E402
from benchmarks.fig_optimizer import optimizer_rows  # noqa: E402
from benchmarks.fig_precision import precision_rows  # noqa: E402
from benchmarks.fig_prefix import prefix_rows  # noqa: E402
from benchmarks.fig_store import store_rows  # noqa: E402
from benchmarks.fig_teacher import teacher_rows  # noqa: E402
from benchmarks.fig_train import train_rows  # noqa: E402
from benchmarks.report import table, write_results  # noqa: E402
from benchmarks.workbench import Settings, Workbench  # noqa: E402

# fig_train before fig_data: the data figure reuses the FIRST step time.
FIGURES: tuple[Callable[[Workbench], list[Row]], ...] = (
    teacher_rows,
    store_rows,
    train_rows,
    optimizer_rows,
    lora_rows,
    prefix_rows,
    precision_rows,
    data_rows,
    bucketing_rows,
    metric_rows,
    calibrate_rows,
    memory_rows,
    offline_online_rows,
)

QUICK_CAVEAT = (
    "**--quick**: 2 repeats, batch 8, smaller sizes. A smoke check of the whole run; with this "
    "few repeats on a shared machine its verdicts swing by +-10% and are not measurements."
)
QUICK = Settings(
    repeats=2,
    batch_size=8,
    train_size=512,
    calibrate_n=250_000,
    memory_examples=16,
    store_examples=64,
    offline_examples=16,
)


def run(settings: Settings, log: Callable[[str], None] = print) -> list[Row]:
    """All figures on one workbench, in order; logs each figure's rows as they come."""
    bench = Workbench(settings)
    rows: list[Row] = []
    try:
        for figure in FIGURES:
            start = time.perf_counter()
            new = figure(bench)
            rows.extend(new)
            for row in new:
                log(
                    f"[{time.perf_counter() - start:5.1f}s] {row.figure}: {row.value:.3g} {row.verdict}"
                )
    finally:
        bench.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = run(QUICK if args.quick else Settings())
    seconds = time.perf_counter() - start
    print(table(rows))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    notes_file = ROOT / "benchmarks" / "NOTES.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    if args.quick:
        notes = f"{QUICK_CAVEAT}\n\n{notes}"
    write_results(args.output, rows, command, seconds, notes)
    print(f"wrote {args.output} ({seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
