#!/usr/bin/env bash
# GPU figures (one or more GPUs, under 5 minutes on one): teacher extraction tokens/s in bf16,
# then FSDP (configs/trainer/fsdp.yaml) bf16 training of the FIRST student: tokens/s and MFU.
#   bash benchmarks/gpu.sh [PEAK_TFLOPS_PER_GPU]   # default 989 (H100/H200 bf16 dense)
# Prints one JSON line per figure and writes them to benchmarks/GPU_RESULTS.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PEAK="${1:-989}"
STORE="$(mktemp -d)/train.h5"
OUT=benchmarks/GPU_RESULTS.jsonl
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
{
  timeout 150 python benchmarks/gpu_bench.py extract --store "$STORE" | grep '^{'
  timeout 150 python benchmarks/gpu_bench.py train --store "$STORE" --peak-tflops "$PEAK" | grep '^{'
} | tee "$OUT"
rm -rf "$(dirname "$STORE")"
