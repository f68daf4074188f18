"""`first-pl export`: a checkpoint becomes a plain Hugging Face folder with identical logits.

(The sharded-checkpoint path is exercised in tests/methods/test_fsdp.py, on a real FSDP2 run.)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from first_pl_testing import tiny_run_args
from transformers import AutoModelForCausalLM, AutoTokenizer

from first_pl.cli import main
from first_pl.commands.export import EXPORT_MARKER
from first_pl.commands.model_card import base_model, teacher_transform
from first_pl.data.record import DATA_KEY
from first_pl.data.template import PromptTemplate
from first_pl.fileio.output_path import OutputPathError
from first_pl.methods import FIRST, FineTune, LabelSmoothingDistill
from first_pl.methods.checkpoint import CheckpointError, load_method
from first_pl.methods.loading import consolidate
from first_pl.models import SMOLLM2_ALIAS, ModelSpec

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    """A FineTune fit for 2 steps through the CLI, keeping 2 of the tiny model's 4 layers."""
    run = tmp_path_factory.mktemp("run")
    main(["fit", *tiny_run_args(tiny_model_dir, run, "--model.init_args.model.keep_every", "2",
                                "--trainer.limit_val_batches", "0", "--trainer.max_steps", "2",
                                "--trainer.enable_progress_bar", "false", sizes=(8, None, None), batch_size=4)])  # fmt: skip
    (path,) = (run / "checkpoints").glob("*.ckpt")
    return path


def test_round_trip_gives_identical_logits(checkpoint, tmp_path):
    out = tmp_path / "hf"
    main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(out)])
    module = load_method(checkpoint)
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert exported.config.num_hidden_layers == 2
    ids = tokenizer("Question : which of these is a fruit ? Answer :", return_tensors="pt")
    with torch.no_grad():
        want = module.model(**ids).logits
        got = exported(**ids).logits
    assert torch.equal(got, want)
    trained = module.state_dict()["model.model.norm.weight"]
    assert not torch.equal(trained, torch.ones_like(trained))  # trained weights, not the init


def export_args(checkpoint: Path, out: Path | str, *extra: str) -> list[str]:
    return ["export", "--checkpoint", str(checkpoint), "--output_dir", str(out), *extra]


