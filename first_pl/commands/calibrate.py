"""`first-pl calibrate`: choose a teacher transform's parameter on a validation teacher store.

Reads the store written by `first-pl extract --split validation`, chooses `--transform`'s
parameter (Eq. 4's c by default; the log-space T; label smoothing's delta) by the grid search of
`first_pl.teacher.choose_on_store.calibrate_store`, writes `calibration.json` and the
figure-5-left PNG, and prints the curve with the choice marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from first_pl.fileio.output_path import check_output_path
from first_pl.fileio.run_files import CALIBRATION_FIGURE as FIGURE_FILE
from first_pl.fileio.run_files import CALIBRATION_FILE as RESULT_FILE
from first_pl.teacher.choose_on_store import DEFAULT_DELTAS, calibrate_store
from first_pl.teacher.parameter_search import CalibrationResult


def format_table(result: CalibrationResult) -> str:
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
        "label smoothing: "
        + ", ".join(f"delta {d:g}: ECE {100 * e:.2f}%" for d, e in result.settings["label_smoothing"])
    )
    return "\n".join(lines)


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
    check_output_path(output_dir, "--output_dir", folder=True)
    result = calibrate_store(
        store, output_dir, transform=transform, objective=objective, answer_only=answer_only,
        n_bins=n_bins, deltas=deltas, tail_bucket=tail_bucket, allow_split=allow_split,
    )  # fmt: skip
    out = Path(output_dir)
    print(format_table(result))
    print(f"wrote {out / RESULT_FILE} and {out / FIGURE_FILE}")
    return result
