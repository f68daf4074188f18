"""Choice of c (and of T, delta) on synthetic stores whose true calibration is planted, and the
result's plumbing."""

import json
import warnings

import numpy as np
import pytest
import torch

from first_pl.metrics.functional import expected_calibration_error
from first_pl.teacher.parameter_choice import plot_calibration_curve
from first_pl.teacher.parameter_search import (
    CalibrationResult,
    choose_parameter,
    curve_values,
    score_label_smoothing,
)
from first_pl.teacher.transforms import (
    TRANSFORMS,
    label_smooth,
    log_temperature_scale,
    temperature_scale,
    with_tail,
)

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
    result = choose_parameter(probs, ids, gold, objective=objective)
    assert abs(result.parameter - c_star) <= 0.04
    assert result.objective == objective
    assert result.value == min(v for _, v in result.curve)
    if objective == "ece":
        assert result.ece_after == pytest.approx(result.value)
        assert result.ece_after < result.ece_before


def test_curve_holds_coarse_and_fine_grid_sorted():
    probs, ids, gold = planted_store(2_000, 0.4)
    result = choose_parameter(probs, ids, gold)
    cs = [c for c, _ in result.curve]
    assert cs == sorted(set(cs))
    coarse = {round(0.1 * i, 10) for i in range(1, 11)}
    best_coarse = min((v, c) for c, v in result.curve if c in coarse)[1]
    fine = {round(best_coarse + 0.02 * i, 10) for i in range(-5, 6)}
    assert set(cs) == coarse | fine


def test_fine_grid_skips_non_positive_temperatures_and_warns_at_the_edge():
    probs, ids, gold = planted_store(5_000, 0.01)
    with pytest.warns(UserWarning, match=r"c = 0.02 at the lower edge of the searched grid"):
        result = choose_parameter(probs, ids, gold)
    cs = [c for c, _ in result.curve]
    assert min(cs) == pytest.approx(0.02) and all(c > 0 for c in cs)


def test_fine_grid_never_leaves_the_documented_range_and_warns_at_its_end():
    """An under-confident teacher wants c > 1: the search stops at 1.0 (it returned 1.1)."""
    probs, ids, gold = planted_store(5_000, 3.0)
    with pytest.warns(UserWarning, match=r"upper edge .* the documented range \(0, 1\] ends"):
        result = choose_parameter(probs, ids, gold)
    assert max(c for c, _ in result.curve) == 1.0 and result.parameter == 1.0


def test_no_warning_inside_the_grid():
    probs, ids, gold = planted_store(5_000, 0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choose_parameter(probs, ids, gold)


def test_coarse_grid_outside_the_range_is_refused():
    probs, ids, gold = planted_store(100, 0.4)
    with pytest.raises(ValueError, match=r"prob_temperature must lie in its range c in \(0, 1\]"):
        choose_parameter(probs, ids, gold, coarse=[0.5, 1.5])


@pytest.mark.parametrize("transform", ["prob_temperature", "log_temperature", "label_smoothing"])
@pytest.mark.parametrize("tail", [False, True])
def test_ece_curve_equals_metric_on_full_transform(transform, tail):
    """Every transform's ECE: the transformed row's most probable token among the k ids."""
    probs, ids, gold = planted_store(3_000, 0.5)
    rows = with_tail(probs) if tail else probs
    values = {"prob_temperature": [0.1, 0.37, 1.0], "log_temperature": [0.5, 2.0]}
    values = values.get(transform, [0.0, 0.1, 0.4])
    spec = TRANSFORMS[transform]
    curve = curve_values(spec, "ece", rows, ids, gold, torch.tensor(values))
    trust = curve_values(spec, "trust", rows, ids, gold, torch.tensor(values))
    for g, v in enumerate(values):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conf, pred = spec.apply(rows, v)[:, :K].max(1)
        correct = ids.gather(1, pred[:, None])[:, 0] == gold
        expected = float(expected_calibration_error(conf, correct))
        assert float(curve[g]) == pytest.approx(expected, abs=1e-6)
        assert float(trust[g]) == pytest.approx(float(correct.float().mean()) - expected, abs=1e-6)


def _planted_log_temperature(n: int, t_star: float, seed: int = 0):
    probs, ids, _ = planted_store(n, 1.0, seed)
    g = torch.Generator().manual_seed(seed + 7)
    rank = torch.multinomial(log_temperature_scale(probs, t_star), 1, generator=g)[:, 0]
    return probs, ids, ids.gather(1, rank[:, None])[:, 0]


@pytest.mark.parametrize("objective", ["ece", "nll", "trust"])
def test_choose_log_temperature_recovers_planted_t(objective):
    probs, ids, gold = _planted_log_temperature(20_000, 2.2)
    result = choose_parameter(probs, ids, gold, transform="log_temperature", objective=objective)
    assert result.transform == "log_temperature" and result.settings["parameter_name"] == "T"
    assert abs(result.parameter - 2.2) <= 0.3
    assert result.parameter == result.parameter
    if objective == "trust":
        assert result.value == max(v for _, v in result.curve)


def test_choose_label_smoothing_delta_and_result_has_no_temperature():
    probs, ids, gold = planted_store(5_000, 0.5)
    result = choose_parameter(probs, ids, gold, transform="label_smoothing")
    assert all(0 <= d < 1 for d, _ in result.curve)
    assert result.value == min(v for _, v in result.curve)
    with pytest.raises(ValueError, match="no temperature"):
        _ = result.temperature


def test_nll_with_tail_bucket_scores_gold_outside_topk_by_the_tail():
    probs = torch.tensor([[0.6, 0.3, 0.05], [0.5, 0.3, 0.1]])
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    gold = torch.tensor([2, 9])  # row 1: outside the top-k, scored by its tail bucket
    rows = with_tail(probs)
    curve = curve_values(TRANSFORMS["log_temperature"], "nll", rows, ids, gold, torch.tensor([2.0]))
    q = log_temperature_scale(rows, 2.0)
    expected = -(q[0, 1].log() + q[1, 3].log()) / 2
    assert float(curve[0]) == pytest.approx(float(expected), rel=1e-5)


def test_ece_before_is_ece_of_raw_top1():
    probs, ids, gold = planted_store(3_000, 0.5)
    result = choose_parameter(probs, ids, gold)
    expected = expected_calibration_error(probs[:, 0], ids[:, 0] == gold)
    assert result.ece_before == pytest.approx(float(expected))
    assert result.accuracy == pytest.approx(float((ids[:, 0] == gold).float().mean()))


def test_nll_curve_by_hand_and_floor_for_gold_outside_topk():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]])
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    gold = torch.tensor([2, 9])  # row 0: rank 2; row 1: outside the top-k
    c = 0.5
    spec = TRANSFORMS["prob_temperature"]
    curve = curve_values(spec, "nll", probs, ids, gold, torch.tensor([c]), nll_floor=1e-6)
    expected = (-temperature_scale(probs[0], c)[1].log() - np.log(1e-6)) / 2
    assert float(curve[0]) == pytest.approx(float(expected), rel=1e-5)


