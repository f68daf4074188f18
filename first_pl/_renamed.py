"""Old module names that still import: configs (`class_path: first_pl.modules.FIRST`),
checkpoints (whose pickled hyperparameters name `first_pl.modules.base.OptimizerConfig`) and
scripts written against an old name keep working after a package or module is renamed.

`first_pl.modules` is `first_pl.methods` ("modules" read as Lightning's LightningModules),
`first_pl.knowledge` is `first_pl.teacher` (the teacher side), the report's top-level
modules (`report_*`, `run_metrics`) are the package `first_pl.report`, `Pipeline`'s module
`first_pl.pipeline.offline` is `first_pl.pipeline.pipeline`, and the teacher's
`calibration*` modules, which choose a transform's parameter, are `parameter_search`,
`parameter_choice` and `choose_on_store` ("calibration" is left to measuring ECE,
`first_pl.metrics.calibration`). A finder on `sys.meta_path` answers every old import with
the module object of the new name, so both names are one module (one class identity, no copy).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

RENAMED: dict[str, str] = {
    "first_pl.modules": "first_pl.methods",
    "first_pl.knowledge": "first_pl.teacher",
    "first_pl.report_runs": "first_pl.report.runs",
    "first_pl.report_tables": "first_pl.report.tables",
    "first_pl.report_seeds": "first_pl.report.paired",
    "first_pl.report_curves": "first_pl.report.curves",
    "first_pl.report_checks": "first_pl.report.checks",
    "first_pl.run_metrics": "first_pl.report.run_metrics",
    "first_pl.pipeline.offline": "first_pl.pipeline.pipeline",
    "first_pl.teacher.calibration": "first_pl.teacher.parameter_search",
    "first_pl.teacher.calibration_result": "first_pl.teacher.parameter_choice",
    "first_pl.teacher.store_calibration": "first_pl.teacher.choose_on_store",
}


def new_name(name: str) -> str | None:
    """The current name of a module imported under an old one (None if `name` is not old)."""
    for old, new in RENAMED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class RenamedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the module of its new name (created once, shared)."""

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(new_name(spec.name))

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module of the new name is already imported."""


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, RenamedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, RenamedModuleFinder())
