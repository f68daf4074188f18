"""Trustworthy maximization: choose the teacher temperature c (or score deltas) on validation.

The maths behind `first-pl calibrate` (DESIGN section 1). Inputs are the flat arrays of a
validation teacher store over its P response positions: `probs` `[P, k]` (descending, full-vocab
probabilities at temperature 1), `ids` `[P, k]`, `gold` `[P]` (the gold next token), and an
optional `answer_mask` `[P]` marking answer tokens for the answer-token-only objective. numpy
arrays (any int dtype, float16 probabilities) and tensors are both accepted.

ECE comes from `first_pl.metrics.functional`, binning the whole `[G, P]` grid of candidate
temperatures at once, so the value optimised here is the value the metrics report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from first_pl.knowledge.transforms import label_smooth, renormalize, temperature_scale_grid_log
from first_pl.metrics.functional import calibration_bins, expected_calibration_error_from_bins

COARSE_GRID = tuple(round(0.1 * i, 10) for i in range(1, 11))
OBJECTIVES = ("ece", "nll")
# Rows per chunk: a chunk of the [G, P] grid then stays near 60 * 2**17 floats (~30 MB).
_CHUNK_ROWS = 2**17


@dataclass
class CalibrationResult:
    """The chosen temperature, the whole validation curve, and the settings that produced it.

    `value` and the curve are in the objective's units: ECE as a fraction in [0, 1] or mean
    NLL in nats. `ece_before` is the ECE of the untransformed top-1 probability, `ece_after`
    that of the top-1 after scaling with the chosen c (both fractions, whatever the objective).
    """

    temperature: float
    objective: str
    value: float
    curve: list[tuple[float, float]]
    ece_before: float
    ece_after: float
    accuracy: float
    n_positions: int
    settings: dict = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        """Write the result so that `temperature: auto` can be read back by training."""
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> CalibrationResult:
        data = json.loads(Path(path).read_text())
        data["curve"] = [(float(c), float(v)) for c, v in data["curve"]]
        return cls(**data)


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


def ece_curve(
    probs: torch.Tensor, correct: torch.Tensor, cs: torch.Tensor, n_bins: int = 10
) -> torch.Tensor:
    """ECE `[G]` of the Eq. 4 top-1 confidence at each temperature in `cs`.

    Bins the `[G, chunk]` grid in one `calibration_bins` call per chunk of positions and sums
    the per-bin statistics, so the result is exactly the unchunked ECE.
    """
    stats = None
    for start in range(0, probs.shape[0], _CHUNK_ROWS):
        p = probs[start : start + _CHUNK_ROWS]
        ok = correct[start : start + _CHUNK_ROWS].expand(cs.shape[0], -1)
        bins = calibration_bins(temperature_scale_grid_log(p, cs).exp(), ok, n_bins)
        stats = bins if stats is None else tuple(a + b for a, b in zip(stats, bins, strict=True))
    return expected_calibration_error_from_bins(*stats)


def nll_curve(
    probs: torch.Tensor, ids: torch.Tensor, gold: torch.Tensor, cs: torch.Tensor, floor: float
) -> torch.Tensor:
    """Mean NLL `[G]` of the gold token under the Eq. 4 top-k distribution at each c in `cs`.

    The transformed top-k is a softmax, so it already sums to 1 over the k ids and gives no
    probability to the tail; a gold token outside the top-k therefore has probability 0. Every
    probability is floored at `floor` before the log, so such a token costs exactly -log(floor)
    at every c (it shifts the curve but cannot move its minimum) and a tiny c cannot make one
    in-top-k token's cost unbounded.
    """
    match = ids == gold.unsqueeze(1)
    in_topk = match.any(1)
    rank = match.long().argmax(1)
    log_floor = math.log(floor)
    total = torch.zeros(cs.shape[0], dtype=torch.float64)
    for start in range(0, probs.shape[0], _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        log_p = temperature_scale_grid_log(probs[rows], cs, rank[rows]).clamp_min(log_floor)
        log_p = torch.where(in_topk[rows], log_p, torch.full_like(log_p, log_floor))
        total -= log_p.double().sum(1)
    return total / probs.shape[0]


def _fine_grid(best: float, step: float, radius: float) -> list[float]:
    """best +- radius in steps of `step`, keeping only values > 0."""
    n = round(radius / step)
    return [c for i in range(-n, n + 1) if (c := round(best + i * step, 10)) > 0]


def choose_temperature(
    probs: np.ndarray | torch.Tensor,
    ids: np.ndarray | torch.Tensor,
    gold: np.ndarray | torch.Tensor,
    objective: str = "ece",
    n_bins: int = 10,
    coarse: Sequence[float] = COARSE_GRID,
    fine_step: float = 0.02,
    fine_radius: float = 0.1,
    answer_mask: np.ndarray | torch.Tensor | None = None,
    answer_only: bool = False,
    nll_floor: float = 1e-6,
) -> CalibrationResult:
    """Grid search for the Eq. 4 temperature c minimising the validation objective.

    Coarse grid first, then a fine grid of `fine_step` within `fine_radius` of the best coarse
    value; the answer is the best of both (ties go to the smallest c). Objectives: 'ece' of the
    transformed top-1 (correct = top-1 id == gold), or 'nll' of the gold token (see
    `nll_curve`). With `answer_only`, only rows where `answer_mask` is true count.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if any(not c > 0 for c in coarse):
        raise ValueError(f"coarse temperatures must all be > 0, got {list(coarse)}")
    p, i, g = _prepare(probs, ids, gold, answer_mask, answer_only)
    correct = i[:, 0] == g

    def evaluate(cs: list[float]) -> torch.Tensor:
        grid = torch.tensor(cs, dtype=torch.float32)
        if objective == "ece":
            return ece_curve(p, correct, grid, n_bins)
        return nll_curve(p, i, g, grid, nll_floor)

    coarse_cs = sorted({round(float(c), 10) for c in coarse})
    coarse_values = evaluate(coarse_cs)
    best_coarse = coarse_cs[int(coarse_values.argmin())]
    fine_cs = sorted(set(_fine_grid(best_coarse, fine_step, fine_radius)) - set(coarse_cs))
    values = dict(zip(coarse_cs, coarse_values.tolist(), strict=True))
    if fine_cs:
        values.update(zip(fine_cs, evaluate(fine_cs).tolist(), strict=True))
    curve = sorted(values.items())
    chosen, value = min(curve, key=lambda cv: cv[1])  # min keeps the first, i.e. smallest, c
    return CalibrationResult(
        temperature=chosen,
        objective=objective,
        value=value,
        curve=curve,
        ece_before=_ece(p[:, 0], correct, n_bins),
        ece_after=float(ece_curve(p, correct, torch.tensor([chosen]), n_bins)[0]),
        accuracy=float(correct.double().mean()),
        n_positions=int(p.shape[0]),
        settings={
            "n_bins": n_bins,
            "coarse": coarse_cs,
            "fine_step": fine_step,
            "fine_radius": fine_radius,
            "answer_only": answer_only,
            "nll_floor": nll_floor,
        },
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
    """Validation ECE (fraction) of the Eq. 3 smoothed, renormalised top-1 for each delta.

    The label-smoothing counterpart of `choose_temperature`, for figure 5-style comparisons and
    for choosing delta by the same criterion.
    """
    p, i, g = _prepare(probs, ids, gold, answer_mask, answer_only)
    correct = i[:, 0] == g
    base = renormalize(p)
    return [(float(d), _ece(label_smooth(base, d)[:, 0], correct, n_bins)) for d in deltas]


def plot_calibration_curve(result: CalibrationResult, path: str | Path) -> None:
    """Validation objective against c with the chosen c marked (the paper's figure 5, left).

    Uses matplotlib's object API with the Agg canvas, so it needs no display and leaves the
    global pyplot backend alone.
    """
    from matplotlib.figure import Figure

    cs, values = zip(*result.curve, strict=True)
    is_ece = result.objective == "ece"
    scale = 100.0 if is_ece else 1.0
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(cs, [v * scale for v in values], marker="o", markersize=3, label="validation")
    ax.axvline(
        result.temperature, color="red", linestyle="--", label=f"chosen c = {result.temperature:g}"
    )
    if is_ece:
        ax.axhline(result.ece_before * 100.0, color="gray", linestyle=":", label="untransformed")
    ax.set_xlabel("temperature c")
    ax.set_ylabel("ECE (%)" if is_ece else "NLL (nats)")
    ax.set_title(f"Choice of c on {result.n_positions} validation positions")
    ax.legend()
    fig.savefig(path, dpi=120)
