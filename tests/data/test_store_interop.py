"""Stores that travel: vLLM / axolotl / parquet teacher top-k into the HDF5 store and back out,
against a ground truth written by hand for the tiny tokenised data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from first_pl.cli import main
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore, TeacherStoreError
from first_pl.data.store.interop import response_positions
from first_pl.tasks import GeneratedMC

K, TASK = 3, {"train_size": 6, "validation_size": 2, "test_size": 2, "seed": 1}


@pytest.fixture(scope="module")
def data(tiny_model_dir):
    return QADataModule(
        tokenizer=str(tiny_model_dir), train_task=GeneratedMC(**TASK), max_length=64
    )


@pytest.fixture(scope="module")
def truth(data):
    """Per example and input position j >= 1: K + 1 (token, logprob) by rank, actual token included."""
    rng = np.random.default_rng(0)
    vocab = len(data.tokenizer)
    out = {}
    for ex in data.examples(data.train_task, "train"):
        rows = [None]
        for j in range(1, len(ex.input_ids)):
            tokens = rng.choice(vocab, size=K + 1, replace=False).tolist()
            if ex.input_ids[j] not in tokens[:K] and rng.random() < 0.5:
                tokens[rng.integers(K)] = ex.input_ids[
                    j
                ]  # the actual token among the top-k half the time
            logprobs = np.sort(np.log(rng.dirichlet(np.ones(K + 2))[: K + 1]))[::-1].tolist()
            rows.append(list(zip(tokens, logprobs, strict=True)))
        out[ex.example_id] = (ex, rows)
    return out


def vllm_records(truth) -> list[dict]:
    records = []
    for example_id, (ex, rows) in truth.items():
        prompt_logprobs = [None]
        for j, row in enumerate(rows[1:], start=1):
            entry = {
                str(t): {"logprob": lp, "rank": r + 1, "decoded_token": "x"}
                for r, (t, lp) in enumerate(row[:K])
            }
            actual = ex.input_ids[j]
            if str(actual) not in entry:  # vLLM adds the actual token with its own rank
                entry[str(actual)] = {"logprob": -20.0, "rank": 999, "decoded_token": "y"}
            prompt_logprobs.append(entry)
        records.append(
            {
                "example_id": example_id,
                "prompt_logprobs": prompt_logprobs,
                "prompt_token_ids": ex.input_ids,
            }
        )
    return records


def expected_rows(truth, example_id):
    ex, rows = truth[example_id]
    positions = response_positions(ex.labels)
    ids = np.array([[t for t, _ in rows[p + 1][:K]] for p in positions]).reshape(-1, K)
    probs = np.exp(np.array([[lp for _, lp in rows[p + 1][:K]] for p in positions])).reshape(-1, K)
    gold = np.array([ex.labels[p] for p in positions])
    return ids, probs, gold


def write(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records))
    return path


def data_config(tmp_path: Path, model_dir) -> Path:
    import yaml

    config = {
        "data": {
            "class_path": "first_pl.data.qa_datamodule.QADataModule",
            "init_args": {
                "tokenizer": str(model_dir),
                "train_task": {"class_path": "first_pl.tasks.GeneratedMC", "init_args": TASK},
                "max_length": 64,
            },
        }
    }
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_import(tmp_path, model_dir, source, fmt, out, *extra):
    main(
        ["import-store", "--config", str(data_config(tmp_path, model_dir)), "--source", str(source)]
        + ["--format", fmt, "--output", str(out), "--k", str(K), "--probs_dtype", "float32", *extra]
    )
    return TeacherStore(out)


def assert_rows(store: TeacherStore, truth) -> None:
    for example_id in truth:
        got = store.positions(store.example_index(example_id))
        for have, want in zip(got, expected_rows(truth, example_id), strict=True):
            np.testing.assert_allclose(have, want, rtol=1e-6)


def test_vllm_prompt_logprobs_import_by_rank_with_the_data_fingerprint(
    tmp_path, tiny_model_dir, truth, data
):
    store = run_import(
        tmp_path,
        tiny_model_dir,
        write(tmp_path / "v.jsonl", vllm_records(truth)),
        "vllm",
        tmp_path / "v.h5",
    )
    assert_rows(store, truth)
    from first_pl.data.distill_datamodule import DistillDataModule

    distill = DistillDataModule(
        store=str(tmp_path / "v.h5"),
        tokenizer=str(tiny_model_dir),
        train_task=GeneratedMC(**TASK),
        max_length=64,
    )
    distill.validate_store(store)  # tokenizer, template, task, split, examples, positions, gold


def test_vllm_tokenised_another_way_is_refused_by_name(tmp_path, tiny_model_dir, truth):
    records = vllm_records(truth)
    first = records[0]
    ex = truth[first["example_id"]][0]
    t = response_positions(ex.labels)[0]
    first["prompt_logprobs"][t + 1] = {
        "0": {"logprob": -0.1, "rank": 1},
        "1": {"logprob": -2.0, "rank": 2},
        "2": {"logprob": -3.0, "rank": 3},
    }
    first.pop("prompt_token_ids")
    with pytest.raises(
        TeacherStoreError,
        match=f"example {first['example_id']!r} position {t + 1} scores other tokens",
    ):
        run_import(
            tmp_path,
            tiny_model_dir,
            write(tmp_path / "bad.jsonl", records),
            "vllm",
            tmp_path / "bad.h5",
        )
    assert not (tmp_path / "bad.h5").exists()


def test_missing_examples_and_too_small_k_are_refused(tmp_path, tiny_model_dir, truth):
    records = vllm_records(truth)
    with pytest.raises(TeacherStoreError, match="lacks 1 of the split's 6 examples"):
        run_import(
            tmp_path,
            tiny_model_dir,
            write(tmp_path / "m.jsonl", records[1:]),
            "vllm",
            tmp_path / "m.h5",
        )
    with pytest.raises(TeacherStoreError, match="fewer than k=4; import with a smaller --k"):
        main(
            [
                "import-store",
                "--config",
                str(data_config(tmp_path, tiny_model_dir)),
                "--source",
                str(write(tmp_path / "k.jsonl", records)),
            ]
            + ["--format", "vllm", "--output", str(tmp_path / "k.h5"), "--k", "4"]
        )


@pytest.mark.parametrize("version", [1, 2])
def test_axolotl_logprob_field_imports_the_same_rows(tmp_path, tiny_model_dir, truth, version):
    """axolotl aligns its rows to the end of input_ids: drop vLLM's leading None."""
    records = []
    for example_id, (_, rows) in truth.items():
        if version == 1:
            field = [
                [{"token": f"token_id:{t}", "logprob": lp} for t, lp in row] for row in rows[1:]
            ]
            records.append({"example_id": example_id, "llm_logprobs": field})
        else:
            records.append(
                {
                    "example_id": example_id,
                    "llm_logprobs": [[lp for _, lp in row] for row in rows[1:]],
                    "target_token_ids": [[t for t, _ in row] for row in rows[1:]],
                }
            )
    source = tmp_path / "a.parquet" if version == 2 else write(tmp_path / "a.jsonl", records)
    if version == 2:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), source)
    store = run_import(
        tmp_path,
        tiny_model_dir,
        source,
        "axolotl",
        tmp_path / "a.h5",
        "--logprobs_field",
        "llm_logprobs",
    )
    assert_rows(store, truth)


