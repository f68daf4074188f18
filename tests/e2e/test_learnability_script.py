"""`scripts/learnability.py` (the letter-vs-text measurement in README) runs and reports both formats."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "learnability.py"


def test_learnability_script_prints_curves_and_test_accuracy(tiny_model_dir):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(tiny_model_dir), "--steps", "10", "--threads", "1"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    for answer in ("letter", "text"):
        assert re.search(rf"{answer} step +10 +answer loss \d+\.\d+ +train acc +\d+\.\d%", run.stdout)
        assert re.search(rf"answer = {answer} +\d+\.\d%", run.stdout)
