"""Offline FIRST against online full-vocabulary KD: total wall time and peak memory of E epochs.

What a user weighs (issue 17): offline FIRST pays one teacher extraction, then E student epochs
that never load the teacher; online KD runs the teacher's forward in every step of every epoch
and keeps both models in memory. Same student (`Workbench.students`), same examples, same
batches, same optimiser. Each side runs in processes of its own (`run_probe`), since a
process's peak RSS is only clean in a fresh process: offline = an extraction process, then a
training process reading the store (peak = the larger of the two); online = one process.
Epoch e's cumulative time is read inside one run of E epochs (a run of e epochs is its prefix).

    python -m benchmarks.fig_offline_online --mode online --teacher smollm2-135m-instruct \
        --examples 32 --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row
from benchmarks.fig_memory import _status_kb, run_module
from benchmarks.workbench import Settings, Workbench

MODES = ("extract", "first", "online")


def _epochs(step: Any, batches: list, epochs: int) -> list[float]:
    """Cumulative seconds after each epoch of `step` over `batches`."""
    cumulative, start = [], time.perf_counter()
    for _ in range(epochs):
        for batch in batches:
            step(batch)
        cumulative.append(time.perf_counter() - start)
    return cumulative


def probe(mode: str, settings: Settings, examples: int, epochs: int, store: Path) -> dict[str, Any]:
    """One side of the comparison in this process: its seconds and its peak RSS (kB)."""
    import torch

    from benchmarks.fig_train import method_step, online_kd_step
    from first_pl.data.distill_datamodule import DistillDataModule

    torch.set_num_threads(1)
    bench = Workbench(settings)
    try:
        n = -(-examples // settings.batch_size)  # batches covering the `examples` of the split
        if mode == "extract":
            batches = bench.batches(n)
            start = time.perf_counter()
            bench.extract(batches, store)
            return {"seconds": [time.perf_counter() - start], "peak_kb": _status_kb("VmHWM")}
        finetune, first, optimizer = bench.students
        if mode == "first":
            data = DistillDataModule(store=str(store), in_memory=True, **bench.data_kwargs())
            data.setup("fit")
            batches = [b for b, _ in zip(data.train_dataloader(), range(n), strict=False)]
            seconds = _epochs(lambda b: method_step(first, optimizer, b), batches, epochs)
        else:
            teacher, batches = bench.teacher, bench.batches(n)
            seconds = _epochs(
                lambda b: online_kd_step(finetune, teacher, optimizer, b), batches, epochs
            )
        return {"seconds": seconds, "peak_kb": _status_kb("VmHWM")}
    finally:
        bench.close()


def run_probe(
    mode: str, settings: Settings, examples: int, epochs: int, store: Path
) -> dict[str, Any]:
    """`probe` in a subprocess."""
    args = [
        "--mode", mode, "--teacher", settings.teacher, "--dtype", settings.dtype,
        "--keep-every", str(settings.keep_every), "--batch-size", str(settings.batch_size),
        "--examples", str(examples), "--epochs", str(epochs), "--store", str(store),
    ]  # fmt: skip
    return run_module("benchmarks.fig_offline_online", args, f"{mode} probe")


def offline_online_rows(bench: Workbench) -> list[Row]:
    s = dataclasses.replace(bench.settings, train_size=bench.settings.offline_examples)
    examples, epochs = s.offline_examples, s.offline_epochs
    with tempfile.TemporaryDirectory(prefix="first_pl_offline_") as tmp:
        store = Path(tmp) / "store.h5"
        extract = run_probe("extract", s, examples, epochs, store)
        first = run_probe("first", s, examples, epochs, store)
        online = run_probe("online", s, examples, epochs, store)
    extract_s = extract["seconds"][0]
    offline_peak = max(extract["peak_kb"], first["peak_kb"])
    rows = []
    for e in range(1, epochs + 1):
        offline_s = extract_s + first["seconds"][e - 1]
        rows.append(
            Row(
                f"offline FIRST / online full-vocab KD, total wall time, {e} epoch(s)",
                offline_s / online["seconds"][e - 1],
                detail=(
                    f"{offline_s:.1f} s (extraction {extract_s:.1f} s + {e} student epoch(s) "
                    f"{first['seconds'][e - 1]:.1f} s) vs {online['seconds'][e - 1]:.1f} s; "
                    f"{examples} examples, batch {s.batch_size}"
                ),
            )
        )
    rows.append(
        Row(
            "offline FIRST / online full-vocab KD, peak memory (RSS)",
            offline_peak / online["peak_kb"],
            detail=(
                f"{offline_peak / 1024:.0f} MB (extraction {extract['peak_kb'] / 1024:.0f}, training "
                f"{first['peak_kb'] / 1024:.0f}) vs {online['peak_kb'] / 1024:.0f} MB (teacher + student)"
            ),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description="one side of offline FIRST vs online KD (JSON on stdout)"
    )
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--keep-every", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(
        teacher=args.teacher,
        dtype=args.dtype,
        keep_every=args.keep_every,
        batch_size=args.batch_size,
        train_size=args.examples,  # the store then covers the whole split, as DistillDataModule requires
    )
    print(json.dumps(probe(args.mode, settings, args.examples, args.epochs, args.store)))


if __name__ == "__main__":
    main()
