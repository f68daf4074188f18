"""Eq. 3, Eq. 4, the log-space temperature and the tail bucket against hand-computed examples,
and the fast grid against the full transform."""

import math
import warnings

import pytest
import torch

from first_pl.teacher.transforms import (
    TRANSFORMS,
    label_smooth,
    log_temperature_scale,
    renormalize,
    temperature_scale,
    temperature_scale_grid_log,
    temperature_scale_top1_grid,
    transform_spec,
    with_tail,
)


def test_renormalize_divides_by_row_sum_and_keeps_zero_rows():
    p = torch.tensor([[0.4, 0.2, 0.1, 0.05, 0.05], [0.0] * 5])
    out = renormalize(p)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625]))
    assert torch.equal(out[1], torch.zeros(5))


def test_label_smooth_hand_example_k5():
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    out = label_smooth(p, 0.1)
    torch.testing.assert_close(out, torch.tensor([0.4, 0.225, 0.175, 0.125, 0.075]))


def test_label_smooth_renormalises_first():
    p = torch.tensor([0.4, 0.2, 0.1, 0.05, 0.05])  # sums to 0.8 -> [0.5, 0.25, 0.125, ...]
    out = label_smooth(p, 0.1)
    torch.testing.assert_close(out, torch.tensor([0.4, 0.275, 0.15, 0.0875, 0.0875]))
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_label_smooth_clamps_with_warning_when_delta_exceeds_p1():
    p = torch.tensor([[0.3, 0.25, 0.2, 0.15, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]])
    with pytest.warns(UserWarning, match="1 of 2 rows"):
        out = label_smooth(p, 0.35)
    raw = torch.tensor([0.0, 0.3375, 0.2875, 0.2375, 0.1875])
    torch.testing.assert_close(out[0], raw / raw.sum())
    torch.testing.assert_close(out[1], torch.tensor([0.25, 0.1875, 0.1875, 0.1875, 0.1875]))
    assert (out >= 0).all()


def test_label_smooth_delta_zero_is_identity_on_renormalised():
    p = torch.softmax(torch.randn(3, 4, 5), -1).sort(-1, descending=True).values * 0.9
    torch.testing.assert_close(label_smooth(p, 0.0), renormalize(p))


def test_label_smooth_leading_dims_and_padding_rows_stay_zero_without_warning():
    p = torch.zeros(2, 3, 5)
    p[0, 0] = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = label_smooth(p, 0.1)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.4, 0.225, 0.175, 0.125, 0.075]))
    assert out[0, 1:].abs().sum() == 0 and out[1].abs().sum() == 0


@pytest.mark.parametrize("delta", [-0.1, 1.0, 1.5, float("nan")])
def test_label_smooth_rejects_invalid_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        label_smooth(torch.tensor([0.6, 0.4]), delta)


def test_label_smooth_needs_two_probabilities():
    with pytest.raises(ValueError, match="k >= 2"):
        label_smooth(torch.tensor([[1.0]]), 0.1)


def test_temperature_scale_hand_example():
    p = torch.tensor([0.6, 0.3, 0.1])
    e = [math.exp(x / 0.5) for x in (0.6, 0.3, 0.1)]
    expected = torch.tensor([x / sum(e) for x in e])
    torch.testing.assert_close(temperature_scale(p, 0.5), expected)


def test_temperature_one_is_softmax_of_probabilities():
    p = torch.softmax(torch.randn(4, 6, 5), -1)
    torch.testing.assert_close(temperature_scale(p, 1.0), torch.softmax(p, -1))


@pytest.mark.parametrize("c", [1e6, float("inf")])
def test_large_temperature_gives_uniform(c):
    p = torch.tensor([[0.9, 0.05, 0.03, 0.01, 0.01]])
    torch.testing.assert_close(temperature_scale(p, c), torch.full((1, 5), 0.2))


def test_small_temperature_gives_near_one_hot():
    p = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    out = temperature_scale(p, 0.01)
    assert out[0] > 0.999 and (out[1:] < 1e-8).all()  # e^-20 ~ 2e-9


def test_temperature_scale_keeps_padding_rows_zero():
    p = torch.zeros(2, 5)
    p[0] = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    out = temperature_scale(p, 0.3)
    torch.testing.assert_close(out[0].sum(), torch.tensor(1.0))
    assert out[1].abs().sum() == 0


@pytest.mark.parametrize("c", [0.0, -1.0, float("nan")])
def test_temperature_scale_rejects_invalid_temperature(c):
    with pytest.raises(ValueError, match="temperature"):
        temperature_scale(torch.tensor([0.6, 0.4]), c)


def test_grid_rejects_invalid_temperatures():
    with pytest.raises(ValueError, match="temperature"):
        temperature_scale_top1_grid(torch.tensor([[0.6, 0.4]]), torch.tensor([0.5, 0.0]))


