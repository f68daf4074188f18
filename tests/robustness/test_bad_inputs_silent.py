"""Bad inputs that used to pass without a word (a wrong figure, a NaN model, a cut question, a
report pairing runs of different test sets), each now refused with one clear error or said.

Same table as `test_bad_inputs.py` (`Case(id, provoke, expect)`, checked by its
`error_message`); the behaviours that are not one error (a warning, a rerun) have their own tests
below the table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from robustness_world import TASK, World, data_section
from test_bad_inputs import (
    Case,
    assert_one_clear_error,
    copy_store,
    distill_fit,
    evaluate_on_tasks,
    fit,
    write,
)

from first_pl.cli import main
from first_pl.commands.ask import ask
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore
from first_pl.devices import DeviceChoice
from first_pl.metrics import ExpectedCalibrationError, TrustScore, expected_calibration_error
from first_pl.metrics.selective import confidence_auroc
from first_pl.pipeline.stages import StageResult
from first_pl.pipeline.teacher_stages import extraction
from first_pl.tasks import GeneratedMC


def sweep(tmp: Path, *args: str) -> None:
    """`first-pl sweep` with `args`; its trainer config does not exist, so a grid that is
    accepted fails at its first stage instead of training the offline default."""
    trainer = str(tmp / "no_trainer.yaml")
    main(["sweep", "--output_dir", str(tmp / "sweep"), "--trainer", trainer, *args])


def empty_task(split: str) -> dict:
    sizes = {"train_size": 4, "validation_size": 4, "test_size": 4, f"{split}_size": 0}
    return {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {**sizes, "name": "nothing"}}


def pipeline(tmp: Path, *args: str) -> None:
    """`first-pl pipeline` with `args` (a missing trainer config: see `sweep`; a later
    `--output_dir` in `args` wins)."""
    trainer = str(tmp / "no_trainer.yaml")
    main(["pipeline", "--output_dir", str(tmp / "out"), "--trainer", trainer, *args])


def without_dataset(world: World, tmp: Path, name: str) -> Path:
    out = copy_store(world, tmp)
    with h5py.File(out, "r+") as f:
        del f[name]
    return out


def axolotl_import(world: World, tmp: Path, row: list, target_token_ids: list | None = None) -> None:
    """`first-pl import-store --format axolotl` of records giving `row` at every position of
    every example of the world's train split."""
    data = QADataModule(tokenizer=str(world.model_dir), train_task=GeneratedMC(**TASK), max_length=64)
    records = []
    for example in data.split_examples("train"):
        record = {"example_id": example.example_id, "logprobs": [row] * len(example.input_ids)}
        if target_token_ids is not None:
            record["target_token_ids"] = [target_token_ids] * len(example.input_ids)
        records.append(record)
    source = tmp / "axolotl.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    main(["import-store", "--config", str(world.data_yaml), "--source", str(source), "--format",
          "axolotl", "--output", str(tmp / "imported.h5"), "--k", "1"])  # fmt: skip


def binary_file(tmp: Path) -> Path:
    path = tmp / "experiment.yaml"
    path.write_bytes(bytes(range(128, 256)) * 8)
    return path


