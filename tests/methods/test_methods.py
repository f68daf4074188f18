"""Distill, LabelSmoothingDistill and FIRST: hand-built batches, then the real CLI on a real store."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from first_pl.cli import main
from first_pl.methods import FIRST, Distill, LabelSmoothingDistill
from first_pl.methods.checkpoint import load_method
from first_pl.methods.losses import distillation_loss
from first_pl.models import ModelSpec
from first_pl.teacher.parameter_search import CalibrationResult
from first_pl.teacher.transforms import (
    label_smooth,
    log_temperature_scale,
    renormalize,
    temperature_scale,
    with_tail,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
K = 4


def distill_batch(vocab: int, b: int = 3, length: int = 7, seed: int = 0) -> dict:
    """A batch in the distillation contract: responses at the last 3 positions of each row."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((b, length), -100)
    labels[:, -3:] = torch.randint(0, vocab, (b, 3), generator=g)
    mask = labels != -100
    ids = torch.stack([torch.randperm(vocab, generator=g)[:K] for _ in range(b * length)]).view(
        b, length, K
    )
    probs = (
        torch.softmax(torch.randn(b, length, K + 2, generator=g) * 2, -1)
        .sort(-1, descending=True)
        .values[..., :K]
    )
    return {
        "input_ids": torch.randint(0, vocab, (b, length), generator=g),
        "attention_mask": torch.ones(b, length, dtype=torch.long),
        "labels": labels,
        "example_id": [str(i) for i in range(b)],
        "teacher_ids": ids * mask.unsqueeze(-1),
        "teacher_probs": probs * mask.unsqueeze(-1),
    }


def built(cls, model_dir: Path, **kwargs):
    module = cls(model=ModelSpec(name_or_path=str(model_dir)), **kwargs)
    module.configure_model()
    return module


def step_loss(module, batch) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        return module.training_step(batch, 0)


def expected_loss(
    module, batch, target, ce_weight: float = 0.0, renormalize_student: bool = False, tail=False
):
    logits, targets, mask = module.response_logits(batch)
    return distillation_loss(
        logits, batch["teacher_ids"][mask], target, targets, ce_weight, renormalize_student, tail
    )


@pytest.mark.parametrize(
    ("cls", "kwargs", "transform"),
    [
        (Distill, {}, renormalize),
        (Distill, {"renormalize_targets": False}, lambda p: p),
        (Distill, {"ce_weight": 0.3, "renormalize_student": True}, renormalize),
        (LabelSmoothingDistill, {"delta": 0.1}, lambda p: label_smooth(p, 0.1)),
        (FIRST, {"temperature": 0.3}, lambda p: temperature_scale(p, 0.3)),
        (
            FIRST,
            {"temperature": 2.0, "transform": "log_temperature"},
            lambda p: log_temperature_scale(p, 2.0),
        ),
        (Distill, {"tail_bucket": True}, lambda p: with_tail(p)),
        (
            LabelSmoothingDistill,
            {"delta": 0.1, "tail_bucket": True},
            lambda p: label_smooth(with_tail(p), 0.1),
        ),
        (
            FIRST,
            {"temperature": 0.3, "tail_bucket": True},
            lambda p: temperature_scale(with_tail(p), 0.3),
        ),
        (
            FIRST,
            {"temperature": 2.0, "transform": "log_temperature", "tail_bucket": True},
            lambda p: log_temperature_scale(with_tail(p), 2.0),
        ),
    ],
)
def test_loss_is_distillation_loss_on_the_transformed_target(
    tiny_model_dir, cls, kwargs, transform
):
    module = built(cls, tiny_model_dir, **kwargs)
    batch = distill_batch(module.model.config.vocab_size)
    mask = batch["labels"] != -100
    target = transform(batch["teacher_probs"][mask])
    want = expected_loss(
        module,
        batch,
        target,
        kwargs.get("ce_weight", 0.0),
        kwargs.get("renormalize_student", False),
        kwargs.get("tail_bucket", False),
    )
    got = step_loss(module, batch)
    torch.testing.assert_close(got, want)
    got.backward()
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)


