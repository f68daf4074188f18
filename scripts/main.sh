#!/usr/bin/env bash
# README command one: install, then run the whole offline FIRST pipeline end to end.
# Stages are cached by their config hash under runs/offline: a rerun skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
first-pl pipeline --config configs/experiments/offline_default.yaml "$@"
