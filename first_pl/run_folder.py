"""What `first-pl fit` checks before it writes into a run folder, so two runs never mix.

A run folder holds one fit: its `config.yaml` (written by LightningCLI's SaveConfigCallback),
its checkpoints, metrics and predictions. `fit` refuses a folder whose `config.yaml` holds another
config, a folder holding the results of this very config (a new fit would replace its
`metrics.csv`: resume it instead), a non-empty folder that is no run folder at all, a
`--ckpt_path last` with no last checkpoint to resume (Lightning would only warn and start from
scratch into the same folder), and a fit that would train no step at all.

Lightning's CSV logger deletes `metrics.csv` from any non-empty folder it opens; `RunLogWriter`
keeps a resumed fit's rows and gives test / validate / predict their own file names, so they
never touch the fit's `metrics.csv` and `hparams.yaml`.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Collection
from pathlib import Path

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_info

from first_pl.fileio.run_files import CONFIG_FILE, HPARAMS_FILE, LOCK_FILE
from first_pl.methods.checkpoint import CheckpointError

OVERWRITE_FLAG = "overwrite_run"
# Keys that may differ between two invocations of the same run.
_RUN_IDENTITY_IGNORES = ("config", "ckpt_path", OVERWRITE_FLAG, "__path__")
# How long to train: a resume may extend (or shorten) the run it continues.
_RESUME_MAY_CHANGE = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time")
# What a fit leaves before it has produced anything (the logger writes hparams.yaml at start).
_NOTHING_YET = {CONFIG_FILE, HPARAMS_FILE, LOCK_FILE}


class RunFolderError(ValueError):
    """`fit` would write into a folder that already holds another run."""


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _run_identity(parser, config) -> dict:
    dumped = yaml.safe_load(parser.dump(config, skip_none=False, skip_check=True)) or {}
    return {k: v for k, v in dumped.items() if k not in _RUN_IDENTITY_IGNORES}


def produced_nothing(log_dir: Path) -> bool:
    """True when `log_dir` holds only what a fit writes before its first result.

    A fit that failed early (a missing data file, a bad option found at setup) leaves its
    config.yaml and nothing else; rerunning with a corrected config is not mixing two runs.
    """
    return all(p.name in _NOTHING_YET for p in log_dir.iterdir())


def _listing(log_dir: Path, leave_out: Collection[str] = (), most: int = 6) -> str:
    """Up to `most` files under `log_dir` (relative paths), for a message naming what is there."""
    found = sorted(
        str(p.relative_to(log_dir))
        for p in log_dir.rglob("*")
        if not p.is_dir() and p.relative_to(log_dir).parts[0] not in leave_out
    )
    more = f" and {len(found) - most} more" if len(found) > most else ""
    return ", ".join(found[:most]) + more


def check_run_folder(parser, config, log_dir: Path, resuming: bool = False) -> None:
    """Raise `RunFolderError` unless `fit` may write into `log_dir` without destroying a file.

    Passes: a missing or empty folder, the leftover of a fit that produced nothing (its
    config.yaml, the logger's hparams.yaml, the lock), and a resume (`resuming`, from
    `--ckpt_path`) of the run whose config.yaml is there, whose config may differ only in how
    long to train. Refused: a non-empty folder without a config.yaml (not a run folder: the
    logger would delete its metrics.csv and replace its hparams.yaml), a config.yaml that is
    no fit config or holds another config, and a fresh fit (no `--ckpt_path`) over a run that
    saved results (a killed or finished fit: a new fit would delete its metrics.csv).
    `--overwrite_run true` skips the check.
    """
    saved = log_dir / CONFIG_FILE
    if not saved.is_file():
        if log_dir.is_dir() and any(p.name != LOCK_FILE for p in log_dir.iterdir()):
            raise RunFolderError(
                f"run folder {log_dir} is not empty and holds no {CONFIG_FILE} of a first_pl "
                f"fit ({_listing(log_dir)}): a fit there would delete its metrics.csv and "
                f"replace its hparams.yaml; choose another --trainer.default_root_dir (and "
                f"logger save_dir), or pass --{OVERWRITE_FLAG} true to write into it anyway"
            )
        return
    hint = (
        f"choose another --trainer.default_root_dir (and logger save_dir), resume it with its "
        f"own config and --ckpt_path <its checkpoint>, or pass --{OVERWRITE_FLAG} true to write "
        f"into it anyway"
    )
    try:
        previous = _run_identity(parser, parser.parse_path(str(saved), defaults=True))
    except Exception as err:  # jsonargparse raises several types for a config it cannot read
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFolderError(
            f"run folder {log_dir} already holds {saved}, which is not a fit config of this "
            f"version ({first_line}); {hint}"
        ) from None
    before, now = _flatten(previous), _flatten(_run_identity(parser, config))
    ignored = _RESUME_MAY_CHANGE if resuming else ()
    differ = sorted(
        k for k in set(before) | set(now) if before.get(k) != now.get(k) and k not in ignored
    )
    if not differ:
        if resuming or produced_nothing(log_dir):
            return
        raise RunFolderError(
            f"run folder {log_dir} already holds the results of this run "
            f"({_listing(log_dir, _NOTHING_YET)}): a new fit would delete its metrics.csv; "
            f"resume it with --ckpt_path last (saved by a ModelCheckpoint with save_last: "
            f"true, as in configs/trainer/resumable.yaml) or --ckpt_path <its checkpoint>, "
            f"choose another --trainer.default_root_dir (and logger save_dir), or pass "
            f"--{OVERWRITE_FLAG} true to train it again from the start there"
        )
    if produced_nothing(log_dir):
        rank_zero_info(
            f"run folder {log_dir}: replacing {saved} of an earlier fit that saved no "
            f"checkpoint, metrics or logs"
        )
        return
    shown = ", ".join(f"{k} ({before.get(k)!r} there, {now.get(k)!r} now)" for k in differ[:4])
    more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
    raise RunFolderError(
        f"run folder {log_dir} already holds another run: its {saved} differs in "
        f"{shown}{more}; {hint}"
    )


def check_trains(trainer: Trainer) -> None:
    """Refuse a fit that would run no training step (and so save no checkpoint) yet exit 0."""
    for option, value in (("max_steps", trainer.max_steps), ("max_epochs", trainer.max_epochs)):
        if value == 0:
            raise ValueError(
                f"trainer.{option} is 0: fit would train no step and save no checkpoint; give a "
                f"positive number (or -1 for no limit)"
            )


def last_checkpoint_folder(callback: ModelCheckpoint, trainer: Trainer) -> Path:
    """The folder `callback` writes its last checkpoint into, before the fit has set it up: its
    `dirpath`, else `<save_dir>/<name>/<version>/checkpoints` of the trainer's first logger, else
    `<default_root_dir>/checkpoints`. ModelCheckpoint's own rule, which Lightning 2.6 keeps
    private; tests/methods/test_lightning_names.py pins it to where
    Lightning writes."""
    if callback.dirpath is not None:
        return Path(callback.dirpath)
    if not trainer.loggers:
        return Path(trainer.default_root_dir) / "checkpoints"
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
    return Path(save_dir) / str(logger.name) / version / "checkpoints"


def last_checkpoints(callback: ModelCheckpoint, trainer: Trainer) -> list[Path]:
    """The checkpoints `--ckpt_path last` resumes from, as Lightning finds them: the files of
    `last_checkpoint_folder` whose name starts with the callback's `CHECKPOINT_NAME_LAST`
    (`last.ckpt`, `last-v1.ckpt`, ...) and ends with its `FILE_EXTENSION`."""
    pattern = f"{glob.escape(callback.CHECKPOINT_NAME_LAST)}*{glob.escape(callback.FILE_EXTENSION)}"
    return sorted(last_checkpoint_folder(callback, trainer).glob(pattern))


def check_last_checkpoint(trainer: Trainer) -> None:
    """Refuse `--ckpt_path last` when no ModelCheckpoint folder holds a last checkpoint.

    Lightning only warns and trains from scratch into the folder the user meant to resume.
    """
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    if any(last_checkpoints(cb, trainer) for cb in callbacks):
        return
    folders = [last_checkpoint_folder(cb, trainer) for cb in callbacks] or [
        Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
    ]
    raise CheckpointError(
        f"--ckpt_path last: there is no last checkpoint to resume (looked for last*.ckpt in "
        f"{', '.join(map(str, folders))}); only a ModelCheckpoint with save_last: true writes one (--config "
        f"configs/trainer/resumable.yaml). Give the checkpoint file to resume from, or drop "
        f"--ckpt_path to start a new run"
    )


class RunLogWriter(ExperimentWriter):
    """The CSV logger's writer, keeping what is not its to delete.

    Lightning's writer deletes `metrics.csv` from any non-empty folder it opens. This one
    writes `metrics_<command>.csv` and `hparams_<command>.yaml` for test / validate / predict
    (beside the fit's files, as `config_<command>.yaml` is), and for a resumed fit appends to
    the interrupted run's `metrics.csv` under its header. Rows the interrupted run logged after
    the checkpoint it resumes from are kept, so such a step appears twice.
    """

    def __init__(self, log_dir: str, command: str) -> None:
        self.resume = command == "fit"
        suffix = "" if self.resume else f"_{command}"
        self.NAME_METRICS_FILE = f"metrics{suffix}.csv"
        self.NAME_HPARAMS_FILE = f"hparams{suffix}.yaml"
        super().__init__(log_dir)
        if self.resume and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = next(csv.reader(handle), [])

    def _check_log_dir_exists(self) -> None:
        """Replace only an earlier file of the same command; never touch a fit's files."""
        if not self.resume and self._fs.isfile(self.metrics_file_path):
            self._fs.rm_file(self.metrics_file_path)


def keep_fit_logs(trainer: Trainer, command: str) -> None:
    """Give every CSV logger of `trainer` a `RunLogWriter` for `command` (`fit` for a resume),
    before Lightning creates its own writer at the first log."""
    if trainer.global_rank != 0:
        return
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and logger._experiment is None:
            logger._experiment = RunLogWriter(logger.log_dir, command)
