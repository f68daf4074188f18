"""Trustworthy maximization: choose a teacher transform's parameter on validation.

The maths behind `first-pl calibrate` (DESIGN section 1). Inputs are the flat arrays of a
validation teacher store over its P response positions: `probs` `[P, k]` (descending, full-vocab
probabilities at temperature 1), `ids` `[P, k]`, `gold` `[P]` (the gold next token), and an
optional `answer_mask` `[P]` marking answer tokens for the answer-token-only objective. numpy
arrays (any int dtype, float16 probabilities) and tensors are both accepted.

Any registered transform (`first_pl.teacher.transforms.TRANSFORMS`: Eq. 4's c, the log-space
T, label smoothing's delta), with or without the tail bucket, is scored the same way: the
transformed row predicts its most probable token among the k ids (the tail bucket is no token),
with that probability as confidence. ECE comes from `first_pl.metrics.functional`, binning a
whole `[G, P]` grid of parameter values at once, so the value optimised here is the value the
metrics report.
`CalibrationResult` (what `calibrate` writes) is re-exported from here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from first_pl.metrics.functional import calibration_bins, expected_calibration_error_from_bins
from first_pl.teacher.parameter_choice import CalibrationResult
from first_pl.teacher.transforms import (
    TransformSpec,
    temperature_scale_grid_log,
    transform_spec,
    with_tail,
)

__all__ = ["CalibrationResult", "choose_parameter", "curve_values", "score_label_smoothing"]
OBJECTIVES = ("ece", "nll", "trust")
# Rows per chunk: a chunk of the [G, P] grid then stays near 60 * 2**17 floats (~30 MB).
_CHUNK_ROWS = 2**17


_NUMPY_DTYPES = {torch.float32: np.float32, torch.int64: np.int64, torch.bool: np.bool_}


def _tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Tensor of `dtype`; casts in numpy first because torch lacks ops on e.g. uint16 ids."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.from_numpy(np.asarray(x).astype(_NUMPY_DTYPES[dtype]))


def _prepare(
    probs: np.ndarray | torch.Tensor,
    ids: np.ndarray | torch.Tensor,
    gold: np.ndarray | torch.Tensor,
    answer_mask: np.ndarray | torch.Tensor | None,
    answer_only: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 probs `[P, k]`, long ids `[P, k]`, long gold `[P]`, restricted to answer rows."""
    p = _tensor(probs, torch.float32)
    i = _tensor(ids, torch.int64)
    g = _tensor(gold, torch.int64)
    if p.dim() != 2 or i.shape != p.shape or g.shape != p.shape[:1]:
        raise ValueError(
            f"expected probs [P, k], ids [P, k], gold [P]; got {tuple(p.shape)}, "
            f"{tuple(i.shape)}, {tuple(g.shape)}"
        )
    if answer_only:
        if answer_mask is None:
            raise ValueError("answer_only=True needs answer_mask")
        keep = _tensor(answer_mask, torch.bool)
        p, i, g = p[keep], i[keep], g[keep]
    if p.shape[0] == 0:
        raise ValueError("no positions to calibrate on")
    return p, i, g


