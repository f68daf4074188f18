"""Sparse top-k KL and the other student losses against dense references, value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from first_pl.data.batch import IGNORE_INDEX, response_mask
from first_pl.methods.losses import (
    distillation_loss,
    hard_label_ce,
    sparse_topk_kl,
    student_topk_log_probs,
)
from first_pl.teacher.transforms import with_tail

P, V, K = 7, 23, 5


def _case(seed: int = 0, renormalise_target: bool = False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(P, V, generator=g, dtype=torch.float64) * 2
    ids = torch.stack([torch.randperm(V, generator=g)[:K] for _ in range(P)])
    probs = torch.softmax(torch.randn(P, V, generator=g, dtype=torch.float64) * 2, -1)
    probs = probs.sort(-1, descending=True).values[:, :K]  # raw top-k: sums below 1
    probs[0, -1] = 0.0  # a zero target probability: 0 * log 0 must count as 0
    if renormalise_target:
        probs = probs / probs.sum(-1, keepdim=True)
    return logits, ids, probs


def _dense_target(ids: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(P, V, dtype=probs.dtype).scatter(1, ids, probs)


def _dense_kl(logits, ids, probs, renormalize_student):
    if renormalize_student:
        topk = torch.zeros(P, V, dtype=torch.bool).scatter(1, ids, True)
        logits = logits.masked_fill(~topk, -1e4)  # exp underflows to 0: student over the k ids
    log_ps = logits.log_softmax(-1)
    return F.kl_div(log_ps, _dense_target(ids, probs), reduction="sum") / P  # batchmean


@pytest.mark.parametrize("renormalize_student", [False, True])
@pytest.mark.parametrize("renormalise_target", [False, True])
def test_sparse_kl_equals_dense_kl_in_value_and_gradient(renormalize_student, renormalise_target):
    logits, ids, probs = _case(renormalise_target=renormalise_target)
    sparse_logits = logits.clone().requires_grad_()
    dense_logits = logits.clone().requires_grad_()
    sparse = sparse_topk_kl(sparse_logits, ids, probs, renormalize_student=renormalize_student)
    dense = _dense_kl(dense_logits, ids, probs, renormalize_student)
    torch.testing.assert_close(sparse, dense)
    sparse.backward()
    dense.backward()
    torch.testing.assert_close(sparse_logits.grad, dense_logits.grad)


def test_renormalised_student_kl_is_zero_when_student_matches_renormalised_teacher():
    _, ids, probs = _case(renormalise_target=True)
    logits = torch.zeros(P, V).scatter(1, ids, probs.float().clamp_min(1e-30).log())
    loss = sparse_topk_kl(logits, ids, probs, renormalize_student=True)
    assert abs(float(loss)) < 1e-5


def test_sparse_kl_reductions():
    logits, ids, probs = _case()
    per = sparse_topk_kl(logits, ids, probs, reduction="none")
    assert per.shape == (P,)
    torch.testing.assert_close(sparse_topk_kl(logits, ids, probs, reduction="sum"), per.sum())
    torch.testing.assert_close(sparse_topk_kl(logits, ids, probs), per.mean())
    with pytest.raises(ValueError, match="reduction"):
        sparse_topk_kl(logits, ids, probs, reduction="batchmean")


def test_sparse_kl_computes_in_float32_for_bfloat16_logits():
    logits, ids, probs = _case()
    bf16 = logits.to(torch.bfloat16)
    loss = sparse_topk_kl(bf16, ids, probs.float())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, sparse_topk_kl(bf16.float(), ids, probs.float()))


def test_sparse_kl_rejects_mismatched_shapes():
    logits, ids, probs = _case()
    with pytest.raises(ValueError, match="shapes"):
        sparse_topk_kl(logits, ids[:, :3], probs)


def test_empty_batch_gives_zero_loss_with_a_gradient():
    logits = torch.randn(0, V, requires_grad=True)
    loss = sparse_topk_kl(logits, torch.zeros(0, K, dtype=torch.long), torch.zeros(0, K))
    assert loss.detach().item() == 0.0
    loss.backward()
    assert logits.grad.shape == (0, V)


def test_hard_label_ce_equals_cross_entropy():
    logits, _, _ = _case()
    targets = torch.randint(0, V, (P,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hard_label_ce(logits, targets), F.cross_entropy(logits, targets))


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_distillation_loss_mixes_kl_and_ce(w):
    logits, ids, probs = _case()
    targets = ids[:, 0]
    expected = (1 - w) * sparse_topk_kl(logits, ids, probs) + w * hard_label_ce(logits, targets)
    torch.testing.assert_close(
        distillation_loss(logits, ids, probs, targets, ce_weight=w), expected
    )


def test_distillation_loss_passes_renormalize_student():
    logits, ids, probs = _case()
    torch.testing.assert_close(
        distillation_loss(logits, ids, probs, ids[:, 0], renormalize_student=True),
        sparse_topk_kl(logits, ids, probs, renormalize_student=True),
    )


@pytest.mark.parametrize("w", [-0.1, 1.1])
def test_distillation_loss_rejects_invalid_weight(w):
    logits, ids, probs = _case()
    with pytest.raises(ValueError, match="ce_weight"):
        distillation_loss(logits, ids, probs, ids[:, 0], ce_weight=w)


def _padded_batch():
    """B=2, L=4: prompt, response, right padding (IGNORE_INDEX), as first_pl.data.batch says."""
    x = IGNORE_INDEX
    labels = torch.tensor([[x, 5, 6, x], [x, x, 7, x]])
    mask = response_mask(labels)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 4, 3, generator=g)
    teacher_ids = torch.randint(0, V, (2, 4, K), generator=g) * mask.unsqueeze(-1)
    teacher_probs = torch.rand(2, 4, K, generator=g) * mask.unsqueeze(-1)
    return labels, hidden, teacher_ids, teacher_probs


def test_response_mask_keeps_response_rows_in_order():
    labels, hidden, _, _ = _padded_batch()
    mask = response_mask(labels)
    assert mask.tolist() == [[False, True, True, False], [False, False, True, False]]
    torch.testing.assert_close(
        hidden[mask], torch.stack([hidden[0, 1], hidden[0, 2], hidden[1, 2]])
    )
    assert labels[mask].tolist() == [5, 6, 7]


def test_loss_on_gathered_rows_ignores_padding():
    labels, hidden, teacher_ids, teacher_probs = _padded_batch()
    head = torch.nn.Linear(3, V)
    mask = response_mask(labels)
    rows, ids, probs = hidden[mask], teacher_ids[mask], teacher_probs[mask]
    assert ids.shape == (3, K) and (probs > 0).all()
    loss = sparse_topk_kl(head(rows), ids, probs)
    full = sparse_topk_kl(
        head(hidden).reshape(-1, V),
        teacher_ids.reshape(-1, K),
        teacher_probs.reshape(-1, K),
        reduction="sum",
    )
    torch.testing.assert_close(loss, full / 3)  # padding rows have zero target: add nothing


def _dense_tail_kl(logits, ids, target):
    """KL over k + 1 buckets by hand: the k ids, then everything else summed in the vocab."""
    topk = torch.zeros(P, V, dtype=torch.bool).scatter(1, ids, True)
    ps = logits.softmax(-1)
    student = torch.cat([ps.gather(1, ids), (ps * ~topk).sum(-1, keepdim=True)], -1)
    return (torch.xlogy(target, target) - target * student.log()).sum() / P


def test_tail_bucket_kl_equals_dense_bucket_kl_in_value_and_gradient():
    logits, ids, probs = _case(seed=1)
    target = with_tail(probs)
    assert (target[:, -1] > 0).all()
    sparse_logits = logits.clone().requires_grad_()
    dense_logits = logits.clone().requires_grad_()
    sparse = sparse_topk_kl(sparse_logits, ids, target, tail=True)
    dense = _dense_tail_kl(dense_logits, ids, target)
    torch.testing.assert_close(sparse, dense)
    sparse.backward()
    dense.backward()
    torch.testing.assert_close(sparse_logits.grad, dense_logits.grad)


def test_tail_bucket_student_column_is_its_mass_outside_the_ids():
    logits, ids, _ = _case()
    log_ps = student_topk_log_probs(logits, ids, tail=True)
    assert log_ps.shape == (P, K + 1)
    torch.testing.assert_close(log_ps.exp().sum(-1), torch.ones(P, dtype=torch.float64))
    # a student with (almost) no mass outside the ids keeps a finite tail log-probability
    certain = torch.full((1, V), -1e4, dtype=torch.float32).scatter(1, ids[:1], 0.0)
    assert torch.isfinite(student_topk_log_probs(certain, ids[:1], tail=True)).all()


def test_tail_bucket_refuses_wrong_width_and_renormalised_student():
    logits, ids, probs = _case()
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 6\] with the tail bucket"):
        sparse_topk_kl(logits, ids, probs, tail=True)
    with pytest.raises(ValueError, match="exclude each other"):
        sparse_topk_kl(logits, ids, with_tail(probs), renormalize_student=True, tail=True)


def test_distillation_loss_passes_tail():
    logits, ids, probs = _case()
    target = with_tail(probs)
    torch.testing.assert_close(
        distillation_loss(logits, ids, target, ids[:, 0], tail=True),
        sparse_topk_kl(logits, ids, target, tail=True),
    )
