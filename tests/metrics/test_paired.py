"""Seed summaries and paired comparisons on inputs whose answers are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from first_pl.metrics import paired
from first_pl.metrics.paired import paired_comparison, seed_summary


def test_seed_summary_mean_sample_sd_and_range():
    summary = seed_summary([1.0, 2.0, 3.0])
    assert (summary.mean, summary.sd, summary.min, summary.max, summary.n) == (
        2.0,
        1.0,
        1.0,
        3.0,
        3,
    )
    assert seed_summary([4.0]).sd == 0.0
    with pytest.raises(ValueError, match="at least one value"):
        seed_summary([])


def test_identical_methods_differ_by_nothing_with_p_one():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(2, 50, generator=g)
    correct = torch.rand(2, 50, generator=g) < conf
    result = paired_comparison(conf, correct, conf.clone(), correct.clone(), 200, 200)
    for figure in ("acc", "ece", "trust"):
        r = result[figure]
        assert (r.point, r.low, r.high) == (0.0, 0.0, 0.0)
        assert r.p_value == 1.0 and not r.exact


def test_exact_permutation_p_value_on_three_examples():
    # A right on all three, B wrong on all three: Acc difference +100. Of the 2^3 swap
    # patterns only "swap none" and "swap all" reach |T| = 100: p = 2/8 exactly.
    ones, zeros = torch.ones(3), torch.zeros(3)
    result = paired_comparison(ones, ones, ones, zeros, n_resamples=50, n_permutations=8)
    acc = result["acc"]
    assert acc.point == 100.0 and acc.exact and acc.p_value == 0.25
    assert (acc.low, acc.high) == (100.0, 100.0)  # every resample keeps the same difference


def test_ece_difference_and_seed_average_by_hand():
    # Seed 0: A conf (0.9, 0.9) correct (1, 0): one bin, |0.5 - 0.9| = ECE 40; B conf (0.5,
    # 0.5) correct (1, 0): ECE 0. Seed 1: both methods identical. Mean over seeds: ECE +20.
    conf_a = torch.tensor([[0.9, 0.9], [0.7, 0.7]])
    conf_b = torch.tensor([[0.5, 0.5], [0.7, 0.7]])
    correct = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    result = paired_comparison(conf_a, correct, conf_b, correct, 100, 100)
    assert result["ece"].point == pytest.approx(20.0)
    assert result["acc"].point == 0.0
    assert result["trust"].point == pytest.approx(-20.0)


def test_clear_accuracy_gain_is_significant_and_interval_excludes_zero():
    # 40 examples, A right on all, B right on the first 10: +75 points; a random sign flip of
    # 30 discordant pairs reaches 75 with probability 2^-29, so p is 1 / (1 + draws).
    ones = torch.ones(40)
    b = (torch.arange(40) < 10).float()
    result = paired_comparison(ones, ones, ones, b, n_resamples=500, n_permutations=499, seed=3)
    acc = result["acc"]
    assert acc.point == 75.0 and acc.p_value == pytest.approx(1 / 500) and not acc.exact
    assert 0 < acc.low <= 75.0 <= acc.high <= 100.0


def test_chunked_resampling_equals_one_chunk(monkeypatch):
    g = torch.Generator().manual_seed(1)
    conf_a, conf_b = torch.rand(2, 3, 30, generator=g)
    corr_a, corr_b = torch.rand(2, 3, 30, generator=g) < 0.6
    whole = paired_comparison(conf_a, corr_a, conf_b, corr_b, 64, 64, seed=5)
    monkeypatch.setattr(paired, "_MAX_CHUNK_ELEMENTS", 3 * 30 * 7)
    chunked = paired_comparison(conf_a, corr_a, conf_b, corr_b, 64, 64, seed=5)
    assert whole == chunked


def test_bad_inputs_are_refused_by_name():
    x = torch.ones(4)
    with pytest.raises(ValueError, match="one shape"):
        paired_comparison(x, x, torch.ones(5), torch.ones(5))
    with pytest.raises(ValueError, match="confidence_a must be"):
        paired_comparison(torch.ones(1, 1, 4), x, x, x)
    with pytest.raises(ValueError, match="at least one example"):
        paired_comparison(torch.ones(0), torch.ones(0), torch.ones(0), torch.ones(0))
    with pytest.raises(ValueError, match="n_resamples"):
        paired_comparison(x, x, x, x, n_resamples=0)
    assert math.isclose(paired_comparison(x, x, x, x, 10, 10)["acc"].p_value, 1.0)
