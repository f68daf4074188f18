"""Both confidence kinds per task, the validation loss, and the learning curve file."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from synthetic_eval import SyntheticDataModule, SyntheticModule

from first_pl.callbacks import CalibrationEvaluation, LastStepValidation
from first_pl.methods.scoring import choice_output
from first_pl.metrics.functional import expected_calibration_error


class OptionScored(SyntheticModule):
    """Option log-likelihood-like scores: 3 log p - 40, far below float32's smallest probability
    once exponentiated for some options, so the renormalised confidence must come from them."""

    scoring = "option_loglik"

    def evaluate(self, batch: dict) -> dict:
        mask = batch["candidate_mask"]
        scores = 3 * batch["candidate_probs"].clamp_min(1e-30).log() - 40
        return choice_output(scores, mask, batch, self.scoring)


def run_test(tmp_path, module, **kwargs) -> tuple[dict, dict, object]:
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        callbacks=[CalibrationEvaluation(n_resamples=50, **kwargs)],
    )  # fmt: skip
    dm = SyntheticDataModule({"a": 60})
    trainer.test(module, datamodule=dm)
    entry = json.loads((tmp_path / "metrics_test.json").read_text())["tasks"]["a"]
    return entry, {k: v.item() for k, v in trainer.callback_metrics.items()}, dm.tasks[0]


def dense_reference(task) -> dict[str, float]:
    scores = 3 * task.probs.clamp_min(1e-30).log().double() - 40
    scores = scores.masked_fill(~task.mask, float("-inf"))
    pred = scores.argmax(-1)
    correct = pred == task.gold
    full = scores.exp().gather(1, pred[:, None])[:, 0]
    renormalised = scores.softmax(-1).gather(1, pred[:, None])[:, 0]
    return {
        "acc": 100 * correct.double().mean().item(),
        "ece_full_vocab": 100 * expected_calibration_error(full, correct).item(),
        "ece_renormalised": 100 * expected_calibration_error(renormalised, correct).item(),
        "loss": -scores.gather(1, task.gold[:, None]).mean().item(),
    }


def test_option_scoring_reports_renormalised_and_both_kinds(tmp_path):
    entry, logged, task = run_test(tmp_path, OptionScored())
    ref = dense_reference(task)
    assert entry["scoring"] == "option_loglik" and entry["confidence_kind"] == "renormalised"
    assert entry["ece"] == pytest.approx(ref["ece_renormalised"], abs=1e-4)
    assert entry["acc"] == pytest.approx(ref["acc"])
    assert entry["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    for kind in ("full_vocab", "renormalised"):
        assert entry["by_confidence"][kind]["ece"] == pytest.approx(ref[f"ece_{kind}"], abs=1e-4)
        assert entry[f"ece_{kind}"] == pytest.approx(ref[f"ece_{kind}"], abs=1e-4)
        assert logged[f"test/a/ece_{kind}"] == pytest.approx(ref[f"ece_{kind}"], abs=1e-3)
        assert sum(entry["by_confidence"][kind]["bins"]["count"]) == 60
    assert ref["ece_full_vocab"] != pytest.approx(ref["ece_renormalised"], abs=1)
    assert logged["test/a/trust"] == pytest.approx(ref["acc"] - ref["ece_renormalised"], abs=1e-3)


def test_token_scoring_keeps_the_papers_full_vocab_confidence(tmp_path):
    module = OptionScored()
    module.scoring = "first_token"
    entry, _, task = run_test(tmp_path, module)
    assert entry["confidence_kind"] == "full_vocab"
    assert entry["ece"] == pytest.approx(dense_reference(task)["ece_full_vocab"], abs=1e-4)
    forced, _, _ = run_test(tmp_path / "forced", module, confidence="renormalised")
    assert forced["confidence_kind"] == "renormalised"


@pytest.mark.parametrize("last_step", [False, True])
def test_validation_during_fit_appends_the_learning_curve(tmp_path, last_step):
    dm = SyntheticDataModule({"a": 40, "b": 30})
    callbacks = [CalibrationEvaluation(n_resamples=20)] + ([LastStepValidation()] if last_step else [])
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, max_steps=5, val_check_interval=2,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(SyntheticModule(), datamodule=dm)
    trainer.validate(SyntheticModule(), datamodule=dm)  # not part of the curve
    points = [json.loads(line) for line in (tmp_path / "val_curve.jsonl").read_text().splitlines()]
    steps = [2, 4, 5] if last_step else [2, 4]  # Lightning alone stops the curve at step 4
    assert [(p["global_step"], p["task"]) for p in points] == [(s, t) for s in steps for t in "ab"]
    assert trainer.global_step == 5
    final = json.loads((tmp_path / "metrics_val.json").read_text())["tasks"]["a"]
    for key in ("acc", "ece", "trust", "loss", "ece_renormalised"):
        assert points[-2][key] == pytest.approx(final[key])
    assert torch.isfinite(torch.tensor([p["loss"] for p in points])).all()


def test_last_step_validation_adds_no_second_point_on_a_multiple(tmp_path):
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, max_steps=4, val_check_interval=2,
        check_val_every_n_epoch=None, num_sanity_val_steps=0,
        callbacks=[CalibrationEvaluation(n_resamples=20), LastStepValidation()],
    )  # fmt: skip
    trainer.fit(SyntheticModule(), datamodule=SyntheticDataModule({"a": 40}))
    lines = (tmp_path / "val_curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in lines] == [2, 4]