def test_overwrite_replaces_an_earlier_export_only(checkpoint, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(export_args(checkpoint, out))
    with pytest.raises(
        OutputPathError, match=f"hf was not written by first-pl export .*{EXPORT_MARKER}"
    ):
        main(export_args(checkpoint, out, "--overwrite", "true"))
    assert (out / "keep.txt").read_text() == "x" and not (out / "config.json").exists()

    (out / "keep.txt").unlink()  # an empty folder holds nothing to lose
    main(export_args(checkpoint, out, "--overwrite", "true"))
    marker = json.loads((out / EXPORT_MARKER).read_text())
    assert marker["checkpoint"] == str(checkpoint.resolve()) and marker["method"] == "FineTune"
    assert marker["files"] == sorted(marker["files"])
    assert set(marker["files"]) == set(snapshot(out)) and {"config.json", "README.md"} <= set(marker["files"])
    (out / "config.json").write_text("{}")  # an export's own file: replaced
    main(export_args(checkpoint, out, "--overwrite", "true"))
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_never_removes_the_working_folder_or_the_checkpoints_run(
    checkpoint, tmp_path, monkeypatch
):
    """`--output_dir .` used to delete the working folder; `--output_dir <run>` the run itself.

    Refused even when the folder holds an export marker (a copied export, a planted file)."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "notes.txt").write_text("notes")
    (work / "data" / "rows.jsonl").write_text("{}\n")
    (work / EXPORT_MARKER).write_text("{}")
    monkeypatch.chdir(work / "data")
    for target in (".", ".."):
        before = snapshot(work)
        with pytest.raises(OutputPathError, match=r"is the working folder or holds it"):
            main(export_args(checkpoint, target, "--overwrite", "true"))
        assert snapshot(work) == before
    run = checkpoint.parent.parent
    before = snapshot(run)
    for target in (run, checkpoint.parent):
        with pytest.raises(OutputPathError, match=r"holds the checkpoint .*\.ckpt"):
            main(export_args(checkpoint, target, "--overwrite", "true"))
    assert snapshot(run) == before


def test_output_under_a_file_is_refused_before_loading(checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(
        OutputPathError,
        match=r"--output_dir .*notes\.txt/hf lies under .*notes\.txt, which is a file",
    ):
        main(export_args(checkpoint, tmp_path / "notes.txt" / "hf"))


def test_not_a_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "no.ckpt"),
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="not a sharded Lightning checkpoint"):
        consolidate(tmp_path / "folder", tmp_path / "x.ckpt")
    assert not (tmp_path / "o").exists()


def test_first_checkpoint_reloads_without_its_calibration_file(tiny_model_dir, tmp_path):
    """FIRST saves the resolved c, so export / load_method need no calibration.json."""
    module = FIRST(model=ModelSpec(name_or_path=str(tiny_model_dir)), temperature=0.3)
    module.configure_model()
    path = tmp_path / "first.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    assert load_method(path, expect=FIRST).temperature == 0.3


def test_export_records_c_and_template_and_writes_a_model_card(tiny_model_dir, tmp_path):
    """A FIRST checkpoint's export names its c in first_pl_export.json and in README.md, whose
    YAML header is Hugging Face model-card metadata."""
    module = FIRST(model=ModelSpec(name_or_path=str(tiny_model_dir)), temperature=0.3)
    module.configure_model()
    path = tmp_path / "first.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    checkpoint[DATA_KEY] = {"template": asdict(PromptTemplate(answer="text")), "max_length": 96}
    torch.save(checkpoint, path)
    out = tmp_path / "hf"
    main(["export", "--checkpoint", str(path), "--output_dir", str(out)])
    record = json.loads((out / EXPORT_MARKER).read_text())
    assert record["teacher_transform"] == {"transform": "prob_temperature", "c": 0.3}
    assert record["data"]["template"]["answer"] == "text"
    card = (out / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    assert yaml.safe_load(header) == {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["first_pl", "first", "multiple-choice", "calibration"],
    }  # a local base model has no hub id for `base_model`, and no known license
    assert f"- Base model: {tiny_model_dir}\n" in body
    assert "- Method: FIRST; teacher transform: transform = prob_temperature, c = 0.3\n" in body
    assert "- Training data: not recorded in the checkpoint\n" in body
    assert "Test Acc / ECE / Trust: not measured" in body
    assert "answer with the option's text" in body and "max_length=96" in body
    assert "Question: Which city is farther north?\nA. Oslo\nB. Rome\nAnswer: Oslo\n" in body
    assert f'AutoModelForCausalLM.from_pretrained("{out}")' in body
    assert f"first-pl ask --checkpoint {out} " in body


def test_model_card_reports_the_test_figures_of_this_checkpoint(checkpoint, tmp_path):
    """`first-pl test` in the checkpoint's run folder (with no config: the checkpoint records
    its data) leaves metrics_test.json, which the card quotes; another checkpoint of the same
    run folder was not tested, and its card says so."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    tested = shutil.copy(checkpoint, run / "checkpoints" / "tested.ckpt")
    other = shutil.copy(checkpoint, run / "checkpoints" / "other.ckpt")
    main([
        "test", "--ckpt_path", str(tested),
        "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--data.init_args.train_task.init_args.test_size", "6",
        "--evaluation.n_resamples", "20",
    ])  # fmt: skip
    figures = json.loads((run / "metrics_test.json").read_text())["tasks"]["generated"]
    assert figures["n"] == 6
    main(["export", "--checkpoint", str(tested), "--output_dir", str(tmp_path / "hf")])
    card = (tmp_path / "hf" / "README.md").read_text()
    row = (
        f"| generated | 6 | first_token | full_vocab | {figures['acc']:.2f} | "
        f"{figures['ece']:.2f} | {figures['trust']:.2f} |"
    )
    assert row in card and "not measured" not in card
    main(["export", "--checkpoint", str(other), "--output_dir", str(tmp_path / "hf_other")])
    assert (
        "Test Acc / ECE / Trust: not measured" in (tmp_path / "hf_other" / "README.md").read_text()
    )


def test_a_known_base_model_gets_its_hub_id_and_license():
    assert base_model(SMOLLM2_ALIAS) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    assert (
        base_model("/models/SmolLM2-135M-Instruct.Q4_1.gguf")[0]
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert base_model("org/model") == ("org/model", None)
    assert base_model("/no/such/folder") == (None, None)
    delta = LabelSmoothingDistill(model=ModelSpec(name_or_path="x"), delta=0.2)
    assert teacher_transform(delta) == {"transform": "label_smoothing", "delta": 0.2}
    assert teacher_transform(FineTune(model=ModelSpec(name_or_path="x"))) == {}