def test_first_with_huge_temperature_targets_uniform(tiny_model_dir):
    module = built(FIRST, tiny_model_dir, temperature=1.0)
    module.temperature = 1e6  # the limit c -> inf, past the documented range FIRST accepts
    batch = distill_batch(module.model.config.vocab_size)
    mask = batch["labels"] != -100
    target = module.teacher_target(batch["teacher_probs"][mask])
    torch.testing.assert_close(target, torch.full_like(target, 1 / K))
    torch.testing.assert_close(
        step_loss(module, batch), expected_loss(module, batch, torch.full_like(target, 1 / K))
    )


def test_label_smoothing_beyond_top1_warns(tiny_model_dir):
    module = built(LabelSmoothingDistill, tiny_model_dir, delta=0.9)
    batch = distill_batch(module.model.config.vocab_size)
    with pytest.warns(UserWarning, match="exceeds the renormalised top-1"):
        module.training_step(batch, 0)


def test_auto_temperature_reads_calibration_json(tmp_path):
    path = tmp_path / "calibration.json"
    CalibrationResult(0.26, "ece", 0.02, [(0.2, 0.03), (0.26, 0.02)], 0.05, 0.02, 0.8, 100).to_json(
        path
    )
    module = FIRST(temperature="auto", calibration=str(path))
    assert module.temperature == 0.26
    assert module.hparams["temperature"] == 0.26  # a checkpoint reloads without the file
    assert FIRST(temperature=0.5, calibration=str(path)).temperature == 0.5


def _result(path, transform: str, value: float, tail: bool = False) -> str:
    curve = [(value, 0.02)]
    CalibrationResult(value, "ece", 0.02, curve, 0.05, 0.02, 0.8, 100, {}, transform, tail).to_json(
        path
    )
    return str(path)


def test_auto_reads_the_calibrated_transform_and_refuses_another(tmp_path):
    log_t = _result(tmp_path / "t.json", "log_temperature", 2.5)
    module = FIRST(calibration=log_t)
    assert (module.transform, module.temperature) == ("log_temperature", 2.5)
    assert module.hparams["transform"] == "log_temperature"
    with pytest.raises(
        ValueError,
        match="calibrated transform 'log_temperature', but this method applies 'prob_temperature'",
    ):
        FIRST(calibration=log_t, transform="prob_temperature")
    delta = _result(tmp_path / "d.json", "label_smoothing", 0.15)
    with pytest.raises(ValueError, match="calibrated transform 'label_smoothing'"):
        FIRST(calibration=delta)
    ls = LabelSmoothingDistill(delta="auto", calibration=delta)
    assert ls.delta == 0.15 and ls.hparams["delta"] == 0.15
    with pytest.raises(ValueError, match="calibrate --transform label_smoothing"):
        LabelSmoothingDistill(delta="auto", calibration=log_t)


def test_auto_refuses_a_calibration_made_with_another_tail_setting(tmp_path):
    tail = _result(tmp_path / "c.json", "prob_temperature", 0.3, tail=True)
    assert FIRST(calibration=tail, tail_bucket=True).temperature == 0.3
    with pytest.raises(
        ValueError, match="calibrated with tail_bucket=True but this method has tail_bucket=False"
    ):
        FIRST(calibration=tail)


def test_auto_refuses_a_calibration_chosen_on_the_train_split_unless_it_was_deliberate(tmp_path):
    path = tmp_path / "c.json"
    result = CalibrationResult(
        0.3, "ece", 0.02, [(0.3, 0.02)], 0.05, 0.02, 0.8, 100, {"split": "train"}
    )
    result.to_json(path)
    with pytest.raises(
        ValueError, match="was chosen on the train split; calibrate on the validation store"
    ):
        FIRST(calibration=str(path))
    result.settings["allow_split"] = True
    result.to_json(path)
    assert FIRST(calibration=str(path)).temperature == 0.3


def test_tail_bucket_excludes_renormalized_student():
    with pytest.raises(ValueError, match="tail_bucket=True needs renormalize_student=False"):
        Distill(tail_bucket=True, renormalize_student=True)


def test_invalid_settings_fail_with_the_argument_named(tmp_path):
    with pytest.raises(ValueError, match="needs calibration="):
        FIRST(temperature="auto")
    with pytest.raises(ValueError, match="does not exist"):
        FIRST(calibration=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"temperature": 0.3}))
    with pytest.raises(ValueError, match="not a calibration result"):
        FIRST(calibration=str(tmp_path / "bad.json"))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            FIRST(temperature=bad)
    with pytest.raises(ValueError, match="temperature must be a number"):
        FIRST(temperature="hot")
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="delta must be in"):
            LabelSmoothingDistill(delta=bad)
    with pytest.raises(ValueError, match="ce_weight"):
        Distill(ce_weight=1.5)


