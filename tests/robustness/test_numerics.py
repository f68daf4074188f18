"""Numerical edge cases: saturated low-precision logits, confidences of exactly 0 and 1, batches
with no response position or one example, and empty evaluation splits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from robustness_world import World, data_section

from first_pl.cli import main
from first_pl.methods.losses import distillation_loss, hard_label_ce, sparse_topk_kl
from first_pl.methods.multiple_choice import candidate_output
from first_pl.metrics.functional import calibration_bins, expected_calibration_error

V, K = 50, 5


def saturated_logits(dtype: torch.dtype, p: int = 6) -> torch.Tensor:
    big = torch.finfo(dtype).max / 4
    logits = torch.full((p, V), -big, dtype=dtype)
    logits[:, 0] = big  # softmax is exactly one-hot in any precision
    logits[1, :] = big  # a row of ties
    return logits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("renormalize_student", [False, True])
def test_losses_stay_finite_on_saturated_low_precision_logits(dtype, renormalize_student) -> None:
    logits = saturated_logits(dtype).requires_grad_()
    ids = torch.arange(K).expand(6, K).clone()
    probs = (
        torch.tensor([0.6, 0.2, 0.1, 0.0, 0.0]).expand(6, K).clone()
    )  # fp16 stores underflow to 0
    targets = torch.zeros(6, dtype=torch.long)
    for loss in (
        sparse_topk_kl(logits, ids, probs, renormalize_student),
        distillation_loss(logits, ids, probs, targets, 0.5, renormalize_student),
        hard_label_ce(logits, targets),
    ):
        assert torch.isfinite(loss), loss
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_candidate_output_on_saturated_logits(dtype) -> None:
    logits = saturated_logits(dtype, p=3)
    batch = {
        "candidate_ids": torch.tensor([[0, 1, 2], [0, 1, -1], [3, 4, 0]]),
        "gold": torch.tensor([0, 1, 2]),
        "example_id": ["a", "b", "c"],
    }
    out = candidate_output(torch.log_softmax(logits.float(), dim=-1), batch)
    assert torch.isfinite(out["candidate_probs"]).all() and torch.isfinite(out["confidence"]).all()
    assert out["confidence"][0] == 1.0 and out["pred"][0] == 0  # saturated: exactly one-hot
    assert out["candidate_probs"][1, 2] == 0 and not out["candidate_mask"][1, 2]
    assert out["confidence"].min() >= 0 and out["confidence"].max() <= 1


def test_metrics_with_confidence_exactly_zero_and_one() -> None:
    confidence = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5])
    correct = torch.tensor([False, True, True, False, True])
    ece = expected_calibration_error(confidence, correct, n_bins=10)
    assert torch.isfinite(ece) and 0 <= ece <= 1
    bins = calibration_bins(confidence, correct, n_bins=10)
    counts = bins["count"] if isinstance(bins, dict) else bins[0]
    assert int(counts.sum()) == 5  # 0 falls in the first bin and 1 in the last, none lost
    assert expected_calibration_error(torch.ones(3), torch.ones(3, dtype=torch.bool)) == 0
    assert expected_calibration_error(torch.zeros(3), torch.zeros(3, dtype=torch.bool)) == 0


@pytest.fixture(scope="module")
def strategies(world: World):
    from first_pl.methods import FIRST, FineTune
    from first_pl.models import ModelSpec

    spec = ModelSpec(name_or_path=str(world.model_dir))
    modules = [FineTune(model=spec), FIRST(model=spec, temperature=0.5)]
    for module in modules:
        module.configure_model()
        module.log = lambda *args, **kwargs: None  # no trainer attached
    return modules


def batch_of(world: World, n: int, mask_all: bool = False) -> dict:
    from robustness_world import TASK

    from first_pl.data.distill_datamodule import DistillDataModule
    from first_pl.tasks import GeneratedMC

    data = DistillDataModule(store=str(world.train_store), tokenizer=str(world.model_dir),
                             train_task=GeneratedMC(**TASK), max_length=64)  # fmt: skip
    batch = data.collate_distill(data.distill_items()[:n])
    if mask_all:
        batch["labels"][:] = -100
    return batch


@pytest.mark.parametrize(
    "n, mask_all",
    [(3, True), (1, False), (1, True)],
    ids=["all-masked", "one-example", "one-masked"],
)
def test_training_step_on_masked_and_single_example_batches(world, strategies, n, mask_all) -> None:
    batch = batch_of(world, n, mask_all)
    for module in strategies:
        loss = module.training_step(batch, 0)
        assert torch.isfinite(loss)
        if mask_all:
            assert loss == 0
        loss.backward()  # a zero loss still has a graph, so every rank can run backward
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        module.zero_grad()


def test_evaluation_of_a_single_example(world, strategies) -> None:
    from robustness_world import TASK

    from first_pl.data.qa_datamodule import QADataModule
    from first_pl.tasks import GeneratedMC

    data = QADataModule(
        tokenizer=str(world.model_dir), train_task=GeneratedMC(**TASK), max_length=64
    )
    batch = data.collate_eval(data.examples(data.train_task, "test")[:1])
    with torch.no_grad():
        out = strategies[0].evaluate(batch)
    assert out["pred"].shape == (1,) and torch.isfinite(out["confidence"]).all()


def test_empty_evaluation_split_warns_and_writes_nothing_for_that_task(
    world: World, tmp_path: Path
) -> None:
    empty = {"class_path": "first_pl.tasks.BigBench", "init_args": {
        "path": str(write_bigbench(tmp_path)), "name": "empty", "test_fraction": 0.0}}  # fmt: skip
    generated = data_section(world.model_dir)["init_args"]["train_task"]
    config = tmp_path / "data.yaml"
    config.write_text(
        yaml.safe_dump({"data": data_section(world.model_dir, eval_tasks=[generated, empty])})
    )
    run = tmp_path / "test"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(world.fit_args(run, "--ckpt_path", str(world.checkpoint), data=config, command="test"))
    assert any("test/empty is empty; nothing logged" in str(w.message) for w in caught)
    assert set(json.loads((run / "metrics_test.json").read_text())["tasks"]) == {"generated"}
    assert not (run / "predictions" / "test_empty.csv").exists()
    assert not (run / "reliability" / "test_empty.png").exists()


def write_bigbench(tmp: Path) -> Path:
    examples = [{"input": f"Which is {i}?", "target_scores": {"yes": 1, "no": 0}} for i in range(6)]
    path = tmp / "empty_task.json"
    path.write_text(json.dumps({"examples": examples}))
    return path
