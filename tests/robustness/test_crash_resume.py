"""Crash and resume: a real SIGKILL at a chosen point, then the same command again.

Each test kills a subprocess at a progress marker (a patched hook writes the marker and then
waits to be killed), checks that nothing partial looks complete, reruns, and compares with an
uninterrupted run: bit for bit for stores and calibration.json, weights for fit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from robustness_helpers import kill9, spawn, wait_for
from robustness_world import CONFIGS, World

from first_pl.cli import main
from first_pl.data.store import TeacherStore, TeacherStoreError, partial_path

KILLABLE = '''
import pathlib, sys, time
MARKER = pathlib.Path({marker!r})

def reached(what=""):
    """Write the marker and wait to be killed."""
    MARKER.write_text(what or "x")
    time.sleep(600)

{patch}
from first_pl.cli import main
main({args!r})
'''


def start(tmp: Path, args: list[str], patch: str) -> tuple[object, Path, Path]:
    marker, log = tmp / "marker", tmp / "killed.log"
    code = KILLABLE.format(marker=str(marker), patch=patch, args=args)
    return spawn(code, log), marker, log


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def test_extract_killed_after_a_batch_resumes_to_the_same_store(
    world: World, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "teacher_train.h5"
    args = world.extract_args(out)
    patch = """
import first_pl.data.store as store
append = store.TeacherStoreWriter.append
def append_then_wait(self, *a, **k):
    append(self, *a, **k)
    reached()                       # one batch of 4 committed, then SIGKILL
store.TeacherStoreWriter.append = append_then_wait
"""
    proc, marker, log = start(tmp_path, args, patch)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    assert partial_path(out).exists() and not out.exists()
    with pytest.raises(
        TeacherStoreError, match="a partial store exists: the extraction did not finish"
    ):
        TeacherStore(out)
    with pytest.raises(TeacherStoreError, match="is a partial store"):
        TeacherStore(partial_path(out))

    main(args)
    assert "examples: 12 (8 this run)" in capsys.readouterr().out
    assert not partial_path(out).exists()
    got, want = store_arrays(out), store_arrays(world.train_store)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def fit_args(world: World, run: Path, *extra: str) -> list[str]:
    return world.fit_args(
        run, "--config", str(CONFIGS / "trainer" / "resumable.yaml"),
        "--trainer.max_epochs", "3", "--trainer.max_steps", "-1", "--seed_everything", "0", *extra,
    )  # fmt: skip


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


def test_fit_killed_after_an_epoch_resumes_from_last_to_the_same_weights(
    world: World, tmp_path: Path
) -> None:
    run = tmp_path / "killed"
    patch = """
from lightning.pytorch.callbacks import ModelCheckpoint
save = ModelCheckpoint._save_checkpoint
def save_then_wait(self, trainer, filepath):
    save(self, trainer, filepath)
    if pathlib.Path(filepath).name == "last.ckpt":
        reached(str(trainer.global_step))  # the end of epoch 1 is on disk, then SIGKILL
ModelCheckpoint._save_checkpoint = save_then_wait
"""
    proc, marker, log = start(tmp_path, fit_args(world, run), patch)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    assert marker.read_text() == "3"  # 12 examples / batch 4: one epoch is 3 steps
    assert weights(run / "checkpoints" / "last.ckpt")  # readable: written to a temp file, renamed

    main(fit_args(world, run, "--ckpt_path", "last"))
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 9

    reference = tmp_path / "uninterrupted"
    main(fit_args(world, reference))
    want = weights(reference / "checkpoints" / "last.ckpt")
    for name, tensor in want.items():
        torch.testing.assert_close(
            resumed["state_dict"][name], tensor, rtol=1e-6, atol=1e-7, msg=name
        )


def test_calibrate_killed_while_writing_leaves_no_result_and_reruns_identically(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "cal"
    args = ["calibrate", "--store", str(world.validation_store), "--output_dir", str(out)]
    patch = """
