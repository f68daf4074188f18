"""Bad inputs of teacher stores, imports and calibration: each gives ONE clear error.

The catalogue of `test_bad_inputs.py` (same `Case` table and checks), for what travels between
tools and stages: an import resumed from another source, a record missing rows, a probability
that is not one, a malformed file, a store of another max_length, a calibration.json of another
store or edited inside the pipeline, a store of NaN for rank-calibration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from robustness_world import TASK, World
from test_bad_inputs import (
    Case,
    assert_one_clear_error,
    copy_store,
    distill_fit,
    fit,
    rewrite_store,
)

from first_pl.cli import main
from first_pl.data.batch import response_positions
from first_pl.data.qa_datamodule import QADataModule
from first_pl.pipeline.pipeline import Pipeline
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.teacher_stages import calibrate_stage
from first_pl.tasks import GeneratedMC
from first_pl.teacher.parameter_choice import CalibrationResult

K = 5
_EXAMPLES: dict[Path, list] = {}


def train_examples(world: World) -> list:
    """The world's tokenised train split (what its stores hold), built once."""
    if world.model_dir not in _EXAMPLES:
        data = QADataModule(
            tokenizer=str(world.model_dir), train_task=GeneratedMC(**TASK), max_length=64
        )
        _EXAMPLES[world.model_dir] = data.split_examples("train")
    return _EXAMPLES[world.model_dir]


def vllm_records(world: World, seed: int = 0) -> list[dict[str, Any]]:
    """Well-formed vLLM prompt_logprobs records of the train split: per position the top-K by
    rank with descending log-probabilities, plus the actual token when outside them."""
    rng = np.random.default_rng(seed)
    records = []
    for ex in train_examples(world):
        entries: list[Any] = [None]
        for j in range(1, len(ex.input_ids)):
            tokens = rng.choice(1000, size=K, replace=False).tolist()
            logprobs = np.sort(np.log(rng.dirichlet(np.ones(K + 1))[:K]))[::-1].tolist()
            entry = {
                str(t): {"logprob": lp, "rank": r + 1}
                for r, (t, lp) in enumerate(zip(tokens, logprobs, strict=True))
            }
            entry.setdefault(str(ex.input_ids[j]), {"logprob": -30.0, "rank": 999})
            entries.append(entry)
        records.append({"example_id": ex.example_id, "prompt_logprobs": entries})
    return records


def first_entry(world: World, records: list[dict[str, Any]]) -> dict:
    """The first record's prompt_logprobs entry at its first response position (entry t + 1
    is store row t)."""
    t = response_positions(train_examples(world)[0].labels)[0]
    return records[0]["prompt_logprobs"][t + 1]


def top_token(entry: dict) -> str:
    return next(token for token, v in entry.items() if v["rank"] == 1)


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def import_store(world: World, source: Path, out: Path, fmt: str = "vllm", *extra: str) -> None:
    main(
        ["import-store", "--config", str(world.data_yaml), "--source", str(source),
         "--format", fmt, "--output", str(out), "--k", str(K), *extra]
    )  # fmt: skip


def import_vllm(world: World, tmp: Path, change=None, name: str = "v.jsonl") -> None:
    """Import vLLM records after `change(records, entry)` edited them (`entry`: the first
    record's entry at its first response position)."""
    records = vllm_records(world)
    if change is not None:
        change(records, first_entry(world, records))
    import_store(world, write_records(tmp / name, records), tmp / "imported.h5")


def set_logprobs(*values: float):
    """Give the first entry's top tokens these log-probabilities, rank 1 first."""

    def change(records: list[dict[str, Any]], entry: dict) -> None:
        by_rank = sorted((v["rank"], token) for token, v in entry.items())
        for value, (_, token) in zip(values, by_rank, strict=False):  # the first len(values) ranks
            entry[token]["logprob"] = value

    return change


def outranked(records: list[dict[str, Any]], entry: dict) -> None:
    """A token of rank 7 whose log-probability is above every top-5 one's."""
    entry[str(max(map(int, entry)) + 1)] = {"logprob": -1e-3, "rank": 7}


def cut_prompt_logprobs(records: list[dict[str, Any]], entry: dict) -> None:
    records[0]["prompt_logprobs"] = records[0]["prompt_logprobs"][:-3]


def drop_logprob(records: list[dict[str, Any]], entry: dict) -> None:
    del entry[top_token(entry)]["logprob"]


def null_prompt_logprobs(records: list[dict[str, Any]], entry: dict) -> None:
    records[1]["prompt_logprobs"] = None


def resumed_from_another_source(world: World, tmp: Path) -> None:
    """A.jsonl fails inside the import (an example scored against other tokens), leaving the
    partial store; the same command with B.jsonl must not fill it."""
    broken = vllm_records(world, seed=1)
    entry = first_entry(world, broken)
    labels = train_examples(world)[0].labels
    entry.pop(str(labels[response_positions(labels)[0]]), None)
    with pytest.raises(ValueError, match="scores other tokens"):
        import_store(world, write_records(tmp / "A.jsonl", broken), tmp / "s.h5")
    assert (tmp / "s.h5.partial").exists()
    import_store(world, write_records(tmp / "B.jsonl", vllm_records(world, seed=2)), tmp / "s.h5")


