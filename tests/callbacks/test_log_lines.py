"""Logs a person can follow without a terminal: plain progress lines when stdout is a file,
one results table per test, learning rate and tokens/s in every logger, stable W&B run ids, and
no known third-party noise unless `first-pl --verbose`."""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from first_pl_testing import BIGBENCH, tiny_run_args
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar

from first_pl.callbacks.progress_lines import LineProgress, results_table
from first_pl.callbacks.throughput import TokenThroughput
from first_pl.callbacks.wandb_logging import OfflineAwareWandbLogger, stable_run_id
from first_pl.cli import main
from first_pl.noise import VERBOSE_ENV, configure_third_party_noise, wandb_settings
from first_pl.pipeline.stage_logging import finish_wandb_run
from first_pl.trainer import default_callbacks

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
TRAIN_LINE = re.compile(
    r"^train step (\d+)/6 \(\d+%\) \| loss \d+\.\d{4} \| lr [0-9.e-]+ \| [\d,]+ tok/s \| "
    r"\d\d:\d\d elapsed \| ETA \d\d:\d\d$"
)
VAL_LINE = re.compile(
    r"^val step (\d+)/6 \| generated: Acc \d+\.\d\d ECE \d+\.\d\d Trust -?\d+\.\d\d loss \d+\.\d{4}$"
)


def base_args(model_dir: Path, run: Path) -> list[str]:
    return tiny_run_args(model_dir, run, "--trainer.enable_model_summary", "false",
                         "--evaluation.n_resamples", "20", sizes=(48, 8, 8))  # fmt: skip


def fit_args(model_dir: Path, run: Path) -> list[str]:
    """6 steps of 8 examples (one epoch), validating at steps 3 and 6, logging every 2 steps."""
    return [*base_args(model_dir, run), "--trainer.max_steps", "6",
            "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps", "2"]  # fmt: skip


