"""`first-pl export`: a checkpoint becomes a plain Hugging Face folder with identical logits.

(The sharded-checkpoint path is exercised in tests/modules/test_fsdp.py, on a real FSDP2 run.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from first_pl.cli import main
from first_pl.commands.export import consolidate
from first_pl.models import ModelSpec
from first_pl.modules import FIRST
from first_pl.modules.checkpoint import CheckpointError, load_strategy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    """A FineTune fit for 2 steps through the CLI, keeping 2 of the tiny model's 4 layers."""
    run = tmp_path_factory.mktemp("run")
    main([
        "fit",
        "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
        "--config", str(CONFIGS / "data" / "generated.yaml"),
        "--config", str(CONFIGS / "model" / "finetune_smollm2.yaml"),
        "--model.init_args.model.name_or_path", str(tiny_model_dir),
        "--model.init_args.model.keep_every", "2",
        "--data.init_args.tokenizer", str(tiny_model_dir),
        "--data.init_args.train_task.init_args.train_size", "8",
        "--data.init_args.batch_size", "4",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.limit_val_batches", "0",
        "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    (path,) = (run / "checkpoints").glob("*.ckpt")
    return path


def test_round_trip_gives_identical_logits(checkpoint, tmp_path):
    out = tmp_path / "hf"
    main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(out)])
    module = load_strategy(checkpoint)
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


def test_existing_output_needs_overwrite(checkpoint, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(out)])
    main(
        ["export", "--checkpoint", str(checkpoint), "--output_dir", str(out), "--overwrite", "true"]
    )
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


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
    """FIRST saves the resolved c, so export / load_strategy need no calibration.json."""
    module = FIRST(model=ModelSpec(name_or_path=str(tiny_model_dir)), temperature=0.3)
    module.configure_model()
    path = tmp_path / "first.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    assert load_strategy(path, expect=FIRST).temperature == 0.3
