"""`first-pl calibrate`: choose FIRST's teacher temperature c on a validation teacher store.

Reads the store written by `first-pl extract --split validation`, runs the grid search of
`choose_temperature` (and scores label-smoothing deltas by the same ECE for comparison), and
writes `calibration.json` (what `FIRST(temperature="auto", calibration=...)` reads) plus the
figure-5-left PNG. Both files are written under a temporary name and renamed, the JSON last, so
a killed run never leaves a result that looks valid.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from first_pl.data.store import DATASETS, TeacherStore
from first_pl.knowledge.calibration import (
    CalibrationResult,
    choose_temperature,
    plot_calibration_curve,
    score_label_smoothing,
)

RESULT_FILE = "calibration.json"
FIGURE_FILE = "calibration_curve.png"
DEFAULT_DELTAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def store_fingerprint(store: TeacherStore) -> str:
    """Identity of a store's contents: a hash of the per-dataset checksums its writer recorded."""
    digest = hashlib.sha256()
    for name in DATASETS:
        digest.update(str(store.attrs.get(f"sha256_{name}")).encode())
    return digest.hexdigest()[:16]


def read_store(store: TeacherStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(probs [P, k], ids [P, k], gold [P], answer_mask [P])` of a whole store.

    The answer mask marks each example's first response position (`offsets[:-1]`): in a
    multiple-choice store that is the answer letter.
    """
    ids, probs, gold = (np.concatenate(parts) for parts in zip(*store.iter_blocks(), strict=True))
    answer_mask = np.zeros(store.num_positions, dtype=bool)
    starts = store.offsets[:-1]
    answer_mask[starts[starts < store.offsets[1:]]] = True
    return probs, ids, gold, answer_mask


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` then rename onto `path`: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def format_table(result: CalibrationResult, smoothing: Sequence[tuple[float, float]]) -> str:
    """The curve with the chosen c marked, then the ECE before/after and the delta scores."""
    unit = "ECE %" if result.objective == "ece" else "NLL"
    scale = 100.0 if result.objective == "ece" else 1.0
    lines = [f"{'c':>6}  {unit:>8}"]
    for c, value in result.curve:
        mark = "  <- chosen" if c == result.temperature else ""
        lines.append(f"{c:>6.2f}  {value * scale:>8.3f}{mark}")
    lines.append(
        f"chosen c = {result.temperature:g} on {result.n_positions} positions; teacher top-1 "
        f"accuracy {100 * result.accuracy:.2f}%, ECE {100 * result.ece_before:.2f}% -> "
        f"{100 * result.ece_after:.2f}%"
    )
    lines.append(
        "label smoothing: " + ", ".join(f"delta {d:g}: ECE {100 * e:.2f}%" for d, e in smoothing)
    )
    return "\n".join(lines)


def calibrate(
    store: str,
    output_dir: str,
    objective: Literal["ece", "nll"] = "ece",
    answer_only: bool = False,
    n_bins: int = 10,
    deltas: list[float] = list(DEFAULT_DELTAS),  # noqa: B006 - jsonargparse shows it as the default
) -> CalibrationResult:
    """Choose the teacher temperature c on a validation store and write calibration.json + figure.

    Args:
        store: the validation teacher store (.h5) written by `first-pl extract --split validation`.
        output_dir: where calibration.json and calibration_curve.png go (created if needed).
        objective: 'ece' of the transformed teacher top-1 (the paper) or 'nll' of the gold token.
        answer_only: score only each example's first response position (the answer letter of a
            multiple-choice store) instead of every response token.
        n_bins: equal-width ECE bins.
        deltas: label-smoothing deltas to score by the same ECE, for comparison.
    """
    teacher_store = TeacherStore(store)
    probs, ids, gold, answer_mask = read_store(teacher_store)
    result = choose_temperature(
        probs,
        ids,
        gold,
        objective=objective,
        n_bins=n_bins,
        answer_mask=answer_mask,
        answer_only=answer_only,
    )
    smoothing = score_label_smoothing(
        probs,
        ids,
        gold,
        deltas=deltas,
        n_bins=n_bins,
        answer_mask=answer_mask,
        answer_only=answer_only,
    )
    meta = teacher_store.metadata
    result.settings.update(
        store=str(Path(store).resolve()),
        store_fingerprint=store_fingerprint(teacher_store),
        teacher=meta.teacher,
        task=meta.task,
        split=meta.split,
        k=meta.k,
        label_smoothing=[list(pair) for pair in smoothing],
    )
    teacher_store.close()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / FIGURE_FILE, lambda tmp: plot_calibration_curve(result, tmp))
    atomic_write(out / RESULT_FILE, result.to_json)
    print(format_table(result, smoothing))
    print(f"wrote {out / RESULT_FILE} and {out / FIGURE_FILE}")
    return result