CASES = [
    # the metrics API: only probabilities and 0/1 outcomes are binned
    Case(
        "metrics-confidence-above-one",
        lambda w, t: expected_calibration_error(torch.tensor([0.5, 1.5]), torch.tensor([1, 0])),
        r"^confidence holds 1 value\(s\) of 2 outside \[0, 1\], first 1\.5; expected probabilities",
    ),
    Case(
        "metrics-confidence-inf",
        lambda w, t: ExpectedCalibrationError().update(
            torch.tensor([0.2, float("inf")]), torch.tensor([True, False])
        ),
        r"^confidence holds 1 value\(s\) of 2 outside \[0, 1\], first inf",
    ),
    Case(
        "metrics-confidence-negative",
        lambda w, t: TrustScore().update(torch.tensor([-0.25, 0.5]), torch.tensor([0, 1])),
        r"^confidence holds 1 value\(s\) of 2 outside \[0, 1\], first -0\.25",
    ),
    Case(
        "metrics-correct-two",
        lambda w, t: expected_calibration_error(torch.tensor([0.5, 0.9]), torch.tensor([1, 2])),
        r"^correct holds 1 value\(s\) of 2 other than 0 and 1, first 2; expected booleans or 0/1",
    ),
    Case(
        "metrics-auroc-correct-two",
        lambda w, t: confidence_auroc(torch.tensor([0.5, 0.9, 0.1]), torch.tensor([1, 2, 0])),
        r"^correct holds 1 value\(s\) of 3 other than 0 and 1, first 2",
    ),
    # documented ranges: Eq. 4's c in (0, 1], the log-space T in [0.1, 10]
    Case(
        "first-temperature-above-range",
        lambda w, t: fit(w, t, "--model.init_args.temperature", "1000", model="first.yaml"),
        r"temperature \(c of transform 'prob_temperature'\) must be in \(0, 1\], the documented "
        r"range, got 1000\.0",
    ),
    Case(
        "first-log-temperature-above-range",
        lambda w, t: fit(
            w, t, "--model.init_args.temperature", "50", "--model.init_args.transform",
            "log_temperature", model="first.yaml",
        ),  # fmt: skip
        r"temperature \(T of transform 'log_temperature'\) must be in \[0\.1, 10\], the "
        r"documented range, got 50\.0",
    ),
    Case(
        "sweep-temperature-above-range",
        lambda w, t: sweep(t, "--temperatures", "[0.5, 1000]"),
        r"sweep temperatures must be in \(0, 1\] \(the documented range of c\), got \[1000\.0\]",
    ),
    Case(
        "sweep-log-temperature-above-range",
        lambda w, t: sweep(t, "--log_temperatures", "[2, 50]"),
        r"sweep log_temperatures must be in \[0\.1, 10\] \(the documented range of T\), got \[50\.0\]",
    ),
    # training that diverges stops, naming the step and the learning rate
    Case(
        "fit-learning-rate-diverges",
        lambda w, t: fit(w, t, "--trainer.max_steps", "4", "--model.init_args.optimizer.lr", "1e12"),
        r"after [1-3] optimizer step\(s\): training diverged; lower the learning rate "
        r"--model\.init_args\.optimizer\.lr \(now 1e\+12\)",
    ),
    # the pipeline reads every option before its first stage
    Case(
        "pipeline-calibrate-objective-misspelt",
        lambda w, t: pipeline(t, "--calibrate_objective", "ecee"),
        r"calibrate_objective must be one of \('ece', 'nll', 'trust'\), got 'ecee'",
    ),
    Case(
        "pipeline-threads-negative",
        lambda w, t: pipeline(t, "--threads", "-1"),
        r"threads must be >= 1 \(or unset: torch's default\), got -1",
    ),
    Case(
        "pipeline-teacher-max-steps-negative",
        lambda w, t: pipeline(t, "--teacher.max_steps", "-3"),
        r"teacher\.max_steps must be >= 1, or -1 \(max_epochs decides\), got -3",
    ),
    # one-line errors that name their file or option
    Case(
        "fit-max-steps-negative",
        lambda w, t: main(w.fit_args(t / "run", "--trainer.max_steps", "-5")),
        r"trainer\.max_steps must be >= 0, or -1 for no limit, got -5",
    ),
    Case(
        "fit-max-epochs-negative",
        lambda w, t: main(w.fit_args(t / "run", "--trainer.max_epochs", "-2")),
        r"trainer\.max_epochs must be >= 0, or -1 for no limit, got -2",
    ),
    Case(
        "plan-binary-file",
        lambda w, t: main(["plan", "--experiment", str(binary_file(t))]),
        r"config .*experiment\.yaml is not a text file \(not UTF-8\); expected YAML",
    ),
    Case(
        "plan-malformed-yaml",
        lambda w, t: main(["plan", "--experiment", str(write(t / "e.yaml", "trainer: [a\n"))]),
        r"config .*e\.yaml is not valid YAML at line 2, column 1: expected ',' or '\]'",
    ),
    Case(
        "plan-yaml-not-a-mapping",
        lambda w, t: main(["plan", "--experiment", str(write(t / "e.yaml", "- a\n- b\n"))]),
        r"config .*e\.yaml holds a list; expected a mapping of options",
    ),
    Case(
        "store-dataset-missing",
        lambda w, t: distill_fit(w, t, without_dataset(w, t, "gold_rank")),
        r"copy\.h5 lacks the dataset\(s\) \['gold_rank'\] of a teacher store \(it holds "
        r"\['example_ids', 'gold_missing', 'ids', 'offsets', 'probs'\]\)",
    ),
    Case(
        "import-axolotl-token-not-an-id",
        lambda w, t: axolotl_import(w, t, [{"token": "token_id:abc", "logprob": -0.1}]),
        r"axolotl\.jsonl: example '.*' position \d+ is malformed \(ValueError: invalid literal "
        r"for int\(\) with base 10: 'abc'\); expected 'logprobs' entries",
    ),
    Case(
        "import-axolotl-ids-and-logprobs-differ",
        lambda w, t: axolotl_import(w, t, [-0.1, -2.0], target_token_ids=[3]),
        r"axolotl\.jsonl: example '.*' position \d+ is malformed \(ValueError: zip\(\) argument 2 "
        r"is longer than argument 1\); expected 'target_token_ids' and 'logprobs' rows of equal length",
    ),
    # output paths that cannot be written, refused before any work
    Case(
        "calibrate-output-under-a-file",
        lambda w, t: main(["calibrate", "--store", str(w.validation_store), "--output_dir",
                           str(write(t / "notes.txt", "x") / "cal")]),  # fmt: skip
        r"--output_dir .*notes\.txt/cal lies under .*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "fit-run-folder-under-a-file",
        lambda w, t: main(w.fit_args(write(t / "notes.txt", "x") / "run", "--trainer.max_steps", "1")),
        r"run folder \(--trainer\.logger\.init_args\.save_dir\) .*notes\.txt/run lies under "
        r".*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "test-run-folder-under-a-file",
        lambda w, t: main(w.fit_args(write(t / "notes.txt", "x") / "run", "--ckpt_path",
                                     str(w.checkpoint), command="test")),  # fmt: skip
        r"run folder \(--trainer\.logger\.init_args\.save_dir\) .*notes\.txt/run lies under",
    ),
    Case(
        "report-output-under-a-file",
        lambda w, t: main(["report", "--runs", json.dumps([str(w.run_dir)]), "--output_dir",
                           str(write(t / "notes.txt", "x") / "report")]),  # fmt: skip
        r"--output_dir .*notes\.txt/report lies under .*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "report-output-is-a-file",
        lambda w, t: main(["report", "--runs", json.dumps([str(w.run_dir)]), "--output_dir",
                           str(write(t / "notes.txt", "x"))]),  # fmt: skip
        r"--output_dir .*notes\.txt is a file, not a folder",
    ),
    Case(
        "pipeline-output-under-a-file",
        lambda w, t: pipeline(t, "--output_dir", str(write(t / "notes.txt", "x") / "out")),
        r"output_dir .*notes\.txt/out lies under .*notes\.txt, which is a file, not a folder",
    ),
    # evaluation with nothing to evaluate
    Case(
        "test-every-task-split-empty",
        lambda w, t: evaluate_on_tasks(w, t, empty_task("test")),
        r"every evaluation task has no examples in its test split \('nothing'\): there is "
        r"nothing to evaluate",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world: World, tmp_path: Path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)


def test_diverged_fit_leaves_no_checkpoint(world: World, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training diverged"):
        fit(world, tmp_path, "--trainer.max_steps", "4", "--model.init_args.optimizer.lr", "1e12")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_ask_says_how_much_of_the_question_it_cut(world: World, capsys) -> None:
    question = "Which of these cities, all of them capitals of European countries, is in Norway?"
    with pytest.warns(UserWarning) as caught:
        answer = ask(str(world.checkpoint), question, ["Oslo", "Rome"], max_length=16)
    dropped = answer.tokens_dropped
    assert dropped > 0
    message = (
        f"the prompt is {dropped} tokens longer than --max_length 16: {dropped} tokens were cut "
        f"from the middle of the question and the model answered without them; give --max_length {16 + dropped}"
    )
    assert any(str(w.message).startswith(message) for w in caught), [str(w.message) for w in caught]
    assert f"prompt truncated: {dropped} tokens cut from the middle of the question" in capsys.readouterr().out
    whole = ask(str(world.checkpoint), question, ["Oslo", "Rome"], max_length=16 + dropped)
    assert whole.tokens_dropped == 0


def test_an_unfinished_extract_stage_replaces_the_store_its_folder_holds(
    world: World, tmp_path: Path
) -> None:
    """The stage was killed after publishing its store, before its stage.json: the rerun
    extracts again over it (the store may be an earlier teacher's) instead of asking for an
    `--overwrite` that `first-pl pipeline` does not take."""
    folder = tmp_path / "extract-train-0123"
    folder.mkdir()
    shutil.copy(world.validation_store, folder / "teacher_train.h5")  # not this stage's store
    teacher = StageResult("teacher", "key", world.run_dir, {"checkpoint": str(world.checkpoint)})
    data = yaml.safe_load(world.data_yaml.read_text())["data"]
    cpu = DeviceChoice("cpu", 1, "one CPU process")
    body = extraction(data, teacher, "train", 4, cpu, probs_dtype="float32", progress=False)
    store, want = TeacherStore(body(folder)["store"]), TeacherStore(world.train_store)
    assert store.metadata == want.metadata and store.example_ids == want.example_ids
    for got, expected in zip(store.iter_blocks(), want.iter_blocks(), strict=True):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("command", ["calibrate", "export", "pipeline"])
def test_a_read_only_output_folder_is_refused_by_name(
    command: str, world: World, tmp_path: Path, monkeypatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # permission bits do not bind root: answer as they do for a user
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    args = {
        "calibrate": ["calibrate", "--store", str(world.validation_store), "--output_dir", str(locked / "cal")],
        "export": ["export", "--checkpoint", str(world.checkpoint), "--output_dir", str(locked / "hf")],
        "pipeline": ["pipeline", "--output_dir", str(locked), "--trainer", str(tmp_path / "none.yaml")],
    }[command]  # fmt: skip
    with pytest.raises(ValueError) as caught:
        main(args)
    where = f"output_dir {locked}" if command == "pipeline" else f"--output_dir {locked}/"
    assert str(caught.value).startswith(where), caught.value
    assert str(caught.value).endswith(
        "is not writable (a read-only file system or no permission); choose a folder you can write to"
    )
    assert list(locked.iterdir()) == []


@pytest.fixture(scope="module")
def tested(world: World, tmp_path_factory) -> dict[str, Path]:
    """The world's checkpoint tested on its task (seed 5, twice) and on the task of seed 6:
    the same example ids, other questions."""
    root = tmp_path_factory.mktemp("tested")
    runs = {}
    for name, seed in (("seed5", 5), ("seed5_again", 5), ("seed6", 6)):
        task = {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {**TASK, "seed": seed}}
        config = root / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"data": data_section(world.model_dir, eval_tasks=[task])}))
        runs[name] = root / name
        main(world.fit_args(runs[name], "--ckpt_path", str(world.checkpoint), data=config, command="test"))
    return runs


