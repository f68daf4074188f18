#!/usr/bin/env bash
# README command one: build (or reuse) the locked environment, then run the whole offline FIRST
# pipeline end to end. Stages are cached by their config hash under runs/offline: a rerun skips
# what is done. FIRST_PL_VENV chooses where the environment lives; extra arguments go to
# `first-pl pipeline` (e.g. --output_dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv=$(cd "${FIRST_PL_VENV:-.venv}" && pwd)
export PATH="$venv/bin:$PATH"
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
first-pl pipeline --config configs/experiments/offline_default.yaml "$@"
