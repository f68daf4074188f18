"""The choice of k, which the paper leaves open (how many top tokens to keep): one FIRST student
per k, each with c chosen on the validation store at that k, and the bytes each store costs.

One extraction at the largest k serves every k (`truncate_store`: the top-k' of a descending
top-k is its first k' columns); when the pipeline's own stores already hold that many columns,
they are truncated instead and no teacher runs again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from first_pl.data.store import TeacherStore, truncate_store
from first_pl.pipeline.settings import PipelineSettings
from first_pl.pipeline.stages import StageResult, StageRunner
from first_pl.pipeline.students import TrainStudent
from first_pl.pipeline.teacher_stages import calibrate_stage, extraction
from first_pl.pipeline.upstream import Upstream

SPLITS = ("train", "validation")


def _store_k(stage: StageResult) -> int:
    store = TeacherStore(stage.outputs["store"])
    try:
        return store.metadata.k
    finally:
        store.close()


def source_stores(
    settings: PipelineSettings, k_max: int, runner: StageRunner, up: Upstream
) -> dict[str, StageResult]:
    """Train and validation stores with at least `k_max` columns: the pipeline's, or new ones."""
    if _store_k(up.train_store) >= k_max:
        return {"train": up.train_store, "validation": up.validation_store}
    data_section, teacher, batch = settings.data_section(), up.teacher, settings.extract_batch_size
    return {
        split: runner.run(
            f"extract-k{k_max}-{split}",
            {"data": data_section, "split": split, "k": k_max, "batch": batch},
            extraction(data_section, teacher, split, batch, settings.devices(), k=k_max),
            [teacher],
        )
        for split in SPLITS
    }


def k_students(
    settings: PipelineSettings,
    train_student: TrainStudent,
    ks: list[int],
    runner: StageRunner,
    up: Upstream,
) -> Iterator[tuple[StageResult, dict[str, Any]]]:
    """For each k of `ks`: truncated stores, c calibrated on them, a FIRST student (of
    `settings.students`, trained by `train_student`); with its grid point."""

    sources = source_stores(settings, max(ks), runner, up)
    for k in sorted(set(ks)):

        def truncate_body(folder: Path, k: int = k) -> dict[str, Any]:
            paths = {s: folder / f"teacher_{s}_k{k}.h5" for s in SPLITS}
            for split, path in paths.items():
                truncate_store(sources[split].outputs["store"], path, k)
            store = TeacherStore(paths["train"])
            positions = store.num_positions
            store.close()
            size = paths["train"].stat().st_size
            return {
                **{s: str(p) for s, p in paths.items()},
                "train_bytes": size,
                "train_positions": positions,
            }

        stores = runner.run(f"stores-k{k}", {"k": k}, truncate_body, list(sources.values()))

        calibration = calibrate_stage(
            settings, runner, f"calibrate-k{k}", stores.outputs["validation"], [stores],
            transform="prob_temperature", tail_bucket=False,
        )  # fmt: skip
        # the student's key reads the truncated store under the name of the store it replaces
        train_store = StageResult(
            "extract-train", stores.key, stores.folder, {"store": stores.outputs["train"]}
        )
        up_k = {**up, "extract-train": train_store, "calibrate": calibration.stage}
        student = train_student(
            runner, f"sweep-first-k{k}", "first", settings.students["first"], up_k
        )
        size, positions = stores.outputs["train_bytes"], stores.outputs["train_positions"]
        point = {
            "method": "first",
            "transform": "prob_temperature",
            "coefficient": "k",
            "value": k,
            "tail_bucket": False,
            "k": k,
            "store_bytes": size,
            "bytes_per_token": size / max(positions, 1),
        }
        yield student, point


def k_figure(rows: list[dict[str, Any]], path: Path, task: str) -> None:
    """Left: the students' test Acc / ECE / Trust against k. Right: the train store's size."""
    rows = sorted(rows, key=lambda r: r["k"])
    ks = [r["k"] for r in rows]
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for key in ("acc", "ece", "trust"):
        left.plot(
            ks,
            [r[key] for r in rows],
            marker="o",
            label=key.upper() if key == "ece" else key.capitalize(),
        )
    left.set(
        xlabel="k (top tokens kept)",
        ylabel="%",
        title=f"FIRST students on {task} (test)",
        xscale="log",
    )
    left.legend()
    right.plot(ks, [r["bytes_per_token"] for r in rows], marker="o", color="black")
    right.set(
        xlabel="k (top tokens kept)",
        ylabel="bytes per stored token (whole file)",
        title="train store size",
        xscale="log",
    )
    for r in rows:
        right.annotate(
            f"{r['store_bytes'] / 1e6:.2f} MB", (r["k"], r["bytes_per_token"]), fontsize=7
        )
    for axis in (left, right):
        axis.set_xticks(ks, [str(k) for k in ks])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
