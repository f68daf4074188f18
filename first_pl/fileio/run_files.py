"""The names of the files a run leaves behind, spelled once for their writers and readers.

A run folder (`first-pl fit` / `test`) holds its LightningCLI config, the evaluation callback's
metrics, learning curve, predictions and reliability diagrams; a pipeline stage folder adds its
`stage.json`; a calibration folder holds `calibration.json` and its figure. Writers
(callbacks, commands, pipeline) and readers (report, pipeline, W&B upload) import the names from
here, so a renamed file cannot leave a reader looking for the old name.
docs/ARCHITECTURE.md describes each file's content.
"""

from __future__ import annotations

import re

LOCK_FILE = ".lock"  # a run folder's lock (first_pl.fileio.lock); a store's is `<store>.lock`
CONFIG_FILE = "config.yaml"  # LightningCLI's SaveConfigCallback, `fit`
HPARAMS_FILE = "hparams.yaml"  # the CSV logger's, written when a fit starts
STAGE_FILE = "stage.json"  # a pipeline stage's record, written last: the stage is done
STALE_MARK = ".stale-"  # `<stage folder>.stale-<run id>`: a result whose upstream was recomputed
CURVE_FILE = "val_curve.jsonl"  # one line per validation and task during `fit`
PREDICTIONS_DIR = "predictions"
RELIABILITY_DIR = "reliability"
CALIBRATION_FILE = "calibration.json"  # `first-pl calibrate`: transform, parameter, curve
CALIBRATION_FIGURE = "calibration_curve.png"
COVERAGE_STEM = "coverage"  # `first-pl coverage`: .json, .csv, .png
RANK_CALIBRATION_STEM = "rank_calibration"
REPORT_FILE = "report.md"  # `first-pl report`, beside report.html and its figures
EXPORT_MARKER = "first_pl_export.json"  # `first-pl export`: what it exported, read by `ask`


def safe_name(name: str) -> str:
    """A task name as a file name: anything but letters, digits, `.`, `_`, `-` becomes `_`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def command_config_file(command: str) -> str:
    """The config a LightningCLI command saves: `config.yaml` for `fit`, `config_<command>.yaml`
    for validate / test / predict (which must not replace the fit config)."""
    return CONFIG_FILE if command == "fit" else f"config_{command}.yaml"


def metrics_file(split: str) -> str:
    """`metrics_{split}.json`: the evaluation callback's figures of one split, all tasks."""
    return f"metrics_{split}.json"


TEST_METRICS_FILE = metrics_file("test")  # what `first-pl report` reads


def predictions_file(split: str, task: str) -> str:
    """`predictions/{split}_{task}.csv`, relative to the run folder: one row per example."""
    return f"{PREDICTIONS_DIR}/{split}_{safe_name(task)}.csv"


def reliability_file(split: str, task: str) -> str:
    """`reliability/{split}_{task}.png`, relative to the run folder: the paper's figure 4."""
    return f"{RELIABILITY_DIR}/{split}_{safe_name(task)}.png"
