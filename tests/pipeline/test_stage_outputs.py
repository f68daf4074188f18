"""A stage is done only while its recorded outputs exist; an unfinished stage folder is run
again in place; the pipeline reads every option before its first stage."""

from __future__ import annotations

import json

import pytest
from test_stages import run_pair

from first_pl.pipeline.files import ConfigFileError


def test_a_stage_whose_output_was_deleted_is_rerun_and_so_is_what_read_it(tmp_path):
    calls, log = [], []
    a, b = run_pair(tmp_path, log, calls)
    old_a = (a.folder / "out.txt").read_text()
    (a.folder / "out.txt").unlink()  # a deleted teacher checkpoint
    new_a, new_b = run_pair(tmp_path, log, calls)
    assert calls == ["a", "b", "a", "b"]
    assert not new_a.cached and new_a.run_id != a.run_id and new_a.folder == a.folder
    assert not new_b.cached and new_b.run_id != b.run_id
    assert (new_a.folder / "out.txt").read_text() == "a 3"
    stale = a.folder.with_name(f"{a.folder.name}.stale-{a.run_id[:8]}")
    assert json.loads((stale / "stage.json").read_text())["outputs"] == a.outputs  # kept aside
    assert not (stale / "out.txt").exists() and old_a == "a 1"
    lost = f"its output out {a.folder / 'out.txt'} no longer exists"
    assert any(lost in line and stale.name in line for line in log), log


def test_an_unfinished_stage_folder_is_run_again_in_place(tmp_path):
    calls, log = [], []
    a, _ = run_pair(tmp_path, log, calls)
    (a.folder / "stage.json").unlink()  # killed after its work, before its record
    (a.folder / "partial.txt").write_text("what the killed run saved")
    new_a, _ = run_pair(tmp_path, log, calls)
    assert calls == ["a", "b", "a", "b"] and new_a.folder == a.folder
    assert (a.folder / "partial.txt").exists()  # resumable work is kept, not moved aside
    unfinished = f"a: {a.folder.name} holds an unfinished run (no stage.json); running the stage again there"
    assert any(unfinished in line for line in log), log


def test_the_pipeline_reads_every_option_before_its_first_stage(tiny_model_dir, tmp_path):
    from first_pl_testing import tiny_pipeline

    out = tmp_path / "out"
    pipeline = tiny_pipeline(tiny_model_dir, out, methods=("first",), ood=False)
    pipeline.ood_templates = {"physic": {"scoring": "option_loglik_norm"}}
    with pytest.raises(ValueError, match=r"ood_templates names \['physic'\], which are not tasks "
                       r"of this pipeline; its tasks are \['generated'\]"):  # fmt: skip
        pipeline.run()
    pipeline.ood_templates = {}
    pipeline.ood_tasks = [{"class_path": "first_pl.tasks.BigBench", "init_args": {"pth": "x"}}]
    with pytest.raises(ConfigFileError, match=r"ood_tasks\[0\] .* is not a task: Problem with "
                       r"given class_path 'first_pl.tasks.BigBench': .*'pth'"):  # fmt: skip
        pipeline.run()
    assert not out.exists()  # no stage ran
