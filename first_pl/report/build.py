"""`first-pl report`: runs gathered into a Table-1-style report (Markdown and HTML).

A run is a folder holding the `metrics_test.json` that `CalibrationEvaluation` writes (a
pipeline stage, a `first-pl test` run folder, or an offline W&B run's `files/` folder holding
the same JSON); a folder holding several runs (a pipeline's output folder) is reported as each
of them. Each run has a method label (its `stage.json` name, or the folder name) and a seed;
runs sharing a label are one method over several seeds. Every task it was tested on becomes a
column group: Acc / ECE / Trust (the task's own confidence kind) with bootstrap intervals, or
mean ± standard deviation over seeds; a "FIRST to Fine-tune" difference row; both confidence
kinds; each method paired with Fine-tune (paired bootstrap interval and permutation p-value,
over examples and seeds); where the gold answers sit, with the constant-answer baseline;
evaluation checks (scoring, prompts cut, predictions that follow one option form); learning
curves with a convergence verdict; reliability diagrams.
"""

from __future__ import annotations

from pathlib import Path

from first_pl.fileio.output_path import check_output_path
from first_pl.fileio.run_files import safe_name
from first_pl.metrics.plots import reliability_grid
from first_pl.report.blocks import Block, Figures, Heading, Report, Section
from first_pl.report.checks import checks_section
from first_pl.report.curves import ConvergenceRule, curve_figure
from first_pl.report.render import fmt, write_report
from first_pl.report.runs import ReportError, RunResult, check_comparable, expand_runs
from first_pl.report.tables import (
    kinds_table,
    main_table,
    paired_table,
    positions_table,
    size_notes,
)


def curves_section(
    results: list[RunResult], tasks: list[str], rule: ConvergenceRule, out: Path
) -> list[Block]:
    """Each run's convergence verdict and a learning-curve figure per task."""
    section = Section("Learning curves", [rule.describe()],
                      ["method", "seed", "task", "steps", "last Acc", "Acc change", "loss change", "converged"])  # fmt: skip
    images = []
    for task in tasks:
        series = [(r.method, r.seed, r.curve[task]) for r in results if r.curve.get(task)]
        if not series:
            continue
        images.append(curve_figure(task, series, out / f"curves_{safe_name(task)}.png"))
        for method, seed, points in series:
            v = rule.judge(points)
            verdict = {True: "yes", False: "no", None: "cannot tell"}[v["converged"]]
            section.rows.append([method, str(seed), task, str(v["steps"]), fmt(v["acc"]),
                                 fmt(v["d_acc"], ".2f"), fmt(v["d_loss"], ".3f"), verdict])  # fmt: skip
    if not images:
        section.notes.append("No run has validation curves (pipeline option val_check_interval).")
        return section.blocks()
    return [*section.blocks(), Figures(images)]


def build_report(
    runs: list[str],
    output_dir: str,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    tasks: list[str] | None = None,
    baseline: str = "finetune",
    first: str = "first",
    title: str = "first_pl report",
    n_resamples: int = 1000,
    converged_acc_tol: float = 2.0,
    converged_loss_tol: float = 0.05,
    pairs: list[tuple[str, str]] | None = None,
) -> Report:
    """Write `report.md`, `report.html` and the figures (reliability grids, learning curves);
    returns the report's blocks (what both files show, and the pipeline logs to W&B).

    Args:
        runs: run folders (pipeline stages, `first-pl test` runs, offline W&B run folders), or
            folders holding several runs (each is reported).
        methods: labels for the runs, in the same order (default: stage name or folder name);
            runs sharing a label are one method over several seeds.
        seeds: the runs' seeds, in the same order (default: the run's `seed_everything`).
        tasks: the tasks to report, in this order (default: every task of every run).
        baseline, first: the methods of the difference row; every method is paired with
            `baseline`.
        n_resamples: bootstrap resamples and permutations of the paired comparisons.
        converged_acc_tol, converged_loss_tol: the convergence rule (`report.curves`).
        pairs: further paired comparisons, each (method, other): `method` minus `other`, paired
            as each method is with `baseline` (e.g. FIRST with c chosen two ways).
    """
    if not runs:
        raise ReportError("no runs given (--runs)")
    check_output_path(output_dir, "--output_dir", folder=True)
    rule = ConvergenceRule(converged_acc_tol, converged_loss_tol)
    results = expand_runs(runs, methods, seeds)
    available = list(dict.fromkeys(t for r in results for t in r.tasks))
    if tasks is not None:
        if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
            raise ReportError(f"--tasks must be a list of task names, got {tasks!r}")
        unknown = [t for t in tasks if t not in available]
        if unknown:
            raise ReportError(
                f"--tasks names {unknown}, which no run was tested on; the runs have {available}"
            )
    tasks = list(tasks) if tasks is not None else available
    if not tasks:
        raise ReportError(f"the runs {runs} hold no tested task")
    check_comparable(results, tasks)
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.method, []).append(result)
    unknown = [m for pair in pairs or [] for m in pair if m not in groups]
    if unknown:
        raise ReportError(f"--pairs names {unknown}, which label no run; the labels are {list(groups)}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = ", ".join(
        f"{t}: n={next(r.tasks[t]['n'] for r in results if t in r.tasks)}" for t in tasks
    )
    head = Section("", [f"Test examples per task: {counts}.", *size_notes(results, tasks)])
    sections = [head, main_table(groups, tasks, baseline, first), positions_table(groups, tasks),
                kinds_table(groups, tasks), paired_table(groups, tasks, baseline, n_resamples)]  # fmt: skip
    sections += [paired_table({other: groups[other], method: groups[method]}, tasks, other,
                              n_resamples) for method, other in pairs or []]  # fmt: skip
    sections.append(checks_section(results, tasks))
    blocks = [block for section in sections for block in section.blocks()]
    blocks += curves_section(results, tasks, rule, out)
    images = []
    for task in tasks:  # the first run of each method (its first seed)
        panels = [
            (m, rs[0].tasks[task]["bins"], rs[0].tasks[task])
            for m, rs in groups.items()
            if task in rs[0].tasks
        ]
        images.append(out / f"reliability_{safe_name(task)}.png")
        reliability_grid(panels, images[-1])
    report = Report(title, [*blocks, Heading("Reliability diagrams"), Figures(images, captioned=True)], out)
    write_report(report)
    return report