def _descending_probs(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k + 3, generator=g, dtype=torch.float64) * 3
    return torch.softmax(z, -1).sort(-1, descending=True).values[:, :k]


def test_fast_top1_grid_equals_full_transform():
    p = _descending_probs(200, 5)
    cs = torch.tensor([0.02, 0.1, 0.37, 1.0, 5.0, float("inf")], dtype=torch.float64)
    grid = temperature_scale_top1_grid(p, cs)
    assert grid.shape == (6, 200)
    for g, c in enumerate(cs.tolist()):
        torch.testing.assert_close(grid[g], temperature_scale(p, c)[:, 0])


def test_grid_log_at_arbitrary_columns_equals_full_transform_unsorted_rows():
    p = _descending_probs(100, 4)[:, torch.tensor([2, 0, 3, 1])]  # not descending
    index = torch.randint(0, 4, (100,), generator=torch.Generator().manual_seed(1))
    cs = torch.tensor([0.05, 0.5, 2.0], dtype=torch.float64)
    grid = temperature_scale_grid_log(p, cs, index)
    for g, c in enumerate(cs.tolist()):
        expected = temperature_scale(p, c).gather(1, index[:, None])[:, 0].log()
        torch.testing.assert_close(grid[g], expected)


def test_log_temperature_hand_example():
    """p^(1/T) renormalised: T = 2 on [0.64, 0.16, 0.04] gives [0.8, 0.4, 0.2] / 1.4."""
    out = log_temperature_scale(torch.tensor([0.64, 0.16, 0.04]), 2.0)
    torch.testing.assert_close(out, torch.tensor([0.8, 0.4, 0.2]) / 1.4)


def test_log_temperature_one_is_renormalize():
    p = _descending_probs(50, 5)
    torch.testing.assert_close(log_temperature_scale(p, 1.0), renormalize(p))


@pytest.mark.parametrize("t", [1e9, float("inf")])
def test_log_temperature_to_infinity_is_uniform(t):
    p = torch.tensor([[0.9, 0.05, 0.03, 0.01, 0.01]])
    torch.testing.assert_close(log_temperature_scale(p, t), torch.full((1, 5), 0.2))


def test_log_temperature_to_zero_is_one_hot_and_keeps_zero_entries_and_padding():
    p = torch.tensor([[0.5, 0.3, 0.0], [0.0, 0.0, 0.0]])
    sharp = log_temperature_scale(p, 0.01)
    torch.testing.assert_close(sharp[0], torch.tensor([1.0, 0.0, 0.0]))
    assert sharp[1].abs().sum() == 0
    flat = log_temperature_scale(p, float("inf"))  # a zero entry stays zero even in the limit
    torch.testing.assert_close(flat[0], torch.tensor([0.5, 0.5, 0.0]))
    assert not flat.isnan().any()


@pytest.mark.parametrize("t", [0.0, -2.0, float("nan")])
def test_log_temperature_rejects_invalid(t):
    with pytest.raises(ValueError, match="T must be > 0"):
        log_temperature_scale(torch.tensor([0.6, 0.4]), t)


def test_tail_bucket_hand_example_sums_to_one_and_pads():
    p = torch.tensor([[0.5, 0.2, 0.1], [0.0, 0.0, 0.0], [0.7, 0.2, 0.1004]])
    out = with_tail(p)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.2, 0.1, 0.2]))
    assert out[1].abs().sum() == 0  # padding stays padding
    # float16 rounding above 1: a tail of 0 (never negative), the row renormalised
    torch.testing.assert_close(out[2], torch.tensor([0.7, 0.2, 0.1004, 0.0]) / 1.0004)
    torch.testing.assert_close(out[[0, 2]].sum(-1), torch.ones(2))


def test_transforms_on_tail_bucket_rows_sum_to_one():
    p = with_tail(_descending_probs(20, 5).float() * 0.9)
    for name, value in (
        ("prob_temperature", 0.3),
        ("log_temperature", 2.0),
        ("label_smoothing", 0.1),
    ):
        out = transform_spec(name).apply(p, value)
        assert out.shape == (20, 6)
        torch.testing.assert_close(out.sum(-1), torch.ones(20))


def test_transform_ranges_are_the_documented_ones():
    c, t, delta = (
        TRANSFORMS[n] for n in ("prob_temperature", "log_temperature", "label_smoothing")
    )
    assert c.describe_range() == "(0, 1]" and not c.contains(1.1) and not c.contains(0.0)
    assert t.describe_range() == "[0.1, 10]" and t.contains(10.0) and not t.contains(0.05)
    assert delta.describe_range() == "[0, 1)" and delta.contains(0.0) and not delta.contains(1.0)
    for spec in TRANSFORMS.values():
        assert all(spec.contains(v) for v in spec.coarse)
    with pytest.raises(
        ValueError, match="unknown teacher transform 'power'; choose one of prob_temperature"
    ):
        transform_spec("power")
