"""`first-pl fit / validate / test / predict`: LightningCLI with first_pl's defaults.

Models (methods) and data modules are chosen by `class_path` in composable `--config` files with
dotted overrides, as in any LightningCLI project. It sits below the pipeline and the `first-pl`
entry point (`first_pl.runner` runs it for both), so neither imports the other.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn

from first_pl.callbacks.evaluation import CalibrationEvaluation
from first_pl.data.qa_datamodule import QADataModule
from first_pl.fileio.lock import lock_folder, unlock_folder
from first_pl.fileio.output_path import check_output_path
from first_pl.fileio.run_files import command_config_file
from first_pl.methods.base import MethodModule
from first_pl.methods.checkpoint import TRUST_FLAG, CheckpointError, read_ckpt_path, refusal
from first_pl.methods.compatibility import check_checkpoint_model
from first_pl.methods.recorded_config import checkpoint_defaults
from first_pl.run_folder import (
    OVERWRITE_FLAG,
    check_last_checkpoint,
    check_run_folder,
    check_trains,
    keep_fit_logs,
)
from first_pl.trainer import Trainer


class SaveConfigPerCommand(SaveConfigCallback):
    """`fit` saves `config.yaml`; test / validate / predict save `config_<command>.yaml`.

    So a later `test` in a run folder never replaces the fit config that
    `first-pl fit --config <run>/config.yaml` reruns and the run-folder check compares with.
    `--overwrite_run` is saved as false: it allows one invocation to write into a folder, and a
    rerun from the saved config must not inherit it.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Lightning passes a TrainerFn, whose f-string is "TrainerFn.TESTING", not "test".
        stage = TrainerFn(stage).value
        if stage != "fit":
            self.config_filename = command_config_file(stage)
        if self.config.get(OVERWRITE_FLAG):
            self.config = self.config.clone()
            self.config[OVERWRITE_FLAG] = False
        super().setup(trainer, pl_module, stage)


