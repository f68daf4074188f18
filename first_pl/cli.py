"""The `first-pl` command: LightningCLI for fit / validate / test / predict, plus subcommands.

Models (strategies) and data modules are chosen by `class_path` in composable `--config`
files with dotted overrides, as in any LightningCLI project; the pipeline's other steps
(`extract`, `calibrate`, ...) are registered in `COMMANDS` below by the function (or class)
that runs them, as litgpt's `__main__.py` does, so an IDE and an import graph follow each one.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import yaml
from jsonargparse import CLI, ActionConfigFile, ArgumentParser
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn

from first_pl.callbacks.evaluation import CalibrationEvaluation
from first_pl.commands.analyze import coverage_figure, rank_calibration_figure
from first_pl.commands.ask import ask
from first_pl.commands.calibrate import calibrate
from first_pl.commands.export import export
from first_pl.commands.extract import extract
from first_pl.commands.plan import plan
from first_pl.commands.prefix_cache import prefix_cache
from first_pl.commands.recorded_config import checkpoint_defaults
from first_pl.commands.store_io import export_store, import_store, verify_store
from first_pl.data.qa_datamodule import QADataModule
from first_pl.fileio.lock import lock_folder, unlock_folder
from first_pl.fileio.output_path import check_output_path
from first_pl.fileio.run_files import command_config_file
from first_pl.methods.base import StudentModule
from first_pl.methods.checkpoint import TRUST_FLAG, CheckpointError, read_ckpt_path, refusal
from first_pl.methods.compatibility import check_checkpoint_model
from first_pl.noise import VERBOSE_ENV, configure_third_party_noise
from first_pl.pipeline.offline import Pipeline
from first_pl.pipeline.sweep import Sweep
from first_pl.report import build_report
from first_pl.run_folder import (
    OVERWRITE_FLAG,
    check_last_checkpoint,
    check_run_folder,
    check_trains,
    keep_fit_logs,
)
from first_pl.trainer import Trainer

# Subcommands beyond Lightning's: a function's typed parameters are its options (jsonargparse
# gives it `--config`, `--print_config` and `--help`); a class (a dataclass with `run()`, such
# as the pipeline) takes its fields as options at the top level of the config. Importing them
# all costs `first-pl fit` about 0.7 s of its ~19 s start (python -X importtime).
COMMANDS: dict[str, Callable[..., object]] = {
    "extract": extract,
    "coverage": coverage_figure,
    "rank-calibration": rank_calibration_figure,
    "calibrate": calibrate,
    "export": export,
    "pipeline": Pipeline,
    "report": build_report,
    "sweep": Sweep,
    "ask": ask,
    "import-store": import_store,
    "export-store": export_store,
    "verify-store": verify_store,
    "plan": plan,
    "prefix-cache": prefix_cache,
}


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
    """LightningCLI with first_pl's defaults: strategies and data modules in subclass mode."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            StudentModule,
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
        # Calibration evaluation always runs (settings under `evaluation.*`), for every strategy.
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
        (`first_pl.commands.recorded_config`), so `test --ckpt_path X` needs no config."""
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
        checkpoint of another strategy or model than the config's is refused, since the
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
                f"model {class_before}; use a config of the checkpoint's strategy (such as its "
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
    """The strategy class the config (or, once parsed, the checkpoint) names."""
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


def run_command(name: str, args: list[str]) -> None:
    """Run a registered subcommand through jsonargparse (config files, overrides, help).

    A function's parameters are the subcommand's options; a class (a dataclass with `run()`,
    such as the pipeline) takes its fields as options at the top level of the config.
    """
    target = COMMANDS[name]
    if not isinstance(target, type):
        CLI(target, args=args, as_positional=False, prog=f"first-pl {name}")
        return
    parser = ArgumentParser(prog=f"first-pl {name}", description=target.__doc__)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML file with any of the options"
    )
    parser.add_class_arguments(target)
    config = parser.parse_args(args).as_dict()
    config.pop("config", None)
    # Plain values, not instantiated: class_path mappings inside free-form fields (stage
    # overrides, evaluation tasks) are configs to write out, not objects to build here.
    target(**config).run()


USER_ERRORS = (ValueError, OSError, RuntimeError)
# `first-pl --verbose <command>`: show the third-party messages first_pl.noise hides
VERBOSE_FLAG = "--verbose"


def user_error(err: BaseException) -> BaseException | None:
    """The error a person must act on, or None for a bug (whose traceback should be seen).

    An exception raised by first_pl's own code (a check with a message naming the file, field
    or option) counts, also when jsonargparse wrapped it while instantiating a class.
    """
    package = str(Path(__file__).resolve().parent)
    seen, current = set(), err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        ours = tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(
            package
        )
        if isinstance(current, USER_ERRORS) and ours:
            return current  # the outermost one: re-raised errors add context (hints)
        current = current.__cause__ or current.__context__
    return None


def main(args: list[str] | None = None) -> None:
    """The `first-pl` entry point.

    From the command line (`args` None), an error raised by first_pl's own checks is printed as
    one line, `first-pl <command>: error: <message>`, and the exit status is 2; called from
    Python with `args`, every exception propagates to the caller.
    """
    if args is not None:
        return _main(list(args))
    argv = sys.argv[1:]
    try:
        _main(argv)
    except USER_ERRORS as err:
        cause = user_error(err)
        if cause is None:
            raise
        command = argv[1:] if argv[:1] == [VERBOSE_FLAG] else argv
        prog = f"first-pl {command[0]}" if command and not command[0].startswith("-") else "first-pl"
        print(f"{prog}: error: {cause}", file=sys.stderr)
        sys.exit(2)


def _main(argv: list[str]) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv[:1] == [VERBOSE_FLAG]:  # before the command: Lightning's test has its own --verbose
        os.environ[VERBOSE_ENV] = "1"  # the pipeline's torchrun ranks inherit it
        argv = argv[1:]
    configure_third_party_noise()
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:])
        return
    if argv and argv[0] in ("-h", "--help") and COMMANDS:
        print(
            "first_pl subcommands: " + ", ".join(sorted(COMMANDS)) + " (first-pl <command> --help)"
            f"; first-pl {VERBOSE_FLAG} <command> shows the third-party messages hidden by default"
        )
    with warnings.catch_warnings():
        # `args` is always given (the pipeline calls fit/test in-process); Lightning's warning
        # about args beside sys.argv would fire on every stage.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        FirstCLI(args=argv)