def test_batch_without_teacher_arrays_points_to_distill_datamodule(tiny_model_dir):
    module = built(Distill, tiny_model_dir)
    batch = distill_batch(module.model.config.vocab_size)
    del batch["teacher_ids"], batch["teacher_probs"]
    with pytest.raises(ValueError, match="no teacher_ids / teacher_probs.*DistillDataModule"):
        step_loss(module, batch)


# -- end to end through the CLI on a store extracted from the tiny model ----------------------


def data_args(model_dir: Path) -> list[str]:
    return [
        "--config", str(CONFIGS / "data" / "generated.yaml"),
        "--data.init_args.tokenizer", str(model_dir),
        "--data.init_args.train_task.init_args.train_size", "16",
        "--data.init_args.train_task.init_args.validation_size", "8",
        "--data.init_args.train_task.init_args.test_size", "8",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def train_store(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model's top-k over the training split, written by `first-pl extract`."""
    out = tmp_path_factory.mktemp("store") / "train.h5"
    main(
        [
            "extract",
            *data_args(tiny_model_dir),
            "--teacher",
            str(tiny_model_dir),
            "--output",
            str(out),
            "--k",
            "5",
            "--progress",
            "false",
        ]
    )
    return out


def fit_args(config: str, model_dir: Path, store: Path, run: Path) -> list[str]:
    return [
        "fit",
        "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
        *data_args(model_dir),
        "--data.class_path", "first_pl.data.distill_datamodule.DistillDataModule",
        "--data.init_args.store", str(store),
        "--data.init_args.batch_size", "4",
        "--data.init_args.shuffle", "false",
        "--config", str(CONFIGS / "model" / config),
        "--model.init_args.model.name_or_path", str(model_dir),
        "--model.init_args.model.keep_layers", "[0, 2]",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.limit_val_batches", "0",
        "--seed_everything", "0",
    ]  # fmt: skip


def train_losses(run: Path) -> list[float]:
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("train/loss")
    return [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]


@pytest.mark.parametrize(
    ("config", "extra", "cls"),
    [
        ("distill.yaml", [], Distill),
        ("label_smoothing_distill.yaml", [], LabelSmoothingDistill),
        ("first.yaml", ["--model.init_args.temperature", "0.3"], FIRST),
    ],
)
def test_every_method_trains_through_the_cli(
    tiny_model_dir, train_store, tmp_path, config, extra, cls
):
    run = tmp_path / "run"
    main([*fit_args(config, tiny_model_dir, train_store, run), *extra, "--trainer.max_steps", "4"])
    losses = train_losses(run)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    module = load_method(checkpoint, expect=cls)
    assert module.model.config.num_hidden_layers == 2  # 4 layers, keep_layers [0, 2]
    if cls is FIRST:
        assert module.temperature == 0.3


def test_resume_continues_the_same_loss_curve(tiny_model_dir, train_store, tmp_path):
    """4 steps straight (checkpointing every 2) vs resuming the step-2 checkpoint for steps 3-4.

    16 examples in batches of 8: the step-2 checkpoint falls on an epoch boundary, where
    Lightning resumes exactly (mid-epoch it would replay the epoch's first batches).
    """
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = [
        "--data.init_args.batch_size", "8",
        "--trainer.max_epochs", "2",
        "--trainer.max_steps", "4",
    ]  # fmt: skip
    main(
        [
            *fit_args("distill.yaml", tiny_model_dir, train_store, straight),
            *common,
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.init_args.every_n_train_steps=2",
            "--trainer.callbacks.init_args.save_top_k=-1",
        ]
    )
    step2 = straight / "checkpoints" / "epoch=0-step=2.ckpt"
    fit = fit_args("distill.yaml", tiny_model_dir, train_store, resumed)
    main([*fit, *common, "--ckpt_path", str(step2)])
    whole = train_losses(straight)
    assert len(whole) == 4
    torch.testing.assert_close(torch.tensor(train_losses(resumed)), torch.tensor(whole[2:]))
