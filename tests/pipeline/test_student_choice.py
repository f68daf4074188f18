"""The pipeline option `student_choice`: c (and delta) chosen by the students' own validation
Trust, each grid student a validated-only stage, the choice a calibration result that the
student `first_student_c` (`ls_distill_student_delta`) trains with, beside `first` (c chosen on
the teacher's validation ECE) in one report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from first_pl_testing import tiny_pipeline
from test_report import seeded_runs

from first_pl.fileio.run_files import CALIBRATION_FILE, STAGE_FILE
from first_pl.methods.checkpoint import read_checkpoint
from first_pl.methods.distill import calibrated_choice
from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult, stable_hash
from first_pl.pipeline.student_choice import CHOICES
from first_pl.pipeline.student_choice_stages import best_row, student_choice_result
from first_pl.report import ReportError, build_report
from first_pl.teacher.parameter_choice import (
    TEMPERATURE_TRANSFORMS,
    CalibrationResult,
    plot_calibration_curve,
)

C_GRID, DELTA_GRID, STEPS = [1.0, 0.3, 0.1], [0.0, 0.3], 3


def with_choice(base: Pipeline, **choice) -> Pipeline:
    return Pipeline(**{**vars(base), "student_choice": choice})


def stage(out: Path, name: str) -> Path:
    """The one finished folder of stage `name` (`<name>-<12 hex key>`)."""
    (folder,) = [p for p in out.glob(f"{name}-*") if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{12}}", p.name)]
    return folder


def expected_choice(folders: list[Path], values: list[float]) -> float:
    """The rule, from the grid students' own metrics files: best Trust, then lower ECE, then
    the earlier grid value."""
    figures = [next(iter(json.loads((f / "metrics_val.json").read_text())["tasks"].values())) for f in folders]
    order = sorted(range(len(values)), key=lambda i: (-figures[i]["trust"], figures[i]["ece"], i))
    return values[order[0]]


def test_students_choose_c_and_delta_on_validation_and_train_with_the_choice(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    base = tiny_pipeline(tiny_model_dir, out, methods=("finetune", "ls_distill", "first"),
                         sizes=(16, 16, 8), ood=False)  # fmt: skip
    pipeline = with_choice(base, temperatures=C_GRID, deltas=DELTA_GRID, steps=STEPS)
    summary = pipeline.run()
    capsys.readouterr()

    chosen = {}
    for spec, values in ((CHOICES[0], C_GRID), (CHOICES[1], DELTA_GRID)):
        grid = [stage(out, f"choice-{spec.base}-{spec.argument}{v:g}") for v in values]
        for folder, value in zip(grid, values, strict=True):
            # validated once at its last step on the training task only; never tested
            assert not (folder / "test").exists() and not list(folder.rglob("metrics_test.json"))
            assert not (folder / "checkpoints").exists()
            metrics = json.loads((folder / "metrics_val.json").read_text())
            assert (metrics["split"], metrics["global_step"], list(metrics["tasks"])) == ("val", STEPS, ["generated"])
            config = yaml.safe_load((folder / "config.yaml").read_text())
            assert config["model"]["init_args"][spec.argument] == value
            assert config["trainer"]["max_steps"] == STEPS
            assert len(config["data"]["init_args"]["eval_tasks"]) == 1
        choice = stage(out, spec.stage)
        result = json.loads((choice / CALIBRATION_FILE).read_text())
        assert (result["objective"], result["transform"]) == ("student_trust", spec.transform)
        assert result["settings"]["split"] == "validation"
        assert [s["stage"] for s in result["settings"]["students"]] == [f.name for f in grid]
        trust = {v: next(iter(json.loads((f / "metrics_val.json").read_text())["tasks"].values()))["trust"]
                 for f, v in zip(grid, values, strict=True)}  # fmt: skip
        assert result["curve"] == [[v, pytest.approx(trust[v] / 100)] for v in sorted(values)]
        assert result["parameter"] == expected_choice(grid, values)
        # what the choice read: the grid students and the validation store, nothing else
        record = json.loads((choice / STAGE_FILE).read_text())
        names = {f.name.rsplit("-", 1)[0] for f in grid} | {"extract-validation"}
        assert set(record["upstream"]) == names
        chosen[spec.method] = (result["parameter"], choice)

    # each chosen student trains with exactly the chosen value, read from the choice's file
    for method, argument in (("first_student_c", "temperature"), ("ls_distill_student_delta", "delta")):
        value, choice = chosen[method]
        folder = stage(out, f"student-{method}")
        checkpoint = json.loads((folder / STAGE_FILE).read_text())["outputs"]["checkpoint"]
        assert read_checkpoint(checkpoint)["hyper_parameters"][argument] == value
        init = yaml.safe_load((folder / "config.yaml").read_text())["model"]["init_args"]
        assert (init[argument], init["calibration"]) == ("auto", str(choice / CALIBRATION_FILE))
    teacher_c = json.loads((stage(out, "calibrate") / CALIBRATION_FILE).read_text())["parameter"]
    first = json.loads((stage(out, "student-first") / STAGE_FILE).read_text())["outputs"]
    assert read_checkpoint(first["checkpoint"])["hyper_parameters"]["temperature"] == teacher_c

    report = summary.read_text()
    table1 = report.split("## Test results")[1].split("## ")[0]
    paired = report.split("## Paired comparison with finetune")[1].split("## ")[0]
    for label in ("first (c by teacher ECE)", "first (c by student Trust)",
                  "ls_distill (delta 0.1 from its config)", "ls_distill (delta by student Trust)"):  # fmt: skip
        assert f"| {label} |" in table1 and f"| {label} |" in paired, label
    assert "| first (c by teacher ECE) to finetune |" in table1
    # and each chosen student paired with its base method directly
    for base, ours in (("first (c by teacher ECE)", "first (c by student Trust)"),
                       ("ls_distill (delta 0.1 from its config)", "ls_distill (delta by student Trust)")):  # fmt: skip
        direct = report.split(f"## Paired comparison with {base}\n")[1].split("## ")[0]
        assert [row.split(" | ")[0] for row in direct.splitlines() if row.startswith("| ") and "generated" in row] == [f"| {ours}"]

    pipeline.run()
    assert "running" not in capsys.readouterr().out  # the grid, the choices, every stage cached


def test_best_row_breaks_ties_by_ece_then_grid_order():
    rows = [{"trust": 0.5, "ece": 0.2}, {"trust": 0.6, "ece": 0.3}, {"trust": 0.6, "ece": 0.1},
            {"trust": 0.6, "ece": 0.1}]  # fmt: skip
    assert best_row(rows) == 2
    assert best_row(rows[:2]) == 1
    assert best_row([{"trust": 0.4, "ece": 0.1}] * 3) == 0


def test_the_choice_is_a_calibration_result_temperature_auto_reads(tmp_path):
    spec = CHOICES[0]
    rows = [{"value": c, "stage": f"choice-first-temperature{c:g}-abc", "task": "t", "n": 16,
             "acc": 0.5, "ece": e, "trust": 0.5 - e} for c, e in ((0.5, 0.2), (0.2, 0.05))]  # fmt: skip
    teacher = CalibrationResult(0.2, "ece", 0.03, [(0.2, 0.03)], 0.1, 0.03, 0.6, 40,
                                {"parameter_name": "c"})  # fmt: skip
    result = student_choice_result(spec, rows, teacher, 3)
    assert (result.parameter, result.value, result.curve) == (0.2, 0.45, [(0.2, 0.45), (0.5, 0.3)])
    result.to_json(tmp_path / CALIBRATION_FILE)
    chosen = calibrated_choice(tmp_path / CALIBRATION_FILE, "temperature", TEMPERATURE_TRANSFORMS, False)
    assert (chosen.parameter, chosen.transform) == (0.2, "prob_temperature")
    assert CalibrationResult.from_json(tmp_path / CALIBRATION_FILE).settings["students"] == rows
    plot_calibration_curve(result, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


class KeyCapture:
    """Stands in for StageRunner: the cache key each stage would get, without running it."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def run(self, name, settings, body, after=None) -> StageResult:
        self.keys[name] = stable_hash({"settings": settings, "upstream": {r.name: r.key for r in after or []}})
        outputs = {"calibration": f"{name}.json", "metrics": {}}
        return StageResult(name, self.keys[name], Path("."), outputs)


