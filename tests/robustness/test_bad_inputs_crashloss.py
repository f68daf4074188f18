"""Commands that destroyed a file they read or a user made: each is refused, by name, and the file
survives byte for byte.

`CASES` extends the bad-input catalogue (tests/robustness/test_bad_inputs.py): `make` builds the
files at stake and returns them, `provoke` runs the command, `expect` is the message. The other
tests run what is no error at all and must still lose nothing: `test` / `validate` in the fit's
run folder, a failed `export-store` over an earlier export, and `fit` rerun after `kill -9`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
import yaml
from robustness_helpers import kill9, spawn, wait_for
from robustness_world import CONFIGS, World
from test_bad_inputs import assert_one_clear_error, fit, write

from first_pl.cli import main
from first_pl.data.store import TeacherStore
from first_pl.run_folder import RunFolderError


@dataclass
class LossCase:
    id: str
    make: Callable[[World, Path], list[Path]]
    provoke: Callable[[World, Path], object]
    expect: str


def snapshot(paths: list[Path]) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in paths}


def store_copy(world: World, tmp: Path, name: str = "s.h5") -> list[Path]:
    (tmp / name).write_bytes(world.train_store.read_bytes())
    return [tmp / name]


def export_store(tmp: Path, store: str, output: str, *extra: str) -> None:
    main(["export-store", "--store", str(tmp / store), "--output", str(tmp / output), *extra])


def store_onto_link(world: World, tmp: Path) -> list[Path]:
    kept = store_copy(world, tmp)
    (tmp / "link.h5").symlink_to(tmp / "s.h5")
    return kept


def extract_into(world: World, output: Path, *extra: str, config: Path | None = None) -> None:
    args = world.extract_args(output, *extra)
    if config is not None:
        args[args.index("--config") + 1] = str(config)
    main(args)


def import_into(world: World, output: Path, *extra: str) -> None:
    source = output.with_name("records.jsonl")  # never read: the output is refused first
    args = ["--source", str(source), "--format", "vllm", "--output", str(output), *extra]
    main(["import-store", "--config", str(world.data_yaml), *args])


def export_into(world: World, output: Path, *extra: str) -> None:
    main(["export", "--checkpoint", str(world.checkpoint), "--output_dir", str(output), *extra])


def config_copy(world: World, tmp: Path) -> list[Path]:
    return [write(tmp / "data.yaml", world.data_yaml.read_text())]


def hdf5_not_a_store(world: World, tmp: Path) -> list[Path]:
    with h5py.File(tmp / "other.h5", "w") as f:
        f["x"] = [1, 2, 3]
    return [tmp / "other.h5"]


def partial_store(world: World, tmp: Path) -> list[Path]:
    """A store whose writer never finished, renamed by hand to the output's name."""
    out = tmp / "p.h5"
    out.write_bytes(world.train_store.read_bytes())
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False
    return [out]


def user_run_files(world: World, tmp: Path) -> list[Path]:
    run = tmp / "run"
    run.mkdir()
    return [write(run / "metrics.csv", "step,loss\n0,1.5\n"), write(run / "hparams.yaml", "x\n")]


def export_with_user_files(world: World, tmp: Path) -> list[Path]:
    export_into(world, tmp / "hf")
    (tmp / "hf" / "eval").mkdir()
    return [write(tmp / "hf" / "eval" / "scores.txt", "mine"), write(tmp / "hf" / "NOTES", "x")]


