"""The results table: printed to the terminal and written as `benchmarks/RESULTS.md`."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.common import Row


def _value(row: Row) -> str:
    return f"{row.value:.2f}" if row.unit in ("x", "s") else f"{row.value:.1f}"


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: figure, value, goal, verdict, how it was measured."""
    lines = ["| figure | value | goal | verdict | measured |", "|---|---|---|---|---|"]
    for row in rows:
        unit = "" if row.unit == "x" else f" {row.unit}"
        lines.append(
            f"| {row.figure} | {_value(row)}{unit} | {row.goal} | {row.verdict} | {row.detail} |"
        )
    return "\n".join(lines)


def machine_note() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.machine()} {platform.system()}, {cpus} CPUs (shared with other jobs: noisy), "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) per process, no GPU"
    )


def write_results(
    path: Path, rows: Sequence[Row], command: str, seconds: float, notes: str = ""
) -> None:
    """Write the table with the command, the date and the machine; `notes` is appended as is."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# Benchmark results\n\n"
        f"Command: `{command}` ({seconds / 60:.1f} min)  \n"
        f"Date: {when}  \nMachine: {machine_note()}\n\n"
        "Ratios are of medians over interleaved repeats, warm-up excluded.\n\n"
        f"{table(rows)}\n"
    )
    if notes:
        text += f"\n{notes.strip()}\n"
    path.write_text(text)