class FirstCLI(LightningCLI):
    """LightningCLI with first_pl's defaults: methods and data modules in subclass mode."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            MethodModule,
            QADataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_class=Trainer,
            save_config_callback=SaveConfigPerCommand,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # Calibration evaluation always runs (settings under `evaluation.*`), for every method.
        parser.add_lightning_class_args(CalibrationEvaluation, "evaluation")
        parser.add_argument(
            f"--{OVERWRITE_FLAG}",
            type=bool,
            default=False,
            help="fit: write into a folder that holds another run, this run's results or other "
            "files (its config.yaml, metrics.csv and hparams.yaml are replaced; its checkpoints "
            "are kept)",
        )
        parser.add_argument(
            f"--{TRUST_FLAG}",
            type=bool,
            default=False,
            help="unpickle whatever --ckpt_path holds (it can run code); default: a "
            "weights-only load that refuses a checkpoint needing anything but tensors and data",
        )

    def parse_arguments(self, parser, args) -> None:
        """Parse with the evaluated checkpoint's recorded model and data config as defaults
        (`first_pl.methods.recorded_config`), so `test --ckpt_path X` needs no config."""
        found = checkpoint_defaults(list(sys.argv[1:] if args is None else args))
        if found is not None:
            subcommand, defaults = found
            self._parser(subcommand).set_defaults(defaults)
            if "data" in defaults:
                print(
                    f"{subcommand}: data config as the checkpoint records it (explicit --config "
                    "/ --data options override it)",
                    flush=True,
                )
        super().parse_arguments(parser, args)

    def after_instantiate_classes(self) -> None:
        """Hand the data module its config as plain data, for the checkpoints to record."""
        super().after_instantiate_classes()
        subcommand = self.config.get("subcommand")
        if subcommand is not None and isinstance(self.datamodule, QADataModule):
            dump = self.parser.dump(self.config, skip_none=False, skip_link_targets=False)
            self.datamodule.config = yaml.safe_load(dump)[subcommand]["data"]

    def _parse_ckpt_path(self) -> None:
        """Check `--ckpt_path`, then take the model's hyper-parameters from it, as LightningCLI does.

        A missing or unreadable file is refused by name (Lightning would show a traceback), as
        are NaN weights and a file that a weights-only load refuses, unless `--trust_checkpoint
        true` (LightningCLI's own reading is always weights-only, so it cannot honour that). A
        checkpoint of another method or model than the config's is refused, since the
        checkpoint's saved model replaces the config's, which would otherwise be ignored silently.
        """
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        checkpoint = read_ckpt_path(ckpt_path, bool(config.get(TRUST_FLAG)), config.get("weights_only"))
        if checkpoint is None:
            return
        class_before, model_before = _model_class(self.config), _model_spec(self.config)
        self._take_hyperparameters(subcommand, checkpoint)
        class_after = _model_class(self.config)
        if class_before is not None and class_after is not None and class_before != class_after:
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} holds a {class_after} checkpoint but the config gives "
                f"model {class_before}; use a config of the checkpoint's method (such as its "
                f"run folder's config.yaml)"
            )
        check_checkpoint_model(checkpoint, model_before, f"--ckpt_path {ckpt_path}")

    def _take_hyperparameters(self, subcommand: str, checkpoint: dict) -> None:
        """The checkpoint's saved model class and init arguments replace the config's model
        (LightningCLI's `_parse_ckpt_path`, on a checkpoint already loaded)."""
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """The Trainer's `weights_only` follows `--trust_checkpoint` for every checkpoint it
        loads, `--ckpt_path last` included."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            kwargs["weights_only"] = not self.config_init[subcommand].get(TRUST_FLAG)
        return kwargs

    def _run_subcommand(self, subcommand: str) -> None:
        """A checkpoint the Trainer resolves itself (`--ckpt_path last`) that a weights-only
        load refuses gets the same one-line refusal as one given by name."""
        try:
            super()._run_subcommand(subcommand)
        except pickle.UnpicklingError as err:
            if self.trainer.ckpt_path is None:
                raise
            raise refusal(self.trainer.ckpt_path, err) from err

    def check_output_folder(self) -> None:
        """Refuse a run folder that cannot be written (under a file, read-only) before the model
        is built, naming the option that placed it."""
        option = (
            "--trainer.logger.init_args.save_dir"
            if self.trainer.logger is not None
            else "--trainer.default_root_dir"
        )
        folder = self.trainer.log_dir or self.trainer.default_root_dir
        check_output_path(folder, f"run folder ({option})", folder=True)

    def before_fit(self) -> None:
        """Refuse a fit that trains nothing, resumes nothing, or mixes two runs in one folder."""
        config = self.config["fit"]
        log_dir = Path(self.trainer.log_dir or ".")
        self.check_output_folder()
        check_trains(self.trainer)
        if config.get("ckpt_path") == "last":
            check_last_checkpoint(self.trainer)
        resuming = config.get("ckpt_path") is not None
        if not config.get(OVERWRITE_FLAG):
            check_run_folder(self._parser("fit"), config, log_dir, resuming)
        if resuming:
            keep_fit_logs(self.trainer, "fit")
        if self.trainer.global_rank == 0:  # one fit at a time per run folder
            log_dir.mkdir(parents=True, exist_ok=True)
            lock_folder(log_dir)
            self._locked = log_dir

    def before_test(self) -> None:
        self.check_output_folder()
        keep_fit_logs(self.trainer, "test")

    def before_validate(self) -> None:
        keep_fit_logs(self.trainer, "validate")

    def before_predict(self) -> None:
        keep_fit_logs(self.trainer, "predict")

    def after_fit(self) -> None:
        if getattr(self, "_locked", None) is not None:
            unlock_folder(self._locked)
            self._locked = None


def _model_class(config) -> str | None:
    """The method class the config (or, once parsed, the checkpoint) names."""
    try:
        return config[config["subcommand"]]["model"]["class_path"]
    except (KeyError, TypeError, AttributeError):
        return None


def _model_spec(config) -> object:
    """The config's `model.init_args.model`, or None when it names none."""
    try:
        return config[config["subcommand"]]["model"]["init_args"]["model"]
    except (KeyError, TypeError, AttributeError):
        return None
