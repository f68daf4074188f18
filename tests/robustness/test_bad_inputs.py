"""Catalogue of bad inputs across the pipeline: each gives ONE clear error naming what is wrong.

Table-driven: every `Case` says how to provoke the error and the message expected (a regex that
names the file, field or option and what was expected). A case passes only if

- the error is a SystemExit with a non-zero code from argument parsing (message on stderr), or
- the error was raised by first_pl's own checks (`first_pl.cli.user_error` finds it), so the
  command line prints it as one line `first-pl <cmd>: error: ...` and exits 2 instead of showing
  a traceback from deep inside a library.

`test_command_line_prints_one_line_and_exits_2` runs a few of them as real `python -m first_pl`
subprocesses to check the exit code and the absence of a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from robustness_helpers import first_pl
from robustness_world import World, data_section
from transformers import AutoTokenizer

from first_pl.cli import main, user_error
from first_pl.data.store import StoreMetadata, TeacherStore, TeacherStoreWriter, partial_path
from first_pl.methods import FIRST
from first_pl.methods.checkpoint import load_method


@dataclass
class Case:
    id: str
    provoke: Callable[[World, Path], object]
    expect: str


# -- helpers that build bad inputs ----------------------------------------------------------------


def fit(world: World, tmp: Path, *extra: str, **kwargs) -> None:
    main(world.fit_args(tmp / "run", "--trainer.max_steps", "1", *extra, **kwargs))


def distill_fit(world: World, tmp: Path, store: Path | None, *extra: str) -> None:
    args = ["--data.init_args.store", str(store)] if store is not None else []
    fit(world, tmp, *args, *extra, model="distill.yaml", data=world.distill_yaml)


def fit_on_task(world: World, tmp: Path, task: dict) -> None:
    """fit with `data.train_task` replaced (a local file, a BIG-bench task)."""
    path = tmp / "data.yaml"
    path.write_text(yaml.safe_dump({"data": data_section(world.model_dir, train_task=task)}))
    fit(world, tmp, data=path)


def csqa_file(
    tmp: Path, rows: list | None = None, text: str | bytes | None = None, name="csqa.jsonl"
) -> dict:
    path = tmp / name
    if rows is not None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    return {"class_path": "first_pl.tasks.CommonsenseQA", "init_args": {"source": str(path)}}


def csqa_row(i: int, **change) -> dict:
    row = {
        "id": f"q{i}", "question": "Which of these is a fruit?", "answerKey": "A",
        "choices": {"label": ["A", "B", "C"], "text": ["apple", "car", "dog"]},
    }  # fmt: skip
    row.update(change)
    return {k: v for k, v in row.items() if v is not None}


def bigbench(tmp: Path, text: str) -> dict:
    (tmp / "task.json").write_text(text)
    return {"class_path": "first_pl.tasks.BigBench", "init_args": {"path": str(tmp / "task.json")}}


def rewrite_store(world: World, tmp: Path, mutate: Callable[[dict, dict], None]) -> Path:
    """A complete, checksummed copy of the train store with `mutate(arrays, metadata)` applied."""
    src = TeacherStore(world.train_store)
    columns = (np.concatenate(column) for column in zip(*src.iter_blocks(), strict=True))
    arrays = dict(zip(("ids", "probs", "gold"), columns, strict=True))
    meta = dict(vars(src.metadata))
    mutate(arrays, meta)
    out = tmp / "bad.h5"
    counts = np.diff(src.offsets)
    with TeacherStoreWriter(out, StoreMetadata(**meta)) as writer:
        writer.append(
            src.example_ids, arrays["ids"], arrays["probs"], arrays["gold"], counts=counts
        )
    src.close()
    return out


def copy_store(world: World, tmp: Path, name: str = "copy.h5") -> Path:
    out = tmp / name
    out.write_bytes(world.train_store.read_bytes())
    return out


def set_attr(world: World, tmp: Path, key: str, value) -> Path:
    out = copy_store(world, tmp)
    with h5py.File(out, "r+") as f:
        f.attrs[key] = value
    return out


def probs_mutation(value: float) -> Callable[[dict, dict], None]:
    def mutate(arrays: dict, meta: dict) -> None:
        arrays["probs"][3, 1] = value

    return mutate


def ids_beyond_vocab(arrays: dict, meta: dict) -> None:
    meta["vocab_size"] += 64
    arrays["ids"][2, 4] = meta["vocab_size"] - 10


def corrupt_probs(world: World, tmp: Path) -> Path:
    """A copy of the train store with 4 bytes flipped inside the first chunk of probs."""
    out = copy_store(world, tmp)
    with h5py.File(out, "r") as f:
        offset = f["probs"].id.get_chunk_info(0).byte_offset + 8
    raw = bytearray(out.read_bytes())
    raw[offset : offset + 4] = bytes(b ^ 0xFF for b in raw[offset : offset + 4])
    out.write_bytes(bytes(raw))
    return out


def edit_probs(world: World, tmp: Path) -> Path:
    """A copy of the train store with one probability rewritten through HDF5 (valid chunks)."""
    out = copy_store(world, tmp)
    with h5py.File(out, "r+") as f:
        f["probs"][0, 0] = f["probs"][0, 0] + 0.25
    return out


def truncated(source: Path, tmp: Path) -> Path:
    """The first half of `source` (a store, a checkpoint) as `truncated<suffix>`."""
    out = tmp / f"truncated{source.suffix}"
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def only_partial(world: World, tmp: Path) -> Path:
    partial_path(tmp / "store.h5").write_bytes(world.train_store.read_bytes())
    return tmp / "store.h5"


def garbage_checkpoint(tmp: Path) -> Path:
    path = tmp / "broken.ckpt"
    path.write_bytes(b"not a checkpoint" * 100)
    return path


def foreign_checkpoint(tmp: Path) -> Path:
    path = tmp / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, path)
    return path


def run_folder_of_other_run(world: World, tmp: Path) -> None:
    """`first-pl fit` into the teacher's folder with another learning rate."""
    main(
        world.fit_args(
            world.run_dir, "--trainer.max_steps", "1", "--model.init_args.optimizer.lr", "0.1"
        )
    )


