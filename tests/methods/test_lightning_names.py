"""first_pl's own names for what Lightning keeps private, pinned to the installed Lightning
(2.6.6 when written): where ModelCheckpoint writes `last.ckpt` (`run_folder.last_checkpoints`,
which `--ckpt_path last` is checked against) and which `--ckpt_path` values name its model
registry (`checkpoint.names_registry`). The sharded checkpoint's metadata file name is pinned on
a real FSDP2 checkpoint in tests/methods/test_fsdp.py. A Lightning upgrade that moves one of
them fails here, not silently in a user's run."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from first_pl.methods.checkpoint import CheckpointError, check_ckpt_path, names_registry
from first_pl.run_folder import check_last_checkpoint, last_checkpoint_folder, last_checkpoints

LOGGERS = {
    "run folder (CSVLogger, no name, no version)": lambda d: CSVLogger(d, name="", version=""),
    "CSVLogger with its numbered versions": lambda d: CSVLogger(d),
    "no logger": lambda d: False,
}


def trainer(root: Path, logger, callback: ModelCheckpoint) -> Trainer:
    return Trainer(
        default_root_dir=root, logger=logger, callbacks=[callback], max_steps=1,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


@pytest.mark.parametrize("logger", list(LOGGERS))
def test_last_checkpoints_are_where_model_checkpoint_writes_them(logger, tmp_path):
    fitted = trainer(tmp_path, LOGGERS[logger](tmp_path), ModelCheckpoint(save_last=True))
    fitted.fit(BoringModel())
    written = Path(fitted.checkpoint_callback.last_model_path)
    assert written.name == "last.ckpt" and written.is_file()
    # a callback not yet set up (as `--ckpt_path last` is checked, before the fit): no dirpath
    fresh = ModelCheckpoint(save_last=True)
    assert fresh.dirpath is None
    assert last_checkpoint_folder(fresh, fitted) == written.parent
    assert last_checkpoints(fresh, fitted) == [written]
    check_last_checkpoint(fitted)


def test_a_dirpath_is_where_the_last_checkpoint_is_looked_for(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "elsewhere", save_last=True)
    fitted = trainer(tmp_path, CSVLogger(tmp_path), callback)
    fitted.fit(BoringModel())
    again = ModelCheckpoint(dirpath=tmp_path / "elsewhere", save_last=True)
    assert last_checkpoints(again, fitted) == [Path(callback.last_model_path)]
    (tmp_path / "elsewhere" / "last.ckpt").unlink()
    with pytest.raises(CheckpointError, match=r"looked for last\*\.ckpt in .*elsewhere\)"):
        check_last_checkpoint(trainer(tmp_path, CSVLogger(tmp_path), again))


REGISTRY_VALUES = ["registry", "REGISTRY:model-name", "registry:team/model:v2", "registry:",
                   "something_registry", "registryx", "", "last", "runs/registry/last.ckpt"]  # fmt: skip


@pytest.mark.parametrize("value", REGISTRY_VALUES)
def test_registry_names_are_the_ones_lightning_resolves(value):
    from lightning.pytorch.utilities.model_registry import _is_registry

    assert names_registry(value) == _is_registry(value)


def test_a_registry_name_is_left_to_lightning_and_a_missing_path_is_refused(tmp_path):
    check_ckpt_path("registry:team/model")
    with pytest.raises(CheckpointError, match=r"--ckpt_path .*registryx does not exist"):
        check_ckpt_path(str(tmp_path / "registryx"))