def exported(tmp_path, model_dir, truth) -> Path:
    """The vLLM records imported into v.h5, then exported to v.parquet."""
    run_import(
        tmp_path,
        model_dir,
        write(tmp_path / "v.jsonl", vllm_records(truth)),
        "vllm",
        tmp_path / "v.h5",
    )
    main(
        ["export-store", "--store", str(tmp_path / "v.h5"), "--output", str(tmp_path / "v.parquet")]
    )
    return tmp_path / "v.parquet"


def test_export_to_datasets_parquet_and_back(tmp_path, tiny_model_dir, truth):
    import datasets

    exported(tmp_path, tiny_model_dir, truth)
    table = datasets.Dataset.from_parquet(str(tmp_path / "v.parquet"))
    assert table.column_names == ["example_id", "teacher_ids", "teacher_probs", "gold"]
    row = table[0]
    ids, probs, gold = expected_rows(truth, row["example_id"])
    np.testing.assert_array_equal(np.array(row["teacher_ids"]), ids)
    np.testing.assert_allclose(np.array(row["teacher_probs"]), probs, rtol=1e-6)
    assert row["gold"] == gold.tolist()
    back = run_import(
        tmp_path, tiny_model_dir, tmp_path / "v.parquet", "parquet", tmp_path / "back.h5"
    )
    original = TeacherStore(tmp_path / "v.h5")
    for i in range(len(original)):
        for a, b in zip(original.positions(i), back.positions(i), strict=True):
            np.testing.assert_array_equal(a, b)
    assert back.metadata == original.metadata
    with pytest.raises(
        TeacherStoreError,
        match=r"already exists \(a first_pl store export\); pass --overwrite true",
    ):
        main(
            [
                "export-store",
                "--store",
                str(tmp_path / "v.h5"),
                "--output",
                str(tmp_path / "v.parquet"),
            ]
        )


def test_parquet_of_another_data_config_is_refused(tmp_path, tiny_model_dir, truth):
    exported(tmp_path, tiny_model_dir, truth)
    with pytest.raises(
        TeacherStoreError, match="split is 'train' but the data config gives 'validation'"
    ):
        run_import(
            tmp_path,
            tiny_model_dir,
            tmp_path / "v.parquet",
            "parquet",
            tmp_path / "x.h5",
            "--split",
            "validation",
        )
