"""Subcommands beyond Lightning's fit / validate / test / predict.

Each entry maps a subcommand name to "module:function"; the function's typed signature is the
subcommand's interface (jsonargparse gives it `--config`, `--print_config` and `--help`). Modules
are imported only when their subcommand runs, so `first-pl fit` pays nothing for them.
"""

COMMANDS: dict[str, str] = {}
