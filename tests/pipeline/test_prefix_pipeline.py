"""The pipeline's shared frozen prefix: one `prefix` stage computes the states, every model of
the job reads its store, and a changed prefix depth reruns the prefix and everything after it."""

from __future__ import annotations

import re

import yaml
from first_pl_testing import tiny_pipeline


def ran(log: str) -> set[str]:
    return set(re.findall(r"\] (\S+): running in", log))


def test_every_stage_reads_the_prefix_store_and_a_new_depth_reruns_them(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    pipeline = tiny_pipeline(tiny_model_dir, out, methods=("finetune", "first"))
    pipeline.prefix_layers = 2
    pipeline.run()
    first_log = capsys.readouterr().out
    (prefix,) = out.glob("prefix-*")
    store = prefix / "prefix.h5"
    assert store.is_file() and "prefix" in ran(first_log)
    trained = ["zero-shot", "teacher", "student-finetune", "student-first"]
    for name in trained:
        (folder,) = out.glob(f"{name}-*")
        spec = yaml.safe_load((folder / "config.yaml").read_text())["model"]["init_args"]["model"]
        assert spec["prefix_layers"] == 2 and spec["prefix_cache"] == str(store), name
    (teacher,) = out.glob("teacher-*")
    assert (teacher / "test" / "metrics_test.json").is_file()

    pipeline.run()
    assert "running" not in capsys.readouterr().out  # everything cached

    pipeline.prefix_layers = 1
    pipeline.run()
    rerun = ran(capsys.readouterr().out)
    assert {"prefix", *trained, "extract-train", "extract-validation", "calibrate", "report"} <= rerun
    assert len(list(out.glob("prefix-*"))) == 2
