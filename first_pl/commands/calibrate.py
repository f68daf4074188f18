"""`first-pl calibrate`: choose a teacher transform's parameter on a validation teacher store.

Reads the store written by `first-pl extract --split validation`, runs the grid search of
`choose_parameter` for `--transform` (Eq. 4's c by default; the log-space T; label smoothing's
delta), scores label-smoothing deltas by the same ECE for comparison, and writes
`calibration.json` (what `FIRST(temperature="auto", calibration=...)` and
`LabelSmoothingDistill(delta="auto", ...)` read: transform, parameter, curve) plus the
figure-5-left PNG. A store of the train or test split is refused unless `--allow_split true`:
choosing the parameter on the data the teacher fitted (or on the reported test set) is the
mistake the validation split exists to avoid. Both files are written under a temporary name and renamed, the JSON last, so
a killed run never leaves a result that looks valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from first_pl.data.store import TeacherStore, TeacherStoreError
from first_pl.fileio.atomic import atomic_write
from first_pl.fileio.run_files import CALIBRATION_FIGURE as FIGURE_FILE
from first_pl.fileio.run_files import CALIBRATION_FILE as RESULT_FILE
from first_pl.knowledge.calibration import (
    CalibrationResult,
    choose_parameter,
    score_label_smoothing,
)
from first_pl.knowledge.calibration_result import plot_calibration_curve
from first_pl.knowledge.store_arrays import store_arrays, store_fingerprint

DEFAULT_DELTAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def format_table(result: CalibrationResult, smoothing: Sequence[tuple[float, float]]) -> str:
    """The curve with the choice marked, then the ECE before/after and the delta scores."""
    unit = {"ece": "ECE %", "trust": "Trust %", "nll": "NLL"}[result.objective]
    scale = 1.0 if result.objective == "nll" else 100.0
    name = result.settings["parameter_name"]
    lines = [f"{result.transform}{' + tail bucket' if result.tail_bucket else ''}"]
    lines.append(f"{name:>6}  {unit:>8}")
    for c, value in result.curve:
        mark = "  <- chosen" if c == result.parameter else ""
        lines.append(f"{c:>6.2f}  {value * scale:>8.3f}{mark}")
    lines.append(
        f"chosen {name} = {result.parameter:g} on {result.n_positions} positions; teacher top-1 "
        f"accuracy {100 * result.accuracy:.2f}%, ECE {100 * result.ece_before:.2f}% -> "
        f"{100 * result.ece_after:.2f}%"
    )
    lines.append(
        "label smoothing: " + ", ".join(f"delta {d:g}: ECE {100 * e:.2f}%" for d, e in smoothing)
    )
    return "\n".join(lines)


def check_split(store: TeacherStore, allow_split: bool) -> None:
    """Refuse a train or test store: the parameter must be chosen on held-out validation data."""
    split = store.metadata.split
    if split in ("train", "test") and not allow_split:
        raise TeacherStoreError(
            f"{store.path} holds the {split} split; calibrate chooses the transform's parameter "
            "on the validation split (extract it with `first-pl extract --split validation`), "
            "or pass --allow_split true to calibrate on this split anyway"
        )


def calibrate(
    store: str,
    output_dir: str,
    transform: Literal[
        "prob_temperature", "log_temperature", "label_smoothing"
    ] = "prob_temperature",
    objective: Literal["ece", "nll", "trust"] = "ece",
    answer_only: bool = False,
    n_bins: int = 10,
    deltas: list[float] = list(DEFAULT_DELTAS),  # noqa: B006 - jsonargparse shows it as the default
    tail_bucket: bool = False,
    allow_split: bool = False,
) -> CalibrationResult:
    """Choose a teacher transform's parameter on a validation store; write calibration.json + figure.

    Args:
        store: the validation teacher store (.h5) written by `first-pl extract --split validation`.
        output_dir: where calibration.json and calibration_curve.png go (created if needed).
        transform: 'prob_temperature' (Eq. 4's c in (0, 1], the paper), 'log_temperature'
            (p^(1/T) renormalised, T in [0.1, 10]) or 'label_smoothing' (Eq. 3's delta in [0, 1)).
        objective: 'ece' of the transformed teacher prediction (the paper), 'trust' (accuracy -
            ECE, maximised) or 'nll' of the gold token.
        answer_only: score only each example's first response position (the answer letter of a
            multiple-choice store) instead of every response token.
        n_bins: equal-width ECE bins.
        deltas: label-smoothing deltas to score by the same ECE, for comparison.
        tail_bucket: transform the top-k plus the tail bucket, as a student trained with
            `tail_bucket: true` does.
        allow_split: calibrate on a train or test store anyway (recorded in calibration.json).
    """
    teacher_store = TeacherStore(store)
    check_split(teacher_store, allow_split)
    probs, ids, gold, answer_mask = store_arrays(teacher_store)
    result = choose_parameter(
        probs,
        ids,
        gold,
        transform=transform,
        objective=objective,
        n_bins=n_bins,
        answer_mask=answer_mask,
        answer_only=answer_only,
        tail_bucket=tail_bucket,
    )
    meta = teacher_store.metadata
    if meta.k < 2 and deltas:
        print(f"label smoothing needs k >= 2 probabilities per row; {store} has k = 1: not scored")
        deltas = []
    smoothing = score_label_smoothing(
        probs,
        ids,
        gold,
        deltas=deltas,
        n_bins=n_bins,
        answer_mask=answer_mask,
        answer_only=answer_only,
    )
    result.settings.update(
        store=str(Path(store).resolve()),
        store_fingerprint=store_fingerprint(teacher_store),
        teacher=meta.teacher,
        task=meta.task,
        split=meta.split,
        allow_split=allow_split,
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
