"""The stage cache: a key names a configuration, a run id names a result; a stage whose
upstream was recomputed since it ran is rerun, never mixed with the new upstream."""

from __future__ import annotations

import json

from first_pl.pipeline.stages import StageRunner


def run_pair(root, log, calls):
    """Stage `a`, then `b` reading it; each body records that it ran and writes a file."""

    def body(name):
        def run(folder):
            calls.append(name)
            (folder / "out.txt").write_text(f"{name} {len(calls)}")
            return {"out": str(folder / "out.txt")}

        return run

    with StageRunner(root, log=log.append) as runner:
        a = runner.run("a", {"x": 1}, body("a"))
        b = runner.run("b", {"y": 2}, body("b"), after=[a])
    return a, b


def test_finished_stages_are_reused_with_their_run_ids(tmp_path):
    calls, log = [], []
    a, b = run_pair(tmp_path, log, calls)
    again_a, again_b = run_pair(tmp_path, log, calls)
    assert calls == ["a", "b"]
    assert again_a.cached and again_b.cached
    assert (again_a.run_id, again_b.run_id) == (a.run_id, b.run_id) and a.run_id != b.run_id
    record = json.loads((b.folder / "stage.json").read_text())
    assert record["upstream_runs"] == {"a": a.run_id}


def test_a_recomputed_upstream_reruns_the_stage_and_keeps_the_old_result_aside(tmp_path):
    calls, log = [], []
    a, b = run_pair(tmp_path, log, calls)
    old_b = (b.folder / "out.txt").read_text()
    for path in a.folder.iterdir():  # a's folder deleted: the same key is computed again
        path.unlink()
    a.folder.rmdir()
    new_a, new_b = run_pair(tmp_path, log, calls)
    assert calls == ["a", "b", "a", "b"]
    assert new_a.folder == a.folder and new_a.run_id != a.run_id
    assert new_b.folder == b.folder and not new_b.cached and new_b.run_id != b.run_id
    stale = b.folder.with_name(f"{b.folder.name}.stale-{b.run_id[:8]}")
    assert (stale / "out.txt").read_text() == old_b
    assert any("a recomputed since" in line and stale.name in line for line in log)


def test_a_stage_recorded_before_run_ids_is_kept(tmp_path):
    calls, log = [], []
    a, b = run_pair(tmp_path, log, calls)
    for stage in (a, b):  # stage.json as the previous version wrote it
        path = stage.folder / "stage.json"
        record = json.loads(path.read_text())
        del record["run_id"], record["upstream_runs"]
        path.write_text(json.dumps(record))
    again_a, again_b = run_pair(tmp_path, log, calls)
    assert calls == ["a", "b"] and again_b.cached and again_b.run_id is None


def test_what_a_stage_left_in_reference_cycles_is_freed_when_it_finishes(tmp_path):
    """A stage's objects held only by reference cycles (a finished trainer and its module are
    such) are collected before the next stage starts, not whenever Python's collector runs."""
    import gc
    import weakref

    import torch

    class Holder:
        pass

    left: list[weakref.ref] = []

    def body(folder):
        holder = Holder()
        holder.self = holder  # a cycle: reference counting alone never frees it
        holder.weights = torch.zeros(1024)
        left.append(weakref.ref(holder.weights))
        return {}

    gc.disable()  # no automatic collection between the stage's end and the check below
    try:
        with StageRunner(tmp_path, log=lambda line: None) as runner:
            runner.run("big", {}, body)
            assert left[0]() is None
    finally:
        gc.enable()
