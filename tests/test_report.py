"""`first-pl report` on run folders written here: seeds, paired comparisons, both confidence
kinds, learning curves and their verdicts, and the reports that used to mislead (issue 14.8)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from first_pl.metrics.calibration import bins_summary
from first_pl.metrics.functional import calibration_bins, expected_calibration_error
from first_pl.report import ReportError, build_report
from first_pl.report.curves import ConvergenceRule


def entry(confidence: list[float], correct: list[bool]) -> dict:
    conf, corr = torch.tensor(confidence, dtype=torch.float64), torch.tensor(correct)
    acc = 100 * corr.double().mean().item()
    ece = 100 * expected_calibration_error(conf, corr).item()
    bins = {k: v.tolist() for k, v in bins_summary(*calibration_bins(conf, corr)).items()}
    by_kind = {"ece": ece, "trust": acc - ece}
    return {
        "n": len(confidence), "acc": acc, "ece": ece, "trust": acc - ece, "bins": bins,
        "scoring": "first_token", "confidence_kind": "full_vocab",
        "by_confidence": {"full_vocab": by_kind, "renormalised": {"ece": 1.5, "trust": acc - 1.5}},
    }  # fmt: skip


def write_run(
    folder: Path, name: str, seed: int, tasks: dict[str, tuple[list[float], list[bool]]],
    curve: list[tuple[int, float, float]] | None = None,
) -> Path:  # fmt: skip
    """A pipeline-stage-like run: stage.json, test/metrics_test.json, predictions, curve."""
    test = folder / "test"
    (test / "predictions").mkdir(parents=True)
    (folder / "stage.json").write_text(
        json.dumps({"name": name, "settings": {"config": {"seed_everything": seed}}})
    )
    metrics = {task: entry(conf, corr) for task, (conf, corr) in tasks.items()}
    (test / "metrics_test.json").write_text(json.dumps({"split": "test", "tasks": metrics}))
    for task, (conf, corr) in tasks.items():
        with (test / "predictions" / f"test_{task}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["example_id", "pred", "gold", "confidence", "correct"])
            for i, (c, ok) in enumerate(zip(conf, corr, strict=True)):
                writer.writerow([f"{task}-{i}", "A", "A" if ok else "B", c, int(ok)])
    if curve:
        lines = [
            json.dumps({"global_step": step, "task": task, "acc": acc, "ece": 5.0, "trust": acc - 5,
                        "loss": loss})
            for task in tasks for step, acc, loss in curve
        ]  # fmt: skip
        (folder / "val_curve.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def seeded_runs(root: Path) -> list[Path]:
    """Fine-tune right on 10 of 20 examples, FIRST right on all 20, under seeds 0 and 1."""
    runs = []
    for seed in (0, 1):
        half = [i < 10 for i in range(20)]
        runs.append(write_run(root / f"ft{seed}", "student-finetune", seed, {"gen": ([0.9] * 20, half)},
                              [(10, 40.0, 1.2), (20, 50.0, 1.0)]))  # fmt: skip
        runs.append(write_run(root / f"first{seed}", "student-first", seed, {"gen": ([0.9] * 20, [True] * 20)},
                              [(10, 99.0, 0.30), (20, 100.0, 0.29)]))  # fmt: skip
    return runs


def test_seeds_are_aggregated_and_paired_with_the_baseline(tmp_path):
    runs = seeded_runs(tmp_path / "runs")
    labels = ["finetune", "first", "finetune", "first"]
    text = build_report([str(r) for r in runs], str(tmp_path / "out"), methods=labels, n_resamples=200).path.read_text()
    assert "| finetune | 50.0 ± 0.0 (50.0 to 50.0, 2 seeds) |" in text
    assert "| first to finetune | +50.0 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| first | gen | 0,1 | 20 |"))
    acc = row.split(" | ")[4]
    assert acc.startswith("+50.0 [") and "p=" in acc  # 2 seeds x 20 examples: p ~ 1/201
    assert float(acc.split("p=")[1].split(" ")[0]) == pytest.approx(1 / 201, abs=5e-4)
    header = "| method | gen ECE full_vocab | gen ECE renormalised | gen Trust full_vocab | gen Trust renormalised |"
    assert header in text and "| first | 10.0 | 1.5 | 90.0 | 98.5 |" in text
    assert "scoring first_token, its own confidence full_vocab" in text
    # learning curves: FIRST moved 1 point and 0.01 nats (converged), Fine-tune 10 points
    assert "| first | 0 | gen | 20 | 100.0 | 1.00 | 0.010 | yes |" in text
    assert "| finetune | 1 | gen | 20 | 50.0 | 10.00 | 0.200 | no |" in text
    assert "last two validation points" in text
    assert (tmp_path / "out" / "curves_gen.png").stat().st_size > 10_000


def test_a_single_point_curve_cannot_be_judged(tmp_path):
    run = write_run(tmp_path / "r", "student-first", 0, {"gen": ([0.5, 0.6], [True, False])}, [(5, 50.0, 0.7)])
    text = build_report([str(run)], str(tmp_path / "out")).path.read_text()
    assert "| student-first | 0 | gen | 5 | 50.0 | - | - | cannot tell |" in text


def test_a_change_of_exactly_the_tolerance_counts_as_converged():
    """19 -> 25 of 300 correct is a change of 2 points, 2.000000000000001 in floats."""
    rule = ConvergenceRule(acc_tol=2.0, loss_tol=0.05)
    points = [
        {"global_step": 100, "acc": 100 * 19 / 300, "loss": 1.00},
        {"global_step": 120, "acc": 100 * 25 / 300, "loss": 1.05},
    ]
    assert points[1]["acc"] - points[0]["acc"] > 2.0
    assert rule.judge(points)["converged"] is True
    points[1]["acc"] = 100 * 26 / 300
    assert rule.judge(points)["converged"] is False


def test_runs_with_different_n_warn_in_the_log_and_the_report(tmp_path):
    a = write_run(tmp_path / "a", "student-finetune", 0, {"gen": ([0.9] * 10, [True] * 10)})
    b = write_run(tmp_path / "b", "student-first", 0, {"gen": ([0.9] * 12, [True] * 12)})
    with pytest.warns(UserWarning, match="gen was tested on different numbers of examples"):
        text = build_report([str(a), str(b)], str(tmp_path / "out"), methods=["finetune", "first"]).path.read_text()
    assert "Warning: gen was tested on different numbers of examples (finetune (seed 0) n=10, first (seed 0) n=12)" in text


def test_a_parent_folder_reports_each_of_its_runs(tmp_path):
    parent = tmp_path / "runs"
    write_run(parent / "ft-abc", "student-finetune", 0, {"gen": ([0.8] * 4, [True, True, False, True])})
    write_run(parent / "first-def", "student-first", 0, {"gen": ([0.8] * 4, [True] * 4)})
    with pytest.warns(UserWarning, match="holds 2 runs, each reported"):
        text = build_report([str(parent)], str(tmp_path / "out")).path.read_text()
    assert "| student-finetune | 75.0" in text and "| student-first | 100.0" in text
    assert "| runs |" not in text
    with pytest.raises(ReportError, match=r"holds 2 runs \(first-def, ft-abc\); give each as its own --runs entry"):
        build_report([str(parent)], str(tmp_path / "out2"), methods=["x"])


def test_stale_stage_results_of_a_parent_folder_are_named_and_left_out(tmp_path):
    parent = tmp_path / "runs"
    write_run(parent / "first-def", "student-first", 0, {"gen": ([0.8] * 4, [True] * 4)})
    write_run(parent / "first-def.stale-0123abcd", "student-first", 0,
              {"gen": ([0.8] * 4, [False] * 4)})  # fmt: skip
    with pytest.warns(UserWarning, match=r"holds 1 stale stage result\(s\) \(first-def\.stale-0123abcd\); not reported"):
        text = build_report([str(parent)], str(tmp_path / "out")).path.read_text()
    assert "| student-first | 100.0" in text and "| student-first | 0.0" not in text


def test_tasks_as_a_list_selects_and_unknown_or_malformed_tasks_are_refused(tmp_path):
    run = write_run(tmp_path / "r", "student-first", 0, {"gen": ([0.9], [True]), "physics": ([0.4], [False])})
    text = build_report([str(run)], str(tmp_path / "out"), tasks=["physics"]).path.read_text()
    assert "physics Acc" in text and "gen Acc" not in text
    with pytest.raises(ReportError, match=r"--tasks names \['typo'\], which no run was tested on; the runs have \['gen', 'physics'\]"):
        build_report([str(run)], str(tmp_path / "out"), tasks=["typo"])
    with pytest.raises(ReportError, match="--tasks must be a list of task names, got 'gen'"):
        build_report([str(run)], str(tmp_path / "out"), tasks="gen")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics_test.json").write_text(json.dumps({"tasks": ["gen"]}))
    with pytest.raises(ReportError, match=r"metrics_test.json: field 'tasks' must map each task name to its figures .* got a list"):
        build_report([str(bad)], str(tmp_path / "out"))
    (bad / "metrics_test.json").write_text(json.dumps({"tasks": {"gen": {"acc": 1.0}}}))
    with pytest.raises(ReportError, match=r"task 'gen' lacks the field\(s\) \['n', 'ece', 'trust', 'bins'\]"):
        build_report([str(bad)], str(tmp_path / "out"))


def test_label_counts_must_match_the_runs(tmp_path):
    run = write_run(tmp_path / "r", "student-first", 0, {"gen": ([0.9], [True])})
    with pytest.raises(ReportError, match="--methods has 2 entries for 1 runs"):
        build_report([str(run)], str(tmp_path / "out"), methods=["a", "b"])
    with pytest.raises(ReportError, match="--seeds has 2 entries for 1 runs"):
        build_report([str(run)], str(tmp_path / "out"), seeds=[0, 1])
