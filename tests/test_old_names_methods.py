"""Names that changed so that one idea has one name: the modules that choose a teacher transform's
parameter (`first_pl.teacher.parameter_search`, `parameter_choice`, `choose_on_store`; "calibration"
is left to measuring ECE, `first_pl.metrics.calibration`), the module of `Pipeline`
(`first_pl.pipeline.pipeline`), the LightningModule base that trains the teacher and the students
(`MethodModule`), and the checkpoint entry naming the method (`METHOD_KEY`).

Scripts importing an old module path get the same module (one object, one class identity), and a
checkpoint that records its method under the old key loads as one with the new key.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from first_pl.methods import FineTune
from first_pl.methods.base import METHOD_KEY, MethodModule
from first_pl.methods.checkpoint import CheckpointError, load_method
from first_pl.methods.loading import load_model
from first_pl.methods.recorded_config import checkpoint_defaults
from first_pl.models import ModelSpec

OLD_MODULES = {
    "first_pl.pipeline.offline": "first_pl.pipeline.pipeline",
    "first_pl.teacher.calibration": "first_pl.teacher.parameter_search",
    "first_pl.teacher.calibration_result": "first_pl.teacher.parameter_choice",
    "first_pl.teacher.store_calibration": "first_pl.teacher.choose_on_store",
    # through both renames: the package's old name, then the module's
    "first_pl.knowledge.calibration": "first_pl.teacher.parameter_search",
    "first_pl.knowledge.store_calibration": "first_pl.teacher.choose_on_store",
}
OLD_KEY = "first_pl_strategy"


@pytest.mark.parametrize("old", sorted(OLD_MODULES))
def test_an_old_module_path_imports_the_renamed_module(old):
    assert importlib.import_module(old) is importlib.import_module(OLD_MODULES[old])


def test_old_imports_get_the_same_objects():
    from first_pl.pipeline.offline import Pipeline
    from first_pl.teacher.calibration import CalibrationResult, choose_parameter
    from first_pl.teacher.calibration_result import STORE_FIELDS
    from first_pl.teacher.store_calibration import calibrate_store

    from first_pl.methods import StudentModule as from_package
    from first_pl.methods.base import StudentModule

    assert StudentModule is from_package is MethodModule
    assert issubclass(FineTune, StudentModule)
    assert Pipeline is importlib.import_module("first_pl.pipeline.pipeline").Pipeline
    search = importlib.import_module("first_pl.teacher.parameter_search")
    assert choose_parameter is search.choose_parameter
    choice = importlib.import_module("first_pl.teacher.parameter_choice")
    assert CalibrationResult is choice.CalibrationResult and STORE_FIELDS is choice.STORE_FIELDS
    assert calibrate_store is importlib.import_module("first_pl.teacher.choose_on_store").calibrate_store


def test_a_checkpoint_recording_its_method_under_the_old_key_loads(tiny_model_dir, tmp_path):
    module = FineTune(model=ModelSpec(name_or_path=str(tiny_model_dir), keep_every=2))
    module.configure_model()
    with torch.no_grad():
        module.model.model.norm.weight.mul_(1.5)  # weights off the init
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[METHOD_KEY] == "first_pl.methods.finetune.FineTune" and OLD_KEY not in checkpoint
    checkpoint[OLD_KEY] = checkpoint.pop(METHOD_KEY)
    path = tmp_path / "old.ckpt"
    torch.save(checkpoint, path)

    loaded = load_method(path, expect=FineTune)
    assert type(loaded) is FineTune
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert load_model(str(path), "--checkpoint").method == "FineTune"
    _, defaults = checkpoint_defaults(["test", "--ckpt_path", str(path), "--data", "x"])
    assert defaults["model"]["class_path"] == "first_pl.methods.finetune.FineTune"

    del checkpoint[OLD_KEY]  # no method entry under either key: not a first_pl checkpoint
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=f"old.ckpt was not written by a first_pl method \\(no '{METHOD_KEY}' entry\\)"):
        load_method(path)
