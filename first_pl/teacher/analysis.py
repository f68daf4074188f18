"""Figures 2 and 3 of the paper, as data plus PNG/CSV/JSON writers.

- Coverage (figure 2): how much of the teacher's probability mass its top-1..K tokens hold at
  response positions, against what storing top-k costs on disk. It justifies k = 5.
- Rank-wise calibration (figure 3): for each rank 1..k, the teacher's mean probability against
  how often that rank's token is the gold one. A teacher whose top-1 probability exceeds its
  top-1 accuracy is over-confident, which is what trustworthy maximization corrects.

Plots use matplotlib's object API (``Figure``), never pyplot, so no GUI backend is touched.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from first_pl.data.batch import response_mask
from first_pl.data.store import TeacherStore, TeacherStoreError, ids_dtype_for
from first_pl.fileio.run_files import COVERAGE_STEM, RANK_CALIBRATION_STEM
from first_pl.lm_head import head_logits
from first_pl.teacher.extract import Batch, response_hidden

# Examples per teacher forward pass of the coverage figure (`first-pl coverage`'s default and
# the pipeline's analysis stage): the full-vocabulary softmax of every position is held at once.
COVERAGE_BATCH_SIZE = 8


@dataclass
class CoverageResult:
    """Cumulative top-k probability over sampled positions, and store size per k.

    ``bytes_per_position[k-1]`` is k ids + k probabilities + one gold id in the store's dtypes;
    ``total_bytes`` scales it by every response position the dataloader holds.
    """

    k: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]
    num_positions: int
    total_positions: int
    ids_dtype: str
    probs_dtype: str
    bytes_per_position: list[int]
    total_bytes: list[int]

    def rows(self) -> list[dict[str, float | int]]:
        columns = ("k", "mean", "min", "max", "bytes_per_position", "total_bytes")
        return [
            dict(zip(columns, values, strict=True))
            for values in zip(*(getattr(self, c) for c in columns), strict=True)
        ]


def _cumulative_topk(model: nn.Module, batch: Batch, max_k: int) -> torch.Tensor:
    """``[P, max_k]`` cumulative probability of the top-1..max_k tokens under the full softmax."""
    hidden, _, _ = response_hidden(model, batch)
    probs = torch.softmax(head_logits(model, hidden).float(), dim=-1)
    return probs.topk(max_k, dim=-1).values.double().cumsum(dim=-1).cpu()


def coverage(
    model: nn.Module,
    dataloader: Iterable[Batch],
    max_k: int = 100,
    max_positions: int = 2000,
    probs_dtype: str = "float16",
) -> CoverageResult:
    """Coverage at the first ``max_positions`` response positions of ``dataloader``.

    Statistics are running sums/min/max, so memory does not grow with ``max_positions``; the
    remaining batches are only counted (no model call) to size the whole store.
    """
    vocab = model.get_output_embeddings().weight.shape[0]
    max_k = min(max_k, vocab)
    total = np.zeros(max_k)
    low, high = np.full(max_k, np.inf), np.full(max_k, -np.inf)
    seen = total_positions = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in dataloader:
                total_positions += int(response_mask(batch["labels"]).sum())
                if seen >= max_positions:
                    continue
                cum = _cumulative_topk(model, batch, max_k)[: max_positions - seen].numpy()
                total += cum.sum(axis=0)
                low, high = (
                    np.minimum(low, cum.min(axis=0, initial=np.inf)),
                    np.maximum(high, cum.max(axis=0, initial=-np.inf)),
                )
                seen += len(cum)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the dataloader has no response positions (labels are all -100)")
    ids_dtype = ids_dtype_for(vocab)
    ks = np.arange(1, max_k + 1)
    per_position = ks * (ids_dtype.itemsize + np.dtype(probs_dtype).itemsize) + ids_dtype.itemsize
    return CoverageResult(
        k=ks.tolist(),
        mean=(total / seen).tolist(),
        min=low.tolist(),
        max=high.tolist(),
        num_positions=seen,
        total_positions=total_positions,
        ids_dtype=ids_dtype.name,
        probs_dtype=np.dtype(probs_dtype).name,
        bytes_per_position=per_position.tolist(),
        total_bytes=(per_position * total_positions).tolist(),
    )


@dataclass
class RankCalibration:
    """Per rank 1..k: mean stored probability and the fraction of positions where it is gold."""

    rank: list[int]
    mean_prob: list[float]
    accuracy: list[float]
    num_positions: int

    def rows(self) -> list[dict[str, float | int]]:
        return [
            {"rank": r, "mean_prob": p, "accuracy": a, "num_positions": self.num_positions}
            for r, p, a in zip(self.rank, self.mean_prob, self.accuracy, strict=True)
        ]


def rank_calibration(store: TeacherStore, max_positions: int | None = None) -> RankCalibration:
    """Rank-wise calibration over the store's positions (the first ``max_positions`` if given).

    A store with non-finite probabilities (a teacher whose outputs were NaN) is refused: its
    mean probabilities would be NaN, and a figure of NaN says nothing.
    """
    k = store.metadata.k
    prob_sum, hits, seen = np.zeros(k), np.zeros(k), 0
    non_finite, first_bad = 0, -1
    for ids, probs, gold in store.iter_blocks():
        if max_positions is not None:
            ids, probs, gold = (a[: max_positions - seen] for a in (ids, probs, gold))
        bad = ~np.isfinite(probs).all(axis=1)
        if bad.any() and first_bad < 0:
            first_bad = seen + int(np.argmax(bad))
        non_finite += int(bad.sum())
        prob_sum += probs.astype(np.float64).sum(axis=0)
        hits += (ids == gold[:, None]).sum(axis=0)
        seen += len(gold)
        if max_positions is not None and seen >= max_positions:
            break
    if seen == 0:
        raise ValueError(f"{store.path} has no positions")
    if non_finite:
        raise TeacherStoreError(
            f"{store.path}: {non_finite} of the {seen} positions read hold non-finite "
            f"probabilities (first at row {first_bad}); rank-wise calibration needs finite ones: "
            "extract the store again from a teacher whose outputs are finite"
        )
    return RankCalibration(
        rank=list(range(1, k + 1)),
        mean_prob=(prob_sum / seen).tolist(),
        accuracy=(hits / seen).tolist(),
        num_positions=seen,
    )


def plot_coverage(result: CoverageResult) -> Figure:
    """Mean cumulative probability with its min-max band, and the store size on a second axis."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(result.k, result.min, result.max, alpha=0.25, label="min-max")
    ax.plot(result.k, result.mean, marker=".", label="mean")
    ax.set(xscale="log", xlabel="top-k", ylabel="cumulative probability", ylim=(0, 1.02))
    ax.set_title(f"Top-k coverage ({result.num_positions} response positions)")
    size = ax.twinx()
    size.plot(
        result.k,
        np.asarray(result.total_bytes) / 2**20,
        color="tab:red",
        linestyle="--",
        label="store size",
    )
    size.set_ylabel(f"store size, MiB ({result.ids_dtype} ids, {result.probs_dtype} probs)")
    lines = ax.get_legend_handles_labels()
    more = size.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    return fig