def test_a_student_choice_keeps_every_other_students_cache_key(tiny_model_dir, tmp_path):
    """Adding the option to a job adds stages; the students it had keep their keys (reused)."""
    outputs = {"extract-train": {"store": "s.h5"}, "calibrate": {"calibration": "c.json"}}
    up = {n: StageResult(n, "k", Path("."), outputs.get(n, {})) for n in ("prepare", "data", *outputs)}
    base = tiny_pipeline(tiny_model_dir, tmp_path / "runs")

    def keys(pipeline: Pipeline) -> dict[str, str]:
        capture = KeyCapture()
        chosen = {**up, **{spec.stage: capture.run(spec.stage, {}, None) for spec, _ in pipeline.choices()}}
        for method, train in pipeline.all_students().items():
            pipeline.train_student(capture, method, method, train, chosen)
        return capture.keys

    without = keys(base)
    with_c = keys(with_choice(base, temperatures=[0.2], steps=2))
    assert set(with_c) == {*without, "choice-c", "first_student_c"}
    assert {m: with_c[m] for m in without} == without


def test_report_pairs_compare_two_methods_directly_and_refuse_unknown_labels(tmp_path):
    runs = [str(r) for r in seeded_runs(tmp_path / "runs")]
    labels = ["finetune", "first", "finetune", "first"]
    text = build_report(runs, str(tmp_path / "out"), methods=labels, n_resamples=200,
                        pairs=[("finetune", "first")]).path.read_text()  # fmt: skip
    direct = text.split("## Paired comparison with first\n")[1].split("## ")[0]
    rows = [line for line in direct.splitlines() if line.startswith("| finetune | gen |")]
    assert len(rows) == 1 and rows[0].split(" | ")[4].startswith("-50.0 [")
    with pytest.raises(ReportError, match=r"--pairs names \['fist'\], which label no run; the "
                       r"labels are \['finetune', 'first'\]"):  # fmt: skip
        build_report(runs, str(tmp_path / "out2"), methods=labels, pairs=[("fist", "finetune")])