from first_pl.teacher.parameter_search import CalibrationResult
def half_then_wait(self, path):
    pathlib.Path(path).write_text('{"temperature": 0.')   # half a JSON file, then SIGKILL
    reached()
CalibrationResult.to_json = half_then_wait
"""
    proc, marker, log = start(tmp_path, args, patch)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    assert not (out / "calibration.json").exists()  # only a hidden temporary holds the half file
    (leftover,) = out.glob("*.json")  # the half-written temporary, hidden and never read
    assert leftover.name.startswith(".calibration.json.tmp")

    main(args)
    assert (out / "calibration.json").read_bytes() == world.calibration.read_bytes()


def test_pipeline_killed_in_a_stage_reruns_only_that_stage(
    world: World, tmp_path: Path, capsys
) -> None:
    from pipeline_helpers import tiny_pipeline, tiny_pipeline_code

    out = tmp_path / "runs"
    patch = """
import first_pl.pipeline.pipeline as pipeline
last = pipeline.last_checkpoint
def last_then_wait(folder):
    if folder.name.startswith("student-first"):
        reached(folder.name)                  # fit done, test and stage.json not yet: SIGKILL
    return last(folder)
pipeline.last_checkpoint = last_then_wait
"""
    marker, log = tmp_path / "marker", tmp_path / "killed.log"
    code = KILLABLE.format(marker=str(marker), patch=patch, args=[]).replace(
        "from first_pl.cli import main\nmain([])", tiny_pipeline_code(world.model_dir, out)
    )
    proc = spawn(code, log)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    killed = out / marker.read_text()
    assert not (killed / "stage.json").exists() and (killed / "config.yaml").exists()
    done = {json.loads(p.read_text())["name"] for p in out.glob("*/stage.json")}
    assert {"teacher", "extract-train", "extract-validation", "calibrate"} <= done
    assert "student-first" not in done and "report" not in done

    capsys.readouterr()
    tiny_pipeline(world.model_dir, out).run()
    log_text = capsys.readouterr().out
    skipped = set(re.findall(r"\] (\S+): done before", log_text))
    rerun = set(re.findall(r"\] (\S+): running in", log_text))
    assert skipped == done  # every finished stage is reused, none is redone
    assert {"student-first", "report"} <= rerun and not rerun & done
    record = json.loads((killed / "stage.json").read_text())

    # the killed stage, run again by hand from its own config.yaml, gives the same figures
    again = tmp_path / "by_hand"
    overrides = [
        "--trainer.default_root_dir",
        str(again),
        "--trainer.logger.init_args.save_dir",
        str(again),
    ]
    main(["fit", "--config", str(killed / "config.yaml"), *overrides])
    (checkpoint,) = (again / "checkpoints").glob("*.ckpt")
    main(
        [
            "test",
            "--config",
            str(killed / "config.yaml"),
            *overrides,
            "--ckpt_path",
            str(checkpoint),
        ]
    )
    tasks = json.loads((again / "metrics_test.json").read_text())["tasks"]
    assert record["outputs"]["metrics"] == {
        t: {k: m[k] for k in ("n", "acc", "ece", "trust")} for t, m in tasks.items()
    }


def test_extract_overwrite_killed_keeps_the_old_store_until_the_new_one_is_complete(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "teacher_train.h5"
    out.write_bytes(world.train_store.read_bytes())
    args = world.extract_args(out, "--overwrite", "true")
    patch = """
import first_pl.data.store as store
append = store.TeacherStoreWriter.append
def append_then_wait(self, *a, **k):
    append(self, *a, **k)
    reached()
store.TeacherStoreWriter.append = append_then_wait
"""
    proc, marker, log = start(tmp_path, args, patch)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    assert out.read_bytes() == world.train_store.read_bytes()  # the old store is intact
    TeacherStore(out)  # and still complete and verified
    main(args)
    assert not partial_path(out).exists()
    for name, want in store_arrays(world.train_store).items():
        np.testing.assert_array_equal(store_arrays(out)[name], want, err_msg=name)
