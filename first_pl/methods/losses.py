"""Student losses over response positions (DESIGN section 1, Eq. 5).

All losses take logits already gathered at the `P` response positions (`labels != IGNORE_INDEX`,
`first_pl.data.batch`), so the LM head runs on `P` rows instead of `B * L`
(`first_pl.lm_head.logits_at`). Log-softmax is taken in float32 whatever the logits'
dtype (float64 stays float64): in bfloat16 the log-partition over a 49k vocabulary loses most of its precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_position: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean/sum/none over positions; an empty mean is 0 (a sum over nothing) instead of NaN.

    A batch whose examples have no response positions then contributes a zero loss with a
    zero gradient, so distributed ranks still all run backward.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return per_position
    if reduction == "sum" or per_position.numel() == 0:
        return per_position.sum()
    return per_position.mean()


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


# Elements per chunk when masking the top-k out of `[P, V]` logits (85 rows of a 49k vocab,
# 16 MB in float32), so the masked copy never grows with the batch.
_TAIL_CHUNK_ELEMENTS = 1 << 22


class _OutsideLogSumExp(torch.autograd.Function):
    """logsumexp of each row's logits outside the ids `[P, k]`: `[P, V]` -> `[P, 1]`.

    The student's tail bucket is this minus the full logsumexp. Written this way the tail
    keeps its relative precision however small it is, where log(1 - sum top-k) cancels to
    noise below about 1e-7 in float32 and its gradient vanishes. Autograd through a masked
    copy would keep one more `[P, V]` tensor until backward; this Function saves only the
    logits (already kept by the full logsumexp) and the `[P, 1]` result, masks chunk by
    chunk in forward, and forms the gradient, softmax over the outside logits, in place.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = logits.new_empty(logits.shape[0], 1)
        rows_per_chunk = max(1, _TAIL_CHUNK_ELEMENTS // max(1, logits.shape[-1]))
        chunks = zip(
            logits.split(rows_per_chunk),
            ids.split(rows_per_chunk),
            out.split(rows_per_chunk),
            strict=True,
        )
        for rows, row_ids, row_out in chunks:
            row_out.copy_(rows.scatter(-1, row_ids, -math.inf).logsumexp(-1, keepdim=True))
        ctx.save_for_backward(logits, ids, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, ids, out = ctx.saved_tensors
        # A row with no finite logit outside the ids (k = V) has out = -inf and no gradient;
        # flooring it keeps exp finite for the outside entries (exp(-inf) = 0).
        floor = out.clamp_min(torch.finfo(out.dtype).min)
        grad = (logits - floor).exp_().mul_(grad_out).scatter_(-1, ids, 0.0)
        return grad, None


def student_topk_log_probs(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    renormalize_student: bool = False,
    tail: bool = False,
) -> torch.Tensor:
    """Student log-probabilities `[P, k]` at the teacher's top-k ids, in at least float32.

    Default (the paper): full-vocab log-softmax gathered at the ids, computed as the gathered
    logit minus the logsumexp so no `[P, V]` log-prob tensor is kept. Option: log-softmax over
    the k gathered logits only, i.e. the student renormalised over the teacher's ids. With
    `tail`, a (k+1)-th column holds the log of the student's mass outside the k ids, the
    counterpart of the teacher's tail bucket (`first_pl.teacher.transforms.with_tail`):
    the logsumexp of the logits outside the ids minus the full one (`_OutsideLogSumExp`),
    exact in value and gradient down to the smallest tail the dtype holds. It is finite
    whenever one logit outside the ids is; only k = V gives log 0 = -inf, floored at the
    dtype's lowest value so that a zero teacher tail times it stays 0.
    """
    if tail and renormalize_student:
        raise ValueError(
            "tail bucket and renormalize_student exclude each other: a student renormalised "
            "over the k ids has no mass outside them"
        )
    logits = _at_least_float32(student_logits)
    gathered = logits.gather(-1, teacher_ids.long())
    if renormalize_student:
        return gathered.log_softmax(-1)
    log_partition = logits.logsumexp(-1, keepdim=True)
    log_ps = gathered - log_partition
    if tail:
        rows = (-1, logits.shape[-1])
        outside = _OutsideLogSumExp.apply(logits.reshape(rows), teacher_ids.long().flatten(0, -2))
        outside = outside.reshape(log_partition.shape) - log_partition
        log_ps = torch.cat([log_ps, outside.clamp_min(torch.finfo(logits.dtype).min)], dim=-1)
    return log_ps


def sparse_topk_kl(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    renormalize_student: bool = False,
    reduction: str = "mean",
    tail: bool = False,
) -> torch.Tensor:
    """KL(P_T || P_S) restricted to the teacher's top-k: sum_j P_T(j) (log P_T(j) - log P_S(j)).

    `student_logits` `[P, V]`, `teacher_ids` `[P, k]` (long), `teacher_probs` `[P, k]` (the
    target, already transformed: renormalised, smoothed or temperature-scaled by the caller).
    Equals the dense KL with the teacher's probabilities scattered into a V-vector (zeros
    elsewhere contribute 0 * log 0 = 0). Mean over positions by default (DESIGN: averaged over
    response tokens). With `tail`, `teacher_probs` is `[P, k + 1]` and its last column (the
    teacher's tail bucket) is matched against the student's mass outside the k ids: the KL
    between the two (k+1)-bucket distributions.
    """
    k_target = teacher_ids.shape[-1] + int(tail)
    if (
        teacher_probs.shape[:-1] != teacher_ids.shape[:-1]
        or teacher_probs.shape[-1] != k_target
        or teacher_ids.shape[:-1] != student_logits.shape[:-1]
    ):
        raise ValueError(
            f"shapes disagree: student_logits {tuple(student_logits.shape)}, teacher_ids "
            f"{tuple(teacher_ids.shape)}, teacher_probs {tuple(teacher_probs.shape)} "
            f"(expected [..., {k_target}]{' with the tail bucket' if tail else ''})"
        )
    log_ps = student_topk_log_probs(student_logits, teacher_ids, renormalize_student, tail)
    target = teacher_probs.to(log_ps.dtype)
    per_position = (torch.xlogy(target, target) - target * log_ps).sum(-1)
    return _reduce(per_position, reduction)


def hard_label_ce(
    student_logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of `[P, V]` logits vs `[P]` gold ids, in at least float32 (Fine-tune's loss)."""
    per_position = F.cross_entropy(
        _at_least_float32(student_logits), targets.long(), reduction="none"
    )
    return _reduce(per_position, reduction)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    targets: torch.Tensor,
    ce_weight: float = 0.0,
    renormalize_student: bool = False,
    tail: bool = False,
) -> torch.Tensor:
    """(1 - ce_weight) * sparse top-k KL + ce_weight * hard-label CE, each a mean over positions.

    ce_weight = 0 (the default, the paper's Eq. 5) skips the cross-entropy entirely. `tail`:
    `teacher_probs` carries the tail bucket as a (k+1)-th column (see `sparse_topk_kl`).
    """
    if not 0.0 <= ce_weight <= 1.0:
        raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
    kl = sparse_topk_kl(student_logits, teacher_ids, teacher_probs, renormalize_student, tail=tail)
    if ce_weight == 0.0:
        return kl
    return (1.0 - ce_weight) * kl + ce_weight * hard_label_ce(student_logits, targets)
