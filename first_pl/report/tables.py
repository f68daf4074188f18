"""The tables of a report: methods by task (one run or several seeds), both confidence kinds,
paired comparisons with the baseline, and warnings about runs tested on different examples."""

from __future__ import annotations

import warnings
from typing import Any

from first_pl.metrics.bootstrap import FIGURE_LABELS, FIGURES
from first_pl.metrics.paired import seed_summary
from first_pl.report.blocks import Section
from first_pl.report.paired import compare, paired_cell, read_predictions
from first_pl.report.render import fmt
from first_pl.report.runs import RunResult

KINDS = ("full_vocab", "renormalised")


def cell(figures: dict[str, Any], key: str) -> str:
    """'78.0 [75.1, 80.9]' with the bootstrap interval when the run has one."""
    value = figures.get(key)
    if value is None:
        return "-"
    interval = figures.get("ci", {}).get(key)
    if interval and interval.get("low") is not None:
        return f"{value:.1f} [{interval['low']:.1f}, {interval['high']:.1f}]"
    return f"{value:.1f}"


def group_value(runs: list[RunResult], task: str, get) -> float | None:
    values = [get(r.tasks[task]) for r in runs if task in r.tasks]
    values = [v for v in values if v is not None]
    return seed_summary(values).mean if values else None


def group_cell(runs: list[RunResult], task: str, key: str) -> str:
    """One run: value [interval]; several seeds: mean ± sd (min to max, seeds)."""
    if len(runs) == 1:
        return cell(runs[0].tasks.get(task, {}), key)
    values = [
        r.tasks[task][key] for r in runs if task in r.tasks and r.tasks[task].get(key) is not None
    ]
    if not values:
        return "-"
    s = seed_summary(values)
    return f"{s.mean:.1f} ± {s.sd:.1f} ({s.min:.1f} to {s.max:.1f}, {s.n} seeds)"


def kind_value(figures: dict[str, Any], kind: str, key: str) -> float | None:
    return figures.get("by_confidence", {}).get(kind, {}).get(key)


def main_table(
    groups: dict[str, list[RunResult]], tasks: list[str], baseline: str, first: str
) -> Section:
    """One row per method (intervals, or mean ± sd over seeds), then FIRST minus Fine-tune."""
    header = ["method"] + [f"{t} {FIGURE_LABELS[k]}" for t in tasks for k in FIGURES]
    rows = [
        [method] + [group_cell(runs, t, k) for t in tasks for k in FIGURES]
        for method, runs in groups.items()
    ]
    constant = [constant_answer_of(groups, t) for t in tasks]
    if any(c is not None for c in constant):
        cells = ["-" if c is None else f"{c['acc']:.1f} ({c['answer']})" for c in constant]
        rows.append(["constant answer"] + [x for c in cells for x in (c, "-", "-")])
    if baseline in groups and first in groups:
        diffs = []
        for task in tasks:
            for key in FIGURES:
                ours = group_value(groups[first], task, lambda f, key=key: f.get(key))
                theirs = group_value(groups[baseline], task, lambda f, key=key: f.get(key))
                diffs.append("-" if None in (ours, theirs) else f"{ours - theirs:+.1f}")
        rows.append([f"{first} to {baseline}"] + diffs)
    notes = [
        "Acc, ECE and Trust (= Acc - ECE) in percent, each task with its own confidence kind "
        "(below); one run: 95% bootstrap interval; several seeds: mean ± standard deviation "
        "(min to max, seeds). constant answer: the accuracy of always giving the one option "
        "position that is most often right (in brackets), the floor a model must beat."
    ]
    return Section("Test results", notes, header, rows)


def recorded_positions(groups: dict[str, list[RunResult]], task: str) -> list[dict[str, Any]]:
    """The distinct gold-position records of a task over all runs (none from runs that predate
    them)."""
    found: list[dict[str, Any]] = []
    for runs in groups.values():
        for r in runs:
            figures = r.tasks.get(task, {})
            if "gold_positions" in figures:
                record = {k: figures[k] for k in ("n", "gold_positions", "constant_answer")}
                if record not in found:
                    found.append(record)
    return found


def constant_answer_of(groups: dict[str, list[RunResult]], task: str) -> dict[str, Any] | None:
    """The task's constant-answer baseline, when every run that records it agrees on it."""
    found = recorded_positions(groups, task)
    return found[0]["constant_answer"] if len(found) == 1 else None


