"""`first-pl plan`: per-GPU bytes of FSDP training on the meta device, against hand-computed numbers.

The small model: vocab 100, hidden 16, MLP 32, 2 layers, 4 heads, untied head.
  embedding 100*16 = 1600, LM head 1600, final norm 16 -> root unit 3216
  decoder layer: q, k, v, o 4*16*16 = 1024, MLP 3*16*32 = 1536, two norms 32 -> 2592
  total 3216 + 2*2592 = 8400
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from first_pl.cli import main
from first_pl.commands.plan import plan
from first_pl.models import ModelSpec
from first_pl.pipeline.files import load_yaml
from first_pl.planning.architectures import architecture
from first_pl.planning.memory import GIB, Workload, plan_memory
from first_pl.planning.strategy import sharding_setup

FSDP_TRAINER = "configs/trainer/fsdp.yaml"
ROOT, LAYER = 3216, 2592


@pytest.fixture
def small_model(tmp_path) -> Path:
    folder = tmp_path / "small"
    LlamaConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
    ).save_pretrained(folder)  # fmt: skip
    return folder


def fsdp_trainer(**changes) -> dict:
    trainer = load_yaml(FSDP_TRAINER)["trainer"]
    trainer["strategy"]["init_args"].update(changes)
    return trainer


def test_fsdp_yaml_on_three_ranks_matches_hand_computed_bytes(small_model):
    setup = sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", gpus_per_node=3, num_nodes=1)
    assert (setup.shard_ranks, setup.storage_bytes, setup.compute_bytes) == (3, 4, 2)  # bf16-mixed
    plan = plan_memory(architecture(str(small_model)), ModelSpec(str(small_model)), setup, Workload(2, 8))
    assert plan.units == [(ROOT, ROOT), (LAYER, LAYER), (LAYER, LAYER)]
    assert plan.parameters == plan.trainable == 8400
    shard = 1072 + 864 + 864  # ceil(3216/3) + 2 * ceil(2592/3)
    assert plan.weights == plan.gradients == shard * 4
    assert plan.optimizer == 2 * shard * 4
    # root + two decoder units gathered, plus the largest unit's gradient, in bf16
    assert plan.gathered == (ROOT + 2 * LAYER + ROOT) * 2
    # both layers checkpointed: 2sbh each + one layer recomputed s*b*h*(34 + 5as/h) + logits 4sbv
    s, b, h, a, v = 8, 2, 16, 4, 100
    assert plan.checkpointed_layers == 2
    assert plan.activations == 2 * (2 * s * b * h) + s * b * h * (34 + 5 * a * s // h) + 4 * s * b * v
    assert plan.total == 4 * shard * 4 + plan.gathered + plan.activations  # weights, grads, 2 Adam


def test_sharding_padding_rounds_each_unit_up(small_model):
    setup = sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", gpus_per_node=5, num_nodes=2)
    plan = plan_memory(architecture(str(small_model)), ModelSpec(str(small_model)), setup, Workload(1, 4))
    assert setup.shard_ranks == 10
    assert plan.weights == (322 + 260 + 260) * 4  # ceil(3216/10), ceil(2592/10)


def test_without_activation_checkpointing_every_layer_keeps_its_activations(small_model):
    trainer = fsdp_trainer(activation_checkpointing_policy=None)
    setup = sharding_setup(trainer, FSDP_TRAINER, "float32", gpus_per_node=1, num_nodes=1)
    plan = plan_memory(architecture(str(small_model)), ModelSpec(str(small_model)), setup, Workload(2, 8))
    s, b, h, a, v = 8, 2, 16, 4, 100
    assert plan.checkpointed_layers == 0
    assert plan.activations == 2 * s * b * h * (34 + 5 * a * s // h) + 4 * s * b * v


def test_frozen_and_dropped_layers_shrink_gradients_and_adam(small_model):
    setup = sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", gpus_per_node=2, num_nodes=1)
    spec = ModelSpec(str(small_model), keep_layers=[1], freeze_embeddings=True)
    plan = plan_memory(architecture(str(small_model)), spec, setup, Workload(1, 4))
    assert plan.units == [(ROOT, ROOT - 1600), (LAYER, LAYER)]  # embedding frozen, head trains
    assert plan.weights == plan.gradients == (1608 + 1296) * 4
    assert plan.optimizer == 2 * (808 + 1296) * 4


def test_bf16_true_stores_weights_gradients_and_adam_in_two_bytes(small_model):
    trainer = fsdp_trainer()
    trainer["precision"] = "bf16-true"
    setup = sharding_setup(trainer, FSDP_TRAINER, "float32", gpus_per_node=1, num_nodes=1)
    assert (setup.storage_bytes, setup.compute_bytes) == (2, 2)


@pytest.mark.parametrize(
    "hub_id, parameters",
    [
        ("huggyllama/llama-7b", 6_738_415_616),
        ("meta-llama/Llama-2-13b-hf", 13_015_864_320),
        ("huggyllama/llama-30b", 32_528_943_616),
    ],
)
def test_published_architectures_have_their_published_sizes(hub_id, parameters):
    setup = sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", gpus_per_node=8, num_nodes=1)
    plan = plan_memory(architecture(hub_id), ModelSpec(hub_id), setup, Workload(1, 16))
    assert plan.parameters == parameters
    layers = architecture(hub_id).num_hidden_layers
    assert len(plan.units) == layers + 1 and plan.checkpointed_layers == layers


def write_experiment(tmp_path: Path, model: str, trainer: str = FSDP_TRAINER) -> Path:
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": {
        "class_path": "first_pl.data.qa_datamodule.QADataModule",
        "init_args": {"train_task": {"class_path": "first_pl.tasks.CommonsenseQA"}, "max_length": 8},
    }}))  # fmt: skip
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump({"model": {"class_path": "first_pl.methods.FineTune"}}))
    stage = {"config": str(model_yaml), "overrides": {"model": {"init_args": {"model": {"name_or_path": model}}}}}
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump({
        "trainer": trainer, "data": str(data), "data_overrides": {"init_args": {"batch_size": 2}},
        "teacher": stage, "students": {"finetune": stage, "distill": stage},
    }, sort_keys=False))  # fmt: skip
    return experiment


def test_command_prints_one_row_per_model_and_the_fit_per_card(small_model, tmp_path, capsys):
    experiment = write_experiment(tmp_path, str(small_model))
    expected = plan_memory(
        architecture(str(small_model)), ModelSpec(str(small_model)),
        sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", 3, 1), Workload(2, 8),
    ).total  # fmt: skip
    capacity = expected / GIB
    rows = plan(str(experiment), gpus_per_node=3, capacities_gb=(capacity * 0.99, capacity))
    out = capsys.readouterr().out
    # teacher and students share model and trainer: one row naming all three
    assert [r["stage"] for r in rows] == ["teacher, finetune, distill"]
    assert rows[0]["plan"].total == expected and rows[0]["gpus"] == 3
    line = next(x for x in out.splitlines() if x.startswith("| experiment |"))
    assert line.endswith(f"| {capacity * 0.99:g} GB | {capacity:g} GB |")
    row = next(x for x in out.splitlines() if "teacher, finetune, distill" in x)
    assert "| 8,400 | 3 |" in row and "(2 x 8)" in row
    assert row.endswith("| no (-0.0) | fits (+0.0) |")
    assert "Korthikanti" in out


def test_table1_33b_teacher_needs_more_than_eight_48gb_cards(capsys):
    rows = plan("configs/experiments/table1/csqa_llama1.yaml")
    teacher = rows[0]["plan"]
    # 16 bytes per parameter (float32 weights, gradients, two Adam states) over 8 ranks
    assert teacher.weights + teacher.gradients + teacher.optimizer >= 16 * 32_528_943_616 // 8
    assert teacher.slack_gib(48) < 0 < teacher.slack_gib(80)
    assert [r["stage"] for r in rows] == ["teacher", "student finetune, distill, ls_distill, first"]


def test_non_fsdp_trainer_is_refused_by_name(small_model, tmp_path):
    experiment = write_experiment(tmp_path, str(small_model), trainer="configs/trainer/ddp.yaml")
    with pytest.raises(ValueError, match="trainer.strategy is DDPStrategy; plan models lightning"):
        plan(str(experiment))


def test_unknown_model_is_refused_naming_the_known_ones(tmp_path):
    experiment = write_experiment(tmp_path, "someone/llama-70b")
    with pytest.raises(ValueError, match=r"model 'someone/llama-70b' is neither a local folder.*huggyllama/llama-7b"):
        plan(str(experiment))


def test_cli_runs_plan(small_model, tmp_path, capsys):
    main(["plan", "--experiment", str(write_experiment(tmp_path, str(small_model))), "--gpus_per_node", "2"])
    assert "| teacher, finetune, distill |" in capsys.readouterr().out


def _fsdp_rank(rank: int, port: int, config: dict, out: Path) -> None:
    """Wrap the small model with torch's FSDP as the fsdp.yaml strategy would; record the shard."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel

    from first_pl.planning.strategy import fsdp_strategy

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=3)
    strategy = fsdp_strategy(fsdp_trainer(), FSDP_TRAINER)
    wrapped = FullyShardedDataParallel(
        LlamaForCausalLM(LlamaConfig(**config)), device_id=torch.device("cpu"),
        sharding_strategy=strategy.sharding_strategy, **strategy.kwargs,
    )  # fmt: skip
    units = [m._flat_param.numel() for m in FullyShardedDataParallel.fsdp_modules(wrapped)]
    (out / f"rank{rank}.txt").write_text(" ".join(map(str, units)))
    dist.destroy_process_group()


