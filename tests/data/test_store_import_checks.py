"""What an import checks and records: vLLM rows in log-probability order, the source's identity
in the store (a resume continues from the same file only), max_length in the metadata, and the
store a calibration.json was chosen on compared with the training store."""

from __future__ import annotations

import hashlib
import json

import h5py
import pytest
import test_store_interop as interop_tests
from test_store_interop import TASK, K, run_import, vllm_records, write

from first_pl.data.distill_datamodule import DistillDataModule, store_fields
from first_pl.data.store import (
    StoreMetadata,
    StoreMismatchError,
    TeacherStore,
    interop,
    partial_path,
    truncate_store,
)
from first_pl.tasks import GeneratedMC
from first_pl.teacher.parameter_choice import STORE_FIELDS, check_calibration_store

data, truth = interop_tests.data, interop_tests.truth  # the module's fixtures, shared


def test_vllm_rows_follow_the_log_probabilities_not_the_ranks():
    """Ranks that disagree with the log-probabilities inside the top-k: the row descends by
    log-probability, equal ones by token id; the actual token (rank 999) stays out."""
    entry = {
        "7": {"logprob": -3.0, "rank": 1},
        "3": {"logprob": -1.0, "rank": 2},
        "9": {"logprob": -2.0, "rank": 3},
        "4": {"logprob": -2.0, "rank": 4},
        "5": {"logprob": -9.0, "rank": 999},
    }
    record = {"example_id": "e", "prompt_logprobs": [None, entry]}
    ids, logprobs = interop.vllm_rows(record, [1, 5], [5, -100], 4, "src")
    assert ids == [[3, 4, 9, 7]]
    assert logprobs == [[-1.0, -2.0, -2.0, -3.0]]


def test_store_records_its_import_source(tmp_path, tiny_model_dir, truth):
    source = write(tmp_path / "v.jsonl", vllm_records(truth))
    store = run_import(tmp_path, tiny_model_dir, source, "vllm", tmp_path / "v.h5")
    assert json.loads(store.attrs["import_source"]) == {
        "importer": "vllm",
        "path": str(source.resolve()),
        "bytes": source.stat().st_size,
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    assert store.metadata.max_length == 64 and store.metadata.teacher == "imported"
    truncated = TeacherStore(truncate_store(store.path, tmp_path / "k2.h5", 2))
    assert truncated.attrs["import_source"] == store.attrs["import_source"]


def test_an_interrupted_import_resumes_from_the_same_source(
    tmp_path,
    truth,
    data,
    monkeypatch,
):
    """Stopped after the first batch of two examples, the same import with the same file
    continues the partial store and gives the store of an uninterrupted import."""
    source = write(tmp_path / "v.jsonl", vllm_records(truth))
    examples = data.split_examples("train")
    meta = StoreMetadata(k=K, vocab_size=len(data.tokenizer), teacher="imported",
                         **store_fields(data, data.train_task, "train"))  # fmt: skip
    clean = TeacherStore(interop.import_store(source, "vllm", examples, meta, tmp_path / "c.h5"))
    real, calls = interop.imported_rows, []

    def stopped_in_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(interop, "imported_rows", stopped_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        interop.import_store(source, "vllm", examples, meta, tmp_path / "r.h5", batch_examples=2)
    with h5py.File(partial_path(tmp_path / "r.h5")) as f:
        assert int(f.attrs["committed_examples"]) == 2
    monkeypatch.setattr(interop, "imported_rows", real)
    interop.import_store(source, "vllm", examples, meta, tmp_path / "r.h5", batch_examples=2)
    resumed = TeacherStore(tmp_path / "r.h5")
    assert resumed.example_ids == clean.example_ids
    for name in ("sha256_ids", "sha256_probs", "sha256_offsets", "import_source"):
        assert resumed.attrs[name] == clean.attrs[name]


def distill_data(store, model_dir, max_length: int = 64) -> DistillDataModule:
    return DistillDataModule(
        store=str(store),
        tokenizer=str(model_dir),
        train_task=GeneratedMC(**TASK),
        max_length=max_length,
    )


def test_a_store_of_another_max_length_is_refused_and_one_without_is_read_with_a_warning(
    tmp_path,
    tiny_model_dir,
    truth,
):
    source = write(tmp_path / "v.jsonl", vllm_records(truth))
    store = run_import(tmp_path, tiny_model_dir, source, "vllm", tmp_path / "v.h5")
    distill_data(store.path, tiny_model_dir).validate_store(store)
    with pytest.raises(StoreMismatchError, match=r"v\.h5: max_length is 64 but 65 was expected"):
        distill_data(store.path, tiny_model_dir, 65).validate_store(store)
    store.close()
    with h5py.File(store.path, "r+") as f:  # as a store written before max_length was recorded
        del f.attrs["max_length"]
    old = TeacherStore(store.path)
    assert old.metadata.max_length is None
    with pytest.warns(UserWarning, match=r"does not record the max_length .*data\.max_length=65"):
        distill_data(old.path, tiny_model_dir, 65).validate_store(old)


def test_parquet_export_of_another_max_length_is_refused(tmp_path, tiny_model_dir, truth):
    run_import(tmp_path, tiny_model_dir, write(tmp_path / "v.jsonl", vllm_records(truth)), "vllm",
               tmp_path / "v.h5")  # fmt: skip
    from first_pl.cli import main

    main(
        ["export-store", "--store", str(tmp_path / "v.h5"), "--output", str(tmp_path / "v.parquet")]
    )
    with pytest.raises(ValueError, match="max_length is 64 but the data config gives 48"):
        data = tmp_path / "data48.yaml"
        data.write_text(
            (tmp_path / "data.yaml").read_text().replace("max_length: 64", "max_length: 48")
        )
        main(["import-store", "--config", str(data), "--source", str(tmp_path / "v.parquet"),
              "--format", "parquet", "--output", str(tmp_path / "p.h5"), "--k", str(K)])  # fmt: skip


META = StoreMetadata(5, 100, "tok", "teacher", "task/1", "train", "tpl", "float16", 64)


def test_calibration_store_check_names_the_field_and_both_values():
    chosen_on = {name: getattr(META, name) for name in STORE_FIELDS}
    check_calibration_store("c.json", {**chosen_on, "store": "v.h5"}, "t.h5", META)
    check_calibration_store("c.json", {"task": "task/1"}, "t.h5", META)  # older files: fewer fields
    for field, other in (("k", 10), ("task", "other/2"), ("max_length", 32), ("teacher", "x")):
        with pytest.raises(StoreMismatchError) as err:
            check_calibration_store(
                "c.json", {**chosen_on, field: other, "store": "v.h5"}, "t.h5", META
            )
        assert err.value.field == field
        assert str(err.value).startswith(
            f"c.json: {field} is {other!r} (of the store it was chosen on, v.h5) but the training "
            f"store t.h5 has {getattr(META, field)!r}"
        )