def positions_table(groups: dict[str, list[RunResult]], tasks: list[str]) -> Section:
    """Where the gold answer sits in each task's test split, and what always answering the most
    frequent position scores."""
    section = Section(
        "Answer positions",
        ["Test examples whose gold answer is at each option position, and the constant-answer "
         "baseline: the best accuracy of always giving one position."],
        ["task", "n", "gold answers per position", "constant answer"],
    )  # fmt: skip
    for task in tasks:
        found = recorded_positions(groups, task)
        if not found:
            section.notes.append(f"{task}: no run records its answer positions.")
        elif len(found) > 1:
            section.notes.append(
                f"Warning: {task}: the runs were tested on splits with different answer positions "
                f"({len(found)} distinct); no constant-answer baseline is given for it."
            )
        for record in found:
            counts = ", ".join(f"{k} {v}" for k, v in record["gold_positions"].items())
            best = record["constant_answer"]
            section.rows.append(
                [task, str(record["n"]), counts, f"{best['acc']:.1f} ({best['answer']})"]
            )
    return section


def kinds_table(groups: dict[str, list[RunResult]], tasks: list[str]) -> Section:
    """ECE and Trust under both confidence kinds (means over seeds)."""
    scorings = []
    for task in tasks:
        entry = next(r.tasks[task] for runs in groups.values() for r in runs if task in r.tasks)
        scorings.append(
            f"{task}: scoring {entry.get('scoring') or 'unrecorded'}, its own confidence "
            f"{entry.get('confidence_kind') or 'full_vocab'}"
        )
    header = ["method"] + [
        f"{t} {FIGURE_LABELS[k]} {kind}" for t in tasks for k in ("ece", "trust") for kind in KINDS
    ]
    rows = [
        [method] + [
            fmt(group_value(runs, t, lambda f, k=k, kind=kind: kind_value(f, kind, k)))
            for t in tasks for k in ("ece", "trust") for kind in KINDS
        ]
        for method, runs in groups.items()
    ]  # fmt: skip
    notes = [
        "full_vocab: the chosen option's probability under the full vocabulary (the paper's); "
        "renormalised: the softmax over the options' scores. " + "; ".join(scorings) + "."
    ]
    return Section("Both confidence kinds", notes, header, rows)


def paired_table(
    groups: dict[str, list[RunResult]], tasks: list[str], baseline: str, n_resamples: int
) -> Section:
    """Every method minus the baseline, paired over examples and seeds."""
    section = Section(
        f"Paired comparison with {baseline}",
        [
            f"Method minus {baseline} in percent points, paired over test examples and seeds "
            "(each seed's run against the baseline's run of the same seed): 95% paired bootstrap "
            "interval (examples resampled, the same resample for both methods and every seed; the "
            "seeds held fixed, their spread is in the table above) "
            "and a two-sided sign-flip permutation p-value (each (seed, example) pair swapped "
            "with probability 1/2)."
        ],
        ["method", "task", "seeds", "n", "Acc", "ECE", "Trust"],
    )
    if baseline not in groups:
        section.notes.append(f"No run is labelled {baseline!r}: nothing to compare with.")
        return section
    for method, runs in groups.items():
        if method == baseline:
            continue
        for task in tasks:
            try:
                ours = {
                    r.seed: read_predictions(r.metrics_dir, task) for r in runs if task in r.tasks
                }
                theirs = {
                    r.seed: read_predictions(r.metrics_dir, task)
                    for r in groups[baseline]
                    if task in r.tasks
                }
            except ValueError as err:
                warnings.warn(f"report: {err}", stacklevel=2)
                section.notes.append(f"{method} on {task} not compared: {err}")
                continue
            if not ours or not theirs:
                continue
            result = compare(method, task, ours, theirs, n_resamples)
            if result is not None:
                seeds = ",".join(str(s) for s in result.seeds)
                section.rows.append(
                    [method, task, seeds, str(result.n)]
                    + [paired_cell(result.figures[k]) for k in FIGURES]
                )
    return section


def size_notes(results: list[RunResult], tasks: list[str]) -> list[str]:
    """A warning per task tested on different numbers of examples by different runs."""
    notes = []
    for task in tasks:
        sizes = {f"{r.method}" + (f" (seed {r.seed})" if r.seed is not None else ""): r.tasks[task]["n"]
                 for r in results if task in r.tasks}  # fmt: skip
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{k} n={v}" for k, v in sizes.items())
            note = (
                f"Warning: {task} was tested on different numbers of examples ({shown}); "
                "differences between these runs compare different examples."
            )
            warnings.warn(f"report: {note}", stacklevel=2)
            notes.append(note)
    return notes