@pytest.mark.slow
def test_plan_matches_torch_fsdp_shards_on_three_gloo_processes(tmp_path):
    """The real FSDP1 wrapping (3 CPU ranks) holds exactly the plan's padded shards per rank."""
    import socket

    import torch.multiprocessing as mp

    config = {"vocab_size": 101, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 4, "tie_word_embeddings": False}  # fmt: skip
    folder = tmp_path / "model"
    LlamaConfig(**config).save_pretrained(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_rank, args=(port, config, tmp_path), nprocs=3)
    shards = {(tmp_path / f"rank{r}.txt").read_text() for r in range(3)}
    setup = sharding_setup(fsdp_trainer(), FSDP_TRAINER, "float32", gpus_per_node=3, num_nodes=1)
    plan = plan_memory(architecture(str(folder)), ModelSpec(str(folder)), setup, Workload(1, 4))
    # root 101*16*2 + 16 = 3248 -> ceil(3248/3) = 1083 (padded); decoder layers 2592 -> 864
    assert shards == {"1083 864 864"}
    assert plan.weights == (1083 + 864 + 864) * 4


@pytest.mark.parametrize(
    ("sharding", "ranks", "held"),
    [
        ("FULL_SHARD", 6, ROOT + 2 * LAYER),  # the root and two decoder units at a time
        ("SHARD_GRAD_OP", 6, ROOT + 4 * LAYER),  # every unit stays gathered until backward
        ("HYBRID_SHARD", 3, ROOT + 2 * LAYER),  # sharded within a node, replicated across nodes
        ("NO_SHARD", 1, ROOT + 4 * LAYER),
    ],
)
def test_sharding_strategies_on_four_layers(small_model, sharding, ranks, held):
    config = architecture(str(small_model))
    config.num_hidden_layers = 4
    trainer = fsdp_trainer(sharding_strategy=sharding)
    setup = sharding_setup(trainer, FSDP_TRAINER, "float32", gpus_per_node=3, num_nodes=2)
    plan = plan_memory(config, ModelSpec(str(small_model)), setup, Workload(1, 4))
    assert (setup.sharding, setup.shard_ranks) == (sharding, ranks)
    assert plan.weights == (-(-ROOT // ranks) + 4 * -(-LAYER // ranks)) * 4  # ceil divisions
    assert plan.gathered == (held + ROOT) * 2  # plus the largest unit's gradient (the root)
