"""Every YAML under configs/ parses through the command that reads it, and the real-hardware
Table 1 grid instantiates (models, data, optimiser, schedule, FSDP strategy) on a tiny stand-in.

A config that only fails on the cluster costs a queue slot and a GPU allocation; these tests
catch a misspelt key, a missing file or a class path that does not resolve, here, in seconds.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch.strategies import FSDPStrategy

from first_pl.cli import main
from first_pl.lightning_cli import FirstCLI
from first_pl.methods import FIRST, Distill, FineTune, LabelSmoothingDistill
from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult
from first_pl.tasks import CommonsenseQA, OpenBookQA
from first_pl.teacher.parameter_search import CalibrationResult

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))
CLI_KEYS = {"trainer", "data", "model", "seed_everything", "evaluation", "ckpt_path"}
DISTILL_MODELS = ("Distill", "LabelSmoothing", "FIRST")
TABLE1 = sorted((CONFIGS / "experiments" / "table1").glob("*.yaml"))
PAIRS = {
    "llama1": ("huggyllama/llama-30b", "huggyllama/llama-7b"),
    "llama2": ("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-7b-hf"),
    "openllama": ("openlm-research/open_llama_13b", "openlm-research/open_llama_7b"),
}
METHODS = {
    "finetune": FineTune,
    "distill": Distill,
    "ls_distill": LabelSmoothingDistill,
    "first": FIRST,
}


def read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def kind(path: Path) -> str:
    keys = set(read(path))
    if {"program", "method", "command"} <= keys:
        return "wandb-sweep"
    if keys <= CLI_KEYS:
        return "lightning"
    return "sweep" if keys & {"temperatures", "deltas"} else "pipeline"


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def print_config(args: list[str], capsys) -> dict[str, Any]:
    """Run `first-pl ... --print_config`; it must exit 0; return the printed config."""
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def lightning_stack(path: Path) -> list[Path]:
    """The config files `path` is meant to be composed with (trainer + data + model)."""
    section = next(iter(read(path)))
    model = read(path).get("model", {}).get("class_path", "")
    data = "generated_distill" if any(m in model for m in DISTILL_MODELS) else "generated"
    stack = {
        "trainer": CONFIGS / "trainer" / "cpu.yaml",
        "data": CONFIGS / "data" / f"{data}.yaml",
        "model": CONFIGS / "model" / "finetune_smollm2.yaml",
    }
    stack[section] = path
    if section == "trainer" and path.name != "cpu.yaml":  # presets compose after cpu.yaml
        return [CONFIGS / "trainer" / "cpu.yaml", path, stack["data"], stack["model"]]
    return list(stack.values())


def test_every_config_is_covered_by_a_parse_test():
    assert ALL, "no configs found"
    assert {kind(p) for p in ALL} <= {"lightning", "pipeline", "sweep", "wandb-sweep"}
    assert len(TABLE1) == 9  # 3 settings x 3 teacher/student pairs


@pytest.mark.parametrize("path", [p for p in ALL if kind(p) == "lightning"], ids=rel)
def test_lightning_config_parses(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = [a for p in lightning_stack(path) for a in ("--config", str(p))]
    config = print_config(["fit", *args], capsys)
    for section, value in read(path).items():
        if isinstance(value, dict) and "class_path" in value:
            assert config[section]["class_path"] == value["class_path"]


def test_distill_data_config_matches_the_data_it_was_extracted_with():
    """generated_distill.yaml must keep generated.yaml's settings, or its store never validates."""
    plain = read(CONFIGS / "data" / "generated.yaml")["data"]["init_args"]
    distill = dict(read(CONFIGS / "data" / "generated_distill.yaml")["data"]["init_args"])
    assert distill.pop("store") and distill.pop("in_memory") is True
    assert distill == plain


def test_a_nested_option_is_cleared_by_giving_the_whole_mapping(capsys, monkeypatch):
    """The README's way to train the full-depth student from a layer-dropped config."""
    monkeypatch.chdir(ROOT)
    stack = lightning_stack(CONFIGS / "model" / "student_finetune.yaml")
    args = [a for p in stack for a in ("--config", str(p))]
    full = '{"name_or_path": "smollm2-135m-instruct", "keep_layers": null}'
    config = print_config(["fit", *args, "--model.init_args.model", full], capsys)
    assert config["model"]["init_args"]["model"]["keep_layers"] is None
    assert read(CONFIGS / "model" / "student_finetune.yaml")["model"]["init_args"]["model"]["keep_layers"]


def pipeline_stack(path: Path) -> list[Path]:
    """A variant without its own teacher (offline_long, offline_sweep) composes after the main job's."""
    return [path] if "teacher" in read(path) else [CONFIGS / "experiments" / "offline_default.yaml", path]


