"""Training strategies (LightningModules) chosen by `class_path`: FineTune, Distill, ..."""

from first_pl.modules.base import OptimizerConfig, StudentModule
from first_pl.modules.distill import FIRST, Distill, LabelSmoothingDistill
from first_pl.modules.finetune import FineTune

__all__ = ["FIRST", "Distill", "FineTune", "LabelSmoothingDistill", "OptimizerConfig", "StudentModule"]
