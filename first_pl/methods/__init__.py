"""The four methods (Fine-tune, Distill, Distill w/ LS, FIRST) as LightningModules, by `class_path`."""

from first_pl.methods.base import MethodModule, OptimizerConfig, StudentModule
from first_pl.methods.distill import FIRST, Distill, LabelSmoothingDistill
from first_pl.methods.finetune import FineTune

__all__ = ["FIRST", "Distill", "FineTune", "LabelSmoothingDistill", "MethodModule", "OptimizerConfig", "StudentModule"]