def report(runs: list[Path], out: Path, methods: list[str], seeds: list[int] | None = None) -> None:
    main(["report", "--runs", json.dumps([str(r) for r in runs]), "--output_dir", str(out),
          "--methods", json.dumps(methods), "--n_resamples", "20",
          *(["--seeds", json.dumps(seeds)] if seeds is not None else [])])  # fmt: skip


def test_metrics_record_what_the_test_set_held(tested: dict[str, Path]) -> None:
    def fingerprint(name: str) -> str:
        metrics = json.loads((tested[name] / "metrics_test.json").read_text())
        return metrics["tasks"]["generated"]["examples_fingerprint"]

    ids = [(tested[n] / "predictions" / "test_generated.csv").read_text().split("\n")[1:] for n in tested]
    assert {row.split(",")[0] for row in ids[0]} == {row.split(",")[0] for row in ids[2]}  # shared ids
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint("seed5"))
    assert fingerprint("seed5") == fingerprint("seed5_again") != fingerprint("seed6")


def test_report_refuses_runs_tested_on_different_test_sets(tested: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        report([tested["seed5"], tested["seed6"]], tmp_path / "report", ["finetune", "first"])
    assert re.fullmatch(
        rf"task 'generated' was tested on different test sets \(examples [0-9a-f]{{16}} in "
        rf"{tested['seed5']}; examples [0-9a-f]{{16}} in {tested['seed6']}\); a report compares runs "
        r"on one test set: report these runs apart \(or test them on the same data\)",
        str(caught.value),
    ), caught.value
    assert not (tmp_path / "report" / "report.md").exists()
    report([tested["seed5"], tested["seed5_again"]], tmp_path / "same", ["finetune", "first"])
    assert (tmp_path / "same" / "report.md").is_file()  # one test set: reported


@pytest.mark.parametrize("seeds", [[3, 3], None], ids=["seed-given-twice", "seed-unknown"])
def test_report_refuses_one_method_and_seed_twice(
    tested: dict[str, Path], tmp_path: Path, seeds: list[int] | None
) -> None:
    runs = [tested["seed5"], tested["seed5_again"]]
    with pytest.raises(ValueError) as caught:
        report([*runs, tested["seed5"]], tmp_path / "report", ["first", "first", "finetune"], seeds and [*seeds, 3])
    seed = 3 if seeds else None
    assert str(caught.value) == (
        f"runs {runs[0]} and {runs[1]} are both method 'first' seed {seed}: give each its own "
        "--methods label, or its seed with --seeds"
    )
