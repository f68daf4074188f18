"""The `first-pl` command: LightningCLI for fit / validate / test / predict, plus subcommands.

Models (strategies) and data modules are chosen by `class_path` in composable `--config`
files with dotted overrides, as in any LightningCLI project; the pipeline's other steps
(`extract`, `calibrate`, ...) are registered in `COMMANDS` below by the function (or class)
that runs them, as litgpt's `__main__.py` does, so an IDE and an import graph follow each one.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

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
from first_pl.commands.store_io import export_store, import_store
from first_pl.data.qa_datamodule import QADataModule
from first_pl.fileio.lock import lock_folder, unlock_folder
from first_pl.fileio.output_path import check_output_path
from first_pl.methods.base import StudentModule
from first_pl.methods.checkpoint import CheckpointError, check_ckpt_path
from first_pl.pipeline.offline import Pipeline
from first_pl.pipeline.sweep import Sweep
from first_pl.report import build_report
from first_pl.run_folder import (
    OVERWRITE_FLAG,
    check_last_checkpoint,
    check_run_folder,
    check_trains,
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
    "plan": plan,
}


class SaveConfigPerCommand(SaveConfigCallback):
    """`fit` saves `config.yaml`; test / validate / predict save `config_<command>.yaml`.

    So a later `test` in a run folder never replaces the fit config that
    `first-pl fit --config <run>/config.yaml` reruns and the run-folder check compares with.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Lightning passes a TrainerFn, whose f-string is "TrainerFn.TESTING", not "test".
        stage = TrainerFn(stage).value
        if stage != "fit":
            self.config_filename = f"config_{stage}.yaml"
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
            help="fit: write into a run folder whose config.yaml holds another config "
            "(its config.yaml is replaced; its checkpoints are kept)",
        )

    def _parse_ckpt_path(self) -> None:
        """Check `--ckpt_path` before LightningCLI reads the checkpoint's hyper-parameters.

        A missing or unreadable file is refused by name (Lightning would show a traceback); a
        checkpoint of another strategy or model than the config's is refused, since
        LightningCLI replaces the config's model with the checkpoint's saved one, so the
        config would otherwise be ignored silently.
        """
        parse = getattr(super(), "_parse_ckpt_path", None)
        subcommand = self.config.get("subcommand")
        if parse is None or subcommand is None:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        check_ckpt_path(ckpt_path)
        class_before, model_before = _model_class(self.config), _model_identity(self.config)
        try:
            parse()
        except Exception as err:  # torch.load raises several types for a damaged file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} cannot be read (truncated, damaged or not a "
                f"checkpoint): {reason}"
            ) from err
        class_after, model_after = _model_class(self.config), _model_identity(self.config)
        if class_before is not None and class_after is not None and class_before != class_after:
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} holds a {class_after} checkpoint but the config gives "
                f"model {class_before}; use a config of the checkpoint's strategy (such as its "
                f"run folder's config.yaml)"
            )
        if model_before is not None and model_after is not None and model_before != model_after:
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} was trained with model {model_after} but the config "
                f"gives model {model_before}; use the model settings the checkpoint was trained with"
            )

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

    def before_test(self) -> None:
        self.check_output_folder()

    def before_fit(self) -> None:
        """Refuse a fit that trains nothing, resumes nothing, or mixes two runs in one folder."""
        config = self.config["fit"]
        log_dir = Path(self.trainer.log_dir or ".")
        self.check_output_folder()
        check_trains(self.trainer)
        if config.get("ckpt_path") == "last":
            check_last_checkpoint(self.trainer)
        if not config.get(OVERWRITE_FLAG):
            resuming = config.get("ckpt_path") is not None
            check_run_folder(self._parser("fit"), config, log_dir, resuming)
        if self.trainer.global_rank == 0:  # one fit at a time per run folder
            log_dir.mkdir(parents=True, exist_ok=True)
            lock_folder(log_dir)
            self._locked = log_dir

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


def _model_identity(config) -> dict | None:
    """What decides a checkpoint's weights: `model.init_args.model` minus dtype/checkpointing."""
    try:
        spec = config[config["subcommand"]]["model"]["init_args"]["model"]
    except (KeyError, TypeError, AttributeError):
        return None
    spec = spec.as_dict() if hasattr(spec, "as_dict") else dict(spec or {})
    return {k: spec.get(k) for k in ("name_or_path", "keep_every", "keep_layers")}


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
        prog = f"first-pl {argv[0]}" if argv and not argv[0].startswith("-") else "first-pl"
        print(f"{prog}: error: {cause}", file=sys.stderr)
        sys.exit(2)


def _main(argv: list[str]) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:])
        return
    if argv and argv[0] in ("-h", "--help") and COMMANDS:
        print(
            "first_pl subcommands: " + ", ".join(sorted(COMMANDS)) + " (first-pl <command> --help)"
        )
    with warnings.catch_warnings():
        # `args` is always given (the pipeline calls fit/test in-process); Lightning's warning
        # about args beside sys.argv would fire on every stage.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        FirstCLI(args=argv)
