"""Calibration metrics (ECE, Trust, reliability bins, ...) as functions and torchmetrics Metrics."""