def axolotl_records(world: World, cut_last: int = 0) -> list[dict[str, Any]]:
    """axolotl v1 records of the vLLM records (vLLM's leading None dropped), the last
    `cut_last` rows of the first record missing."""
    records = []
    for record in vllm_records(world):
        rows = [
            [{"token": f"token_id:{t}", "logprob": v["logprob"]} for t, v in entry.items()]
            for entry in record["prompt_logprobs"][1:]
        ]
        records.append({"example_id": record["example_id"], "logprobs": rows})
    if cut_last:
        records[0]["logprobs"] = records[0]["logprobs"][:-cut_last]
    return records


def parquet_export(world: World, tmp: Path, probs: float) -> Path:
    """`export-store` of a copy of the train store whose first probability is `probs`."""

    def mutate(arrays: dict, meta: dict) -> None:
        arrays["probs"] = arrays["probs"].copy()
        arrays["probs"][0, 0] = probs

    store = rewrite_store(world, tmp, mutate)
    main(["export-store", "--store", str(store), "--output", str(tmp / "s.parquet")])
    return tmp / "s.parquet"


def store_at_max_length(world: World, tmp: Path, max_length: int) -> Path:
    store = copy_store(world, tmp)
    with h5py.File(store, "r+") as f:
        f.attrs["max_length"] = max_length
    return store


def calibration_of_another_store(world: World, tmp: Path, **settings: Any) -> Path:
    result = CalibrationResult.from_json(world.calibration)
    result.settings.update(settings)
    path = tmp / "calibration.json"
    result.to_json(path)
    return path


def first_fit(world: World, tmp: Path, calibration: Path) -> None:
    fit(world, tmp, "--model.init_args.calibration", str(calibration), model="first.yaml",
        data=world.distill_yaml)  # fmt: skip


def edited_pipeline_calibration(world: World, tmp: Path) -> None:
    """The pipeline's calibrate stage, done; its calibration.json edited by hand; the pipeline
    run again (as for one more seed) must not hand the edited file to new students only."""
    pipeline = Pipeline(output_dir=str(tmp))
    validation = StageResult("extract-validation", "k", tmp, {"store": str(world.validation_store)})
    with StageRunner(tmp / "stages", log=lambda _: None) as runner:
        done = calibrate_stage(
            pipeline, runner, "calibrate", str(world.validation_store), [validation]
        )
    data = json.loads(Path(done.path).read_text())
    data["parameter"] = data["temperature"] = 0.9
    Path(done.path).write_text(json.dumps(data))
    with StageRunner(tmp / "stages", log=lambda _: None) as runner:
        calibrate_stage(pipeline, runner, "calibrate", str(world.validation_store), [validation])


def nan_store(world: World, tmp: Path) -> Path:
    def mutate(arrays: dict, meta: dict) -> None:
        arrays["probs"] = arrays["probs"].copy()
        arrays["probs"][3] = np.nan

    return rewrite_store(world, tmp, mutate)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


