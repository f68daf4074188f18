"""Training strategies (LightningModules) chosen by `class_path`: FineTune, Distill, ..."""

from first_pl.modules.base import OptimizerConfig, StudentModule
from first_pl.modules.finetune import FineTune

__all__ = ["FineTune", "OptimizerConfig", "StudentModule"]
