"""A command run in-process gives its memory back: the pipeline runs a dozen of them in one
process, and what one stage leaves allocated adds to every later stage's peak."""

from __future__ import annotations

import gc
from pathlib import Path

import torch
from first_pl_testing import tiny_run_args

import first_pl.runner as runner
from first_pl.lightning_cli import FirstCLI
from first_pl.methods.base import MethodModule, fused_adam_supported
from first_pl.prefix import FrozenPrefix, prefix_of
from first_pl.runner import release, run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fit_args(model_dir: Path, out: Path) -> list[str]:
    return ["fit", *tiny_run_args(model_dir, out, "--model.init_args.model.prefix_layers", "1",
                                  "--trainer.max_steps", "2", "--trainer.enable_model_summary", "false",
                                  "--evaluation.n_resamples", "20", sizes=(16, 8, 8))]  # fmt: skip


def live(kind: type) -> list:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, kind)]


def test_a_finished_fit_leaves_no_weights_states_or_prefix_memo_in_memory(tiny_model_dir, tmp_path):
    before = {id(m) for m in [*live(MethodModule), *live(torch.optim.Optimizer)]}
    run(fit_args(tiny_model_dir, tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints").is_dir()  # the fit did run and save
    finished = [m for m in live(MethodModule) if id(m) not in before]
    # Whether or not the module object outlives the command, none of its tensors hold memory.
    for module in finished:
        held = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if not t.is_meta]
        assert held == [], held[:3]
    for prefix in live(FrozenPrefix):
        assert prefix.memo == {}
        assert all(p.is_meta for p in prefix.decoder.parameters())
    optimizers = [o for o in live(torch.optim.Optimizer) if id(o) not in before]
    for optimizer in optimizers:
        assert not optimizer.state
        assert optimizer.defaults["fused"]  # plain CPU weights: Adam's fused kernel


def test_adam_is_fused_for_plain_weights_only():
    plain = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    assert fused_adam_supported(plain)
    assert not fused_adam_supported([])
    assert not fused_adam_supported([torch.nn.Parameter(torch.ones(3, device="meta"))])
    assert not fused_adam_supported([torch.nn.Parameter(torch.ones(3, dtype=torch.int64), requires_grad=False)])


def test_run_releases_the_cli_it_ran_with_its_trained_module(tiny_model_dir, tmp_path, monkeypatch):
    """The pipeline's stages rely on this wiring: on some configs (the main job's, measured) a
    finished CLI stays reachable, so only `release` gives its memory back."""
    seen = []
    monkeypatch.setattr(runner, "release", lambda cli=None: seen.append(cli))
    run(fit_args(tiny_model_dir, tmp_path / "run"))
    assert len(seen) == 1 and isinstance(seen[0], FirstCLI)
    assert isinstance(seen[0].model, MethodModule) and seen[0].trainer.global_step == 2


def test_release_frees_the_module_its_prefix_and_the_optimizer_states(tiny_model_dir):
    """What stays reachable keeps no memory: weights on the meta device, empty optimizer
    states, an empty prefix memo."""
    from first_pl.methods import FineTune
    from first_pl.models import ModelSpec

    module = FineTune(model=ModelSpec(name_or_path=str(tiny_model_dir), prefix_layers=1))
    module.configure_model()
    prefix = prefix_of(module.model)
    prefix.memo["row"] = torch.ones(4, prefix.hidden_size)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad])
    for p in module.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    optimizer.step()

    class Trainer:
        optimizers = [optimizer]

    class Cli:
        model = module
        trainer = Trainer()

    trained = [p for group in optimizer.param_groups for p in group["params"]]
    release(Cli())  # type: ignore[arg-type]
    assert all(t.is_meta for t in [*module.parameters(), *module.buffers()])
    # The optimizer no longer holds the weights it trained (`to("meta")` replaced them).
    assert optimizer.param_groups == [] and all(not t.is_meta for t in trained)
    assert prefix.offloaded and prefix.memo == {}
    assert not optimizer.state
