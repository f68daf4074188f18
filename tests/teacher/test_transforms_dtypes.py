"""The teacher transforms in float16, bfloat16 and float32 against float64 written out by hand.

Each result must come back in the caller's dtype and equal the float64 answer for the same
input values to the precision of that dtype: small float16 entries and subnormal float32 rows
are where computing in the input's own dtype goes wrong.
"""

import pytest
import torch

from first_pl.teacher.transforms import (
    label_smooth,
    log_temperature_scale,
    renormalize,
    temperature_scale,
    with_tail,
)


def _assert_in_dtype_close(out: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype):
    """Equal to the reference rounded to `dtype`: one rounding of a normal number, or one
    step of the subnormals (tiny * eps) below the smallest normal."""
    assert out.dtype == dtype
    info = torch.finfo(dtype)
    torch.testing.assert_close(out.double(), reference, rtol=info.eps, atol=info.tiny * info.eps)


def test_log_temperature_float16_keeps_an_entry_below_its_smallest_normal():
    p = torch.tensor([0.9, 1e-6], dtype=torch.float16)  # 1e-6 is a float16 subnormal
    out = log_temperature_scale(p, 2.0)
    root = p.double().sqrt()
    _assert_in_dtype_close(out, root / root.sum(), torch.float16)
    # float16 holds 1e-6 as 1.0133e-6, so the exact [0.99895, 0.00105] moves by 0.7%
    expected = torch.tensor([0.99895, 0.00105], dtype=torch.float64)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=0)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_log_temperature_of_an_all_subnormal_float32_row_is_not_uniform(t):
    p = torch.tensor([[1e-40, 5e-41, 1e-42], [3e-39, 1e-39, 2e-44]])
    assert (p < torch.finfo(torch.float32).tiny).all()
    scaled = p.double() ** (1 / t)
    _assert_in_dtype_close(log_temperature_scale(p, t), scaled / scaled.sum(-1, keepdim=True), torch.float32)


@pytest.mark.parametrize(
    ("dtype", "last"),
    [(torch.float16, 0.06225), (torch.bfloat16, 0.06225), (torch.float32, 0.0625 - 2**-28)],
)
def test_tail_bucket_is_one_minus_the_exact_sum_of_the_stored_values(dtype, last):
    """1 - sum(top-k) of the stored values, not of their sum rounded to the store's dtype."""
    p = torch.tensor([0.5, 0.25, 0.125, 0.0625, last], dtype=dtype)
    exact = p.double()
    assert 0 < 1 - exact.sum() < torch.finfo(dtype).eps  # a tail under the dtype's step at 1
    reference = torch.cat([exact, 1 - exact.sum(0, keepdim=True)])
    _assert_in_dtype_close(with_tail(p), reference, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_eq4_and_label_smoothing_return_the_callers_dtype_at_its_precision(dtype):
    p = torch.tensor([0.7, 0.2, 0.05, 0.0004, 0.00002], dtype=dtype)
    exact = p.double()
    _assert_in_dtype_close(temperature_scale(p, 0.05), (exact / 0.05).softmax(-1), dtype)
    q = exact / exact.sum()
    smoothed = q + torch.tensor([-0.1, 0.025, 0.025, 0.025, 0.025], dtype=torch.float64)
    _assert_in_dtype_close(label_smooth(p, 0.1), smoothed, dtype)


def test_integer_probabilities_are_refused_by_dtype():
    with pytest.raises(ValueError, match="floating tensor, got torch.int64"):
        renormalize(torch.tensor([1, 2]))