def plot_rank_calibration(result: RankCalibration) -> Figure:
    """Grouped bars per rank: mean predicted probability next to actual accuracy."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(result.rank)
    ax.bar(x - 0.2, result.mean_prob, width=0.4, label="mean probability")
    ax.bar(x + 0.2, result.accuracy, width=0.4, label="accuracy (token = gold)")
    ax.set(xticks=x, xlabel="rank", ylabel="probability / accuracy", ylim=(0, 1))
    ax.set_title(f"Rank-wise calibration ({result.num_positions} response positions)")
    ax.legend()
    return fig


def _write(
    name: str, result: CoverageResult | RankCalibration, fig: Figure, out_dir: str | os.PathLike
) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "csv", "json")}
    fig.savefig(paths["png"], dpi=120)
    rows = result.rows()
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(asdict(result), indent=2))
    return paths


def write_coverage(result: CoverageResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Save ``coverage.png``, ``coverage.csv`` (one row per k) and ``coverage.json``."""
    return _write(COVERAGE_STEM, result, plot_coverage(result), out_dir)


def write_rank_calibration(result: RankCalibration, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Save ``rank_calibration.png``, ``.csv`` (one row per rank) and ``.json``."""
    return _write(RANK_CALIBRATION_STEM, result, plot_rank_calibration(result), out_dir)