def test_answer_only_uses_only_masked_rows():
    answer = planted_store(20_000, 0.26, seed=1)
    other = planted_store(20_000, 0.8, seed=2)
    probs, ids, gold = (torch.cat([a, b]) for a, b in zip(answer, other, strict=True))
    mask = np.r_[np.ones(20_000, bool), np.zeros(20_000, bool)]
    only = choose_parameter(probs, ids, gold, answer_mask=mask, answer_only=True)
    assert only.n_positions == 20_000 and only.settings["answer_only"]
    assert abs(only.parameter - 0.26) <= 0.04
    direct = choose_parameter(*answer)
    assert only.curve == direct.curve
    everything = choose_parameter(probs, ids, gold, answer_mask=mask)
    assert everything.n_positions == 40_000 and everything.parameter > 0.4


def test_answer_only_requires_mask():
    probs, ids, gold = planted_store(100, 0.4)
    with pytest.raises(ValueError, match="answer_mask"):
        choose_parameter(probs, ids, gold, answer_only=True)


def test_accepts_store_dtypes():
    probs, ids, gold = planted_store(2_000, 0.4)
    from_numpy = choose_parameter(
        probs.numpy().astype(np.float16),
        ids.numpy().astype(np.uint16),
        gold.numpy().astype(np.uint16),
    )
    assert abs(from_numpy.parameter - choose_parameter(probs.half(), ids, gold).parameter) < 1e-9


@pytest.mark.parametrize(
    "kwargs, match",
    [({"objective": "brier"}, "objective"), ({"coarse": [0.0, 0.5]}, "coarse")],
)
def test_invalid_settings(kwargs, match):
    probs, ids, gold = planted_store(100, 0.4)
    with pytest.raises(ValueError, match=match):
        choose_parameter(probs, ids, gold, **kwargs)


def test_score_label_smoothing_is_ece_of_smoothed_top1():
    probs, ids, gold = planted_store(3_000, 0.5)
    correct = ids[:, 0] == gold
    scores = score_label_smoothing(probs, ids, gold, deltas=[0.0, 0.1])
    assert [d for d, _ in scores] == [0.0, 0.1]
    for delta, ece in scores:
        conf, pred = label_smooth(probs, delta).max(1)  # the smoothed row's prediction
        correct = ids.gather(1, pred[:, None])[:, 0] == gold
        assert ece == pytest.approx(float(expected_calibration_error(conf, correct)))


def test_result_json_round_trip(tmp_path):
    probs, ids, gold = planted_store(2_000, 0.4)
    result = choose_parameter(probs, ids, gold, objective="nll", tail_bucket=True)
    result.to_json(tmp_path / "c.json")
    assert CalibrationResult.from_json(tmp_path / "c.json") == result
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["transform"] == "prob_temperature" and data["tail_bucket"] is True
    assert data["temperature"] == data["parameter"] == result.parameter


def test_result_of_the_first_releases_reads_as_eq4(tmp_path):
    old = {"temperature": 0.3, "objective": "ece", "value": 0.01, "curve": [[0.3, 0.01]]}
    old |= {"ece_before": 0.1, "ece_after": 0.01, "accuracy": 0.8, "n_positions": 9, "settings": {}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    result = CalibrationResult.from_json(tmp_path / "old.json")
    assert (result.parameter, result.transform, result.tail_bucket) == (
        0.3,
        "prob_temperature",
        False,
    )


@pytest.mark.parametrize("objective", ["ece", "nll", "trust"])
def test_plot_calibration_curve_writes_png(tmp_path, objective):
    probs, ids, gold = planted_store(2_000, 0.4)
    path = tmp_path / "curve.png"
    plot_calibration_curve(choose_parameter(probs, ids, gold, objective=objective), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
