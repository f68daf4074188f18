"""The real CLI, fit then test, on a tiny model: the whole FineTune path in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from first_pl_testing import BIGBENCH, tiny_run_args

from first_pl.cli import main
from first_pl.methods import FineTune
from first_pl.methods.checkpoint import CheckpointError, load_method

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_args(model_dir: Path, run_dir: Path) -> list[str]:
    return tiny_run_args(model_dir, run_dir, "--trainer.enable_progress_bar", "false",
                         "--trainer.enable_model_summary", "false", "--evaluation.n_resamples", "50",
                         sizes=(32, 16, 24), batch_size=16)  # fmt: skip


def test_fit_then_test_logs_calibration_per_task(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    main(["fit", *tiny_args(tiny_model_dir, run), "--trainer.max_steps", "3"])
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    metrics = json.loads((run / "metrics_val.json").read_text())["tasks"]["generated"]
    assert 0 <= metrics["acc"] <= 100 and metrics["n"] == 16

    test_run = tmp_path / "test"
    main([
        "test", *tiny_args(tiny_model_dir, test_run),
        "--data.init_args.eval_tasks+=first_pl.tasks.GeneratedMC",
        "--data.init_args.eval_tasks.init_args.test_size=24",
        "--data.init_args.eval_tasks+=first_pl.tasks.BigBench",
        f"--data.init_args.eval_tasks.init_args.path={BIGBENCH / 'physics'}",
        "--data.init_args.eval_tasks.init_args.limit=10",
        "--ckpt_path", str(checkpoint),
    ])  # fmt: skip
    report = json.loads((test_run / "metrics_test.json").read_text())["tasks"]
    assert set(report) == {"generated", "physics"}
    for task, n in (("generated", 24), ("physics", 10)):
        figures = report[task]
        assert figures["n"] == n
        assert figures["trust"] == pytest.approx(figures["acc"] - figures["ece"])
    rows = (test_run / "predictions" / "test_physics.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("example_id")

    module = load_method(checkpoint, expect=FineTune)
    assert module.model.config.num_hidden_layers == 4
    with pytest.raises(CheckpointError, match="does not exist"):
        load_method(tmp_path / "nope.ckpt")


def test_unknown_config_key_and_unknown_task_fail_clearly(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_args(tiny_model_dir, tmp_path), "--model.init_args.optimizer.learning_rate", "1"])
    assert exit_info.value.code != 0
    assert "learning_rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", *tiny_args(tiny_model_dir, tmp_path), "--data.init_args.train_task", "first_pl.tasks.NoSuchTask"])
    assert "NoSuchTask" in capsys.readouterr().err
