"""Lightning callbacks and loggers for calibration evaluation."""

from first_pl.callbacks.evaluation import CalibrationEvaluation
from first_pl.callbacks.last_step_validation import LastStepValidation
from first_pl.callbacks.progress_lines import LineProgress
from first_pl.callbacks.throughput import TokenThroughput
from first_pl.callbacks.wandb_logging import OfflineAwareWandbLogger

__all__ = [
    "CalibrationEvaluation",
    "LastStepValidation",
    "LineProgress",
    "OfflineAwareWandbLogger",
    "TokenThroughput",
]
