"""Selective prediction and bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryAUROC

from first_pl.metrics.bootstrap import bootstrap_ci
from first_pl.metrics.selective import accuracy_coverage_curve, confidence_auroc


def np_auroc(conf: np.ndarray, corr: np.ndarray) -> float:
    """All pairs: P(conf_pos > conf_neg) + 0.5 P(tie)."""
    pos, neg = conf[corr], conf[~corr]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@pytest.mark.parametrize("rounding", [None, 1, 2])
def test_auroc_matches_numpy_and_torchmetrics_with_ties(rounding):
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=700).astype(np.float32)
    if rounding is not None:
        conf = np.round(conf, rounding).astype(np.float32)
    corr = rng.uniform(size=700) < conf
    ours = confidence_auroc(torch.from_numpy(conf), torch.from_numpy(corr))
    assert ours == pytest.approx(np_auroc(conf, corr), abs=1e-12)
    theirs = BinaryAUROC()(torch.from_numpy(conf), torch.from_numpy(corr).long()).item()
    assert ours == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize(
    "correct",
    [torch.ones(5, dtype=torch.bool), torch.zeros(5, dtype=torch.bool), torch.zeros(0)],
    ids=["all-right", "all-wrong", "none"],
)
def test_auroc_undefined_when_one_class(correct):
    assert math.isnan(confidence_auroc(torch.rand(len(correct)), correct))


def test_auroc_hand_case_and_default_dtype_restored():
    """Pairs (pos, neg): (0.9, 0.8) win, (0.9, 0.3) win, (0.8, 0.8) tie, (0.8, 0.3) win: 3.5 / 4."""
    conf = torch.tensor([0.9, 0.8, 0.8, 0.3])
    assert confidence_auroc(conf, torch.tensor([1, 0, 1, 0])) == 0.875
    assert torch.get_default_dtype() == torch.float32


def test_accuracy_coverage_curve_hand_case():
    conf = torch.tensor([0.9, 0.8, 0.8, 0.3])
    corr = torch.tensor([1, 0, 1, 0])
    threshold, coverage, accuracy = accuracy_coverage_curve(conf, corr)
    torch.testing.assert_close(threshold, torch.tensor([0.9, 0.8, 0.3], dtype=torch.float64))
    torch.testing.assert_close(coverage, torch.tensor([0.25, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(accuracy, torch.tensor([1.0, 2 / 3, 0.5], dtype=torch.float64))


def test_accuracy_coverage_matches_numpy():
    rng = np.random.default_rng(1)
    conf = np.round(rng.uniform(size=300), 2)
    corr = rng.uniform(size=300) < conf
    threshold, coverage, accuracy = accuracy_coverage_curve(
        torch.from_numpy(conf), torch.from_numpy(corr)
    )
    for t, cov, acc in zip(threshold.numpy(), coverage.numpy(), accuracy.numpy(), strict=True):
        kept = conf >= t
        assert cov == pytest.approx(kept.mean())
        assert acc == pytest.approx(corr[kept].mean())
    assert coverage[-1].item() == 1.0


def overconfident(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, generator=g) * 0.5 + 0.5
    corr = torch.rand(n, generator=g) < conf - 0.1
    return conf, corr


def test_bootstrap_reproducible_and_covers_point():
    conf, corr = overconfident(800)
    first = bootstrap_ci(conf, corr, n_resamples=1000, seed=3)
    second = bootstrap_ci(conf, corr, n_resamples=1000, seed=3)
    other = bootstrap_ci(conf, corr, n_resamples=1000, seed=4)
    assert first == second
    assert first != other
    for key in ("acc", "ece", "trust"):
        ci = first[key]
        assert ci.low < ci.point < ci.high, (key, ci)
    assert first["acc"].point == pytest.approx(100 * corr.double().mean().item())
    assert first["trust"].point == pytest.approx(first["acc"].point - first["ece"].point)


def test_bootstrap_chunking_does_not_change_result(monkeypatch):
    import first_pl.metrics.bootstrap as bootstrap

    conf, corr = overconfident(300)
    whole = bootstrap_ci(conf, corr, n_resamples=200, seed=0)
    monkeypatch.setattr(bootstrap, "_MAX_CHUNK_ELEMENTS", 300 * 7)
    chunked = bootstrap_ci(conf, corr, n_resamples=200, seed=0)
    for key in whole:
        assert whole[key].as_dict() == pytest.approx(chunked[key].as_dict())


def test_bootstrap_width_shrinks_with_n_and_validates():
    small = bootstrap_ci(*overconfident(100), n_resamples=300)
    large = bootstrap_ci(*overconfident(5000), n_resamples=300)
    assert large["acc"].high - large["acc"].low < small["acc"].high - small["acc"].low
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(*overconfident(10), n_resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(*overconfident(10), level=1.5)
    assert math.isnan(bootstrap_ci(torch.zeros(0), torch.zeros(0))["ece"].point)