CASES = [
    LossCase(
        "export-store-onto-its-store",
        store_copy,
        lambda w, t: export_store(t, "s.h5", "s.h5", "--overwrite", "true"),
        r"--output .*s\.h5 is the same file as --store .*s\.h5: writing it would destroy the "
        r"input; choose another --output",
    ),
    LossCase(
        "export-store-onto-a-link-to-its-store",
        store_onto_link,
        lambda w, t: export_store(t, "s.h5", "link.h5", "--overwrite", "true"),
        r"--output .*link\.h5 is the same file as --store .*s\.h5",
    ),
    LossCase(
        "export-store-overwrite-a-text-file",
        config_copy,
        lambda w, t: export_store(t, str(w.train_store), "data.yaml", "--overwrite", "true"),
        r"--output .*data\.yaml already exists and is not a first_pl store export \(a text "
        r"file, \d+ bytes\); --overwrite true replaces only a store export",
    ),
    LossCase(
        "extract-overwrite-its-own-config",
        config_copy,
        lambda w, t: extract_into(
            w, t / "data.yaml", "--overwrite", "true", config=t / "data.yaml"
        ),
        r"--output .*data\.yaml already exists and is not a teacher store \(a text file, \d+ "
        r"bytes\); --overwrite true replaces only a teacher store: choose another --output",
    ),
    LossCase(
        "extract-onto-a-text-file-says-what-it-is",
        config_copy,
        lambda w, t: extract_into(w, t / "data.yaml"),
        r"--output .*data\.yaml already exists and is not a teacher store \(a text file",
    ),
    LossCase(
        "extract-overwrite-an-hdf5-file-that-is-no-store",
        hdf5_not_a_store,
        lambda w, t: extract_into(w, t / "other.h5", "--overwrite", "true"),
        r"other\.h5 already exists and is not a teacher store \(an HDF5 file without a teacher "
        r"store's datasets and metadata",
    ),
    LossCase(
        "extract-onto-a-partial-store-says-partial",
        partial_store,
        lambda w, t: extract_into(w, t / "p.h5"),
        r"p\.h5 already exists as a partial store \(never finished\); pass --overwrite true",
    ),
    LossCase(
        "import-store-overwrite-a-text-file",
        config_copy,
        lambda w, t: import_into(w, t / "data.yaml", "--overwrite", "true"),
        r"--output .*data\.yaml already exists and is not a teacher store \(a text file",
    ),
    LossCase(
        "fit-into-a-folder-that-is-no-run-folder",
        user_run_files,
        lambda w, t: fit(w, t),
        r"run folder .*run is not empty and holds no config\.yaml of a first_pl fit "
        r"\(hparams\.yaml, metrics\.csv\): a fit there would delete its metrics\.csv and replace "
        r"its hparams\.yaml; .*--overwrite_run true",
    ),
    LossCase(
        "export-overwrite-with-files-the-user-added",
        export_with_user_files,
        lambda w, t: export_into(w, t / "hf", "--overwrite", "true"),
        r"--output_dir .*hf holds files that first-pl export did not write: NOTES, "
        r"eval/scores\.txt; --overwrite true replaces only an export's own files",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_and_nothing_lost(case: LossCase, world: World, tmp_path: Path, capsys) -> None:
    kept = snapshot(case.make(world, tmp_path))
    assert_one_clear_error(case, world, tmp_path, capsys)
    assert snapshot(list(kept)) == kept


def test_export_store_that_fails_midway_keeps_the_earlier_export(
    world: World, tmp_path: Path, monkeypatch
) -> None:
    """The parquet is written under a temporary name: a failure leaves the earlier file whole
    (it used to be truncated to an empty parquet at open) and no half file."""
    out = tmp_path / "s.parquet"
    export_store(tmp_path, str(world.train_store), str(out))
    before = out.read_bytes()
    positions = TeacherStore.positions

    def fail_at_third(self, i):
        if i == 2:
            raise OSError("disk full")
        return positions(self, i)

    monkeypatch.setattr(TeacherStore, "positions", fail_at_third)
    with pytest.raises(OSError, match="disk full"):
        main(["export-store", "--store", str(world.train_store), "--output", str(out), "--overwrite", "true"])  # fmt: skip
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_test_and_validate_in_the_fit_folder_keep_its_logs(world: World, tmp_path: Path) -> None:
    """With configs/trainer/cpu.yaml fit and test share runs/default: Lightning's CSV logger
    deleted the fit's metrics.csv and rewrote hparams.yaml there. They log beside it now."""
    run = tmp_path / "run"
    main(world.fit_args(run, "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1"))
    fit_files = snapshot([run / "metrics.csv", run / "hparams.yaml", run / "config.yaml"])
    assert "train/loss" in fit_files[run / "metrics.csv"].decode()
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    for command in ("test", "validate"):
        evaluate = ("--ckpt_path", str(checkpoint), "--trainer.limit_val_batches", "1.0")
        main(world.fit_args(run, *evaluate, command=command))
    assert snapshot(list(fit_files)) == fit_files
    assert "test/generated/acc" in (run / "metrics_test.csv").read_text()
    assert "val/generated/acc" in (run / "metrics_validate.csv").read_text()
    assert (run / "hparams_test.yaml").is_file() and (run / "hparams_validate.yaml").is_file()


KILLABLE = """
import pathlib, time
from lightning.pytorch.callbacks import ModelCheckpoint
save = ModelCheckpoint._save_checkpoint
def save_then_wait(self, trainer, filepath):
    save(self, trainer, filepath)
    if pathlib.Path(filepath).name == "last.ckpt":
        pathlib.Path({marker!r}).write_text(str(trainer.global_step))
        time.sleep(600)                   # the end of epoch 1 is on disk: SIGKILL
ModelCheckpoint._save_checkpoint = save_then_wait
from first_pl.cli import main
main({args!r})
"""


def test_fit_rerun_after_kill_is_refused_and_resume_keeps_the_metrics(
    world: World, tmp_path: Path
) -> None:
    """A rerun without --ckpt_path used to pass the run-folder check (same config) and the CSV
    logger deleted the killed run's metrics.csv; a resume deleted it too."""
    run = tmp_path / "run"
    args = world.fit_args(
        run, "--config", str(CONFIGS / "trainer" / "resumable.yaml"),
        "--trainer.max_epochs", "2", "--trainer.max_steps", "-1", "--seed_everything", "0",
        "--trainer.log_every_n_steps", "1", "--trainer.logger.init_args.flush_logs_every_n_steps", "1",
    )  # fmt: skip
    marker, log = tmp_path / "marker", tmp_path / "killed.log"
    proc = spawn(KILLABLE.format(marker=str(marker), args=args), log)
    wait_for(marker.exists, proc, log)
    kill9(proc)
    killed = (run / "metrics.csv").read_text()
    killed_rows = killed.splitlines()[1:]
    assert len(killed_rows) >= 3  # one epoch of 3 steps, flushed at every step

    with pytest.raises(
        RunFolderError,
        match=r"run folder .*run already holds the results of this run \(checkpoints/"
        r".*last\.ckpt.*metrics\.csv.*\): a new fit would delete its metrics\.csv; resume it "
        r"with --ckpt_path last .* or pass --overwrite_run true",
    ):
        main(args)
    assert (run / "metrics.csv").read_text() == killed

    main([*args, "--ckpt_path", "last"])
    resumed = (run / "metrics.csv").read_text().splitlines()
    header, killed_header = resumed[0].split(","), killed.splitlines()[0].split(",")
    assert set(killed_header) <= set(header)
    as_dicts = [dict(zip(header, row.split(","), strict=True)) for row in resumed[1:]]
    kept = [dict(zip(killed_header, row.split(","), strict=True)) for row in killed_rows]
    assert [{k: d[k] for k in killed_header} for d in as_dicts[: len(kept)]] == kept
    steps = {int(d["step"]) for d in as_dicts if d.get("train/loss")}
    assert steps == set(range(6))  # 2 epochs of 3 steps: the killed run's 3, the resume's 3


def test_overwrite_run_opts_in_once_and_is_not_saved(world: World, tmp_path: Path) -> None:
    """`--overwrite_run true` writes into a folder that is no run folder; the config.yaml it
    saves says false, so a rerun from that config is checked again (and refused: results)."""
    user_run_files(world, tmp_path)
    run = tmp_path / "run"
    main(world.fit_args(run, "--trainer.max_steps", "1", "--overwrite_run", "true"))
    assert list((run / "checkpoints").glob("*.ckpt"))
    assert yaml.safe_load((run / "config.yaml").read_text())["overwrite_run"] is False
    with pytest.raises(RunFolderError, match=r"already holds the results of this run"):
        main(["fit", "--config", str(run / "config.yaml")])
