"""Choosing a teacher transform's parameter on a validation teacher store (`first-pl calibrate`).

`calibrate_store` reads the store as flat arrays, runs the grid search of `choose_parameter`,
scores label-smoothing deltas by the same ECE for comparison, records what it was chosen on
(the store's path and content fingerprint, teacher, task, split) and writes `calibration.json`
(what `FIRST(temperature="auto", calibration=...)` and `LabelSmoothingDistill(delta="auto",
...)` read) plus the figure-5-left PNG. Both files are written under a temporary name and
renamed, the JSON last, so a killed run never leaves a result that looks valid. A store of the
train or test split is refused unless `allow_split`: choosing the parameter on the data the
teacher fitted (or on the reported test set) is the mistake the validation split exists to avoid.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from first_pl.data.store import TeacherStore, TeacherStoreError
from first_pl.fileio.atomic import atomic_write
from first_pl.fileio.run_files import CALIBRATION_FIGURE, CALIBRATION_FILE
from first_pl.teacher.parameter_choice import STORE_FIELDS, plot_calibration_curve
from first_pl.teacher.parameter_search import (
    CalibrationResult,
    choose_parameter,
    score_label_smoothing,
)

DEFAULT_DELTAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def store_fingerprint(store: TeacherStore) -> str:
    """Identity of a store's contents: a hash of the per-dataset checksums its writer recorded."""
    digest = hashlib.sha256()
    for name in sorted(key for key in store.attrs if key.startswith("sha256_")):
        digest.update(f"{name}={store.attrs[name]}".encode())
    return digest.hexdigest()[:16]


def store_arrays(store: TeacherStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(probs [P, k], ids [P, k], gold [P], answer_mask [P])` of a whole store.

    The answer mask marks each example's first response position (`offsets[:-1]`): in a
    multiple-choice store that is the answer letter.
    """
    if store.num_positions == 0:
        raise TeacherStoreError(
            f"{store.path} holds no response positions ({len(store)} examples): nothing to "
            "calibrate on; extract the validation split again"
        )
    ids, probs, gold = (np.concatenate(parts) for parts in zip(*store.iter_blocks(), strict=True))
    answer_mask = np.zeros(store.num_positions, dtype=bool)
    starts = store.offsets[:-1]
    answer_mask[starts[starts < store.offsets[1:]]] = True
    return probs, ids, gold, answer_mask


def check_split(store: TeacherStore, allow_split: bool) -> None:
    """Refuse a train or test store: the parameter must be chosen on held-out validation data."""
    split = store.metadata.split
    if split in ("train", "test") and not allow_split:
        raise TeacherStoreError(
            f"{store.path} holds the {split} split; calibrate chooses the transform's parameter "
            "on the validation split (extract it with `first-pl extract --split validation`), "
            "or pass --allow_split true to calibrate on this split anyway"
        )


def calibrate_store(
    store: str | Path,
    output_dir: str | Path,
    *,
    transform: str = "prob_temperature",
    objective: str = "ece",
    answer_only: bool = False,
    n_bins: int = 10,
    deltas: Sequence[float] = DEFAULT_DELTAS,
    tail_bucket: bool = False,
    allow_split: bool = False,
) -> CalibrationResult:
    """Choose the parameter on `store`, write `calibration.json` + figure into `output_dir`.

    The options are `first-pl calibrate`'s (see there); the label-smoothing scores are in
    `result.settings["label_smoothing"]` as `[delta, ECE]` pairs.
    """
    teacher_store = TeacherStore(store)
    try:
        check_split(teacher_store, allow_split)
        probs, ids, gold, answer_mask = store_arrays(teacher_store)
        meta = teacher_store.metadata
        fingerprint = store_fingerprint(teacher_store)
    finally:
        teacher_store.close()
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
    if meta.k < 2 and deltas:
        warnings.warn(
            f"label smoothing needs k >= 2 probabilities per row; {store} has k = 1: not scored",
            stacklevel=2,
        )
        deltas = []
    smoothing = score_label_smoothing(
        probs, ids, gold, deltas=list(deltas), n_bins=n_bins, answer_mask=answer_mask,
        answer_only=answer_only,
    )  # fmt: skip
    result.settings.update(
        store=str(Path(store).resolve()),
        store_fingerprint=fingerprint,
        **{name: getattr(meta, name) for name in STORE_FIELDS},
        split=meta.split,
        allow_split=allow_split,
        label_smoothing=[list(pair) for pair in smoothing],
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CALIBRATION_FIGURE, lambda tmp: plot_calibration_curve(result, tmp))
    atomic_write(out / CALIBRATION_FILE, result.to_json)
    return result
