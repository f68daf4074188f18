"""Calibration Metrics against plain NumPy references, hand cases and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from first_pl.metrics.calibration import (
    CandidateBrierScore,
    CandidateNLL,
    ExpectedCalibrationError,
    MultipleChoiceCalibration,
    ReliabilityBins,
    TrustScore,
)
from first_pl.metrics.functional import calibration_bins, expected_calibration_error


def np_bins(conf: np.ndarray, corr: np.ndarray, n_bins: int, binning: str = "equal_width"):
    """Reference binning: equal width (b/n, (b+1)/n] with 0.0 in bin 0, or equal count by rank."""
    if binning == "equal_width":
        idx = np.clip(np.ceil(np.clip(conf, 0, 1) * n_bins).astype(int) - 1, 0, n_bins - 1)
    else:
        idx = np.empty(len(conf), dtype=int)
        idx[np.argsort(conf, kind="stable")] = np.arange(len(conf)) * n_bins // len(conf)
    count = np.array([(idx == b).sum() for b in range(n_bins)], dtype=float)
    conf_mean = np.array([conf[idx == b].mean() if count[b] else 0.0 for b in range(n_bins)])
    acc = np.array([corr[idx == b].mean() if count[b] else 0.0 for b in range(n_bins)])
    return count, conf_mean, acc


def np_ece(conf, corr, n_bins=10, norm="l1", binning="equal_width"):
    count, conf_mean, acc = np_bins(conf, corr, n_bins, binning)
    gap, weight = np.abs(acc - conf_mean), count / count.sum()
    if norm == "l1":
        return float((weight * gap).sum())
    if norm == "l2":
        return float(np.sqrt((weight * gap**2).sum()))
    return float(gap[count > 0].max())


def random_predictions(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.2, 1.0, n).astype(np.float32)
    corr = rng.uniform(size=n) < conf**1.5
    return conf, corr


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_numpy(norm, binning, n_bins):
    conf, corr = random_predictions(3000, seed=n_bins)
    metric = ExpectedCalibrationError(n_bins=n_bins, binning=binning, norm=norm)
    for part in np.array_split(np.arange(len(conf)), 7):
        metric.update(torch.from_numpy(conf[part]), torch.from_numpy(corr[part]))
    expected = np_ece(conf.astype(np.float64), corr, n_bins, norm, binning)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-9)


def test_ece_hand_computed():
    # bins (0.5, 0.6]: conf 0.55, 0.55 acc 0.5 ; (0.9, 1.0]: conf 0.95, 1.0 acc 1.0
    conf = torch.tensor([0.55, 0.55, 0.95, 1.0], dtype=torch.float64)
    corr = torch.tensor([1, 0, 1, 1])
    metric = ExpectedCalibrationError()
    metric.update(conf, corr)
    # 0.5 * |0.5 - 0.55| + 0.5 * |1.0 - 0.975| = 0.025 + 0.0125
    assert metric.compute().item() == pytest.approx(0.0375, abs=1e-12)
    trust = TrustScore()
    trust.update(conf, corr)
    assert trust.compute().item() == pytest.approx(75.0 - 3.75, abs=1e-9)


def test_reliability_bins_and_trust_match_numpy():
    conf, corr = random_predictions(2000, seed=3)
    bins, trust = ReliabilityBins(), TrustScore()
    bins.update(torch.from_numpy(conf), torch.from_numpy(corr))
    trust.update(torch.from_numpy(conf), torch.from_numpy(corr))
    count, conf_mean, acc = np_bins(conf.astype(np.float64), corr, 10)
    out = bins.compute()
    np.testing.assert_allclose(out["count"].numpy(), count)
    np.testing.assert_allclose(out["confidence"].numpy(), conf_mean, atol=1e-12)
    np.testing.assert_allclose(out["accuracy"].numpy(), acc, atol=1e-12)
    expected = 100 * corr.mean() - 100 * np_ece(conf.astype(np.float64), corr)
    assert trust.compute().item() == pytest.approx(expected, abs=1e-9)


def test_compute_group_shares_one_binning_pass():
    conf, corr = random_predictions(500)
    collection = MetricCollection(
        {"ece": ExpectedCalibrationError(), "trust": TrustScore(), "bins": ReliabilityBins()},
        compute_groups=True,
    )
    collection.update(torch.from_numpy(conf), torch.from_numpy(corr))
    collection.update(torch.from_numpy(conf), torch.from_numpy(corr))
    assert len(collection.compute_groups) == 1
    out = collection.compute()
    assert out["ece"].item() == pytest.approx(np_ece(conf.astype(np.float64), corr), abs=1e-9)


def test_matches_torchmetrics_binary_off_bin_edges():
    conf, corr = random_predictions(5000, seed=7)
    ours = ExpectedCalibrationError(n_bins=10)
    theirs = BinaryCalibrationError(n_bins=10, norm="l1")
    ours.update(torch.from_numpy(conf), torch.from_numpy(corr))
    theirs.update(torch.from_numpy(conf), torch.from_numpy(corr).long())
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


def test_matches_torchmetrics_multiclass_on_candidate_probs():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4000, 4, generator=g).softmax(-1)
    target = torch.randint(4, (4000,), generator=g)
    conf, pred = probs.max(-1)
    ours = ExpectedCalibrationError()
    ours.update(conf, pred == target)
    theirs = MulticlassCalibrationError(num_classes=4, n_bins=10)
    theirs.update(probs, target)
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


def test_exact_one_edge_case_differs_from_torchmetrics():
    """torchmetrics (issue 3510) puts a confidence of exactly 1.0 in an 11th bin of its own;
    here it joins (0.9, 1.0]. With 0.92 (correct) and 1.0 (wrong): ours bins them together
    (mean conf 0.96, acc 0.5, ECE 0.46); torchmetrics keeps them apart (0.5*0.08 + 0.5*1.0)."""
    conf = torch.tensor([0.92, 1.0])
    corr = torch.tensor([1, 0])
    ours = ExpectedCalibrationError()
    ours.update(conf, corr)
    theirs = BinaryCalibrationError(n_bins=10)
    theirs.update(conf, corr)
    assert ours.compute().item() == pytest.approx(0.46, abs=1e-6)
    assert theirs.compute().item() == pytest.approx(0.54, abs=1e-6)


def test_exact_interior_edge_differs_from_torchmetrics():
    """Bins here are right-closed, (0.4, 0.5]; torchmetrics' are left-closed, [0.5, 0.6)."""
    conf = torch.tensor([0.45, 0.5])
    corr = torch.tensor([1, 0])
    ours = ExpectedCalibrationError()
    ours.update(conf, corr)
    theirs = BinaryCalibrationError(n_bins=10)
    theirs.update(conf, corr)
    assert ours.compute().item() == pytest.approx(0.025, abs=1e-6)
    assert theirs.compute().item() == pytest.approx(0.5 * 0.55 + 0.5 * 0.5, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"n_bins": 0}, "n_bins"),
        ({"norm": "l3"}, "norm"),
        ({"binning": "quantile"}, "binning"),
    ],
)
def test_invalid_arguments_name_the_option(kwargs, option):
    with pytest.raises(ValueError, match=option):
        ExpectedCalibrationError(**kwargs)


