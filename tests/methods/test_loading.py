"""`first_pl.methods.loading`: every source kind loads through the one loader with the same
weights; every source no loader reads gets one error naming the option, the same in every command."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from first_pl.cli import main
from first_pl.methods import FIRST
from first_pl.methods.checkpoint import LIGHTNING_META_FILE, CheckpointError
from first_pl.methods.loading import EXPECTED, ModelLoadError, load_model, source_kind
from first_pl.models import ModelSpec

IDS = torch.tensor([[3, 5, 7, 11, 2]])


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path) -> FIRST:
    """A FIRST module (not the FineTune a plain model is wrapped in) with weights off the init."""
    module = FIRST(model=ModelSpec(name_or_path=str(tiny_model_dir), keep_every=2), temperature=0.3)
    module.configure_model()
    with torch.no_grad():
        module.model.model.norm.weight.mul_(1.5)
    return module.eval()


def checkpoint_dict(module: FIRST) -> dict:
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def test_a_hugging_face_folder_loads_as_a_plain_model(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), "--teacher")
    assert loaded.kind == "model" and loaded.method is None
    assert loaded.identity() == str(tiny_model_dir)
    assert not loaded.module.training
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert torch.equal(logits(loaded.module.model), logits(reference))


def test_a_checkpoint_file_loads_its_method_and_is_named_by_its_bytes(trained, tmp_path) -> None:
    path = tmp_path / "first.ckpt"
    torch.save(checkpoint_dict(trained), path)
    loaded = load_model(str(path), "--checkpoint")
    assert loaded.kind == "checkpoint" and loaded.method == "FIRST"
    assert loaded.module.temperature == 0.3
    assert loaded.module.model.config.num_hidden_layers == 2
    assert torch.equal(logits(loaded.module.model), logits(trained.model))
    assert loaded.identity() == f"first.ckpt sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_a_sharded_checkpoint_folder_is_consolidated_on_the_fly(trained, tmp_path) -> None:
    """The layout Lightning's ModelParallelStrategy writes: a DCP folder plus `meta.pt`."""
    folder = tmp_path / "epoch=0-step=2.ckpt"  # Lightning names the folder like a file
    checkpoint = checkpoint_dict(trained)
    dcp.save({"state_dict": checkpoint.pop("state_dict")}, checkpoint_id=folder)
    torch.save(checkpoint, folder / LIGHTNING_META_FILE)
    work = tmp_path / "work"
    work.mkdir()
    loaded = load_model(str(folder), "--checkpoint", workdir=work)
    assert loaded.kind == "sharded_checkpoint" and loaded.method == "FIRST"
    assert torch.equal(logits(loaded.module.model), logits(trained.model))
    assert list(work.iterdir()) == []  # the consolidated file is temporary
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file.read_bytes())
    assert loaded.identity() == f"{folder.name} sha256:{digest.hexdigest()}"


@pytest.mark.parametrize(
    ("source", "kind"),
    [("smollm2-135m-instruct", "model"), ("HuggingFaceTB/SmolLM2-135M-Instruct", "model")],
)
def test_names_and_hub_ids_are_models(source: str, kind: str) -> None:
    assert source_kind(source, "--teacher") == kind


def test_a_gguf_file_is_a_model(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert source_kind(str(tmp_path / "m.gguf"), "--teacher") == "model"


def bad_sources(tmp_path: Path, tiny_model_dir: Path) -> dict[str, tuple[Path, str]]:
    """Sources no loader reads, with the message each gets (`{option}` and the path filled in)."""
    (tmp_path / "empty").mkdir()
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "tokenizer")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    return {
        "missing checkpoint": (tmp_path / "gone.ckpt", "{} {} does not exist; expected " + EXPECTED),
        "missing folder": (tmp_path / "gone", "{} {} does not exist; expected " + EXPECTED),
        "missing gguf": (tmp_path / "gone.gguf", "{} {} does not exist; expected " + EXPECTED),
        "folder of nothing": (
            tmp_path / "empty",
            "{} {} is a folder with neither config.json (a Hugging Face model) nor meta.pt "
            "(a sharded checkpoint); expected " + EXPECTED,
        ),
        "tokenizer folder": (
            tmp_path / "tokenizer",
            "{} {} is a folder with neither config.json (a Hugging Face model) nor meta.pt "
            "(a sharded checkpoint) (it holds only a tokenizer, which is no model); expected "
            + EXPECTED,
        ),
        "other file": (tmp_path / "notes.txt", "{} {} is a file but neither .ckpt nor .gguf; expected " + EXPECTED),
        "unreadable checkpoint": (tmp_path / "broken.ckpt", "{} {}: checkpoint {} cannot be read: "),
    }


def test_every_bad_source_gets_one_error_naming_the_option(tiny_model_dir, tmp_path) -> None:
    for name, (path, message) in bad_sources(tmp_path, tiny_model_dir).items():
        with pytest.raises(ModelLoadError) as info:
            load_model(str(path), "--teacher")
        assert str(info.value).startswith(message.format("--teacher", path, path)), name
        # what the commands raised before they shared the loader still catches it
        assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)


def command_error(argv: list[str]) -> str:
    with pytest.raises(ModelLoadError) as info:
        main(argv)
    return str(info.value)


def test_extract_coverage_ask_and_export_refuse_a_bad_source_alike(tiny_model_dir, tmp_path) -> None:
    task = {"class_path": "first_pl.tasks.GeneratedMC", "init_args": {"train_size": 4, "validation_size": 2, "test_size": 2}}
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": {
        "class_path": "first_pl.data.qa_datamodule.QADataModule",
        "init_args": {"tokenizer": str(tiny_model_dir), "train_task": task, "max_length": 64},
    }}))  # fmt: skip
    tokenizer = bad_sources(tmp_path, tiny_model_dir)["tokenizer folder"][0]
    errors = {
        "extract": command_error(["extract", "--config", str(data), "--teacher", str(tokenizer),
                                  "--output", str(tmp_path / "s.h5")]),
        "coverage": command_error(["coverage", "--config", str(data), "--teacher", str(tokenizer),
                                   "--output_dir", str(tmp_path / "c")]),
        "ask": command_error(["ask", "--checkpoint", str(tokenizer), "--question", "Which city?",
                              "--choices", '["Oslo", "Rome"]']),
        "export": command_error(["export", "--checkpoint", str(tokenizer), "--output_dir", str(tmp_path / "hf")]),
    }  # fmt: skip
    without_option = {re.sub(r"^--\w+ ", "", text) for text in errors.values()}
    assert len(without_option) == 1, errors
    assert errors["extract"].startswith(f"--teacher {tokenizer} is a folder with neither")
    assert errors["ask"].startswith(f"--checkpoint {tokenizer} is a folder with neither")
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "hf").exists()
