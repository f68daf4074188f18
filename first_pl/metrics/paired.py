"""Statistics across seeds, and paired comparisons of two methods on the same test examples.

With a few hundred test examples the run-to-run spread of one student is as large as the
differences between methods (the same main job in float32 and in bf16 can put Fine-tune 15
Trust points apart), so a method is compared with the baseline only

- over several seeds (`seed_summary`: mean, sample standard deviation, min and max), and
- paired (`paired_comparison`): both methods are scored on the same examples under the same
  seed, so the difficulty of an example cancels out of the difference. The interval is a
  paired percentile bootstrap (one resample of the examples, shared by both methods and every
  seed); the p-value is a two-sided sign-flip permutation test (under "no difference" the two
  methods' predictions of one example under one seed are exchangeable, so each (seed, example)
  pair is swapped with probability 1/2). When the 2^(seeds x examples) swap patterns are no
  more than `n_permutations`, every pattern is enumerated and the p-value is exact.

Acc, ECE and Trust are computed by `bootstrap.acc_ece_trust`, the code behind every other
interval in the reports, so a paired difference of zero resamples is the table's difference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from first_pl.metrics.bootstrap import FIGURES, acc_ece_trust

# Elements of one [draws, seeds, examples] chunk: bounds memory as in `bootstrap`.
_MAX_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class SeedSummary:
    """One figure across seeds: mean, sample standard deviation (0 for one seed), range."""

    mean: float
    sd: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def seed_summary(values: list[float]) -> SeedSummary:
    """Mean, sample standard deviation (n - 1 in the denominator), min and max of `values`."""
    if not values:
        raise ValueError("seed_summary needs at least one value")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return SeedSummary(mean, sd, min(values), max(values), n)


@dataclass(frozen=True)
class PairedDifference:
    """Method A minus method B (percent points): point, bootstrap interval, permutation p."""

    point: float
    low: float
    high: float
    p_value: float
    exact: bool

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def _as_grid(name: str, value: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=torch.float64)
    if value.dim() == 1:
        value = value.unsqueeze(0)
    if value.dim() != 2:
        raise ValueError(
            f"{name} must be [examples] or [seeds, examples], got {tuple(value.shape)}"
        )
    return value


def _difference(
    conf_a: torch.Tensor, corr_a: torch.Tensor, conf_b: torch.Tensor, corr_b: torch.Tensor,
    n_bins: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """A minus B per figure, averaged over the seed dimension (the second to last)."""
    a = acc_ece_trust(conf_a, corr_a, n_bins)
    b = acc_ece_trust(conf_b, corr_b, n_bins)
    return {key: (a[key] - b[key]).mean(-1) for key in FIGURES}


def _swap_patterns(
    draws: int, shape: tuple[int, int], generator: torch.Generator
) -> tuple[torch.Tensor, bool]:
    """`[G, S, N]` swap masks: all 2^(S*N) of them when that is at most `draws`, else random."""
    cells = shape[0] * shape[1]
    if cells <= math.log2(max(draws, 1)):
        codes = torch.arange(2**cells).unsqueeze(1)
        bits = (codes >> torch.arange(cells)) & 1
        return bits.bool().reshape(-1, *shape), True
    return torch.rand((draws, *shape), generator=generator) < 0.5, False


def paired_comparison(
    confidence_a: torch.Tensor,
    correct_a: torch.Tensor,
    confidence_b: torch.Tensor,
    correct_b: torch.Tensor,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
) -> dict[str, PairedDifference]:
    """A minus B for `acc`, `ece` and `trust` (percent points), averaged over seeds.

    Inputs are `[seeds, examples]` (or `[examples]` for one seed), row s of A and of B being the
    same seed and column i the same example. Returns, per figure, the point difference, a
    `level` paired bootstrap interval and a two-sided permutation p-value, counted as
    (1 + #{|T*| >= |T|}) / (1 + draws) for random swaps and #{|T*| >= |T|} / 2^(S*N) when exact.
    """
    if n_resamples < 1 or n_permutations < 1:
        raise ValueError(
            f"n_resamples and n_permutations must be >= 1, got {n_resamples}, {n_permutations}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    grids = [
        _as_grid(name, value)
        for name, value in (
            ("confidence_a", confidence_a), ("correct_a", correct_a),
            ("confidence_b", confidence_b), ("correct_b", correct_b),
        )
    ]  # fmt: skip
    shapes = {tuple(g.shape) for g in grids}
    if len(shapes) != 1:
        raise ValueError(f"paired inputs must all have one shape, got {sorted(shapes)}")
    conf_a, corr_a, conf_b, corr_b = grids
    seeds, n = conf_a.shape
    if n == 0:
        raise ValueError("paired_comparison needs at least one example")
    point = _difference(conf_a, corr_a, conf_b, corr_b, n_bins)
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (seeds * n))

    boot: dict[str, list[torch.Tensor]] = {key: [] for key in FIGURES}
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        index = torch.randint(n, (rows, 1, n), generator=generator).expand(rows, seeds, n)
        take = [g.unsqueeze(0).expand(rows, seeds, n).gather(2, index) for g in grids]
        for key, value in _difference(*take, n_bins).items():
            boot[key].append(value)

    swaps, exact = _swap_patterns(n_permutations, (seeds, n), generator)
    extreme = {key: 0 for key in FIGURES}
    for start in range(0, swaps.shape[0], chunk):
        swap = swaps[start : start + chunk]
        pa = [torch.where(swap, b, a) for a, b in ((conf_a, conf_b), (corr_a, corr_b))]
        pb = [torch.where(swap, a, b) for a, b in ((conf_a, conf_b), (corr_a, corr_b))]
        for key, value in _difference(pa[0], pa[1], pb[0], pb[1], n_bins).items():
            # a tolerance for ties: permuted differences equal to the observed one count
            extreme[key] += int((value.abs() >= point[key].abs() - 1e-9).sum())
    draws = swaps.shape[0]
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    result = {}
    for key in FIGURES:
        low, high = torch.quantile(torch.cat(boot[key]), quantiles).tolist()
        p = extreme[key] / draws if exact else (1 + extreme[key]) / (1 + draws)
        result[key] = PairedDifference(float(point[key]), low, high, p, exact)
    return result
