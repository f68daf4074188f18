#!/usr/bin/env bash
# README command two: build (or reuse) the locked environment, then run the whole test suite
# offline on one thread per process in two pytest workers. FIRST_PL_VENV chooses where the
# environment lives.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv=$(cd "${FIRST_PL_VENV:-.venv}" && pwd)
export PATH="$venv/bin:$PATH"
export HF_HUB_OFFLINE=1 WANDB_MODE=offline OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
python scripts/check_lock.py "requirements/${FIRST_PL_TORCH:-cpu}.txt" requirements/model.txt
ruff check first_pl tests benchmarks scripts
# Two workers, one per core of the 2-core machine the suite is sized for (every test runs one
# thread). --dist loadfile keeps each test file on one worker, so a module fixture (a tiny
# pipeline, an FSDP run) is built once, not once per worker. --durations=30: the slowest 30
# tests close the summary, so every run shows where the suite's time goes.
python -m pytest -q -n 2 --dist loadfile --durations=30 "$@"
