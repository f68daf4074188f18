"""The tail bucket's student side against a dense float64 reference, for tails down to 1e-12.

The reference sums the student's full-vocab softmax over the ids outside the teacher's top-k
directly in float64, so it is exact where 1 - sum(top-k) in float32 cancels to noise: the
student's log tail must agree to float32 precision of the logits, and so must the gradient on
every logit, including the outside ones whose pull moves mass back into the tail.
"""

import math

import pytest
import torch

from first_pl.methods.losses import sparse_topk_kl, student_topk_log_probs
from first_pl.teacher.transforms import with_tail

P, V, K = 4, 1000, 5
TAILS = (1e-3, 1e-5, 1e-7, 1e-9, 1e-12)


def _student(tail: float, dtype: torch.dtype, seed: int = 0):
    """Logits `[P, V]` whose mass outside the ids `[P, K]` is about `tail`, offset to the
    magnitude of a real LM head's logits (so the float32 logsumexp is rounded as in training)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(V, generator=g)[:K] for _ in range(P)])
    top = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64) * (1 - tail)
    noise = torch.randn(P, V, generator=g, dtype=torch.float64)
    logits = noise + math.log(tail) - noise.logsumexp(-1, keepdim=True)  # outside: mass `tail`
    logits = logits.scatter(1, ids, top.log().expand(P, K)) + 14.0
    return logits.to(dtype), ids


def _teacher(tail: float) -> torch.Tensor:
    """A `[P, K + 1]` target whose tail bucket holds `tail`."""
    top = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64) * (1 - tail)
    return torch.cat([top, torch.tensor([tail], dtype=torch.float64)]).expand(P, K + 1)


def _dense(logits: torch.Tensor, ids: torch.Tensor, target: torch.Tensor):
    """KL over the K + 1 buckets written out on the whole vocabulary in float64."""
    outside = torch.ones(P, V, dtype=torch.bool).scatter(1, ids, False)
    ps = logits.softmax(-1)
    log_tail = (ps * outside).sum(-1).log()
    student = torch.cat([ps.gather(1, ids).log(), log_tail[:, None]], -1)
    return (torch.xlogy(target, target) - target * student).sum() / P, log_tail


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tail", TAILS)
def test_student_log_tail_matches_the_dense_float64_sum(tail, dtype):
    logits, ids = _student(tail, dtype)
    _, reference = _dense(logits.double(), ids, _teacher(tail))
    assert reference.exp().sub(tail).abs().max() < 0.5 * tail  # the case holds the tail it names
    computed = student_topk_log_probs(logits, ids, tail=True)[:, -1]
    assert computed.dtype == torch.float32
    # absolute error of a log = relative error of the tail: float32 rounding of logits near 14
    torch.testing.assert_close(computed.double(), reference, rtol=0, atol=2e-5)


@pytest.mark.parametrize("teacher_over_student", [10.0, 0.1])
@pytest.mark.parametrize("tail", TAILS)
def test_tail_kl_value_and_gradient_match_the_dense_float64_reference(tail, teacher_over_student):
    logits, ids = _student(tail, torch.float32)
    target = _teacher(tail * teacher_over_student)
    dense_logits = logits.double().requires_grad_()
    reference, _ = _dense(dense_logits, ids, target)
    reference.backward()
    computed_logits = logits.clone().requires_grad_()
    computed = sparse_topk_kl(computed_logits, ids, target.float(), tail=True)
    computed.backward()
    torch.testing.assert_close(computed.double(), reference.detach(), rtol=1e-5, atol=1e-7)
    grad, expected = computed_logits.grad.double(), dense_logits.grad
    inside = torch.zeros(P, V, dtype=torch.bool).scatter(1, ids, True)
    torch.testing.assert_close(grad[inside], expected[inside], rtol=1e-4, atol=1e-6)
    # outside the ids each gradient is p_j (1 - t_tail / q_tail): tiny, but its sign says
    # whether mass flows into the tail or out of it, so it must hold to relative precision
    assert (expected[~inside].sign() == math.copysign(1, 1 - teacher_over_student)).all()
    torch.testing.assert_close(grad[~inside], expected[~inside], rtol=1e-4, atol=0)


def test_tail_saves_no_second_vocab_sized_tensor_for_backward():
    """The tail's backward reuses the logits the full logsumexp keeps anyway: a masked copy
    saved by autograd would cost one more `[P, V]` (800 MB at 4k positions of a 49k vocab)."""
    logits, ids = _student(1e-6, torch.float32)
    logits.requires_grad_()
    target = with_tail(_teacher(1e-4)[:, :K].float())

    def vocab_sized_storages(tail: bool) -> set[int]:
        saved: set[int] = set()

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.numel() >= P * V:
                saved.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sparse_topk_kl(logits, ids, target if tail else target[:, :K], tail=tail)
        return saved

    assert vocab_sized_storages(tail=True) == vocab_sized_storages(tail=False)