def redirected_fit(model_dir: Path, run: Path, *before: str) -> subprocess.CompletedProcess:
    """`first-pl [before] fit` in a fresh process whose stdout and stderr are pipes (no TTY)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(VERBOSE_ENV, None)
    command = [sys.executable, "-m", "first_pl", *before, "fit", *fit_args(model_dir, run)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=ROOT)


@pytest.mark.slow
def test_a_redirected_fit_prints_lines_and_no_third_party_noise(tiny_model_dir, tmp_path):
    done = redirected_fit(tiny_model_dir, tmp_path / "run")
    lines = done.stdout.splitlines()
    trained = [int(m[1]) for m in map(TRAIN_LINE.match, lines) if m]
    validated = [int(m[1]) for m in map(VAL_LINE.match, lines) if m]
    assert trained[0] == 1 and trained[-1] == 6, done.stdout  # first step, then by time, last
    assert validated == [3, 6], done.stdout
    assert "Tip" not in done.stderr and "LeafSpec" not in done.stderr, done.stderr
    assert "Epoch" not in done.stdout  # no Rich bar rendered at the epoch's end

    verbose = redirected_fit(tiny_model_dir, tmp_path / "verbose", "--verbose")
    assert "💡 Tip: For seamless cloud" in verbose.stderr
    assert "`isinstance(treespec, LeafSpec)` is deprecated" in verbose.stderr


def fake_trainer(step: int, total: int = 100, lr: float = 1e-4, callbacks=()) -> SimpleNamespace:
    optimizer = SimpleNamespace(param_groups=[{"lr": lr}])
    return SimpleNamespace(global_step=step, estimated_stepping_batches=total, is_global_zero=True,
                           optimizers=[optimizer], callbacks=list(callbacks))  # fmt: skip


@pytest.mark.parametrize(("every_seconds", "every_steps", "printed"),
                         [(30.0, 0, [1, 4, 7, 10, 12]), (1000.0, 5, [1, 5, 10, 12])])  # fmt: skip
def test_lines_come_every_30_s_or_every_n_steps(monkeypatch, capsys, every_seconds, every_steps, printed):
    """A step takes 10 s on the fake clock: every 30 s is every third step; the first and
    the last step always print, and the loss is the mean since the previous line."""
    now = [0.0]
    monkeypatch.setattr("first_pl.callbacks.progress_lines.time.monotonic", lambda: now[0])
    progress = LineProgress(every_seconds=every_seconds, every_steps=every_steps)
    progress.on_train_start(fake_trainer(0, 12), None)
    for step in range(1, 13):
        now[0] += 10.0
        progress.on_train_batch_end(fake_trainer(step, 12), None, {"loss": torch.tensor(float(step))}, {}, step)
    lines = capsys.readouterr().out.splitlines()
    assert [int(re.match(r"train step (\d+)/12", line)[1]) for line in lines] == printed
    if every_steps == 0:
        assert lines[1] == "train step 4/12 (33%) | loss 3.0000 | lr 0.0001 | 00:40 elapsed | ETA 01:20"


def test_tokens_per_second_counts_real_tokens_between_lines(monkeypatch, capsys):
    throughput = TokenThroughput()
    throughput._tokens, throughput.seconds = 6000, 3.0  # what it counted by the second line
    progress = LineProgress(every_steps=1)
    trainer = fake_trainer(0, 10, callbacks=[throughput])
    progress.on_train_start(trainer, None)  # a resumed fit: counting starts here
    throughput._tokens, throughput.seconds = 8000, 4.0
    progress.on_train_batch_end(fake_trainer(1, 10, callbacks=[throughput]), None, None, {}, 0)
    assert "| 2,000 tok/s |" in capsys.readouterr().out


def test_line_progress_replaces_the_bar_only_without_a_terminal():
    kinds = lambda callbacks: [type(c) for c in callbacks]  # noqa: E731
    assert kinds(default_callbacks(None, True, True, terminal=False)) == [
        TokenThroughput, LineProgress, LearningRateMonitor]  # fmt: skip
    assert kinds(default_callbacks(None, True, True, terminal=True)) == [
        TokenThroughput, LearningRateMonitor]  # fmt: skip
    assert kinds(default_callbacks(None, False, False, terminal=False)) == [TokenThroughput]
    rich = RichProgressBar()
    assert default_callbacks([rich], True, False, terminal=False)[1:] == [rich]


def eval_args(model_dir: Path, run: Path) -> list[str]:
    return [
        *base_args(model_dir, run),
        "--data.init_args.eval_tasks+=first_pl.tasks.GeneratedMC",
        "--data.init_args.eval_tasks.init_args.test_size=8",
        "--data.init_args.eval_tasks+=first_pl.tasks.BigBench",
        f"--data.init_args.eval_tasks.init_args.path={BIGBENCH / 'physics'}",
        "--data.init_args.eval_tasks.init_args.limit=6",
    ]  # fmt: skip


def test_the_test_table_lists_each_task_once(tiny_model_dir, tmp_path, capsys):
    main(["test", *eval_args(tiny_model_dir, tmp_path / "test")])
    out = capsys.readouterr().out
    assert "DataLoader" not in out  # Lightning's table per dataloader
    table = out[out.index("test results") :].splitlines()
    assert re.fullmatch(r"task\s+Acc\s+ECE\s+Trust\s+loss", table[1])
    assert [row.split()[0] for row in table[2:4]] == ["generated", "physics"]
    assert all(len(row.split()) == 5 for row in table[2:4])


def test_results_table_merges_the_dataloaders_repeats():
    repeated = {"test/a/acc": 50.0, "test/a/ece": 10.0, "test/a/trust": 40.0, "test/a/loss": 0.5,
                "test/b/acc": 75.0, "test/b/ece": 5.0, "test/b/trust": 70.0, "test/b/loss": 0.25,
                "test/a/brier": 0.1}  # fmt: skip
    assert results_table([repeated, repeated, repeated], "test").splitlines()[1:] == [
        "task      Acc      ECE    Trust     loss",
        "a       50.00    10.00    40.00   0.5000",
        "b       75.00     5.00    70.00   0.2500",
    ]


def test_learning_rate_and_tokens_per_second_reach_the_logger(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    main(["fit", *fit_args(tiny_model_dir, run)])
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["train/tokens_per_s"]) for r in rows if r.get("train/tokens_per_s")]
    lrs = [float(r["train/lr"]) for r in rows if r.get("train/lr")]
    assert len(rates) == 3 and all(rate > 0 for rate in rates)  # steps 2, 4, 6
    assert len(lrs) == 3 and lrs[0] > lrs[-1] >= 0  # the cosine schedule decays


def test_two_fits_into_one_run_folder_continue_one_wandb_run(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*base_args(tiny_model_dir, run),
            "--trainer.logger", "first_pl.callbacks.OfflineAwareWandbLogger",
            "--trainer.logger.init_args.save_dir", str(run),
            "--trainer.logger.init_args.name", "teacher",
            "--config", str(CONFIGS / "trainer" / "resumable.yaml")]  # fmt: skip
    try:
        main(["fit", *args, "--trainer.max_steps", "3"])
        finish_wandb_run()
        main(["fit", *args, "--trainer.max_steps", "6", "--ckpt_path", "last"])
    finally:
        finish_wandb_run()
    # offline-run-<date>_<time>-<run id>, one folder per fit
    runs = sorted(f.name.split("-", 3)[-1] for f in (run / "wandb").glob("offline-run-*"))
    assert runs == [stable_run_id(run, "teacher", None)] * 2


def test_wandb_run_ids_differ_by_folder_and_job():
    assert stable_run_id("/a/teacher-1", "teacher", "fit") == stable_run_id("/a/teacher-1", "teacher", "fit")
    assert stable_run_id("/a/teacher-1", "teacher", "fit") != stable_run_id("/b/teacher-1", "teacher", "fit")
    assert stable_run_id("/a/t", "teacher", "fit") != stable_run_id("/a/t", "teacher", "test")
    assert re.fullmatch(r"teacher-test-[0-9a-f]{12}", stable_run_id("/a/t", "teacher-test", "test"))


def test_wandb_is_quiet_unless_verbose(monkeypatch, tmp_path):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    logger = OfflineAwareWandbLogger(save_dir=str(tmp_path), offline=True, name="s")
    assert logger._wandb_init["settings"] == {"quiet": True}
    assert logger._wandb_init["resume"] == "allow"
    assert logger._wandb_init["id"] == stable_run_id(tmp_path, "s", None)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert wandb_settings() == {"quiet": False}
    assert wandb_settings({"quiet": False, "x": 1}) == {"quiet": False, "x": 1}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_only_the_known_noise_is_filtered(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    collect = Collect()
    log.addHandler(collect)
    monkeypatch.setattr(log, "level", logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            configure_third_party_noise()
            log.info("💡 Tip: For seamless cloud uploads, try installing [litmodels](x)")
            log.info("GPU available: False, used: False")
            from torch.utils._pytree import LeafSpec

            LeafSpec()
            warnings.warn("`isinstance(other, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        assert collect.messages == ["GPU available: False, used: False"]
        assert [str(w.message) for w in caught] == ["`isinstance(other, LeafSpec)` is deprecated"]
        monkeypatch.setenv(VERBOSE_ENV, "1")
        configure_third_party_noise()
        log.info("💡 Tip: try installing [litlogger](x)")
        assert collect.messages[-1] == "💡 Tip: try installing [litlogger](x)"
    finally:
        log.removeHandler(collect)
        monkeypatch.delenv(VERBOSE_ENV)
        configure_third_party_noise()
