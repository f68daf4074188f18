"""Checkpoints as untrusted data: a planted pickle payload never runs, NaN weights are refused.

A `.ckpt` is a pickle. `evil_checkpoint` is the world's real checkpoint plus one object whose
unpickling runs a shell command that creates a marker file; every command that reads a
checkpoint must refuse it with one line naming what it needs and the `--trust_checkpoint`
opt-in, and the marker must not exist afterwards. With `--trust_checkpoint true` the same file
loads (and the payload runs, inside this test's temporary folder only).
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch
from robustness_helpers import first_pl
from robustness_world import CONFIGS, World
from test_bad_inputs import Case, ask_args, error_message

from first_pl.cli import main
from first_pl.methods.base import OptimizerConfig
from first_pl.methods.checkpoint import load_method
from first_pl.models import ModelSpec

MARKER = "payload_ran"
REFUSED = r"needs posix\.system to load, which .*refuses: unpickling it could run any code .*--trust_checkpoint true"


class Payload:
    """Unpickling this runs `touch <marker>`: what a shared checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def real_checkpoint(world: World) -> dict:
    return torch.load(world.checkpoint, map_location="cpu", weights_only=True)


def evil_checkpoint(world: World, tmp: Path, path: Path | None = None) -> Path:
    checkpoint = real_checkpoint(world)
    checkpoint["note"] = Payload(tmp / MARKER)
    path = path or tmp / "evil.ckpt"
    torch.save(checkpoint, path)
    return path


def evil_sharded_checkpoint(tmp: Path) -> Path:
    """A sharded checkpoint folder whose torch.distributed.checkpoint `.metadata` is the payload."""
    folder = tmp / "sharded"
    folder.mkdir()
    torch.save({"first_pl_strategy": "first_pl.methods.FineTune"}, folder / "meta.pt")
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(tmp / MARKER)))
    return folder


def nan_checkpoint(world: World, tmp: Path) -> Path:
    checkpoint = real_checkpoint(world)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    torch.save(checkpoint, tmp / "nan.ckpt")
    return tmp / "nan.ckpt"


def extract_from(world: World, tmp: Path, teacher: Path) -> None:
    args = world.extract_args(tmp / "store.h5")
    args[args.index("--teacher") + 1] = str(teacher)
    main(args)


def evaluate_with(world: World, tmp: Path, command: str, checkpoint: Path, *extra: str) -> None:
    main(world.fit_args(tmp / command, "--ckpt_path", str(checkpoint), *extra, command=command))


def resume_last(world: World, tmp: Path) -> None:
    """A resumable fit, its last.ckpt replaced by the payload, resumed with `--ckpt_path last`."""
    resumable = ["--config", str(CONFIGS / "trainer" / "resumable.yaml"), "--trainer.max_steps"]
    main(world.fit_args(tmp / "run", *resumable, "1"))
    (last,) = (tmp / "run" / "checkpoints").glob("last*.ckpt")
    evil_checkpoint(world, tmp, last)
    main(world.fit_args(tmp / "run", *resumable, "2", "--ckpt_path", "last"))


EVIL_CASES = [
    Case("ask", lambda w, t: main(ask_args(evil_checkpoint(w, t))), r"--checkpoint .*evil\.ckpt: checkpoint .*evil\.ckpt " + REFUSED),
    Case("extract", lambda w, t: extract_from(w, t, evil_checkpoint(w, t)), r"--teacher .*evil\.ckpt: checkpoint .*" + REFUSED),
    Case("export", lambda w, t: main(["export", "--checkpoint", str(evil_checkpoint(w, t)), "--output_dir", str(t / "out")]), REFUSED),
    Case("coverage", lambda w, t: main(["coverage", "--config", str(w.data_yaml), "--teacher", str(evil_checkpoint(w, t)),
                                        "--output_dir", str(t / "cov")]), REFUSED),
    Case("test", lambda w, t: evaluate_with(w, t, "test", evil_checkpoint(w, t)), r"checkpoint .*evil\.ckpt " + REFUSED),
    Case("validate", lambda w, t: evaluate_with(w, t, "validate", evil_checkpoint(w, t)), REFUSED),
    Case("predict", lambda w, t: evaluate_with(w, t, "predict", evil_checkpoint(w, t)), REFUSED),
    Case("fit-resume", lambda w, t: evaluate_with(w, t, "fit", evil_checkpoint(w, t)), REFUSED),
    Case("fit-resume-last", resume_last, r"checkpoint .*last\.ckpt " + REFUSED),
    Case("load_method", lambda w, t: load_method(evil_checkpoint(w, t)), REFUSED),
    Case("sharded-export", lambda w, t: main(["export", "--checkpoint", str(evil_sharded_checkpoint(t)), "--output_dir", str(t / "out")]),
         r"sharded checkpoint .*sharded needs posix\.system to load, which first_pl refuses.*--trust_checkpoint true"),
    Case("sharded-test", lambda w, t: evaluate_with(w, t, "test", evil_sharded_checkpoint(t)),
         r"sharded checkpoint .*sharded needs posix\.system to load.*--trust_checkpoint true"),
]  # fmt: skip