def pipeline_yaml(tmp: Path) -> Path:
    path = tmp / "pipeline.yaml"
    path.write_text(
        yaml.safe_dump({"output_dir": str(tmp / "out"), "trainer": str(tmp / "no_trainer.yaml")})
    )
    return path


def evaluate_on_tasks(world: World, tmp: Path, *tasks: dict) -> None:
    """`first-pl test` of the world's checkpoint with `data.eval_tasks` = tasks."""
    path = tmp / "data.yaml"
    path.write_text(yaml.safe_dump({"data": data_section(world.model_dir, eval_tasks=list(tasks))}))
    main(world.fit_args(tmp / "run", "--ckpt_path", str(world.checkpoint), data=path, command="test"))


def hub_file(tmp: Path, task: str, rows: list[dict], name: str = "data.jsonl") -> dict:
    """A local file for a hub task class (json.dumps writes NaN as the literal NaN)."""
    (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"class_path": f"first_pl.tasks.{task}", "init_args": {"source": str(tmp / name)}}


def csqa_folder_with_only_train(tmp: Path) -> dict:
    (tmp / "folder").mkdir()
    csqa_file(tmp / "folder", [csqa_row(0)], name="train.jsonl")
    return {"class_path": "first_pl.tasks.CommonsenseQA", "init_args": {"source": str(tmp / "folder")}}


def bigbench_examples(tmp: Path, examples: list, **init_args) -> dict:
    task = bigbench(tmp, json.dumps({"examples": examples}))
    task["init_args"].update(init_args)
    return task


def copy_of_run(world: World, tmp: Path) -> Path:
    """A copy of the teacher's run folder (config.yaml naming the copy, checkpoint), to resume."""
    run = Path(shutil.copytree(world.run_dir, tmp / "teacher"))
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(world.run_dir), str(run)))
    return run


def saved_tokenizer(world: World, tmp: Path, extra_tokens: int = 0) -> Path:
    """The tiny model's tokenizer saved alone (no config.json), `extra_tokens` added."""
    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    tokenizer.add_tokens([f"extra{i}" for i in range(extra_tokens)])
    tokenizer.save_pretrained(tmp / "tokenizer")
    return tmp / "tokenizer"


