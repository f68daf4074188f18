"""Transforms of the teacher's stored top-k probabilities (DESIGN section 1, Eq. 3 and Eq. 4).

Besides the paper's Eq. 3 (label smoothing) and Eq. 4 (softmax over the *probabilities*), the
conventions of the peer projects: temperature on log-probabilities (p^(1/T) renormalised, the
"logit-space" scaling of DistillKit and axolotl) and a tail bucket (a (k+1)-th entry holding
the mass the top-k leaves out, DistillKit's / TRL's / the paper release's "other token").

Every function is pure and vectorised over arbitrary leading dimensions; the last dimension
holds the k probabilities of one position in descending order (index 0 is the teacher's top-1),
exactly as the teacher store and the distillation batch hold them. A row of all zeros is a
padding position (the batch contract puts 0 where `labels == -100`) and stays all zeros, so a
transform can be applied to a whole `[B, L, k]` batch before the response positions are gathered.

Each per-row transform computes in a wider dtype than it is given (float32 for float16 and
bfloat16, float64 for float32 and float64) and returns the caller's dtype: a float16 entry
below 6.1e-5 or an all-subnormal float32 row is a normal number there, so neither a log nor
1 - sum(top-k) rounds it away.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Transform = Callable[..., torch.Tensor]


def _widened(transform: Transform) -> Transform:
    """`transform(p, ...)` computed in the dtype wider than `p`'s, returned in `p`'s dtype."""

    @functools.wraps(transform)
    def wrapper(p: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not p.is_floating_point():
            raise ValueError(f"teacher probabilities must be a floating tensor, got {p.dtype}")
        wide = torch.float64 if p.dtype in (torch.float32, torch.float64) else torch.float32
        return transform(p.to(wide), *args, **kwargs).to(p.dtype)

    return wrapper


def _valid_rows(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row sums `[..., 1]` and the mask of rows that are not padding (sum > 0)."""
    total = p.sum(-1, keepdim=True)
    return total, total > 0


@_widened
def renormalize(p: torch.Tensor) -> torch.Tensor:
    """Top-k probabilities divided by their sum, so each row is a distribution over the k ids.

    The store keeps probabilities under the full-vocab softmax, which sum to 1 minus the tail
    mass; Distill's default target and label smoothing need them to sum to 1. Rows summing to 0
    (padding) stay 0 rather than becoming NaN.
    """
    total, valid = _valid_rows(p)
    return torch.where(valid, p / torch.where(valid, total, torch.ones_like(total)), p)


def _check_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:  # also rejects NaN
        raise ValueError(f"label smoothing delta must be in [0, 1), got {delta}")


