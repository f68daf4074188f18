"""`first-pl coverage` and `first-pl rank-calibration`: the data behind figures 2 and 3.

Coverage needs the teacher's full distribution, so it runs the teacher (same `teacher` / `data`
arguments as `first-pl extract`); rank-wise calibration needs only the stored top-k, so it reads
a store. Both write PNG + CSV + JSON to ``output_dir`` and print their table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore
from first_pl.fileio.output_path import check_output_path
from first_pl.methods.loading import load_model
from first_pl.teacher.analysis import (
    COVERAGE_BATCH_SIZE,
    coverage,
    rank_calibration,
    write_coverage,
    write_rank_calibration,
)
from first_pl.teacher.extract_launch import device_for_rank

COVERAGE_ROWS = (1, 2, 3, 4, 5, 10, 20, 50, 100)


def format_table(rows: Sequence[dict[str, float | int]]) -> str:
    """Fixed-width text table; floats to 4 decimals."""
    columns = list(rows[0])
    cells = [
        [f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join(
        "  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in lines
    )


def check_positive(**options: int | None) -> None:
    """Refuse a count option below 1 (a negative one would slice from the end silently)."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")


def coverage_figure(
    data: QADataModule,
    teacher: str,
    output_dir: str,
    split: str = "train",
    max_k: int = 100,
    max_positions: int = 2000,
    probs_dtype: Literal["float16", "float32"] = "float16",
    batch_size: int = COVERAGE_BATCH_SIZE,
    trust_checkpoint: bool = False,
) -> None:
    """Figure 2: cumulative top-k probability at response positions, and store size per k.

    Args:
        data: the data module of the training config.
        teacher: a first_pl .ckpt file or sharded checkpoint folder, a Hugging Face model
            folder, a .gguf file, or a model name / hub id (`first_pl.methods.loading`).
        output_dir: where coverage.png / .csv / .json go.
        split: which split of ``data.train_task`` to sample.
        max_k: largest k on the curve.
        max_positions: response positions the teacher runs on (the first ones of the split);
            the rest are only counted, to size the whole store.
        probs_dtype: the stored probability dtype the store size assumes.
        batch_size: examples per teacher forward pass.
        trust_checkpoint: load a checkpoint that needs more than tensors and plain data (its
            pickle can run code): only for a file from a source you trust. Default: refused.
    """
    check_positive(max_k=max_k, max_positions=max_positions, batch_size=batch_size)
    check_output_path(output_dir, "--output_dir")
    model = load_model(teacher, "--teacher", trust=trust_checkpoint).module.model
    loader = data.split_loader(split, batch_size)
    result = coverage(model.to(device_for_rank()), loader, max_k, max_positions, probs_dtype)
    paths = write_coverage(result, output_dir)
    print(format_table([row for row in result.rows() if row["k"] in COVERAGE_ROWS]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def rank_calibration_figure(store: str, output_dir: str, max_positions: int | None = None) -> None:
    """Figure 3: per rank, the teacher's mean stored probability against its accuracy.

    Args:
        store: a teacher store written by ``first-pl extract`` (usually the validation split).
        output_dir: where rank_calibration.png / .csv / .json go.
        max_positions: use only the store's first positions (all by default).
    """
    check_positive(max_positions=max_positions)
    check_output_path(output_dir, "--output_dir")
    result = rank_calibration(TeacherStore(store), max_positions)
    paths = write_rank_calibration(result, output_dir)
    print(format_table(result.rows()))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
