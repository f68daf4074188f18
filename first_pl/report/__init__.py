"""`first-pl report`: run folders gathered into a Table-1-style report (`build`), from the runs
(`runs`, `run_metrics`) through the tables (`tables`, `paired`, `checks`, `curves`) to typed
blocks (`blocks`) that `render` writes as Markdown and HTML and the pipeline logs to W&B."""

from first_pl.report.blocks import Report
from first_pl.report.build import build_report
from first_pl.report.render import markdown_table
from first_pl.report.runs import ReportError

__all__ = ["Report", "ReportError", "build_report", "markdown_table"]
