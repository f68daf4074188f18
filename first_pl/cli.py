"""The `first-pl` command: LightningCLI for fit / validate / test / predict, plus subcommands.

Models (strategies) and data modules are chosen by `class_path` in composable `--config`
files with dotted overrides, as in any LightningCLI project; the pipeline's other steps
(`extract`, `calibrate`, ...) are registered in `first_pl.commands.COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
import sys

from jsonargparse import CLI, ActionConfigFile, ArgumentParser
from lightning.pytorch.cli import LightningCLI

from first_pl.callbacks.evaluation import CalibrationEvaluation
from first_pl.commands import COMMANDS
from first_pl.data.qa_datamodule import QADataModule
from first_pl.modules.base import StudentModule


class FirstCLI(LightningCLI):
    """LightningCLI with first_pl's defaults: strategies and data modules in subclass mode."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            StudentModule,
            QADataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # Calibration evaluation always runs (settings under `evaluation.*`), for every strategy.
        parser.add_lightning_class_args(CalibrationEvaluation, "evaluation")


def run_command(name: str, args: list[str]) -> None:
    """Run a registered subcommand through jsonargparse (config files, overrides, help).

    A function's parameters are the subcommand's options; a class (a dataclass with `run()`,
    such as the pipeline) takes its fields as options at the top level of the config.
    """
    module_name, target_name = COMMANDS[name].split(":")
    target = getattr(importlib.import_module(module_name), target_name)
    if not isinstance(target, type):
        CLI(target, args=args, as_positional=False, prog=f"first-pl {name}")
        return
    parser = ArgumentParser(prog=f"first-pl {name}", description=target.__doc__)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="YAML file with any of the options"
    )
    parser.add_class_arguments(target)
    config = parser.parse_args(args)
    config.pop("config", None)
    target(**vars(parser.instantiate_classes(config))).run()


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:])
        return
    if argv and argv[0] in ("-h", "--help") and COMMANDS:
        print(
            "first_pl subcommands: " + ", ".join(sorted(COMMANDS)) + " (first-pl <command> --help)"
        )
    FirstCLI(args=args)
