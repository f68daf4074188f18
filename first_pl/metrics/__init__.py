"""Calibration metrics (ECE, Trust, reliability bins, ...) as functions and torchmetrics Metrics."""

from first_pl.metrics.bootstrap import Interval, bootstrap_ci
from first_pl.metrics.calibration import (
    CandidateBrierScore,
    CandidateNLL,
    ExpectedCalibrationError,
    MultipleChoiceCalibration,
    ReliabilityBins,
    TrustScore,
)
from first_pl.metrics.functional import expected_calibration_error
from first_pl.metrics.selective import accuracy_coverage_curve, confidence_auroc

__all__ = [
    "CandidateBrierScore",
    "CandidateNLL",
    "ExpectedCalibrationError",
    "Interval",
    "MultipleChoiceCalibration",
    "ReliabilityBins",
    "TrustScore",
    "accuracy_coverage_curve",
    "bootstrap_ci",
    "confidence_auroc",
    "expected_calibration_error",
]
