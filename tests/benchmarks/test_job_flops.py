"""`benchmarks/job_flops.py`: the analytic FLOPs against torch's own count, and the script on a
finished tiny pipeline (a real `first-pl pipeline` output folder with a shared prefix)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import job_flops  # noqa: E402
from benchmarks.flop_model import CpuPeak, DecoderShape  # noqa: E402
from benchmarks.job_flops import ModelCost, Pass  # noqa: E402
from first_pl.lm_head import logits_at  # noqa: E402
from first_pl.models import ModelSpec  # noqa: E402


def eager_model(folder: Path):
    """The tiny model with eager attention, whose Q K^T and A V are matmuls FlopCounterMode
    counts (the CPU's fused SDPA kernel is not in its table)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")


def batch(vocab: int, rows: int = 3, width: int = 11):
    torch.manual_seed(0)
    ids = torch.randint(3, vocab, (rows, width))
    mask = torch.ones_like(ids)
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[:, width - 4 :] = True  # the "response" positions whose logits are computed
    return ids, mask, select


def test_forward_flops_equal_torch_count(tiny_model_dir):
    """Every layer's matmuls, attention at the padded width and the head at the selected
    positions only: torch counts exactly that (norms, RoPE, softmax are in neither)."""
    model = eager_model(tiny_model_dir).eval()
    ids, mask, select = batch(model.config.vocab_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        logits_at(model, ids, mask, select)
    cost = ModelCost.of(ModelSpec(name_or_path=str(tiny_model_dir)))
    assert cost.layers == 4
    assert cost.forward(Pass(3, 11, int(select.sum()))) == counter.get_total_flops()


def test_layer_formula_counts_grouped_query_attention():
    """q and o are heads x head_dim wide, k and v only kv_heads x head_dim."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=24, num_hidden_layers=1, vocab_size=50)  # fmt: skip
    config._attn_implementation = "eager"
    layer = LlamaDecoderLayer(config, 0).eval()
    x = torch.randn(2, 9, 64)
    positions = torch.arange(9).unsqueeze(0).expand(2, -1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x, position_embeddings=LlamaRotaryEmbedding(config)(x, positions), attention_mask=None)
    assert DecoderShape.of(config).layer_forward(2, 9) == counter.get_total_flops()


@pytest.mark.parametrize("freeze_embeddings", [False, True])
def test_training_step_flops_equal_torch_count(tiny_model_dir, freeze_embeddings):
    """3 x forward where weights train; a frozen tied head (embeddings frozen) still passes
    activation gradients: 2 x. Layer 0 computes its input gradients even when nothing below
    trains: its input RMSNorm's weight trains and needs them."""
    model = eager_model(tiny_model_dir).train()
    model.get_input_embeddings().requires_grad_(not freeze_embeddings)
    ids, mask, select = batch(model.config.vocab_size)
    with FlopCounterMode(display=False) as counter:
        logits = logits_at(model, ids, mask, select)
        torch.nn.functional.cross_entropy(logits, ids[select]).backward()
    spec = ModelSpec(name_or_path=str(tiny_model_dir), freeze_embeddings=freeze_embeddings)
    assert ModelCost.of(spec).training(Pass(3, 11, int(select.sum()))) == counter.get_total_flops()


def test_peak_is_cores_times_clock_times_flops_per_cycle():
    zen4 = CpuPeak("AVX512", frozenset({"avx512_bf16", "fma"}), "AuthenticAMD", 0x19, 2.6, 2)
    assert zen4.gflops("float32")[0] == pytest.approx(2 * 2.6 * 32)
    assert zen4.gflops("bfloat16")[0] == pytest.approx(2 * 2.6 * 64)
    amx = CpuPeak("AVX512", frozenset({"amx_bf16", "avx512_bf16"}), "GenuineIntel", 6, 2.0, 4)
    assert amx.gflops("float32")[0] == pytest.approx(4 * 2.0 * 64)
    assert amx.gflops("bfloat16")[0] == pytest.approx(4 * 2.0 * 1024)
    avx2 = CpuPeak("AVX2", frozenset({"fma"}), "GenuineIntel", 6, 3.0, 1)
    assert avx2.gflops("bfloat16") == (96.0, avx2.gflops("bfloat16")[1])  # emulated: fp32 peak
    assert CpuPeak("DEFAULT", frozenset(), "", 0, 1.0, 1).gflops("float32")[0] is None


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished tiny pipeline with a 2-layer shared prefix, validating every step."""
    from first_pl_testing import tiny_pipeline

    out = tmp_path_factory.mktemp("job") / "runs"
    pipeline = tiny_pipeline(tiny_model_dir, out, methods=("finetune",), steps={"finetune": 3})
    pipeline.prefix_layers, pipeline.val_check_interval, pipeline.logger = 2, 2, "csv"
    pipeline.run()
    return out


def rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in output.splitlines() if re.match(r"\S+-[0-9a-f]{12} ", line)}


def test_script_prints_every_stage_and_the_total(tiny_run, capsys):
    job_flops.main(["--run", str(tiny_run), "--peak-gflops", "100"])
    out = capsys.readouterr().out
    assert re.search(r"^CPU capability \S+", out, re.M)
    table = rows(out)
    counted = {name.rsplit("-", 1)[0]: cells for name, cells in table.items() if cells[1] != "-"}
    assert set(counted) == {"prefix", "zero-shot", "teacher", "extract-train",
                            "extract-validation", "analysis", "student-finetune"}  # fmt: skip
    for name, cells in table.items():  # the seconds are the stage's own
        record = json.loads((tiny_run / name / "stage.json").read_text())
        assert float(cells[2]) == pytest.approx(record["seconds"], abs=0.05)
    total = next(line.split() for line in out.splitlines() if line.startswith("total"))
    gflop = sum(float(cells[4]) for cells in counted.values())
    assert float(total[2]) == pytest.approx(gflop, abs=0.01 * len(counted)) and gflop > 0


def test_validations_match_the_points_the_run_recorded(tiny_run, capsys):
    """The validations counted from the trainer config are the ones Lightning ran: every
    `val_check_interval` (2) and the last step (3) under LastStepValidation."""
    job_flops.main(["--run", str(tiny_run)])
    out = capsys.readouterr().out
    for stage, steps in (("teacher", 2), ("student-finetune", 3)):
        (folder,) = tiny_run.glob(f"{stage}-*")
        curve = [json.loads(line) for line in (folder / "val_curve.jsonl").read_text().splitlines()]
        recorded = len({point["global_step"] for point in curve})
        assert f"{folder.name}: 2 layers + head" in out
        assert re.search(rf"{folder.name}: .*{steps} steps, {recorded} validations", out)


def test_prefix_stage_counts_each_stored_sequence_once(tiny_run, capsys):
    """The prefix stage's unpadded tokens are the store's rows; padded ones are at least as
    many, and far fewer than if repeats (an option row per option of every task) were rerun."""
    import h5py

    job_flops.main(["--run", str(tiny_run)])
    table = rows(capsys.readouterr().out)
    (name,) = [n for n in table if n.startswith("prefix-")]
    with h5py.File(tiny_run / name / "prefix.h5", "r") as store:
        stored = store["hidden"].shape[0]
    tokens = int(table[name][3].replace(",", ""))
    assert stored <= tokens < 2 * stored