def _ece(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    return float(
        expected_calibration_error_from_bins(*calibration_bins(confidence, correct, n_bins))
    )


def _transformed(spec: TransformSpec, p: torch.Tensor, value: float) -> torch.Tensor:
    """`spec.apply(p, value)`, with label smoothing's clamp warning silenced: a grid explores
    deltas above some rows' top-1 on purpose, and the curve scores the clamped targets that
    training would use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="label smoothing delta")
        return spec.apply(p, value)


def prediction_grid(
    spec: TransformSpec,
    p: torch.Tensor,
    ids: torch.Tensor,
    gold: torch.Tensor,
    values: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence `[G, N]` and correctness `[G, N]` of the transformed prediction at each value.

    `p` is `[N, k]`, or `[N, k + 1]` with the tail bucket last. A transform that keeps the order
    of the entries (both temperatures) keeps the teacher's top-1 as prediction, and Eq. 4 uses
    the streaming `temperature_scale_grid_log` instead of materialising each transformed row.
    """
    k = ids.shape[1]
    if spec.keeps_order:
        correct = (ids[:, 0] == gold).expand(values.shape[0], -1)
        if spec.name == "prob_temperature":
            return temperature_scale_grid_log(p, values).exp(), correct
        return torch.stack([spec.apply(p, float(v))[:, 0] for v in values]), correct
    confidence, correct = [], []
    for v in values.tolist():
        conf, pred = _transformed(spec, p, v)[:, :k].max(1)
        confidence.append(conf)
        correct.append(ids.gather(1, pred[:, None])[:, 0] == gold)
    return torch.stack(confidence), torch.stack(correct)


def _gold_log_probs(
    spec: TransformSpec, p: torch.Tensor, rank: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """log of the transformed probability `[G, N]` at column `rank` of each row."""
    if spec.name == "prob_temperature":
        return temperature_scale_grid_log(p, values, rank)
    rows = [_transformed(spec, p, v).gather(1, rank[:, None])[:, 0] for v in values.tolist()]
    return torch.stack(rows).clamp_min(torch.finfo(p.dtype).tiny).log()


def curve_values(
    spec: TransformSpec,
    objective: str,
    p: torch.Tensor,
    ids: torch.Tensor,
    gold: torch.Tensor,
    values: torch.Tensor,
    n_bins: int = 10,
    nll_floor: float = 1e-6,
) -> torch.Tensor:
    """The objective `[G]` at each parameter value, accumulated over chunks of positions.

    ECE and Trust sum per-bin statistics over chunks, so the result is exactly the unchunked
    value. NLL is of the gold token: its transformed probability when it is among the k ids;
    otherwise the tail bucket's when there is one (the outcome "outside the top-k"), else 0.
    Every probability is floored at `nll_floor` before the log, so a gold token with no
    probability costs -log(floor) at every value (it shifts the curve but cannot move its
    minimum) and a tiny c cannot make one in-top-k token's cost unbounded.
    """
    k, tail = ids.shape[1], p.shape[1] > ids.shape[1]
    stats, total = None, torch.zeros(values.shape[0], dtype=torch.float64)
    for start in range(0, p.shape[0], _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        if objective == "nll":
            match = ids[rows] == gold[rows].unsqueeze(1)
            found = match.any(1)
            rank = torch.where(found, match.long().argmax(1), torch.full_like(gold[rows], k))
            log_p = _gold_log_probs(spec, p[rows], rank.clamp_max(p.shape[1] - 1), values)
            log_p = log_p.clamp_min(math.log(nll_floor))
            if not tail:
                log_p = torch.where(found, log_p, torch.full_like(log_p, math.log(nll_floor)))
            total -= log_p.double().sum(1)
            continue
        conf, correct = prediction_grid(spec, p[rows], ids[rows], gold[rows], values)
        bins = calibration_bins(conf, correct, n_bins)
        stats = bins if stats is None else tuple(a + b for a, b in zip(stats, bins, strict=True))
    if objective == "nll":
        return total / p.shape[0]
    ece = expected_calibration_error_from_bins(*stats).double()
    if objective == "ece":
        return ece
    count, _, correct = stats  # per-bin counts and sums of correct: Trust = Acc - ECE
    return correct.sum(-1).double() / count.sum(-1).double() - ece


def _fine_grid(spec: TransformSpec, best: float, step: float, radius: float) -> list[float]:
    """best +- radius in steps of `step`, keeping only values in the transform's range."""
    n = round(radius / step)
    return [c for i in range(-n, n + 1) if spec.contains(c := round(best + i * step, 10))]


def _warn_at_edge(spec: TransformSpec, chosen: float, curve: list[tuple[float, float]]) -> None:
    """An optimum at the end of the searched grid may be an optimum the grid cut off."""
    lowest, highest = curve[0][0], curve[-1][0]
    if len(curve) < 2 or chosen not in (lowest, highest):
        return
    side, limit = ("lower", spec.low) if chosen == lowest else ("upper", spec.high)
    if math.isclose(chosen, limit, abs_tol=spec.fine_step):
        beyond = f"; the documented range {spec.describe_range()} ends there"
    else:
        beyond = f"; widen the grid (range {spec.describe_range()}) to search past it"
    warnings.warn(
        f"calibrate: {spec.name} chose {spec.parameter} = {chosen:g} at the {side} edge of the "
        f"searched grid [{lowest:g}, {highest:g}]: the true optimum may lie outside{beyond}",
        stacklevel=3,
    )


def choose_parameter(
    probs: np.ndarray | torch.Tensor,
    ids: np.ndarray | torch.Tensor,
    gold: np.ndarray | torch.Tensor,
    transform: str = "prob_temperature",
    objective: str = "ece",
    n_bins: int = 10,
    coarse: Sequence[float] | None = None,
    fine_step: float | None = None,
    fine_radius: float | None = None,
    answer_mask: np.ndarray | torch.Tensor | None = None,
    answer_only: bool = False,
    nll_floor: float = 1e-6,
    tail_bucket: bool = False,
) -> CalibrationResult:
    """Grid search for the `transform` parameter optimising the validation objective.

    Coarse grid first (default: the transform's), then a fine grid of `fine_step` within
    `fine_radius` of the best coarse value; the answer is the best of both (ties go to the
    smallest value). No value outside the transform's documented range is evaluated, and a
    choice at either end of the grid warns. Objectives: 'ece' and 'trust' (Acc - ECE, maximised)
    of the transformed prediction, 'nll' of the gold token (`curve_values`). With `answer_only`,
    only rows where `answer_mask` is true count; with `tail_bucket`, the transform acts on the
    top-k plus the tail bucket (`with_tail`), as training with `tail_bucket=True` does.
    """
    spec = transform_spec(transform)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    coarse = spec.coarse if coarse is None else coarse
    fine_step = spec.fine_step if fine_step is None else fine_step
    fine_radius = spec.fine_radius if fine_radius is None else fine_radius
    outside = [c for c in coarse if not spec.contains(c)]
    if outside or not coarse:
        raise ValueError(
            f"coarse grid values of {transform} must lie in its range "
            f"{spec.parameter} in {spec.describe_range()}; got {list(coarse)}"
        )
    p, i, g = _prepare(probs, ids, gold, answer_mask, answer_only)
    rows = with_tail(p) if tail_bucket else p
    sign = -1.0 if objective == "trust" else 1.0  # every objective minimised as sign * value

    def evaluate(values: list[float]) -> list[float]:
        grid = torch.tensor(values, dtype=torch.float32)
        return curve_values(spec, objective, rows, i, g, grid, n_bins, nll_floor).tolist()

    coarse_values = sorted({round(float(c), 10) for c in coarse})
    scores = dict(zip(coarse_values, evaluate(coarse_values), strict=True))
    best_coarse = min(scores, key=lambda c: sign * scores[c])
    fine = sorted(set(_fine_grid(spec, best_coarse, fine_step, fine_radius)) - set(scores))
    if fine:
        scores.update(zip(fine, evaluate(fine), strict=True))
    curve = sorted(scores.items())
    chosen, value = min(curve, key=lambda cv: sign * cv[1])  # min keeps the first: smallest
    _warn_at_edge(spec, chosen, curve)
    correct = i[:, 0] == g
    after = curve_values(spec, "ece", rows, i, g, torch.tensor([chosen]), n_bins)
    return CalibrationResult(
        parameter=chosen,
        objective=objective,
        value=value,
        curve=curve,
        ece_before=_ece(p[:, 0], correct, n_bins),
        ece_after=float(after[0]),
        accuracy=float(correct.double().mean()),
        n_positions=int(p.shape[0]),
        settings={
            "n_bins": n_bins,
            "coarse": coarse_values,
            "fine_step": fine_step,
            "fine_radius": fine_radius,
            "answer_only": answer_only,
            "nll_floor": nll_floor,
            "parameter_name": spec.parameter,
            "range": spec.describe_range(),
        },
        transform=transform,
        tail_bucket=tail_bucket,
    )


def score_label_smoothing(
    probs: np.ndarray | torch.Tensor,
    ids: np.ndarray | torch.Tensor,
    gold: np.ndarray | torch.Tensor,
    deltas: Sequence[float] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3),
    n_bins: int = 10,
    answer_mask: np.ndarray | torch.Tensor | None = None,
    answer_only: bool = False,
) -> list[tuple[float, float]]:
    """Validation ECE (fraction) of the Eq. 3 smoothed prediction for each delta.

    Printed beside the chosen c by `first-pl calibrate` for a figure 5-style comparison.
    """
    if not deltas:
        return []
    p, i, g = _prepare(probs, ids, gold, answer_mask, answer_only)
    grid = torch.tensor([float(d) for d in deltas])
    ece = curve_values(transform_spec("label_smoothing"), "ece", p, i, g, grid, n_bins)
    return [(float(d), float(e)) for d, e in zip(deltas, ece, strict=True)]
