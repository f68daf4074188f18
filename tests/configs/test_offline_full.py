"""offline_full.yaml: the main job over 3 seeds, reusing the main job's seed-0 students."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult, stable_hash

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "configs" / "experiments" / "offline_default.yaml"
FULL = ROOT / "configs" / "experiments" / "offline_full.yaml"


def load(*paths: Path) -> Pipeline:
    """The Pipeline `first-pl pipeline --config ...` runs (as first_pl.runner.run_command)."""
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(Pipeline)
    config = parser.parse_args([a for p in paths for a in ("--config", str(p))]).as_dict()
    config.pop("config", None)
    return Pipeline(**config)


class KeyCapture:
    """Stands in for StageRunner: the cache key each student stage would get."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def run(self, name, settings, body, after=None) -> StageResult:
        upstream = {r.name: r.key for r in after or []}
        self.keys[name] = stable_hash({"settings": settings, "upstream": upstream})
        return StageResult(name, self.keys[name], Path("."), {})


def student_keys(pipeline: Pipeline) -> dict[str, str]:
    outputs = {"extract-train": {"store": "s.h5"}, "calibrate": {"calibration": "c.json"}}
    up = {n: StageResult(n, "k", Path("."), outputs.get(n, {})) for n in ("prepare", "data", *outputs)}
    capture = KeyCapture()
    for seed in pipeline.student_seeds:
        for method, stage in pipeline.students.items():
            pipeline.train_student(capture, pipeline.student_name(method, seed), method, stage, up, seed)
    return capture.keys


def test_offline_full_runs_three_seeds_and_reuses_the_main_jobs_students(monkeypatch):
    monkeypatch.chdir(ROOT)
    main, full = load(MAIN), load(MAIN, FULL)
    assert full.student_seeds == [0, 1, 2] and full.report_name == "report_full.md"
    assert full.val_check_interval == main.val_check_interval > 0
    main_keys, full_keys = student_keys(main), student_keys(full)
    assert set(full_keys) == {f"student-{m}{s}" for m in main.students for s in ("", "-seed1", "-seed2")}
    for name, key in main_keys.items():
        assert full_keys[name] == key  # seed 0: the main job's cached stage
    assert len(set(full_keys.values())) == 12


CHOICE = ROOT / "configs" / "experiments" / "offline_student_choice.yaml"


def test_the_student_choice_config_adds_c_by_student_trust_and_reuses_every_seeded_student(monkeypatch):
    monkeypatch.chdir(ROOT)
    full, choice = load(MAIN, FULL), load(MAIN, FULL, CHOICE)
    assert choice.student_seeds == [0, 1, 2] and choice.report_name == "report_choice.md"
    assert choice.student_choice.temperatures and choice.student_choice.steps >= 1
    assert set(choice.all_students()) - set(full.all_students()) == {"first_student_c"}
    assert student_keys(choice) == student_keys(full)  # the 12 students of offline_full, cached
