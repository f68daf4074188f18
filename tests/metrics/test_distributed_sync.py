"""Two gloo processes syncing the Metrics give exactly the one-process value on the union."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from first_pl.metrics.calibration import (
    CandidateBrierScore,
    CandidateNLL,
    ExpectedCalibrationError,
    MultipleChoiceCalibration,
    ReliabilityBins,
    TrustScore,
)


def _shards(world: int) -> list[list[dict]]:
    """Deterministic EvalOutputs per rank; rank 1 gets a different number of batches."""
    g = torch.Generator().manual_seed(0)
    shards = []
    for rank in range(world):
        outs = []
        for _ in range(2 + rank):
            b, c = 37, 4
            probs = torch.rand(b, c, generator=g) * 0.25
            mask = torch.ones(b, c, dtype=torch.bool)
            mask[:5, 3] = False
            probs = probs * mask
            gold = torch.randint(3, (b,), generator=g)
            pred = probs.argmax(-1)
            conf = probs.gather(1, pred[:, None])[:, 0] * 3.5
            outs.append(
                {
                    "candidate_probs": probs,
                    "candidate_mask": mask,
                    "gold": gold,
                    "pred": pred,
                    "confidence": conf.clamp(max=1.0),
                    "correct": pred == gold,
                }
            )
        shards.append(outs)
    return shards


def _metrics() -> dict:
    return {
        "ece_l1": ExpectedCalibrationError(),
        "ece_l2_mass": ExpectedCalibrationError(binning="equal_mass", norm="l2"),
        "ece_max": ExpectedCalibrationError(norm="max"),
        "trust": TrustScore(),
        "bins": ReliabilityBins(),
        "brier": CandidateBrierScore(),
        "nll": CandidateNLL(),
        "mc": MultipleChoiceCalibration(),
    }


def _evaluate(outputs: list[dict]) -> dict:
    metrics = _metrics()
    for o in outputs:
        for name, metric in metrics.items():
            if name == "mc":
                metric.update(o)
            elif name in ("brier", "nll"):
                metric.update(o["candidate_probs"], o["candidate_mask"], o["gold"])
            else:
                metric.update(o["confidence"], o["correct"])
    return {name: metric.compute() for name, metric in metrics.items()}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        result = _evaluate(_shards(world)[rank])
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    else:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=path)


@pytest.mark.slow
def test_two_process_sync_equals_union(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    union = _evaluate([o for shard in _shards(world) for o in shard])
    for rank in range(world):
        synced = torch.load(tmp_path / f"rank{rank}.pt")
        # the raw cat states arrive in rank order, which is the union's order here
        _assert_same(synced, union)
