#!/usr/bin/env bash
# README command two: install, then run the whole test suite offline on one thread per process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 WANDB_MODE=offline OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
ruff check first_pl tests benchmarks scripts
python -m pytest -q "$@"