@_widened
def label_smooth(p: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 3 on the renormalised top-k: p1 -= delta, p2..pk += delta / (k - 1).

    When a row's renormalised p1 is below delta, Eq. 3 would return a negative probability;
    such rows are clamped at 0 and renormalised (the DESIGN's option, applied always since a
    negative "probability" is never a valid target), and a warning says how many rows it hit.
    Padding rows (all zeros) stay zero and are not counted.
    """
    _check_delta(delta)
    k = p.shape[-1]
    if k < 2:
        raise ValueError(f"label smoothing needs k >= 2 probabilities per row, got k={k}")
    q = renormalize(p)
    if delta == 0.0:
        return q
    _, valid = _valid_rows(p)
    shift = torch.full_like(q, delta / (k - 1))
    shift[..., 0] = -delta
    smoothed = q + shift
    negative = (smoothed[..., 0] < 0) & valid[..., 0]
    n_clamped = int(negative.sum())
    if n_clamped:
        warnings.warn(
            f"label smoothing delta={delta} exceeds the renormalised top-1 probability in "
            f"{n_clamped} of {int(valid.sum())} rows; clamped p1 at 0 and renormalised them",
            stacklevel=3,  # the caller of the `_widened` wrapper
        )
        smoothed = renormalize(smoothed.clamp_min(0.0))
    return torch.where(valid, smoothed, torch.zeros_like(smoothed))


def _check_temperature(c: float) -> None:
    if not c > 0:  # also rejects NaN
        raise ValueError(f"temperature c must be > 0, got {c}")


@_widened
def temperature_scale(p: torch.Tensor, c: float) -> torch.Tensor:
    """Eq. 4: softmax(p / c) over the k *probabilities* as given (not logits).

    Probabilities lie in [0, 1], so p / c only sharpens usefully for c < 1 and c -> inf gives
    the uniform 1/k. Callers must feed training and `calibrate` the same input (the stored
    probabilities); the result depends on their scale, so renormalising first changes it.
    Padding rows (all zeros) stay zero.
    """
    _check_temperature(c)
    _, valid = _valid_rows(p)
    scaled = torch.softmax(p / c, dim=-1)  # p / inf = 0: uniform, as the limit should be
    return torch.where(valid, scaled, torch.zeros_like(scaled))


def _check_log_temperature(t: float) -> None:
    if not t > 0:  # also rejects NaN; inf is allowed (the uniform limit)
        raise ValueError(f"log-space temperature T must be > 0, got {t}")


@_widened
def log_temperature_scale(p: torch.Tensor, t: float) -> torch.Tensor:
    """p^(1/T) renormalised over the k entries, i.e. softmax(log p / T).

    The teacher's logits are log p plus a per-row constant, so this is exactly a softmax of the
    teacher's logits at temperature T restricted to the k ids: T = 1 is `renormalize`, T -> inf
    the uniform 1/k, T -> 0 a one-hot on the top-1. A zero entry (float16 underflow) stays 0 for
    every finite T, as p^(1/T) does; a positive one, however small, has a finite log in the
    widened dtype. Padding rows (all zeros) stay zero.
    """
    _check_log_temperature(t)
    _, valid = _valid_rows(p)
    positive = p > 0
    if math.isinf(t):
        scores = torch.where(positive, torch.zeros_like(p), torch.full_like(p, -math.inf))
    else:
        scores = torch.where(positive, p.log() / t, -math.inf)
    scores = torch.where(valid, scores, torch.zeros_like(scores))  # no all -inf row: no NaN
    return torch.where(valid, torch.softmax(scores, dim=-1), torch.zeros_like(p))


@_widened
def with_tail(p: torch.Tensor) -> torch.Tensor:
    """`[..., k]` full-vocab top-k probabilities -> `[..., k + 1]`, the last entry 1 - sum(top-k).

    The tail bucket stands for every token outside the k ids; the student's side of it is its
    own mass outside those ids (`first_pl.methods.losses.student_topk_log_probs(tail=True)`).
    A row summing above 1 (float16 rounding) gets a tail of 0, not a negative one, and is
    renormalised, so every row sums to exactly 1. Padding rows
    (all zeros) stay all zeros, tail included. The sum is taken in the widened dtype, so the
    tail is as exact as the stored probabilities allow: about 1e-7 of absolute error from a
    float32 store, while a float16 store's own rounding (5e-4 of each probability) already
    leaves a tail below about 1e-3 unknown.
    """
    total, valid = _valid_rows(p)
    tail = torch.where(valid, (1.0 - total).clamp_min(0.0), torch.zeros_like(total))
    return renormalize(torch.cat([p, tail], dim=-1))


def temperature_scale_grid_log(
    p: torch.Tensor, cs: torch.Tensor | Sequence[float], index: torch.Tensor | None = None
) -> torch.Tensor:
    """log of the Eq. 4 probability at one column of each row, for every temperature in `cs`.

    `p` is `[N, k]`, `cs` is `[G]`, `index` is `[N]` (default: column 0, the top-1); the result
    is `[G, N]`. Uses log p'_i = (p_i - m) / c - log sum_j exp((p_j - m) / c) with m the row
    maximum (p_1 for the store's descending rows): every exponent is <= 0, so the sum lies in
    [1, k] and nothing under- or overflows even for tiny c. The loop over the k columns keeps
    memory at two `[G, N]` buffers instead of a `[G, N, k]` tensor; this is what makes choosing
    c over 1M positions take seconds.
    """
    if p.dim() != 2:
        raise ValueError(f"p must be [N, k], got shape {tuple(p.shape)}")
    cs = torch.as_tensor(cs, dtype=p.dtype, device=p.device)
    if cs.dim() != 1 or not bool((cs > 0).all()):
        raise ValueError(f"temperatures must be a 1-D tensor of values > 0, got {cs}")
    inv_c = cs.reciprocal()  # 1/inf = 0 gives the uniform limit
    gaps = (p - p.amax(1, keepdim=True)).T.contiguous()  # [k, N]: contiguous rows to stream
    total = torch.zeros(cs.shape[0], p.shape[0], dtype=p.dtype, device=p.device)
    term = torch.empty_like(total)
    for gap in gaps:
        torch.outer(inv_c, gap, out=term)
        total += term.exp_()
    chosen = gaps[0] if index is None else gaps.T.gather(1, index.long().unsqueeze(1))[:, 0]
    return torch.outer(inv_c, chosen) - total.log_()


def temperature_scale_top1_grid(
    p: torch.Tensor, cs: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Eq. 4 probability of column 0 (the top-1) `[G, N]` for every temperature in `cs`.

    For descending rows this is 1 / sum_j exp((p_j - p_1) / c), the only quantity the ECE
    objective needs, computed without materialising `[G, N, k]`.
    """
    return temperature_scale_grid_log(p, cs).exp()


@dataclass(frozen=True)
class TransformSpec:
    """A teacher transform by name, with the range its parameter is chosen in on validation.

    `first-pl calibrate --transform <name>` searches `coarse`, then `fine_step` within
    `fine_radius` of the best coarse value, never outside [`low`, `high`] (`high_open`: the
    upper end itself is excluded; `low_open` likewise). The ranges are the documented ones:
    Eq. 4's c in (0, 1] (DESIGN: above 1 it only flattens towards 1/k), T in [0.1, 10] (beyond,
    the target is one-hot or uniform to float16 precision), label smoothing's delta in [0, 1).
    """

    name: str
    parameter: str
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    low: float
    high: float
    coarse: tuple[float, ...]
    fine_step: float
    fine_radius: float
    low_open: bool = False
    high_open: bool = False
    keeps_order: bool = True  # the transformed row ranks the k ids as the teacher did

    def contains(self, value: float) -> bool:
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return above_low and below_high

    def describe_range(self) -> str:
        return (
            f"{'(' if self.low_open else '['}{self.low:g}, "
            f"{self.high:g}{')' if self.high_open else ']'}"
        )


def _steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    n = round((stop - start) / step)
    return tuple(round(start + i * step, 10) for i in range(n + 1))


TRANSFORMS: dict[str, TransformSpec] = {
    spec.name: spec
    for spec in (
        TransformSpec(
            "prob_temperature",
            "c",
            temperature_scale,
            0.0,
            1.0,
            _steps(0.1, 1.0, 0.1),
            0.02,
            0.1,
            low_open=True,
        ),
        TransformSpec(
            "log_temperature",
            "T",
            log_temperature_scale,
            0.1,
            10.0,
            (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0),
            0.05,
            0.25,
        ),
        TransformSpec(
            "label_smoothing",
            "delta",
            label_smooth,
            0.0,
            1.0,
            _steps(0.0, 0.5, 0.05),
            0.01,
            0.05,
            high_open=True,
            keeps_order=False,
        ),
    )
}


def transform_spec(name: str) -> TransformSpec:
    """The registered transform `name`, or a ValueError listing the names there are."""
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown teacher transform {name!r}; choose one of {', '.join(TRANSFORMS)}"
        ) from None
