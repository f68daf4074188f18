"""Numerics at the edges: no predictions, NaN confidences, candidates far below float32's
smallest probability, and the equal-mass split convention."""

from __future__ import annotations

import pytest
import torch

from first_pl.methods.multiple_choice import candidate_output
from first_pl.metrics.calibration import (
    CandidateBrierScore,
    CandidateNLL,
    ExpectedCalibrationError,
    MultipleChoiceCalibration,
    ReliabilityBins,
    TrustScore,
)
from first_pl.metrics.functional import (
    calibration_bins,
    equal_mass_bin_index,
    expected_calibration_error,
)


def test_argmax_is_taken_in_log_space():
    # every candidate's log-probability is below -104: all are 0.0 after exp in float32
    log_probs = torch.log_softmax(torch.tensor([[200.0, 50.0, 80.0, 0.0]]), dim=-1)
    batch = {"candidate_ids": torch.tensor([[1, 2, 3]]), "gold": torch.tensor([1]), "example_id": ["x"]}
    assert (log_probs[0, 1:] < -104).all() and (log_probs[0, 1:].exp() == 0).all()
    out = candidate_output(log_probs, batch)
    assert out["pred"].tolist() == [1] and out["correct"].tolist() == [True]  # token 2, not token 1
    assert out["confidence"].tolist() == [0.0]  # the probability itself still underflows


def test_argmax_never_picks_a_padding_candidate():
    log_probs = torch.full((1, 5), -300.0)
    batch = {"candidate_ids": torch.tensor([[0, 1, -1]]), "gold": torch.tensor([0]), "example_id": ["x"]}
    log_probs[0, 1] = -200.0
    assert candidate_output(log_probs, batch)["pred"].tolist() == [1]


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_ece_of_no_predictions_is_zero(binning):
    empty = torch.zeros(0)
    assert expected_calibration_error(empty, empty, binning=binning) == 0
    assert expected_calibration_error(torch.zeros(3, 0), torch.zeros(3, 0), binning=binning).tolist() == [0, 0, 0]
    count, conf_sum, corr_sum = calibration_bins(empty, empty, 4, binning)
    assert count.tolist() == conf_sum.tolist() == corr_sum.tolist() == [0, 0, 0, 0]
    metric = ExpectedCalibrationError(binning=binning)
    metric.update(empty, empty)
    assert metric.compute() == 0


def test_metrics_of_no_predictions_return_zero_with_n_zero():
    trust, reliability = TrustScore(), ReliabilityBins(n_bins=3)
    for metric in (trust, reliability):
        metric.update(torch.zeros(0), torch.zeros(0))
    assert trust.compute() == 0
    bins = reliability.compute()
    assert bins["count"].tolist() == bins["accuracy"].tolist() == [0, 0, 0]
    mc = MultipleChoiceCalibration()
    mc.update({
        "gold": torch.zeros(0, dtype=torch.long), "pred": torch.zeros(0, dtype=torch.long),
        "correct": torch.zeros(0, dtype=torch.bool), "confidence": torch.zeros(0),
        "candidate_probs": torch.zeros(0, 3), "candidate_mask": torch.zeros(0, 3, dtype=torch.bool),
    })  # fmt: skip
    out = mc.compute()
    assert [float(out[k]) for k in ("n", "acc", "ece", "trust", "brier", "nll")] == [0.0] * 6
    for score in (CandidateBrierScore(), CandidateNLL()):
        assert score.compute() == 0


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_nan_confidence_is_refused_by_name(binning):
    confidence = torch.tensor([0.5, float("nan"), 0.9])
    correct = torch.tensor([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"confidence holds 1 NaN value\(s\) of 3; expected probabilities in \[0, 1\]"):
        expected_calibration_error(confidence, correct, binning=binning)
    with pytest.raises(ValueError, match=r"confidence holds 1 NaN value"):
        ExpectedCalibrationError(binning=binning).update(confidence, correct)  # at update, not compute
    with pytest.raises(ValueError, match=r"confidence holds 1 NaN value"):
        TrustScore().update(confidence, correct)


def test_equal_mass_split_convention():
    # rank r of N goes to bin floor(r n / N): N = 15, n = 10 -> bins 0, 2, 4, 6, 8 hold two
    confidence = torch.linspace(0.0, 1.0, 15).flip(0)  # order of the input does not matter
    index = equal_mass_bin_index(confidence, 10)
    assert torch.bincount(index, minlength=10).tolist() == [2, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    assert index.flip(0).tolist() == [r * 10 // 15 for r in range(15)]
    # ties on an edge are split by input position (stable sort), keeping the counts equal
    assert equal_mass_bin_index(torch.ones(4), 2).tolist() == [0, 0, 1, 1]
    # fewer examples than bins: some bins stay empty
    assert torch.bincount(equal_mass_bin_index(torch.rand(3), 10), minlength=10).tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
