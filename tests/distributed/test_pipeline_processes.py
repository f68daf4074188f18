"""`first-pl pipeline` and `first-pl sweep` with a 2-process trainer (DDP and FSDP2 over gloo).

Each fit / test / extract stage runs as its own torchrun group (first_pl/runner.py);
the pipeline itself runs once. The sweep runs in the DDP pipeline's folder, so it trains and tests
only its own student on 2 processes (the upstream stages are the pipeline's, cached). The 2-process runs take 4 examples per process where the
1-process run takes 8, and the training split is one batch, so every optimizer step sees the
same 8 examples: the only differences are float summation orders (DDP averages the two ranks'
mean losses, FSDP2 reduce-scatters), hence the tolerance below. Untrained and tested the same
way, the zero-shot stage must agree exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from two_process_pipeline import pipeline_config, stage_records

from first_pl.cli import main
from first_pl.pipeline.launch import trainer_processes
from first_pl.runner import run_first_pl

# Acc, ECE and Trust in percentage points: measured |difference| <= 4e-5 (2 steps of the tiny model)
TOLERANCE = 1e-3
STAGES = {"prepare", "data", "zero-shot", "teacher", "extract-train", "extract-validation",
          "calibrate", "analysis", "student-first", "report"}  # fmt: skip


def metrics(out: Path) -> dict[str, dict]:
    return {name: r["outputs"]["metrics"] for name, r in stage_records(out).items() if "metrics" in r["outputs"]}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("one") / "runs"
    main(["pipeline", "--config", str(pipeline_config(tiny_model_dir, out, None))])
    return out


@pytest.fixture(scope="module")
def two_process_runs() -> dict[str, Path]:
    """The run folder of each strategy's finished 2-process pipeline in this module."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp_cpu"])
def test_pipeline_on_two_processes_equals_one_process(strategy, one_process, two_process_runs, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    config = pipeline_config(tiny_model_dir, out, strategy)
    capsys.readouterr()
    main(["pipeline", "--config", str(config)])
    log = capsys.readouterr().out
    assert set(stage_records(out)) == STAGES
    # every fit / test / extract was its own 2-process group; the pipeline ran once
    launched = re.findall(r"  (\w+) on 2 processes, output in (\S+)", log)
    assert sorted(c for c, _ in launched) == ["extract", "extract", "fit", "fit", "test", "test", "test"]
    for _, path in launched:
        text = Path(path).read_text()
        assert "torch.distributed.run --standalone --nproc_per_node 2 -m first_pl" in text
        assert "running in" not in text  # no pipeline output inside a stage's group
    assert log.count("report: running in") == 1
    one, two = metrics(one_process), metrics(out)
    assert one["zero-shot"] == two["zero-shot"]
    for stage in ("teacher", "student-first"):
        for task, figures in one[stage].items():
            assert figures["n"] == two[stage][task]["n"] and figures["acc"] == two[stage][task]["acc"]
            for key in ("ece", "trust"):
                assert abs(figures[key] - two[stage][task][key]) <= TOLERANCE, (stage, task, key)
    (teacher,) = out.glob("teacher-*")
    if strategy == "fsdp_cpu":  # a sharded folder, consolidated for extraction and the analysis
        (sharded,) = (teacher / "checkpoints").glob("*.ckpt")
        assert sharded.is_dir() and (teacher / "consolidated.ckpt").is_file()
    # the cache holds as in one process: a rerun starts no process and runs nothing
    main(["pipeline", "--config", str(config)])
    log = capsys.readouterr().out
    assert log.count("skipped") == len(STAGES) and "on 2 processes" not in log
    two_process_runs[strategy] = out


@pytest.mark.slow
def test_sweep_on_two_processes(two_process_runs, tiny_model_dir, tmp_path, capsys):
    """A one-point sweep with the DDP trainer: its student trains and tests on 2 processes (in
    the DDP pipeline's folder when that test ran first, so only the sweep's own stages run)."""
    out = two_process_runs.get("ddp", tmp_path / "runs")
    config = yaml.safe_load(pipeline_config(tiny_model_dir, out, "ddp").read_text())
    config.update(temperatures=[0.5], deltas=[])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    main(["sweep", "--config", str(path)])
    log = capsys.readouterr().out
    (point,) = [r for name, r in stage_records(out).items() if name.startswith("sweep-first")]
    assert set(point["outputs"]["metrics"]["generated"]) == {"n", "acc", "ece", "trust"}
    assert re.search(r"sweep-first-temperature0\.5: running in .*\n  fit on 2 processes", log)


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [({"accelerator": "cpu", "devices": "auto"}, 1), ({"devices": 2}, 2), ({"devices": "2"}, 2),
     ({"devices": [0, 1, 3]}, 3), ({"accelerator": "cpu"}, 1)],
)  # fmt: skip
def test_trainer_processes(trainer, expected):
    assert trainer_processes(trainer, "t.yaml", gpus=0) == expected


@pytest.mark.parametrize(
    ("trainer", "message"),
    [({"devices": 1, "num_nodes": 2}, "trainer t.yaml: num_nodes is 2, but first-pl pipeline launches its stages on one node"),
     ({"accelerator": "gpu", "devices": "auto"}, "trainer t.yaml: accelerator gpu, but no CUDA GPU is visible"),
     ({"devices": -1}, "trainer t.yaml: devices is -1 (every GPU) with accelerator auto -> cpu (no CUDA GPU visible); first-pl pipeline needs the number of processes")],
)  # fmt: skip
def test_trainer_processes_refused(trainer, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        trainer_processes(trainer, "t.yaml", gpus=0)


@pytest.mark.slow
def test_failed_stage_group_names_its_log(tmp_path):
    log = tmp_path / "fit.log"
    with pytest.raises(RuntimeError, match=r"first-pl fit on 2 processes exited with status 1; its output is in .*fit\.log, where the ranks. output ends with") as err:
        run_first_pl(["fit", "--config", str(tmp_path / "missing.yaml")], 2, log)
    # the ranks' own error comes with it, not only torchrun's summary
    assert 'error: Parser key "config": File does not exist' in str(err.value)
    assert "Root Cause" not in str(err.value) and "Root Cause" in log.read_text()