@pytest.mark.parametrize("path", [p for p in ALL if kind(p) in ("pipeline", "sweep")], ids=rel)
def test_pipeline_config_parses_and_names_existing_files(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = [a for p in pipeline_stack(path) for a in ("--config", str(p))]
    config = print_config([kind(path), *args], capsys)
    stages = [config["teacher"], *config["students"].values()]
    for name in [config["trainer"], config["data"], *(s["config"] for s in stages)]:
        assert (ROOT / name).is_file(), f"{rel(path)} refers to {name}, which does not exist"


def sweep_cli_args(sweep: dict[str, Any]) -> list[str]:
    """The `first-pl fit` arguments of a W&B sweep's command (between the script name and ${args})."""
    command = [str(c) for c in sweep["command"]]
    start = command.index("first-pl-sweep") + 1
    return command[start : command.index("${args}")]


@pytest.mark.parametrize("path", [p for p in ALL if kind(p) == "wandb-sweep"], ids=rel)
def test_wandb_sweep_drives_fit_with_overrides_the_cli_accepts(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = read(path)
    assert sweep["method"] == "grid"
    assert sweep["metric"] == {"name": "test/generated/trust", "goal": "maximize"}
    assert sweep["command"][0] == "${env}" and sweep["command"][-1] == "${args}"
    script = " ".join(str(c) for c in sweep["command"])
    assert "first-pl fit" in script and "first-pl test" in script
    args = sweep_cli_args(sweep)
    for name in args[1::2]:
        assert (ROOT / name).is_file(), name
    for key, spec in sweep["parameters"].items():
        assert key.startswith("model.init_args.")
        for value in spec["values"]:
            config = print_config(["fit", *args, f"--{key}={value}"], capsys)
            assert config["model"]["init_args"][key.rsplit(".", 1)[1]] == value


def load_pipeline(path: Path) -> Pipeline:
    """The Pipeline `first-pl pipeline --config path` would run (as `first_pl.runner.run_command`)."""
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(Pipeline)
    config = parser.parse_args(["--config", str(path)])
    config.pop("config", None)
    return Pipeline(**vars(parser.instantiate_classes(config)))


class ConfigCapture:
    """Stands in for StageRunner: records the LightningCLI config each training stage would run."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, Any]] = {}

    def run(self, name, settings, body, after=None) -> StageResult:
        self.configs[name] = settings["config"]
        return StageResult(name, "key", Path("."), {})


def stage_configs(pipeline: Pipeline, calibration: Path) -> dict[str, dict[str, Any]]:
    """The teacher's and every student's config, built by the pipeline's own code."""
    capture = ConfigCapture()
    up = {
        name: StageResult(name, "key", Path("."), outputs)
        for name, outputs in {
            "prepare": {},
            "data": {},
            "extract-train": {"store": "teacher_train.h5"},
            "calibrate": {"calibration": str(calibration)},
        }.items()
    }
    pipeline.train_and_test(capture, "teacher", pipeline.teacher, [], {})
    for method, stage in pipeline.students.items():
        pipeline.train_student(capture, method, method, stage, up)
    return capture.configs


def on_stand_in(config: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """The same config on the tiny model, one CPU process (FSDPStrategy refuses a CPU)."""
    config = copy.deepcopy(config)
    config["model"]["init_args"]["model"]["name_or_path"] = str(model_dir)
    config["data"]["init_args"]["tokenizer"] = str(model_dir)
    trainer = config["trainer"]
    trainer.update(accelerator="cpu", devices=1, strategy="auto", precision="32-true")
    trainer.update(enable_progress_bar=False, enable_model_summary=False)
    return config


@pytest.mark.parametrize("path", TABLE1, ids=lambda p: p.stem)
def test_table1_instantiates_on_a_tiny_stand_in(path, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    setting, pair = path.stem.split("_")
    calibration = tmp_path / "calibration.json"
    CalibrationResult(0.5, "ece", 0.01, [(0.5, 0.01)], 0.05, 0.01, 0.8, 10).to_json(calibration)
    configs = stage_configs(load_pipeline(path), calibration)
    assert set(configs) == {"teacher", *METHODS}
    for stage, config in configs.items():
        teacher_or_student = PAIRS[pair][0 if stage == "teacher" else 1]
        assert config["model"]["init_args"]["model"]["name_or_path"] == teacher_or_student
        assert config["data"]["init_args"]["tokenizer"] == PAIRS[pair][1]
        strategy = ArgumentParser()
        strategy.add_argument("--strategy", type=FSDPStrategy)
        fsdp = strategy.instantiate_classes(
            strategy.parse_object({"strategy": config["trainer"]["strategy"]})
        ).strategy
        assert fsdp._state_dict_type == "full"  # so extraction can read the teacher's .ckpt
        assert config["trainer"]["precision"] == "bf16-mixed"

        stand_in = tmp_path / f"{stage}.yaml"
        stand_in.write_text(yaml.safe_dump(on_stand_in(config, tiny_model_dir)))
        cli = FirstCLI(args=["--config", str(stand_in)], run=False)
        assert type(cli.model) is (FineTune if stage == "teacher" else METHODS[stage])
        optim = cli.model.optim
        assert (optim.lr, optim.eps, optim.warmup_ratio, tuple(optim.betas)) == (
            2e-5, 1e-6, 0.03, (0.9, 0.999),
        )  # fmt: skip
        assert cli.trainer.max_epochs == 3 and cli.trainer.max_steps == -1
        want = [CommonsenseQA().name, OpenBookQA().name] if setting == "alpaca" else [setting]
        assert cli.datamodule.eval_task_names == want
        cli.datamodule.setup("test")  # the letters are single tokens
        if stage == "ls_distill":
            assert cli.model.delta == 0.1
    cli.model.configure_model()
    assert cli.model.model.config.num_hidden_layers == 4
