"""`DirectCheckpointIO`: a checkpoint streamed to its file, atomically, without Lightning's
in-memory copy."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from first_pl.fileio.checkpoint_io import PARTIAL_SUFFIX, DirectCheckpointIO
from first_pl.trainer import Trainer

MIB = 2**20


def checkpoint() -> dict:
    return {"state_dict": {"w": torch.arange(4 * MIB, dtype=torch.float32)}, "epoch": 3}


def peak_python_bytes(save) -> int:
    """The largest Python-heap allocation during `save()` (a BytesIO buffer lives there; the
    tensors' own storage does not)."""
    tracemalloc.start()
    try:
        save()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_saved_checkpoint_loads_back_equal_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "deep" / "folder" / "epoch=3.ckpt"
    DirectCheckpointIO().save_checkpoint(checkpoint(), path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], checkpoint()["state_dict"]["w"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch=3.ckpt"]


def test_the_checkpoint_is_not_copied_in_memory_as_lightnings_is(tmp_path):
    size = 16 * MIB  # the tensor's bytes
    lightning = peak_python_bytes(lambda: TorchCheckpointIO().save_checkpoint(checkpoint(), tmp_path / "a.ckpt"))
    direct = peak_python_bytes(lambda: DirectCheckpointIO().save_checkpoint(checkpoint(), tmp_path / "b.ckpt"))
    assert lightning >= size  # its buffer holds the whole checkpoint (and getvalue() copies it)
    assert direct < size / 8, direct
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


def test_a_failed_save_keeps_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    DirectCheckpointIO().save_checkpoint(checkpoint(), path)
    before = path.read_bytes()

    def broken(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        DirectCheckpointIO().save_checkpoint({"epoch": 4}, path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}")) and not list(tmp_path.glob(".*"))


def test_first_pl_trainers_save_through_it_unless_the_config_chooses_an_io(tmp_path):
    trainer = Trainer(accelerator="cpu", precision="32-true", logger=False, default_root_dir=tmp_path)
    assert type(trainer.strategy.checkpoint_io) is DirectCheckpointIO
    own = TorchCheckpointIO()
    chosen = Trainer(accelerator="cpu", precision="32-true", logger=False, plugins=[own], default_root_dir=tmp_path)
    assert chosen.strategy.checkpoint_io is own


def test_remote_paths_keep_lightnings_save(tmp_path, monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", lambda self, c, p, s=None: seen.append(str(p)))
    DirectCheckpointIO().save_checkpoint(checkpoint(), "memory://bucket/x.ckpt")
    assert seen == ["memory://bucket/x.ckpt"]
    assert not Path("memory:").exists()