def ask_args(
    checkpoint: Path, *extra: str, question: str = "Which city?", choices: str = '["Oslo", "Rome"]'
) -> list[str]:
    return ["ask", "--checkpoint", str(checkpoint), "--question", question, "--choices", choices,
            *extra]  # fmt: skip


def empty_folder(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def rank_calibration(world: World, tmp: Path, *extra: str) -> None:
    main(
        ["rank-calibration", "--store", str(world.validation_store), "--output_dir",
         str(tmp / "rc"), *extra]
    )  # fmt: skip


# -- the catalogue --------------------------------------------------------------------------------

CASES = [
    # configs: unknown keys, wrong types, out-of-range values
    Case(
        "config-unknown-option",
        lambda w, t: fit(w, t, "--model.init_args.optimizer.learning_rate", "1"),
        r"learning_rate",
    ),
    Case(
        "config-unknown-key-in-file",
        lambda w, t: fit(w, t, "--config", str(write(t / "c.yaml", "trainer:\n  max_step: 3\n"))),
        r"max_step",
    ),
    Case(
        "config-wrong-type-float",
        lambda w, t: fit(w, t, "--model.init_args.optimizer.lr", "fast"),
        r"lr[\s\S]*Expected a <class 'float'>[\s\S]*fast",
    ),
    Case(
        "config-wrong-type-int",
        lambda w, t: fit(w, t, "--data.init_args.batch_size", "many"),
        r"batch_size[\s\S]*many",
    ),
    Case(
        "config-lr-zero",
        lambda w, t: fit(w, t, "--model.init_args.optimizer.lr", "0"),
        r"optimizer\.lr must be > 0, got 0",
    ),
    Case(
        "config-batch-size-zero",
        lambda w, t: fit(w, t, "--data.init_args.batch_size", "0"),
        r"data\.batch_size .* must be >= 1, got 0",
    ),
    Case(
        "config-keep-every-zero",
        lambda w, t: fit(w, t, "--model.init_args.model.keep_every", "0"),
        r"model\.keep_every must be >= 1, got 0",
    ),
    Case(
        "extract-k-zero",
        lambda w, t: main(w.extract_args(t / "s.h5", "--k", "0")),
        r"k must be >= 1, got 0",
    ),
    Case(
        "extract-k-negative",
        lambda w, t: main(w.extract_args(t / "s.h5", "--k", "-3")),
        r"k must be >= 1, got -3",
    ),
    Case(
        "first-temperature-zero",
        lambda w, t: fit(w, t, "--model.init_args.temperature", "0", model="first.yaml"),
        r"temperature must be > 0, got 0",
    ),
    Case(
        "first-temperature-negative",
        lambda w, t: fit(w, t, "--model.init_args.temperature", "-0.5", model="first.yaml"),
        r"temperature must be > 0, got -0\.5",
    ),
    Case(
        "first-auto-without-calibration-file",
        lambda w, t: fit(
            w, t, "--model.init_args.calibration", str(t / "none.json"), model="first.yaml"
        ),
        r"calibration file .*none\.json does not exist",
    ),
    Case(
        "first-calibration-not-a-result",
        lambda w, t: fit(
            w,
            t,
            "--model.init_args.calibration",
            str(write(t / "c.json", '{"c": 1}')),
            model="first.yaml",
        ),
        r"c\.json is not a calibration result",
    ),
    Case(
        "ls-delta-one",
        lambda w, t: fit(
            w, t, "--model.init_args.delta", "1.0", model="label_smoothing_distill.yaml"
        ),
        r"delta must be in \[0, 1\), got 1\.0",
    ),
    Case(
        "ls-delta-negative",
        lambda w, t: fit(
            w, t, "--model.init_args.delta", "-0.1", model="label_smoothing_distill.yaml"
        ),
        r"delta must be in \[0, 1\), got -0\.1",
    ),
    Case(
        "ce-weight-above-one",
        lambda w, t: fit(w, t, "--model.init_args.ce_weight", "2", model="distill.yaml"),
        r"ce_weight must be in \[0, 1\], got 2",
    ),
    Case(
        "evaluation-n-bins-zero",
        lambda w, t: fit(w, t, "--evaluation.n_bins", "0"),
        r"n_bins must be an integer >= 1, got 0",
    ),
    Case(
        "sweep-temperature-zero",
        lambda w, t: main(["sweep", "--output_dir", str(t), "--temperatures", "[0.5, 0]"]),
        r"sweep temperatures must be in \(0, 1\] \(the documented range of c\), got \[0",
    ),
    Case(
        "sweep-delta-one",
        lambda w, t: main(["sweep", "--output_dir", str(t), "--deltas", "[1.0]"]),
        r"sweep deltas must be in \[0, 1\) \(the documented range of delta\), got \[1\.0\]",
    ),
    Case(
        "pipeline-config-file-missing",
        lambda w, t: main(["pipeline", "--config", str(pipeline_yaml(t))]),
        r"pipeline config refers to .*no_trainer\.yaml, which does not exist",
    ),
    Case(
        "template-letter-not-one-token",
        lambda w, t: fit(w, t, "--data.init_args.template.answer_prefix", "Option "),
        r"candidate 'Option A' .*is 2 tokens.*each answer must be a single token",
    ),
    # data files
    Case(
        "data-file-missing",
        lambda w, t: fit_on_task(
            w,
            t,
            {
                "class_path": "first_pl.tasks.CommonsenseQA",
                "init_args": {"source": str(t / "gone.jsonl")},
            },
        ),
        r"data file .*gone\.jsonl does not exist",
    ),
    Case(
        "data-file-empty",
        lambda w, t: fit_on_task(w, t, csqa_file(t, text="\n")),
        r"csqa\.jsonl: holds no rows",
    ),
    Case(
        "data-file-malformed",
        lambda w, t: fit_on_task(w, t, csqa_file(t, text=json.dumps(csqa_row(0)) + "\n{oops\n")),
        r"csqa\.jsonl: malformed JSON at line 1",
    ),
    Case(
        "data-field-missing",
        lambda w, t: fit_on_task(w, t, csqa_file(t, [csqa_row(0), csqa_row(1, question=None)])),
        r"csqa\.jsonl: row 1 is missing field 'question'",
    ),
    Case(
        "data-duplicate-id",
        lambda w, t: fit_on_task(w, t, csqa_file(t, [csqa_row(0), csqa_row(1, id="q0")])),
        r"csqa\.jsonl: duplicate example id 'q0'",
    ),
    Case(
        "data-answer-out-of-range",
        lambda w, t: fit_on_task(w, t, csqa_file(t, [csqa_row(0, answerKey="E")])),
        r"csqa\.jsonl: row 0 field 'answerKey' is 'E'; expected one of \['A', 'B', 'C'\]",
    ),
    Case(
        "data-not-utf8",
        lambda w, t: fit_on_task(
            w,
            t,
            csqa_file(t, text=json.dumps(csqa_row(0)).encode().replace(b"apple", b"\xff\xfeapple")),
        ),
        r"csqa\.jsonl: not valid UTF-8",
    ),
    Case(
        "data-too-few-choices",
        lambda w, t: fit_on_task(
            w, t, csqa_file(t, [csqa_row(0, choices={"label": ["A"], "text": ["x"]})])
        ),
        r"field 'choices' has 1 options; expected 2 to 5",
    ),
    Case(
        "bigbench-two-answers",
        lambda w, t: fit_on_task(
            w,
            t,
            bigbench(
                t, json.dumps({"examples": [{"input": "q", "target_scores": {"a": 1, "b": 1}}]})
            ),
        ),
        r"task\.json: example 0 field 'target_scores' has 2 choices scoring 1; expected exactly 1",
    ),
    Case(
        "bigbench-malformed",
        lambda w, t: fit_on_task(w, t, bigbench(t, '{"examples": [')),
        r"task\.json: malformed JSON at line 1",
    ),
    # teacher stores
    Case(
        "store-missing",
        lambda w, t: distill_fit(w, t, t / "none.h5"),
        r"teacher store .*none\.h5 does not exist",
    ),
    Case(
        "store-truncated",
        lambda w, t: distill_fit(w, t, truncated(w.train_store, t)),
        r"truncated\.h5 is truncated",
    ),
    Case(
        "store-corrupted",
        lambda w, t: distill_fit(w, t, corrupt_probs(w, t)),
        r"copy\.h5 is corrupt: reading rows 0\.\.\d+ of dataset 'probs' failed its chunk checksum",
    ),
    Case(
        "store-partial-path",
        lambda w, t: distill_fit(w, t, partial_path(copy_store(w, t))),
        r"\.partial is a partial store",
    ),
    Case(
        "store-only-partial-exists",
        lambda w, t: distill_fit(w, t, only_partial(w, t)),
        r"store\.h5 does not exist \(a partial store exists: the extraction did not finish\)",
    ),
    Case(
        "store-incomplete",
        lambda w, t: distill_fit(w, t, set_attr(w, t, "complete", False)),
        r"copy\.h5 is incomplete \(its writer never finalized it\)",
    ),
    Case(
        "store-other-tokenizer",
        lambda w, t: distill_fit(w, t, set_attr(w, t, "tokenizer_fingerprint", "0" * 16)),
        r"tokenizer_fingerprint is '0{16}' but .* another tokenizer than data\.tokenizer",
    ),
    Case(
        "store-smaller-vocab",
        lambda w, t: distill_fit(w, t, set_attr(w, t, "vocab_size", 10)),
        r"vocab_size is 10 but data\.tokenizer has \d+ tokens",
    ),
    Case(
        "store-other-template",
        lambda w, t: distill_fit(
            w, t, None, "--data.init_args.template.option", "{letter}) {text}"
        ),
        r"template_fingerprint .* another data\.template",
    ),
    Case(
        "store-other-split",
        lambda w, t: distill_fit(w, t, w.validation_store),
        r"split is 'validation' but 'train' was expected",
    ),
    Case(
        "store-other-task",
        lambda w, t: distill_fit(w, t, None, "--data.init_args.train_task.init_args.seed", "6"),
        r"task is .* another data\.train_task",
    ),
    Case(
        "store-nan-probs",
        lambda w, t: distill_fit(w, t, rewrite_store(w, t, probs_mutation(float("nan")))),
        r"bad\.h5: 1 position\(s\) with NaN probabilities, first at row 3",
    ),
    Case(
        "store-negative-probs",
        lambda w, t: distill_fit(w, t, rewrite_store(w, t, probs_mutation(-0.2))),
        r"bad\.h5: 1 position\(s\) with negative probabilities, first at row 3",
    ),
    Case(
        "store-unnormalised-probs",
        lambda w, t: distill_fit(w, t, rewrite_store(w, t, probs_mutation(1.5))),
        r"bad\.h5: 1 position\(s\) with row sum > 1",
    ),
    Case(
        "store-ids-beyond-student-vocab",
        lambda w, t: distill_fit(w, t, rewrite_store(w, t, ids_beyond_vocab)),
        r"bad\.h5: teacher token id \d+ is beyond the student's vocab \(\d+ tokens\)",
    ),
    Case(
        "calibrate-store-missing",
        lambda w, t: main(["calibrate", "--store", str(t / "v.h5"), "--output_dir", str(t)]),
        r"teacher store .*v\.h5 does not exist",
    ),
    Case(
        "extract-over-complete-store",
        lambda w, t: main(w.extract_args(w.train_store)),
        r"teacher_train\.h5 already exists as a complete store; pass --overwrite true",
    ),
    Case(
        "extract-teacher-missing",
        lambda w, t: main(w.extract_args(t / "s.h5", "--teacher", str(t / "gone"))),
        r"--teacher .*gone does not exist; expected a first_pl \.ckpt file, a sharded checkpoint folder",
    ),
    # checkpoints
    Case(
        "checkpoint-other-strategy",
        lambda w, t: load_method(w.checkpoint, expect=FIRST),
        r"holds a FineTune; expected a FIRST",
    ),
    Case(
        "checkpoint-not-first-pl",
        lambda w, t: load_method(foreign_checkpoint(t)),
        r"foreign\.ckpt was not written by a first_pl method",
    ),
    Case(
        "checkpoint-unreadable",
        lambda w, t: main(w.extract_args(t / "s.h5", "--teacher", str(garbage_checkpoint(t)))),
        r"checkpoint .*broken\.ckpt cannot be read",
    ),
    Case(
        "test-checkpoint-of-another-model",
        lambda w, t: main(
            w.fit_args(
                t / "run",
                "--model.init_args.model.keep_every",
                "2",
                "--ckpt_path",
                str(w.checkpoint),
                command="test",
            )
        ),
        r"--ckpt_path .*\.ckpt was trained with model \{.*'keep_every': None.*\} but the config gives model \{.*'keep_every': 2",
    ),
    # run folders
    Case(
        "fit-into-another-runs-folder",
        run_folder_of_other_run,
        r"run folder .*teacher already holds another run: its .*config\.yaml differs in model\.init_args\.optimizer\.lr \(0\.0002 there, 0\.1 now\).*--overwrite_run true",
    ),
    # commands (issue 14 part B): refused by name, not a traceback, a silent run or lost data
    Case(
        "test-ckpt-missing",
        lambda w, t: main(w.fit_args(t / "run", "--ckpt_path", str(t / "gone.ckpt"), command="test")),
        r"--ckpt_path .*gone\.ckpt does not exist",
    ),
    Case(
        "test-ckpt-truncated",
        lambda w, t: main(
            w.fit_args(t / "run", "--ckpt_path", str(truncated(w.checkpoint, t)), command="test")
        ),
        r"--ckpt_path .*truncated\.ckpt cannot be read \(truncated, damaged or not a checkpoint\)",
    ),
    Case(
        "test-checkpoint-of-another-strategy",
        lambda w, t: main(
            w.fit_args(
                t / "run", "--model.init_args.temperature", "1", "--ckpt_path", str(w.checkpoint),
                model="first.yaml", command="test",
            )
        ),  # fmt: skip
        r"--ckpt_path .*\.ckpt holds a first_pl\.methods\.FineTune checkpoint but the config "
        r"gives model first_pl\.methods\.FIRST",
    ),
    Case(
        "fit-max-steps-zero",
        lambda w, t: main(w.fit_args(t / "run", "--trainer.max_steps", "0")),
        r"trainer\.max_steps is 0: fit would train no step and save no checkpoint",
    ),
    Case(
        "fit-max-epochs-zero",
        lambda w, t: main(w.fit_args(t / "run", "--trainer.max_epochs", "0")),
        r"trainer\.max_epochs is 0: fit would train no step and save no checkpoint",
    ),
    Case(
        "fit-ckpt-last-without-a-last-checkpoint",
        lambda w, t: main(w.fit_args(copy_of_run(w, t), "--trainer.max_steps", "3", "--ckpt_path", "last")),
        r"--ckpt_path last: there is no last checkpoint to resume \(looked for last\*\.ckpt in "
        r".*teacher/checkpoints\); only a ModelCheckpoint with save_last: true writes one",
    ),
    Case(
        "fit-resume-into-its-run-with-another-config",
        lambda w, t: main(
            w.fit_args(
                copy_of_run(w, t), "--trainer.max_steps", "3", "--data.init_args.batch_size",
                "2", "--ckpt_path", str(w.checkpoint),
            )
        ),  # fmt: skip
        r"run folder .*teacher already holds another run: its .*config\.yaml differs in "
        r"data\.init_args\.batch_size \(4 there, 2 now\); ",
    ),
    Case(
        "ask-empty-question",
        lambda w, t: main(ask_args(w.checkpoint, question=" ")),
        r"--question is empty",
    ),
    Case(
        "ask-duplicate-choices",
        lambda w, t: main(ask_args(w.checkpoint, choices='["Oslo", "Rome", "Oslo "]')),
        r"--choices lists the same option more than once: \['Oslo'\]",
    ),
    Case(
        "ask-empty-choice",
        lambda w, t: main(ask_args(w.checkpoint, choices='["Oslo", ""]')),
        r"--choices has empty options at positions \[1\]",
    ),
    Case(
        "ask-tokenizer-larger-than-model",
        lambda w, t: main(ask_args(w.checkpoint, "--tokenizer", str(saved_tokenizer(w, t, 40)))),
        r"tokenizer .*tokenizer has (\d+) tokens but the model embeds only (?!\1)\d+",
    ),
    Case(
        "fit-data-tokenizer-larger-than-model",
        lambda w, t: fit(w, t, "--data.init_args.tokenizer", str(saved_tokenizer(w, t, 40))),
        r"--data\.tokenizer .*tokenizer' has (\d+) tokens but --model\.model .* embeds only "
        r"(?!\1)\d+; give the data the tokenizer of the model",
    ),
    Case(
        "ask-tokenizer-folder-as-model",
        lambda w, t: main(ask_args(saved_tokenizer(w, t))),
        r"--checkpoint .*tokenizer is a folder with neither config\.json \(a Hugging Face model\) "
        r"nor meta\.pt \(a sharded checkpoint\)",
    ),
    Case(
        "model-is-a-tokenizer-folder",
        lambda w, t: main(w.extract_args(t / "s.h5", "--teacher", str(saved_tokenizer(w, t)))),
        r"--teacher .*tokenizer is a folder with neither config\.json .*\(it holds only a tokenizer, which is no model\)",
    ),
    Case(
        "tokenizer-folder-without-tokenizer-files",
        lambda w, t: fit(w, t, "--data.init_args.tokenizer", str(empty_folder(t))),
        r"tokenizer folder .*empty has no tokenizer files \(none of tokenizer_config\.json, tokenizer\.json\)",
    ),
    Case(
        "extract-k-beyond-vocabulary",
        lambda w, t: main(w.extract_args(t / "s.h5", "--k", "100000")),
        r"k is 100000 but the teacher's vocabulary has only \d+ tokens; give k <= \d+",
    ),
    Case(
        "extract-output-under-a-file",
        lambda w, t: main(w.extract_args(write(t / "notes.txt", "x") / "s.h5")),
        r"--output .*notes\.txt/s\.h5 lies under .*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "export-output-under-a-file",
        lambda w, t: main(
            ["export", "--checkpoint", str(w.checkpoint), "--output_dir", str(write(t / "notes.txt", "x") / "hf")]
        ),
        r"--output_dir .*notes\.txt/hf lies under .*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "rank-calibration-output-under-a-file",
        lambda w, t: main(
            ["rank-calibration", "--store", str(w.validation_store), "--output_dir", str(write(t / "notes.txt", "x") / "rc")]
        ),
        r"--output_dir .*notes\.txt/rc lies under .*notes\.txt, which is a file, not a folder",
    ),
    Case(
        "rank-calibration-max-positions-negative",
        lambda w, t: rank_calibration(w, t, "--max_positions", "-5"),
        r"--max_positions must be >= 1, got -5",
    ),
    Case(
        "rank-calibration-max-positions-zero",
        lambda w, t: rank_calibration(w, t, "--max_positions", "0"),
        r"--max_positions must be >= 1, got 0",
    ),
    Case(
        "coverage-max-k-zero",
        lambda w, t: main(
            ["coverage", "--config", str(w.data_yaml), "--teacher", str(w.checkpoint), "--output_dir", str(t / "c"), "--max_k", "0"]
        ),
        r"--max_k must be >= 1, got 0",
    ),
    # evaluation data (issue 14 part A): nothing dropped, changed or mixed up silently
    Case(
        "bigbench-examples-are-strings",
        lambda w, t: fit_on_task(w, t, bigbench_examples(t, ["What is 2+2?", "And 3+3?"])),
        r"task\.json: example 0 is a str; expected an object with 'input' and 'target_scores'",
    ),
    Case(
        "bigbench-more-options-than-letters",
        lambda w, t: fit_on_task(w, t, bigbench_examples(
            t, [{"input": f"q{i}", "target_scores": {f"o{j}": int(j == 0) for j in range(6)}} for i in range(20)],
            name="six")),
        r"task 'six' split 'train': \d+ examples have up to 6 options but the template's letters 'ABCDE' "
        r"name only 5; give data\.task_templates\.six\.letters 6 letters",
    ),  # fmt: skip
    Case(
        "data-empty-train-split",
        lambda w, t: fit_on_task(
            w, t, {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {"train_size": 0, "name": "nothing"}}
        ),
        r"task 'nothing' has no examples in its train split",
    ),
    Case(
        "data-csqa-as-csv",
        lambda w, t: fit_on_task(w, t, csqa_file(
            t, text='id,question,choices,answerKey\nq0,Which?,"{\'label\': [\'A\', \'B\']}",A\n', name="csqa.csv")),
        r"csqa\.csv: row 0 field 'choices' is text: a CSV file cannot hold the nested .* give this task "
        r"a \.jsonl, \.json or \.parquet file",
    ),  # fmt: skip
    Case(
        "data-csqa-labels-texts-differ",
        lambda w, t: fit_on_task(
            w, t, csqa_file(t, [csqa_row(0, choices={"label": ["A", "B", "C"], "text": ["x", "y"]})])
        ),
        r"csqa\.jsonl: row 0 field 'choices' has 3 labels \['A', 'B', 'C'\] but 2 texts",
    ),
    Case(
        "data-boolq-answer-nan",
        lambda w, t: fit_on_task(w, t, hub_file(t, "BoolQ", [
            {"question": "is it", "passage": "p", "answer": True},
            {"question": "is it", "passage": "p", "answer": float("nan")}])),
        r"data\.jsonl: row 1 is missing field 'answer'",
    ),  # fmt: skip
    Case(
        "data-boolq-answer-two",
        lambda w, t: fit_on_task(w, t, hub_file(t, "BoolQ", [{"question": "is it", "passage": "p", "answer": 2.0}])),
        r"data\.jsonl: row 0 field 'answer' is 2\.0; expected true or false",
    ),
    Case(
        "data-folder-lacks-the-split-asked-for",
        lambda w, t: evaluate_on_tasks(w, t, csqa_folder_with_only_train(t)),
        r"data folder .*folder has no validation\{.*\} file \(the task reads its 'test' split from it\)",
    ),
    Case(
        "eval-tasks-with-one-name",
        lambda w, t: evaluate_on_tasks(w, t, *[bigbench_examples(t, [{"input": "q", "target_scores": {"a": 1, "b": 0}}],
                                                              name="same")] * 2),
        r"data\.eval_tasks has two tasks named 'same' .*give each its own init_args\.name",
    ),  # fmt: skip
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_message(exc: BaseException, capsys) -> str:
    if isinstance(exc, SystemExit):
        assert exc.code not in (0, None), "a bad input must not exit 0"
        return capsys.readouterr().err
    cause = user_error(exc)
    assert cause is not None, (
        f"not raised by a first_pl check (the user would see a traceback): {exc!r}"
    )
    return str(cause)


def assert_one_clear_error(case, world: World, tmp_path: Path, capsys) -> str:
    """Provoke `case` (any table's: it has `id`, `provoke` and `expect`) and check that its one
    error matches `case.expect`; returns the message."""
    try:
        case.provoke(world, tmp_path)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the table says what is expected
        message = error_message(exc, capsys)
    else:
        pytest.fail(f"{case.id}: no error")
    assert re.search(case.expect, message), f"{case.id}: {message[-2000:]}"
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world: World, tmp_path: Path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)


def test_catalogue_size(record_property) -> None:
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)
    record_property("bad_input_cases", len(CASES))
    print(f"bad-input catalogue: {len(CASES)} cases")
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "args, expect",
    [
        (
            ["--model.init_args.delta", "1.5"],
            r"^first-pl fit: error: delta must be in \[0, 1\), got 1\.5 \(or 'auto'\)$",
        ),
        (["--model.init_args.optimizer.lr", "fast"], r"Expected a <class 'float'>"),
    ],
    ids=["value-error", "parse-error"],
)
def test_command_line_prints_one_line_and_exits_2(
    world: World, tmp_path: Path, args, expect
) -> None:
    done = first_pl(world.fit_args(tmp_path / "run", *args, model="label_smoothing_distill.yaml"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1] if "^" in expect else done.stderr
    assert re.search(expect, last, re.MULTILINE), done.stderr[-3000:]
