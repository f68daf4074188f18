"""Run folders: the files each command saves there, and when `fit` may write into one again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from robustness_world import CONFIGS, World

from first_pl.cli import main
from first_pl.run_folder import RunFolderError


def test_test_and_validate_save_config_named_by_command(world: World, tmp_path: Path) -> None:
    """README promises config_test.yaml; Lightning 2.6 passes an enum whose f-string is
    "TrainerFn.TESTING", which named the file config_TrainerFn.TESTING.yaml."""
    run = tmp_path / "eval"
    for command in ("test", "validate"):
        main(world.fit_args(run, "--ckpt_path", str(world.checkpoint), command=command))
    saved = sorted(p.name for p in run.glob("config*.yaml"))
    assert saved == ["config_test.yaml", "config_validate.yaml"]
    config = yaml.safe_load((run / "config_test.yaml").read_text())
    assert config["ckpt_path"] == str(world.checkpoint)


def test_rerun_after_a_failed_fit_is_not_another_run(world: World, tmp_path: Path) -> None:
    """A fit that failed before producing anything leaves only its config.yaml; rerunning with
    the corrected config writes the run there. A folder with a real run is still refused."""
    run = tmp_path / "run"
    missing = {"class_path": "first_pl.tasks.CommonsenseQA", "init_args": {"source": str(tmp_path / "gone.jsonl")}}  # fmt: skip
    with pytest.raises(ValueError, match="gone.jsonl does not exist"):
        main(world.fit_args(run, "--trainer.max_steps", "1", "--data.init_args.train_task", json.dumps(missing)))  # fmt: skip
    assert {p.name for p in run.iterdir()} <= {"config.yaml", "hparams.yaml", ".lock"}

    main(world.fit_args(run, "--trainer.max_steps", "1"))
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 1
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["train_task"]["class_path"] == "first_pl.tasks.GeneratedMC"

    with pytest.raises(RunFolderError, match=r"already holds another run: .*batch_size \(4 there, 2 now\)"):  # fmt: skip
        main(world.fit_args(run, "--trainer.max_steps", "1", "--data.init_args.batch_size", "2"))


def test_resume_may_train_longer_but_not_another_config(world: World, tmp_path: Path) -> None:
    """`--ckpt_path last` continues the run in its folder, with a larger max_epochs allowed."""
    run = tmp_path / "run"
    resumable = ["--config", str(CONFIGS / "trainer" / "resumable.yaml")]
    main(world.fit_args(run, *resumable))
    last = run / "checkpoints" / "last.ckpt"
    one_epoch = torch.load(last, weights_only=False)["global_step"]
    assert one_epoch > 0

    main(world.fit_args(run, *resumable, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert torch.load(last, weights_only=False)["global_step"] == 2 * one_epoch
    with pytest.raises(RunFolderError, match=r"differs in data\.init_args\.batch_size"):
        main(world.fit_args(run, *resumable, "--trainer.max_epochs", "3", "--data.init_args.batch_size", "2", "--ckpt_path", "last"))  # fmt: skip
