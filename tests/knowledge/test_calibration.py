"""Choice of c on synthetic stores whose true calibration is planted, and the result's plumbing."""

import numpy as np
import pytest
import torch

from first_pl.knowledge.calibration import (
    CalibrationResult,
    choose_temperature,
    ece_curve,
    nll_curve,
    plot_calibration_curve,
    score_label_smoothing,
)
from first_pl.knowledge.transforms import label_smooth, renormalize, temperature_scale
from first_pl.metrics.functional import expected_calibration_error

K = 5


def planted_store(n: int, c_star: float, seed: int = 0):
    """Top-k probs with varied sharpness; gold drawn from temperature_scale(p, c_star).

    So the top-1 is correct with probability exactly the Eq. 4 top-1 at c_star (ECE minimal
    there in expectation) and the gold rank follows the Eq. 4 distribution (NLL minimal there).
    """
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 1, generator=g) * 4 + 0.5
    z = torch.randn(n, K + 3, generator=g) * scale
    probs = torch.softmax(z, -1).sort(-1, descending=True).values[:, :K]
    ids = torch.arange(K).repeat(n, 1) + K * torch.arange(n).unsqueeze(1)
    rank = torch.multinomial(temperature_scale(probs, c_star), 1, generator=g)[:, 0]
    return probs, ids, ids.gather(1, rank[:, None])[:, 0]


@pytest.mark.parametrize("objective", ["ece", "nll"])
@pytest.mark.parametrize("c_star", [0.4, 0.26])  # 0.26 is off the coarse grid: the fine search
def test_choose_temperature_recovers_planted_c(objective, c_star):
    probs, ids, gold = planted_store(20_000, c_star)
    result = choose_temperature(probs, ids, gold, objective=objective)
    assert abs(result.temperature - c_star) <= 0.04
    assert result.objective == objective
    assert result.value == min(v for _, v in result.curve)
    if objective == "ece":
        assert result.ece_after == pytest.approx(result.value)
        assert result.ece_after < result.ece_before


def test_curve_holds_coarse_and_fine_grid_sorted():
    probs, ids, gold = planted_store(2_000, 0.4)
    result = choose_temperature(probs, ids, gold)
    cs = [c for c, _ in result.curve]
    assert cs == sorted(set(cs))
    coarse = {round(0.1 * i, 10) for i in range(1, 11)}
    best_coarse = min((v, c) for c, v in result.curve if c in coarse)[1]
    fine = {round(best_coarse + 0.02 * i, 10) for i in range(-5, 6)}
    assert set(cs) == coarse | fine


def test_fine_grid_skips_non_positive_temperatures():
    probs, ids, gold = planted_store(5_000, 0.03)
    result = choose_temperature(probs, ids, gold)
    cs = [c for c, _ in result.curve]
    assert min(cs) == pytest.approx(0.02) and all(c > 0 for c in cs)


def test_ece_curve_equals_metric_on_full_transform():
    probs, ids, gold = planted_store(3_000, 0.5)
    correct = ids[:, 0] == gold
    cs = torch.tensor([0.1, 0.37, 1.0])
    curve = ece_curve(probs, correct, cs)
    for g, c in enumerate(cs.tolist()):
        expected = expected_calibration_error(temperature_scale(probs, c)[:, 0], correct)
        assert float(curve[g]) == pytest.approx(float(expected), abs=1e-6)


def test_ece_before_is_ece_of_raw_top1():
    probs, ids, gold = planted_store(3_000, 0.5)
    result = choose_temperature(probs, ids, gold)
    expected = expected_calibration_error(probs[:, 0], ids[:, 0] == gold)
    assert result.ece_before == pytest.approx(float(expected))
    assert result.accuracy == pytest.approx(float((ids[:, 0] == gold).float().mean()))


def test_nll_curve_by_hand_and_floor_for_gold_outside_topk():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]])
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    gold = torch.tensor([2, 9])  # row 0: rank 2; row 1: outside the top-k
    c = 0.5
    curve = nll_curve(probs, ids, gold, torch.tensor([c]), floor=1e-6)
    expected = (-temperature_scale(probs[0], c)[1].log() - np.log(1e-6)) / 2
    assert float(curve[0]) == pytest.approx(float(expected), rel=1e-5)


def test_answer_only_uses_only_masked_rows():
    answer = planted_store(20_000, 0.26, seed=1)
    other = planted_store(20_000, 0.8, seed=2)
    probs, ids, gold = (torch.cat([a, b]) for a, b in zip(answer, other, strict=True))
    mask = np.r_[np.ones(20_000, bool), np.zeros(20_000, bool)]
    only = choose_temperature(probs, ids, gold, answer_mask=mask, answer_only=True)
    assert only.n_positions == 20_000 and only.settings["answer_only"]
    assert abs(only.temperature - 0.26) <= 0.04
    direct = choose_temperature(*answer)
    assert only.curve == direct.curve
    everything = choose_temperature(probs, ids, gold, answer_mask=mask)
    assert everything.n_positions == 40_000 and everything.temperature > 0.4


def test_answer_only_requires_mask():
    probs, ids, gold = planted_store(100, 0.4)
    with pytest.raises(ValueError, match="answer_mask"):
        choose_temperature(probs, ids, gold, answer_only=True)


def test_accepts_store_dtypes():
    probs, ids, gold = planted_store(2_000, 0.4)
    from_numpy = choose_temperature(
        probs.numpy().astype(np.float16),
        ids.numpy().astype(np.uint16),
        gold.numpy().astype(np.uint16),
    )
    assert (
        abs(from_numpy.temperature - choose_temperature(probs.half(), ids, gold).temperature) < 1e-9
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [({"objective": "brier"}, "objective"), ({"coarse": [0.0, 0.5]}, "coarse")],
)
def test_invalid_settings(kwargs, match):
    probs, ids, gold = planted_store(100, 0.4)
    with pytest.raises(ValueError, match=match):
        choose_temperature(probs, ids, gold, **kwargs)


def test_score_label_smoothing_is_ece_of_smoothed_top1():
    probs, ids, gold = planted_store(3_000, 0.5)
    correct = ids[:, 0] == gold
    scores = score_label_smoothing(probs, ids, gold, deltas=[0.0, 0.1])
    assert [d for d, _ in scores] == [0.0, 0.1]
    for delta, ece in scores:
        conf = label_smooth(probs, delta)[:, 0] if delta else renormalize(probs)[:, 0]
        assert ece == pytest.approx(float(expected_calibration_error(conf, correct)))


def test_result_json_round_trip(tmp_path):
    probs, ids, gold = planted_store(2_000, 0.4)
    result = choose_temperature(probs, ids, gold, objective="nll")
    result.to_json(tmp_path / "c.json")
    assert CalibrationResult.from_json(tmp_path / "c.json") == result


@pytest.mark.parametrize("objective", ["ece", "nll"])
def test_plot_calibration_curve_writes_png(tmp_path, objective):
    probs, ids, gold = planted_store(2_000, 0.4)
    path = tmp_path / "curve.png"
    plot_calibration_curve(choose_temperature(probs, ids, gold, objective=objective), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