def test_invalid_arguments_other_metrics():
    for cls in (ReliabilityBins, TrustScore, MultipleChoiceCalibration):
        with pytest.raises(ValueError, match="n_bins"):
            cls(n_bins=0)
    with pytest.raises(ValueError, match="confidence"):
        MultipleChoiceCalibration(confidence="softmax")


def np_candidate_scores(probs, mask, gold):
    p = probs * mask
    p = p / p.sum(1, keepdims=True)
    one_hot = np.eye(probs.shape[1])[gold]
    brier = ((p - one_hot) ** 2 * mask).sum(1).mean()
    nll = -np.log(p[np.arange(len(gold)), gold]).mean()
    return brier, nll


def random_eval_output(b: int = 64, c: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n_options = torch.randint(2, c + 1, (b,), generator=g)
    mask = torch.arange(c)[None, :] < n_options[:, None]
    probs = torch.rand(b, c, generator=g) * 0.9 / c * mask
    gold = (torch.rand(b, generator=g) * n_options).long()
    pred = probs.masked_fill(~mask, -1).argmax(-1)
    confidence = probs.gather(1, pred[:, None])[:, 0]
    return {
        "candidate_probs": probs,
        "candidate_mask": mask,
        "gold": gold,
        "pred": pred,
        "confidence": confidence,
        "correct": pred == gold,
        "example_id": [f"ex{seed}-{i}" for i in range(b)],
    }


def test_brier_and_nll_renormalised_over_candidates():
    outs = [random_eval_output(seed=s) for s in range(3)]
    brier, nll = CandidateBrierScore(), CandidateNLL()
    for o in outs:
        brier.update(o["candidate_probs"], o["candidate_mask"], o["gold"])
        nll.update(o["candidate_probs"], o["candidate_mask"], o["gold"])
    cat = {
        k: torch.cat([o[k] for o in outs]).numpy()
        for k in ("candidate_probs", "candidate_mask", "gold")
    }
    ref_brier, ref_nll = np_candidate_scores(
        cat["candidate_probs"].astype(np.float64), cat["candidate_mask"], cat["gold"]
    )
    assert brier.compute().item() == pytest.approx(ref_brier, abs=1e-9)
    assert nll.compute().item() == pytest.approx(ref_nll, abs=1e-9)


def test_brier_nll_hand_computed():
    # full-vocab probs 0.3, 0.1 (sum 0.4) renormalise to 0.75, 0.25; gold = 0
    probs = torch.tensor([[0.3, 0.1, 0.0]])
    mask = torch.tensor([[True, True, False]])
    brier, nll = CandidateBrierScore(), CandidateNLL()
    brier.update(probs, mask, torch.tensor([0]))
    nll.update(probs, mask, torch.tensor([0]))
    assert brier.compute().item() == pytest.approx(0.25**2 + 0.25**2)
    assert nll.compute().item() == pytest.approx(-np.log(0.75))


def test_multiple_choice_calibration_matches_parts():
    outs = [random_eval_output(seed=s) for s in range(4)]
    metric = MultipleChoiceCalibration()
    for o in outs:
        metric.update(o)
    out = metric.compute()
    conf = torch.cat([o["confidence"] for o in outs]).double().numpy()
    corr = torch.cat([o["correct"] for o in outs]).numpy()
    ece = np_ece(conf, corr)
    assert out["n"].item() == len(conf)
    assert out["acc"].item() == pytest.approx(100 * corr.mean())
    assert out["ece"].item() == pytest.approx(100 * ece, abs=1e-7)
    assert out["trust"].item() == pytest.approx(100 * corr.mean() - 100 * ece, abs=1e-7)
    probs = torch.cat([o["candidate_probs"] for o in outs]).double().numpy()
    mask = torch.cat([o["candidate_mask"] for o in outs]).numpy()
    gold = torch.cat([o["gold"] for o in outs]).numpy()
    ref_brier, ref_nll = np_candidate_scores(probs, mask, gold)
    assert out["brier"].item() == pytest.approx(ref_brier, abs=1e-9)
    assert out["nll"].item() == pytest.approx(ref_nll, abs=1e-9)
    np.testing.assert_allclose(out["confidence"].numpy(), conf, atol=1e-7)
    np.testing.assert_array_equal(out["correct"].numpy(), corr)
    np.testing.assert_allclose(out["bins"]["count"].numpy(), np_bins(conf, corr, 10)[0])


def test_multiple_choice_renormalised_confidence():
    o = random_eval_output(seed=1)
    metric = MultipleChoiceCalibration(confidence="renormalised")
    metric.update(o)
    p = o["candidate_probs"].double() * o["candidate_mask"]
    p = p / p.sum(1, keepdim=True)
    expected = p.gather(1, o["pred"][:, None])[:, 0]
    torch.testing.assert_close(metric.compute()["confidence"], expected.float())


def test_empty_metric_computes_zero_count():
    metric = MultipleChoiceCalibration()
    with pytest.warns(UserWarning):
        out = metric.compute()
    assert out["n"].item() == 0 and out["confidence"].numel() == 0


def test_functional_grid_equals_rows():
    conf, corr = random_predictions(400)
    grid = torch.from_numpy(np.stack([conf, conf**2, np.sqrt(conf)]))
    corr_grid = torch.from_numpy(np.stack([corr] * 3))
    for binning in ("equal_width", "equal_mass"):
        batched = expected_calibration_error(grid, corr_grid, binning=binning)
        for row in range(3):
            single = expected_calibration_error(grid[row], corr_grid[row], binning=binning)
            assert batched[row].item() == pytest.approx(single.item(), abs=1e-12)
    count, _, _ = calibration_bins(grid, corr_grid, 10, "equal_mass")
    assert (count == 40).all()
