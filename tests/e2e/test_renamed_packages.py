"""Configs and checkpoints that use the old names keep working: the packages `first_pl.modules`
(now `first_pl.methods`) and `first_pl.knowledge` (now `first_pl.teacher`), and the checkpoint
entry `first_pl_strategy` (now `METHOD_KEY`) that names the method."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli_finetune import CONFIGS, tiny_args

import first_pl.methods.base
import first_pl.teacher.transforms
from first_pl._renamed import new_name
from first_pl.cli import main
from first_pl.methods.base import METHOD_KEY


def test_old_names_are_the_same_modules():
    import first_pl.knowledge.transforms as old_transforms
    import first_pl.modules.base as old_base
    from first_pl.modules import FIRST as old_first

    assert old_base is first_pl.methods.base
    assert old_transforms is first_pl.teacher.transforms
    assert old_first is first_pl.methods.FIRST
    assert new_name("first_pl.modules.distill") == "first_pl.methods.distill"
    assert new_name("first_pl.modulesx") is None and new_name("first_pl.models") is None


def test_a_checkpoint_and_config_written_before_the_rename_still_load_and_test(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    main(["fit", *tiny_args(tiny_model_dir, run), "--trainer.max_steps", "2"])
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")

    # The same checkpoint as the old code wrote it: the method under the old key, and the class
    # paths it records (hyper_parameters `_class_path`, the method entry) under first_pl.modules.
    # (The legacy torch format is one pickle stream, so an equal-length rename of its strings is
    # exact.)
    legacy = tmp_path / "legacy.ckpt"
    old = torch.load(checkpoint, weights_only=False)
    old["first_pl_strategy"] = old.pop(METHOD_KEY)
    torch.save(old, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    assert b"first_pl.methods.finetune.FineTune" in raw
    legacy.write_bytes(raw.replace(b"first_pl.methods", b"first_pl.modules"))
    old_config = tmp_path / "finetune_old.yaml"
    new_text = (CONFIGS / "model" / "finetune_smollm2.yaml").read_text()
    assert "class_path: first_pl.methods.FineTune" in new_text
    old_config.write_text(new_text.replace("first_pl.methods", "first_pl.modules"))

    figures = {}
    for name, config, ckpt in (("new", None, checkpoint), ("old", old_config, legacy)):
        args = tiny_args(tiny_model_dir, tmp_path / name)
        if config is not None:
            args += ["--config", str(config), "--model.init_args.model.name_or_path", str(tiny_model_dir)]
        main(["test", *args, "--ckpt_path", str(ckpt)])
        figures[name] = json.loads((tmp_path / name / "metrics_test.json").read_text())["tasks"]["generated"]
    assert figures["old"]["n"] == figures["new"]["n"] == 24
    for key in ("acc", "ece", "nll"):
        assert figures["old"][key] == pytest.approx(figures["new"][key])
