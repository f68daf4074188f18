"""Run one `first-pl <command> ...` by name: in this process, or under torchrun.

The `first-pl` entry point (`first_pl.cli`) and the pipeline's stages both run commands through
here, so neither imports the other. Subcommands beyond Lightning's fit / validate / test /
predict are registered in `COMMANDS` by import path and imported only when chosen: `first-pl
fit` never imports the pipeline, and the pipeline (which `COMMANDS` names) never imports the
entry point that names it.

Lightning's launcher starts the other ranks by re-running `sys.argv`; inside `first-pl pipeline`
that would start the whole pipeline once more per rank (which then stops at the output folder's
lock). So with a trainer of N > 1 processes a stage's `fit`, `test` or `extract` runs as a child
`torchrun --standalone --nproc_per_node N -m first_pl <command> ...` (`run_first_pl`): its ranks
run that command only, Lightning reads their ranks from torchrun's variables and launches nothing
itself, and the pipeline (which holds the output folder's lock) waits for it. One process keeps
the in-process call, which the main job and the tests rely on.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import CLI, ActionConfigFile, ArgumentParser

from first_pl.lightning_cli import FirstCLI
from first_pl.prefix.split import prefix_of

# Subcommand -> "module:attribute" of the function (or class) that runs it. A function's typed
# parameters are its options (jsonargparse gives it `--config`, `--print_config` and `--help`);
# a class (a dataclass with `run()`, such as the pipeline) takes its fields as options at the top
# level of the config.
COMMANDS: dict[str, str] = {
    "extract": "first_pl.commands.extract:extract",
    "coverage": "first_pl.commands.analyze:coverage_figure",
    "rank-calibration": "first_pl.commands.analyze:rank_calibration_figure",
    "calibrate": "first_pl.commands.calibrate:calibrate",
    "export": "first_pl.commands.export:export",
    "pipeline": "first_pl.pipeline.pipeline:Pipeline",
    "report": "first_pl.report:build_report",
    "sweep": "first_pl.pipeline.sweep:Sweep",
    "ask": "first_pl.commands.ask:ask",
    "import-store": "first_pl.commands.store_io:import_store",
    "export-store": "first_pl.commands.store_io:export_store",
    "verify-store": "first_pl.commands.store_io:verify_store",
    "plan": "first_pl.commands.plan:plan",
    "prefix-cache": "first_pl.commands.prefix_cache:prefix_cache",
}


def command_target(name: str) -> Any:
    """The function or class registered as subcommand `name`, imported now."""
    module, attribute = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def run_command(name: str, args: list[str]) -> None:
    """Run a registered subcommand through jsonargparse (config files, overrides, help)."""
    target = command_target(name)
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


def run(args: list[str]) -> None:
    """`first-pl <args>` in this process: a registered subcommand, else LightningCLI's; then
    the memory it used goes back to the system (`release`)."""
    if args and args[0] in COMMANDS:
        run_command(args[0], args[1:])
        release()
        return
    with warnings.catch_warnings():
        # `args` is always given (the pipeline calls fit/test in-process); Lightning's warning
        # about args beside sys.argv would fire on every stage.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = FirstCLI(args=args)
    release(cli)


def release(cli: FirstCLI | None = None) -> None:
    """Free what a finished command allocated, so the pipeline's next stage starts from the
    memory of an idle process, not of every stage before it.

    A finished `FirstCLI` stays reachable after the command returns: jsonargparse's parser
    keeps it through the instantiators LightningCLI registers, by a reference that Python's
    garbage collector does not see. Its module, the frozen prefix's layers and states, and the
    optimizer's moments (1.3 GB after a main-job student's fit, measured) would stay with it for
    the rest of the pipeline. So their tensors move to the meta device and the optimizer states
    are emptied, whether or not the objects live on; then the allocator hands free pages back.
    """
    if cli is not None:
        trainer, module = getattr(cli, "trainer", None), getattr(cli, "model", None)
        for optimizer in getattr(trainer, "optimizers", None) or []:
            optimizer.state.clear()
            # Its groups hold the original Parameter objects, which `to("meta")` replaces
            # (a CPU tensor cannot become a meta one in place): dropped, they are freed.
            optimizer.param_groups.clear()
        if isinstance(module, torch.nn.Module):
            prefix = prefix_of(getattr(module, "model", None) or module)
            if prefix is not None:
                prefix.memo.clear()
                prefix.offload()
            module.to("meta")
    free_memory()


def free_memory() -> None:
    """Collect what is unreachable (a finished stage leaves reference cycles: measured, 1.0 GiB
    of the teacher's stage still resident until the next stage's collection) and hand the
    allocator's free pages back to the system."""
    gc.collect()
    if sys.platform.startswith("linux"):
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; musl has none
        if trim is not None:
            trim(0)


def run_first_pl(args: list[str], processes: int, log: Path) -> None:
    """`first-pl <args>`: in this process when `processes` is 1, else under torchrun, its output
    appended to `log` (an error names the log and shows its last lines)."""
    if processes == 1:
        run(args)
        return
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(processes), "-m", "first_pl", *args]
    print(f"  {args[0]} on {processes} processes, output in {log}", flush=True)
    with log.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(
            f"first-pl {args[0]} on {processes} processes exited with status {code}; "
            f"its output is in {log}, where the ranks' output ends with:\n{ranks_tail(log)}"
        )


def ranks_tail(log: Path, lines: int = 25) -> str:
    """The last lines the ranks wrote, before torchrun's own failure summary (which names only
    exit codes)."""
    text = log.read_text(errors="replace").splitlines()
    agent = next((i for i, line in enumerate(text) if "] failed (exitcode:" in line), len(text))
    return "\n".join(text[:agent][-lines:])
