"""The report's modules moved from the top level of first_pl into `first_pl.report`; scripts that
import them by the old names get the same modules (one object, one class identity)."""

from __future__ import annotations

import importlib

import pytest

import first_pl.report
import first_pl.report.build
import first_pl.report.render
import first_pl.report.runs

OLD_NAMES = {
    "first_pl.report_runs": "first_pl.report.runs",
    "first_pl.report_tables": "first_pl.report.tables",
    "first_pl.report_seeds": "first_pl.report.paired",
    "first_pl.report_curves": "first_pl.report.curves",
    "first_pl.report_checks": "first_pl.report.checks",
    "first_pl.run_metrics": "first_pl.report.run_metrics",
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_an_old_module_name_imports_the_moved_module(old):
    assert importlib.import_module(old) is importlib.import_module(OLD_NAMES[old])


def test_old_imports_get_the_same_objects():
    from first_pl.report_curves import ConvergenceRule
    from first_pl.report_runs import ReportError as OldReportError
    from first_pl.report_seeds import compare
    from first_pl.run_metrics import read_task_metrics

    assert ConvergenceRule is importlib.import_module("first_pl.report.curves").ConvergenceRule
    assert OldReportError is first_pl.report.runs.ReportError is first_pl.report.ReportError
    assert compare is importlib.import_module("first_pl.report.paired").compare
    assert (
        read_task_metrics
        is importlib.import_module("first_pl.report.run_metrics").read_task_metrics
    )
    # `first_pl.report` was a module and is the package: its public names are still there
    assert first_pl.report.build_report is first_pl.report.build.build_report
    assert first_pl.report.markdown_table is first_pl.report.render.markdown_table
