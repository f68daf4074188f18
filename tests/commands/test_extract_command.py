"""`first-pl extract` end to end on the tiny Llama: dense reference, refusal, resume, checkpoint
teachers, argument errors, and two torchrun-style processes equal to one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
import yaml

import first_pl.data.store.writer as store_writer
import first_pl.teacher.extract as extract_lib
from first_pl.cli import main
from first_pl.data.distill_datamodule import store_fields
from first_pl.data.qa_datamodule import QADataModule
from first_pl.data.store import TeacherStore, TeacherStoreError, partial_path
from first_pl.methods.checkpoint import load_method
from first_pl.methods.finetune import FineTune
from first_pl.models import ModelSpec, build_model
from first_pl.tasks import GeneratedMC

TASK = {"train_size": 8, "validation_size": 4, "test_size": 4, "label_noise": 0.2, "seed": 3}


def data_module(model_dir: Path) -> QADataModule:
    return QADataModule(
        tokenizer=str(model_dir), train_task=GeneratedMC(**TASK), max_length=64, batch_size=2
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """A data config like configs/data/generated.yaml, on the tiny tokenizer."""
    data = {
        "class_path": "first_pl.data.qa_datamodule.QADataModule",
        "init_args": {
            "tokenizer": str(tiny_model_dir),
            "train_task": {"class_path": "first_pl.tasks.GeneratedMC", "init_args": TASK},
            "max_length": 64,
        },
    }
    path = tmp_path_factory.mktemp("config") / "data.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return path


def extract_argv(config: Path, teacher: Path, output: Path, *args: str) -> list[str]:
    return [
        "extract",
        "--config",
        str(config),
        "--teacher",
        str(teacher),
        "--output",
        str(output),
    ] + ["--probs_dtype", "float32", "--batch_size", "2", "--progress", "false",
         "--precision", "32-true", *args]  # fmt: skip


def run_extract(config: Path, teacher: Path, output: Path, *args: str) -> None:
    main(extract_argv(config, teacher, output, *args))


def store_data(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def assert_same_data(a: Path, b: Path) -> None:
    da, db = store_data(a), store_data(b)
    assert sorted(da) == sorted(db)
    for name in da:
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


def assert_dense_reference(model: torch.nn.Module, data: QADataModule, store: TeacherStore) -> None:
    """The first two examples' stored rows equal a full forward pass's softmax top-5."""
    batch = data.collate_train(data.examples(data.train_task, "train")[:2])
    with torch.no_grad():
        logits = model.eval()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    for b, example_id in enumerate(batch["example_id"]):
        mask = batch["labels"][b] != -100
        probs, ids = torch.softmax(logits[b][mask].float(), dim=-1).topk(5, dim=-1)
        got_ids, got_probs, got_gold = store.positions(store.example_index(example_id))
        np.testing.assert_array_equal(got_ids, ids.numpy())
        np.testing.assert_allclose(got_probs, probs.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(got_gold, batch["labels"][b][mask].numpy())


def test_extract_writes_a_store_equal_to_a_dense_reference_and_refuses_to_overwrite(
    config: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sub" / "teacher.h5"
    run_extract(config, tiny_model_dir, out)
    assert "examples: 8 (8 this run)" in capsys.readouterr().out
    data = data_module(tiny_model_dir)
    store = TeacherStore(out)
    meta = store.metadata
    assert meta.k == 5 and meta.probs_dtype == "float32" and meta.teacher == str(tiny_model_dir)
    assert {f: getattr(meta, f) for f in store_fields(data, data.train_task, "train")} == (
        store_fields(data, data.train_task, "train")
    )
    assert store.example_ids == [e.example_id for e in data.examples(data.train_task, "train")]
    longest = max(len(e.encode()) for e in store.example_ids)
    with h5py.File(out, "r") as f:  # fixed-length ids as wide as the longest, computed up front
        assert f["example_ids"].dtype == np.dtype(f"S{longest}")
        assert f["example_ids"].compression == "gzip" and f["offsets"].compression == "gzip"
    model = build_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    assert_dense_reference(model, data, store)
    with pytest.raises(TeacherStoreError, match="already exists as a complete store"):
        run_extract(config, tiny_model_dir, out)
    run_extract(config, tiny_model_dir, out, "--overwrite", "true", "--compression", "gzip")
    assert TeacherStore(out).attrs["compression"] == "gzip"


@pytest.mark.parametrize(("option", "filter_name"), [("gzip", "gzip"), ("none", None)])
def test_compression_is_applied_by_the_writer_in_one_write(
    config: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch, option, filter_name
) -> None:
    """`--compression` reaches the store writer: one published file, no second pass over it.

    `compress()` used to merge the finished (already gzip) store into a gzip copy: two writes,
    and `none` could not be asked for at all.
    """
    published = []
    real_publish = store_writer.publish

    def counting_publish(partial, path, compression, chunk_rows):
        published.append((Path(path).name, compression))
        return real_publish(partial, path, compression, chunk_rows)

    monkeypatch.setattr(store_writer, "publish", counting_publish)
    out = tmp_path / "t.h5"
    run_extract(config, tiny_model_dir, out, "--compression", option)
    assert published == [("t.h5", option)]
    store = TeacherStore(out)
    assert store.attrs["compression"] == option
    with h5py.File(out, "r") as f:
        assert f["ids"].compression == filter_name and f["probs"].compression == filter_name
    model = build_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    assert_dense_reference(model, data_module(tiny_model_dir), store)


def test_resume_after_a_crash_equals_an_uninterrupted_run(
    config: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    reference = tmp_path / "ref.h5"
    run_extract(config, tiny_model_dir, reference)
    out = tmp_path / "t.h5"
    real, calls = extract_lib._extract_batch, []

    def dies_on_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # like a killed job: two batches (4 examples) committed
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(extract_lib, "_extract_batch", dies_on_third_batch)
        with pytest.raises(KeyboardInterrupt):
            run_extract(config, tiny_model_dir, out)
    assert partial_path(out).exists() and not out.exists()
    capsys.readouterr()
    run_extract(config, tiny_model_dir, out)
    assert "examples: 8 (4 this run)" in capsys.readouterr().out
    assert not partial_path(out).exists()
    assert_same_data(reference, out)


def test_extract_from_a_finetune_checkpoint(
    config: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    module = FineTune(model=ModelSpec(name_or_path=str(tiny_model_dir)))
    module.optim.lr = 1e-2
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data_module(tiny_model_dir))
    ckpt = tmp_path / "teacher.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "t.h5"
    run_extract(config, ckpt, out)
    store = TeacherStore(out)
    assert store.metadata.teacher.startswith("teacher.ckpt sha256:")
    assert len(store.metadata.teacher.split("sha256:")[1]) == 64
    assert_dense_reference(load_method(ckpt).model, data_module(tiny_model_dir), store)


@pytest.mark.parametrize("k", ["0", "-2"])
def test_k_below_one_is_refused(config: Path, tiny_model_dir: Path, tmp_path: Path, k) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        run_extract(config, tiny_model_dir, tmp_path / "t.h5", "--k", k)


def test_k_beyond_the_vocabulary_is_refused_before_a_partial_store(
    config: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    vocab = build_model(ModelSpec(name_or_path=str(tiny_model_dir))).config.vocab_size
    out = tmp_path / "t.h5"
    with pytest.raises(ValueError, match=rf"k is {vocab + 1} but the teacher's vocabulary has only {vocab} tokens"):  # fmt: skip
        run_extract(config, tiny_model_dir, out, "--k", str(vocab + 1))
    assert list(tmp_path.iterdir()) == []  # no store, no .partial to resume from
    run_extract(config, tiny_model_dir, out, "--k", str(vocab))  # every token is a valid k
    assert TeacherStore(out).metadata.k == vocab


def _torchrun_rank(rank: int, argv: list[str], port: int) -> None:
    """One rank as torchrun would start it: rendezvous through the environment."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    main(argv)


