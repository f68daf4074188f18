"""LoRA students and teachers: adapters only train, start as the base model, survive the
checkpoint, and merge on export into a plain model with the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from first_pl_testing import tiny_run_args
from transformers import AutoModelForCausalLM

from first_pl.cli import main
from first_pl.commands.export import export
from first_pl.lora import LoraSettings, LoraSettingsError, add_lora, has_lora, merge_lora
from first_pl.methods import FineTune
from first_pl.methods.checkpoint import load_method
from first_pl.models import ModelSpec, build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_only_adapters_train_and_the_start_is_the_base_model(tiny_model_dir):
    base = build_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    adapted = build_model(
        ModelSpec(name_or_path=str(tiny_model_dir), lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    )
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    # 4 layers x 2 modules x (A: r x hidden, B: out x r)
    layer = base.model.layers[0].self_attn
    expected = 4 * (4 * 32 + layer.q_proj.out_features * 4 + 4 * 32 + layer.v_proj.out_features * 4)
    assert sum(p.numel() for n, p in adapted.named_parameters() if p.requires_grad) == expected
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    torch.testing.assert_close(logits(adapted, ids), logits(base, ids))  # B starts at zero


def test_merge_folds_the_update_into_plain_linear_layers(tiny_model_dir):
    model = build_model(ModelSpec(name_or_path=str(tiny_model_dir), lora={"r": 2, "alpha": 4}))
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(std=0.5)
    ids = torch.tensor([[3, 5, 7, 9, 11, 2]])
    adapted = logits(model, ids)
    q = model.model.layers[1].self_attn.q_proj
    dense = q.base_layer.weight + (4 / 2) * q.lora_B["default"].weight @ q.lora_A["default"].weight
    merge_lora(model)
    assert not has_lora(model)
    assert type(model.model.layers[1].self_attn.q_proj) is torch.nn.Linear
    torch.testing.assert_close(model.model.layers[1].self_attn.q_proj.weight, dense)
    torch.testing.assert_close(logits(model, ids), adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"r": 0}, r"model\.lora\.r must be >= 1, got 0"),
        ({"alpha": 0}, r"model\.lora\.alpha must be > 0"),
        ({"dropout": 1.0}, r"model\.lora\.dropout must be in \[0, 1\)"),
        ({"target_modules": []}, r"model\.lora\.target_modules is empty"),
    ],
)
def test_bad_settings_name_the_option(settings, message):
    with pytest.raises(LoraSettingsError, match=message):
        LoraSettings(**settings)


def test_a_target_that_names_no_linear_layer_is_refused(tiny_model_dir):
    model = build_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    with pytest.raises(LoraSettingsError, match=r"\['qkv'\] name no linear layer of LlamaForCausalLM; its linear layers are \['down_proj'"):
        add_lora(model, LoraSettings(target_modules=["q_proj", "qkv"]))


def fit_args(model_dir: Path, run: Path) -> list[str]:
    return ["fit", *tiny_run_args(model_dir, run, "--config", str(CONFIGS / "model" / "lora.yaml"),
                                  "--model.init_args.model.lora.r", "4", "--model.init_args.model.lora.alpha", "8",
                                  "--model.init_args.optimizer.lr", "1e-2", "--trainer.limit_val_batches", "0",
                                  "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false",
                                  "--trainer.enable_model_summary", "false")]  # fmt: skip


def test_a_lora_fit_trains_only_adapters_and_exports_merged(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    main(fit_args(tiny_model_dir, run))
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    lora_b = [k for k in state if "lora_B" in k]
    assert lora_b and any(state[k].abs().sum() > 0 for k in lora_b)  # adapters moved from zero
    for name, weight in base.items():  # every base weight is where it started
        key = "model." + name.replace("_proj.weight", "_proj.base_layer.weight")
        key = key if key in state else "model." + name
        torch.testing.assert_close(state[key], weight, msg=key)

    module = load_method(checkpoint, expect=FineTune)
    ids = torch.tensor([[3, 5, 7, 9, 11, 2]])
    trained = logits(module.model, ids)
    out = export(str(checkpoint), str(tmp_path / "export"))
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not has_lora(plain) and not any("base_layer" in k for k in plain.state_dict())
    torch.testing.assert_close(logits(plain, ids), trained, atol=1e-5, rtol=1e-5)
    record = json.loads((out / "first_pl_export.json").read_text())
    assert record["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "merged": True,
                              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"]}
