"""Two processes on the same output: the second is refused at once with a clear message.

The first process is real (a subprocess holding the writer / runner / fit), and is then killed
with SIGKILL: the lock dies with it and the next run goes ahead (resuming where it can).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import tiny_pipeline
from robustness_helpers import kill9, spawn, wait_for
from robustness_world import World

from first_pl.cli import main, user_error
from first_pl.data.store import TeacherStore, TeacherStoreError
from first_pl.fileio.lock import OutputDirLockedError

HOLD = """
import pathlib, time
{setup}
pathlib.Path({marker!r}).write_text("held")
time.sleep(600)
"""


def hold(tmp: Path, setup: str):
    marker, log = tmp / "held", tmp / "holder.log"
    proc = spawn(HOLD.format(setup=setup, marker=str(marker)), log)
    wait_for(marker.exists, proc, log)
    return proc


def test_second_writer_of_a_store_is_refused(world: World, tmp_path: Path, capsys) -> None:
    out = tmp_path / "teacher_train.h5"
    setup = f"""
from first_pl.data.store import TeacherStoreWriter, TeacherStore
meta = TeacherStore({str(world.train_store)!r}).metadata
writer = TeacherStoreWriter({str(out)!r}, meta).open()
"""
    proc = hold(tmp_path, setup)
    with pytest.raises(
        TeacherStoreError,
        match=r"teacher_train\.h5 is being written by another process \(lock .*\.lock is held\)",
    ):
        main(world.extract_args(out))
    kill9(proc)
    main(world.extract_args(out))  # the lock died with the holder; the empty partial is resumed
    assert "examples: 12 (12 this run)" in capsys.readouterr().out
    np.testing.assert_array_equal(
        TeacherStore(out)._h5["probs"][:], TeacherStore(world.train_store)._h5["probs"][:]
    )


def test_second_pipeline_on_the_same_output_dir_is_refused(world: World, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    setup = f"""
from first_pl.pipeline.stages import StageRunner
runner = StageRunner(pathlib.Path({str(out)!r}))
"""
    proc = hold(tmp_path, setup)
    with pytest.raises(
        OutputDirLockedError,
        match=rf"output folder .*runs is in use by another first-pl process \(process {proc.pid} holds .*\.lock\)",
    ) as info:
        tiny_pipeline(world.model_dir, out).run()
    assert user_error(info.value) is info.value  # the command line prints it as one line
    assert list(out.iterdir()) == [out / ".lock"]  # nothing was written
    kill9(proc)


def test_second_fit_into_the_same_run_folder_is_refused(world: World, tmp_path: Path) -> None:
    run = tmp_path / "run"
    setup = f"""
from first_pl.fileio.lock import lock_folder
lock_folder(pathlib.Path({str(run)!r}))   # what `first-pl fit` holds while it trains
"""
    run.mkdir()
    proc = hold(tmp_path, setup)
    with pytest.raises(
        OutputDirLockedError, match=r"output folder .*run is in use by another first-pl process"
    ):
        main(world.fit_args(run, "--trainer.max_steps", "1"))
    assert not (run / "checkpoints").exists()
    kill9(proc)
    main(world.fit_args(run, "--trainer.max_steps", "1"))
    assert list((run / "checkpoints").glob("*.ckpt"))
