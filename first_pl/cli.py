"""The `first-pl` command: LightningCLI for fit / validate / test / predict, plus subcommands.

`first_pl.runner` runs each command (the subcommands of `first_pl.runner.COMMANDS` are imported
only when chosen, LightningCLI's are `first_pl.lightning_cli.FirstCLI`); this entry point adds
what a person at a terminal needs: `--verbose`, the list of subcommands in `--help`, and an
error of first_pl's own checks as one line with exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from first_pl.noise import VERBOSE_ENV, configure_third_party_noise
from first_pl.runner import COMMANDS, run

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
    if argv and argv[0] in ("-h", "--help"):
        print(
            "first_pl subcommands: " + ", ".join(sorted(COMMANDS)) + " (first-pl <command> --help)"
            f"; first-pl {VERBOSE_FLAG} <command> shows the third-party messages hidden by default"
        )
    run(argv)
