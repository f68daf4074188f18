"""The report's evaluation checks: per run and task, how it was scored, how many prompts were
cut to fit the evaluation length, and predictions that follow one option form.

These are what a task's figures stand on: a task scored on cut prompts asks questions the model
never saw whole, and a model that always picks the longest option measures the scoring. Both
are recorded per task in `metrics_test.json` by `CalibrationEvaluation`; runs written before
it recorded them say "unrecorded".
"""

from __future__ import annotations

import warnings

from first_pl.report.blocks import Section
from first_pl.report.runs import RunResult

TRUNCATION_FLAG = 0.05  # a task with more than this share of its examples cut is flagged


def truncation_cell(figures: dict) -> tuple[str, str, float | None]:
    """('3 (15.0%)', tokens cut, share) of a task entry; 'unrecorded' when the run did not
    record it."""
    count = figures.get("truncated_examples")
    if count is None:
        return "unrecorded", "unrecorded", None
    share = count / figures["n"] if figures["n"] else 0.0
    return f"{count} ({100 * share:.1f}%)", str(figures.get("truncated_tokens", 0)), share


def checks_section(results: list[RunResult], tasks: list[str]) -> Section:
    """A row per run and task: scoring, examples and tokens cut, flags."""
    section = Section(
        "Evaluation checks",
        [
            "Per run and task: the scoring of its options, the examples whose prompt was cut to "
            "fit data.eval_max_length (the middle of their context and question; instruction and "
            f"options kept) and the tokens cut, flagged when more than {TRUNCATION_FLAG:.0%} of the "
            "examples were cut; and predictions that follow one option form (the longest or "
            "shortest option, one position, one option text) in more than 90% of the examples, "
            "with the share of gold answers of that form."
        ],
        ["method", "seed", "task", "scoring", "n", "truncated", "tokens cut", "flags"],
    )
    for result in results:
        for task in tasks:
            figures = result.tasks.get(task)
            if figures is None:
                continue
            truncated, tokens, share = truncation_cell(figures)
            flags = []
            if share is not None and share > TRUNCATION_FLAG:
                flags.append(f"TRUNCATED: {100 * share:.1f}% of the examples")
                note = (
                    f"Warning: {task} ({result.method}) was scored on {truncated} cut prompts; "
                    "raise data.eval_max_length to score every question whole."
                )
                warnings.warn(f"report: {note}", stacklevel=2)
                section.notes.append(note)
            for found in figures.get("prediction_bias") or []:
                flags.append(f"predictions follow {found.get('description', found.get('kind'))}")
            section.rows.append([
                result.method, "-" if result.seed is None else str(result.seed), task,
                figures.get("scoring") or "unrecorded", str(figures["n"]), truncated, tokens,
                "; ".join(flags) or "-",
            ])  # fmt: skip
    return section
