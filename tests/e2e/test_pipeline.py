"""The whole pipeline on a tiny model: every stage, the report, and the stage cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from first_pl_testing import tiny_pipeline


def stage_folders(out: Path) -> dict[str, Path]:
    return {json.loads(p.read_text())["name"]: p.parent for p in out.glob("*/stage.json")}


def test_pipeline_end_to_end_and_cache(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    report = tiny_pipeline(tiny_model_dir, out).run()
    text = report.read_text()
    for method in (
        "zero-shot teacher",
        "teacher",
        "finetune",
        "distill",
        "ls_distill",
        "first",
        "first to finetune",
    ):
        assert f"| {method} |" in text
    assert "generated Acc" in text and "physics ECE" in text
    folders = stage_folders(out)
    assert set(folders) == {
        "prepare", "data", "zero-shot", "teacher", "extract-train", "extract-validation", "calibrate", "analysis",
        "student-finetune", "student-distill", "student-ls_distill", "student-first", "report",
    }  # fmt: skip
    assert (folders["report"] / "reliability_physics.png").is_file()
    assert len((folders["data"] / "test.jsonl").read_text().splitlines()) == 16
    # A tested stage keeps its weights only (extraction read the teacher's after the rewrite).
    log = capsys.readouterr().out
    assert re.search(r"\] teacher: finished in \d+ s \(peak RSS so far \d+\.\d\d GiB, \d+\.\d\d GiB held after it\)", log)
    for stage in ("teacher", "student-finetune", "student-first"):
        assert re.search(rf"{stage}: kept the checkpoint's weights only \(\d+ MiB", log)
        (checkpoint,) = (folders[stage] / "checkpoints").glob("*.ckpt")
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        assert "optimizer_states" not in saved and "lr_schedulers" not in saved
        assert saved["state_dict"] and saved["hyper_parameters"]

    tiny_pipeline(tiny_model_dir, out).run()
    log = capsys.readouterr().out
    assert log.count("skipped") == 13 and "running" not in log

    tiny_pipeline(tiny_model_dir, out, steps={"first": 3}).run()
    log = capsys.readouterr().out
    rerun = set(re.findall(r"\] (\S+): running in", log))
    assert rerun == {"student-first", "report"}

    # Calibrating on the answer positions only changes c, hence FIRST, and nothing else.
    variant = tiny_pipeline(tiny_model_dir, out)
    variant.calibrate_answer_only, variant.report_name = True, "report_answer_only.md"
    assert variant.run() == out / "report_answer_only.md"
    log = capsys.readouterr().out
    assert set(re.findall(r"\] (\S+): running in", log)) == {"calibrate", "student-first", "report"}
    calibrations = [json.loads(p.read_text()) for p in out.glob("calibrate-*/calibration.json")]
    assert sorted(c["settings"]["answer_only"] for c in calibrations) == [False, True]
    assert report.is_file() and report != variant.run()  # the main report is left as it was


def test_sweep_reuses_upstream_and_writes_figure5(tiny_model_dir, tmp_path):
    from first_pl.pipeline.sweep import Sweep

    base = tiny_pipeline(tiny_model_dir, tmp_path / "runs")
    sweep = Sweep(**{**vars(base), "temperatures": [0.2, 1.0], "deltas": [0.0, 0.3]})
    path = sweep.run()
    rows = (path.parent / "sweep_results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2  # 4 students x 2 tasks
    assert (path.parent / "figure5.png").stat().st_size > 10_000
    assert "calibrate chose c" in path.read_text()
    names = set(stage_folders(tmp_path / "runs"))
    assert {"sweep-first-temperature0.2", "sweep-ls_distill-delta0.3", "calibrate"} <= names


def curve_points(folder: Path) -> list[tuple[int, str]]:
    lines = (folder / "val_curve.jsonl").read_text().splitlines()
    return [(p["global_step"], p["task"]) for p in map(json.loads, lines)]


def test_two_seeds_with_validation_curves(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    pipeline = tiny_pipeline(tiny_model_dir, out, methods=("finetune", "first"), steps={"finetune": 5, "first": 5})
    pipeline.val_check_interval, pipeline.limit_val_batches, pipeline.seeds = 2, 1, [0, 1]
    # the out-of-domain task scored by option log-likelihood per token (lm-eval's acc_norm)
    pipeline.ood_templates = {"physics": {"scoring": "option_loglik_norm"}}
    text = pipeline.run().read_text()
    folders = stage_folders(out)
    students = {"student-finetune", "student-first", "student-finetune-seed1", "student-first-seed1"}
    assert students <= set(folders) and "student-first-seed2" not in folders
    # every training stage validated its own task's validation split every 2 steps and at its
    # last step, only in domain
    assert curve_points(folders["teacher"]) == [(2, "generated")]
    for name in students:
        assert curve_points(folders[name]) == [(2, "generated"), (4, "generated"), (5, "generated")]
        tested = json.loads((folders[name] / "test" / "metrics_test.json").read_text())["tasks"]
        assert set(tested) == {"generated", "physics"}  # the test adds the out-of-domain task
    assert not (folders["zero-shot"] / "val_curve.jsonl").exists()
    seeds = {n: json.loads((folders[n] / "stage.json").read_text())["settings"]["config"]["seed_everything"] for n in students}
    assert seeds == {"student-finetune": 0, "student-first": 0, "student-finetune-seed1": 1, "student-first-seed1": 1}
    # the report: mean and spread over the two seeds, paired comparisons, curves and verdicts
    assert "2 seeds)" in text and "| first to finetune |" in text
    assert "| first | generated | 0,1 |" in text and "| first | physics | 0,1 |" in text
    assert "| teacher | generated | 0 |" in text  # the shared teacher, paired on seed 0
    for method in ("finetune", "first"):
        for seed in (0, 1):
            assert re.search(rf"\| {method} \| {seed} \| generated \| 5 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| (yes|no) \|", text)
    assert "| teacher | 0 | generated | 2 |" in text and "cannot tell" in text
    report = folders["report"]
    assert (report / "curves_generated.png").stat().st_size > 10_000
    assert "generated: scoring first_token, its own confidence full_vocab" in text
    assert "physics: scoring option_loglik_norm_tokens, its own confidence renormalised" in text
    physics = json.loads((folders["student-first"] / "test" / "metrics_test.json").read_text())["tasks"]["physics"]
    assert physics["ece"] == physics["by_confidence"]["renormalised"]["ece"] != physics["ece_full_vocab"]


def test_seeds_as_a_list_or_comma_separated_and_repeats_refused(tiny_model_dir, tmp_path):
    from first_pl.pipeline.pipeline import Pipeline

    base = tiny_pipeline(tiny_model_dir, tmp_path / "runs")
    assert Pipeline(**{**vars(base), "seeds": "0,1,2"}).student_seeds == [0, 1, 2]
    assert Pipeline(**{**vars(base), "seeds": [3]}).student_seeds == [3]
    with pytest.raises(ValueError, match="seeds must be a list of integers or comma-separated integers, got '0,x'"):
        Pipeline(**{**vars(base), "seeds": "0,x"})
    with pytest.raises(ValueError, match=r"seeds must not repeat a seed, got \[1, 1\]"):
        Pipeline(**{**vars(base), "seeds": [1, 1]})