@pytest.mark.slow
def test_two_processes_equal_one(config: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    single = tmp_path / "one.h5"
    run_extract(config, tiny_model_dir, single)
    out = tmp_path / "two.h5"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(
        _torchrun_rank, args=(extract_argv(config, tiny_model_dir, out), port), nprocs=2
    )
    assert not Path(f"{out}.rank1-of-2").exists()
    assert_same_data(single, out)


@pytest.mark.parametrize(("caps", "bf16"), [({"avx2": True}, False), ({"amx_bf16": True}, True)])
def test_precision_auto_runs_the_teacher_in_bf16_only_on_native_bf16(
    config: Path, tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch, caps, bf16
) -> None:
    float32 = tmp_path / "float32.h5"
    run_extract(config, tiny_model_dir, float32)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    auto = tmp_path / "auto.h5"
    run_extract(config, tiny_model_dir, auto, "--precision", "auto")
    expected = "bf16-mixed" if bf16 else "32-true"
    assert f"precision auto -> {expected}" in capsys.readouterr().out
    probs32, probs_auto = store_data(float32)["probs"], store_data(auto)["probs"]
    if bf16:  # bf16 matmuls: close to float32, not equal
        assert not np.array_equal(probs32, probs_auto)
        assert np.abs(probs32 - probs_auto).max() < 0.05
    else:
        assert_same_data(float32, auto)