@pytest.mark.parametrize("case", EVIL_CASES, ids=[c.id for c in EVIL_CASES])
def test_a_planted_payload_is_refused_and_never_runs(case: Case, world: World, tmp_path: Path, capsys):
    with pytest.raises((Exception, SystemExit)) as raised:
        case.provoke(world, tmp_path)
    message = error_message(raised.value, capsys)
    assert re.search(case.expect, message), message[-2000:]
    assert not (tmp_path / MARKER).exists(), "the checkpoint's payload ran"


def test_the_command_line_refuses_it_in_one_line(world: World, tmp_path: Path):
    done = first_pl(ask_args(evil_checkpoint(world, tmp_path)))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"first-pl ask: error: --checkpoint .*" + REFUSED, done.stderr.strip().splitlines()[-1])
    assert not (tmp_path / MARKER).exists()


def test_trust_checkpoint_loads_it_and_the_payload_runs(world: World, tmp_path: Path, capsys):
    """The opt-in does what it says: the file is unpickled in full (here: in tmp_path only)."""
    evil = evil_checkpoint(world, tmp_path)
    main(ask_args(evil, "--trust_checkpoint", "true"))
    assert "answer: " in capsys.readouterr().out
    assert (tmp_path / MARKER).exists()
    (tmp_path / MARKER).unlink()
    evaluate_with(world, tmp_path, "test", evil, "--trust_checkpoint", "true")
    assert (tmp_path / MARKER).exists()


def test_weights_only_false_without_the_opt_in_is_refused(world: World, tmp_path: Path):
    with pytest.raises(Exception, match=r"--weights_only false contradicts --trust_checkpoint false"):
        evaluate_with(world, tmp_path, "test", world.checkpoint, "--weights_only", "false")


def test_checkpoints_hold_only_what_a_weights_only_load_reads(world: World, tmp_path: Path):
    """A module built in Python with config objects and a Path saves them as plain data; a
    checkpoint that still holds first_pl's config dataclasses (also under the old package
    name) loads weights-only."""
    assert torch.serialization.get_unsafe_globals_in_checkpoint(world.checkpoint) == []
    from first_pl.methods import FIRST

    spec = ModelSpec(name_or_path=str(world.model_dir))
    module = FIRST(model=spec, optimizer=OptimizerConfig(lr=1e-3), temperature=0.5, calibration=world.calibration)
    assert module.hparams["model"] == vars(spec) and module.hparams["optimizer"]["lr"] == 1e-3
    assert module.hparams["calibration"] == str(world.calibration)
    checkpoint = real_checkpoint(world)
    checkpoint["hyper_parameters"].update(model=spec, optimizer=OptimizerConfig(lr=1e-3))
    torch.save(checkpoint, tmp_path / "objects.ckpt")
    raw = (tmp_path / "objects.ckpt").read_bytes()
    old_name = raw.replace(b"first_pl.methods.base\nOptimizerConfig", b"first_pl.modules.base\nOptimizerConfig")
    assert old_name != raw
    (tmp_path / "old_name.ckpt").write_bytes(old_name)
    for name in ("objects.ckpt", "old_name.ckpt"):
        loaded = load_method(tmp_path / name)
        assert loaded.optim.lr == 1e-3 and loaded.model_spec == spec


NAN = r"checkpoint .*nan\.ckpt has NaN or infinite weights in 1 of \d+ tensors \(first: model\.\S+\)"
NAN_CASES = [
    Case("nan-ask", lambda w, t: main(ask_args(nan_checkpoint(w, t))), r"--checkpoint .*nan\.ckpt: " + NAN),
    Case("nan-extract", lambda w, t: extract_from(w, t, nan_checkpoint(w, t)), NAN),
    Case("nan-export", lambda w, t: main(["export", "--checkpoint", str(nan_checkpoint(w, t)), "--output_dir", str(t / "out")]), NAN),
    Case("nan-test", lambda w, t: evaluate_with(w, t, "test", nan_checkpoint(w, t)), NAN),
]  # fmt: skip


@pytest.mark.parametrize("case", NAN_CASES, ids=[c.id for c in NAN_CASES])
def test_nan_weights_are_refused_naming_the_checkpoint(case: Case, world: World, tmp_path: Path, capsys):
    with pytest.raises((Exception, SystemExit)) as raised:
        case.provoke(world, tmp_path)
    message = error_message(raised.value, capsys)
    assert re.search(case.expect, message), message[-2000:]
    assert not (tmp_path / "store.h5").exists() and not (tmp_path / "out").exists()