CASES = [
    # imports: one source per store
    Case(
        "import-resumed-from-another-source",
        resumed_from_another_source,
        r"cannot resume .*s\.h5\.partial: its import_source is .*A\.jsonl.* but this run has "
        r".*B\.jsonl.*; delete the partial file",
    ),
    # imports: probabilities that are not one distribution's
    Case(
        "import-vllm-logprob-above-zero",
        lambda w, t: import_vllm(w, t, set_logprobs(0.7)),
        r"v\.jsonl: example '.*' position \d+: the log-probability of rank 1 is 0\.7; it must be "
        r"finite and <= 0",
    ),
    Case(
        "import-vllm-logprob-nan",
        lambda w, t: import_vllm(w, t, set_logprobs(float("nan"))),
        r"v\.jsonl: example '.*' position \d+: the log-probability of rank 1 is nan",
    ),
    Case(
        "import-vllm-top-k-sums-above-one",
        lambda w, t: import_vllm(w, t, set_logprobs(*[np.log(0.4)] * K)),
        r"v\.jsonl: example '.*' position \d+: the top-5 probabilities sum to 2, above 1 \+ 0\.002",
    ),
    Case(
        "import-parquet-probability-above-one",
        lambda w, t: import_store(w, parquet_export(w, t, 1.5), t / "p.h5", "parquet"),
        r"s\.parquet: example '.*' response position 0 of \d+: the probability of rank 1 is 1\.5; "
        r"it must be finite and in \[0, 1\]",
    ),
    Case(
        "import-parquet-probability-nan",
        lambda w, t: import_store(w, parquet_export(w, t, float("nan")), t / "p.h5", "parquet"),
        r"s\.parquet: example '.*' response position 0 of \d+: the probability of rank 1 is nan",
    ),
    # imports: order and alignment
    Case(
        "import-vllm-rank-contradicts-logprob",
        lambda w, t: import_vllm(w, t, outranked),
        r"v\.jsonl: example '.*' position \d+: token \d+ has rank 7 but log-probability -0\.001, "
        r"above .* in the top-5: ranks and log-probabilities disagree",
    ),
    Case(
        "import-axolotl-missing-last-rows",
        lambda w, t: import_store(
            w, write_records(t / "a.jsonl", axolotl_records(w, 3)), t / "a.h5", "axolotl"
        ),
        r"a\.jsonl: field 'logprobs' of example '.*' has (\d+) entries but the data has (\d+) "
        r"tokens \(expected \d+ or \d+ entries\)",
    ),
    Case(
        "import-vllm-missing-last-rows",
        lambda w, t: import_vllm(w, t, cut_prompt_logprobs),
        r"v\.jsonl: prompt_logprobs of example '.*' has \d+ entries but the data has \d+ tokens",
    ),
    # imports: malformed files and records
    Case(
        "import-json-syntax-error",
        lambda w, t: import_store(w, write(t / "x.json", '[{"example_id": "a",'), t / "x.h5"),
        r"x\.json is not JSON .*expected a JSON list of records",
    ),
    Case(
        "import-jsonl-bad-line",
        lambda w, t: import_store(
            w, write(t / "x.jsonl", '{"example_id": "a"}\n{oops\n'), t / "x.h5"
        ),
        r"x\.jsonl line 2 is not JSON",
    ),
    Case(
        "import-binary-file",
        lambda w, t: import_store(w, write(t / "x.json", b"\xff\xfe\x00binary"), t / "x.h5"),
        r"x\.json is not UTF-8 text",
    ),
    Case(
        "import-parquet-not-parquet",
        lambda w, t: import_store(w, write(t / "x.parquet", "text"), t / "x.h5", "axolotl"),
        r"x\.parquet is not a readable parquet file",
    ),
    Case(
        "import-vllm-entry-without-logprob",
        lambda w, t: import_vllm(w, t, drop_logprob),
        r"v\.jsonl: the record of example '.*' is not one of the vllm format: expected "
        r"'prompt_logprobs': None, then .* \(KeyError: 'logprob'\)",
    ),
    Case(
        "import-vllm-prompt-logprobs-null",
        lambda w, t: import_vllm(w, t, null_prompt_logprobs),
        r"v\.jsonl: the record of example '.*' is not one of the vllm format: expected .*\(TypeError",
    ),
    Case(
        "import-axolotl-token-not-an-id",
        lambda w, t: import_store(
            w,
            write_records(
                t / "a.jsonl",
                [
                    {
                        **r,
                        "logprobs": [[{"token": "hello", "logprob": -1.0}] * K]
                        * len(r["logprobs"]),
                    }
                    for r in axolotl_records(w)
                ],
            ),
            t / "a.h5",
            "axolotl",
        ),
        r"a\.jsonl: example '.*' position \d+ is malformed \(IndexError: .*\); expected 'logprobs' "
        r"entries \{'token': 'token_id:<id>', 'logprob': <number>\}",
    ),
    # stores and calibrations made under other settings
    Case(
        "distill-store-of-another-max-length",
        lambda w, t: distill_fit(w, t, store_at_max_length(w, t, 32)),
        r"copy\.h5: max_length is 32 but 64 was expected \(the store was extracted under another "
        r"data\.max_length",
    ),
    Case(
        "first-calibration-of-a-k10-store",
        lambda w, t: first_fit(w, t, calibration_of_another_store(w, t, k=10)),
        r"calibration\.json: k is 10 \(of the store it was chosen on, .*teacher_validation\.h5\) "
        r"but the training store .*teacher_train\.h5 has 5",
    ),
    Case(
        "first-calibration-of-another-task",
        lambda w, t: first_fit(w, t, calibration_of_another_store(w, t, task="other/0123")),
        r"calibration\.json: task is 'other/0123' .* but the training store .*teacher_train\.h5 has "
        r"'generated/",
    ),
    Case(
        "pipeline-calibration-edited",
        edited_pipeline_calibration,
        r"calibration\.json was changed after the calibrate stage wrote it \(its stage\.json records "
        r"sha256 [0-9a-f]{64}\).*delete .*calibrate-[0-9a-f]+ to calibrate again",
    ),
    Case(
        "rank-calibration-nan-store",
        lambda w, t: main(
            ["rank-calibration", "--store", str(nan_store(w, t)), "--output_dir", str(t / "rc")]
        ),
        r"bad\.h5: 1 of the \d+ positions read hold non-finite probabilities \(first at row 3\)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, world: World, tmp_path: Path, capsys) -> None:
    assert_one_clear_error(case, world, tmp_path, capsys)
