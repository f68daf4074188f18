"""Subcommands beyond Lightning's fit / validate / test / predict.

Each entry maps a subcommand name to "module:function"; the function's typed signature is the
subcommand's interface (jsonargparse gives it `--config`, `--print_config` and `--help`). Modules
are imported only when their subcommand runs, so `first-pl fit` pays nothing for them.
"""

COMMANDS: dict[str, str] = {
    "extract": "first_pl.commands.extract:extract",
    "coverage": "first_pl.commands.analyze:coverage_figure",
    "rank-calibration": "first_pl.commands.analyze:rank_calibration_figure",
    "calibrate": "first_pl.commands.calibrate:calibrate",
    "export": "first_pl.commands.export:export",
    "pipeline": "first_pl.pipeline.offline:Pipeline",
    "report": "first_pl.report:build_report",
    "sweep": "first_pl.pipeline.sweep:Sweep",
    "ask": "first_pl.commands.ask:ask",
    "import-store": "first_pl.commands.store_io:import_store",
    "export-store": "first_pl.commands.store_io:export_store",
    "plan": "first_pl.commands.plan:plan",
}
