#!/usr/bin/env bash
# Which student converges within the budget? Fine-tune students of a given depth and step budget
# on the main job's generated task, validated every 20 steps on the whole validation split; the
# curve lands in <out>/<name>/val_curve.jsonl and the last lines print Acc / ECE / loss per point.
# README, "Converged students", quotes these runs. One thread, about 5 min per 100 steps on an
# AMX CPU (bf16) and about 11 min per 100 steps in float32 on AVX2.
#
#   bash scripts/student_convergence.sh <name> <keep_layers> <max_steps> [first-pl fit overrides...]
#   bash scripts/student_convergence.sh s24x120 '[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,26,27,28,29]' 120
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
  echo "usage: bash scripts/student_convergence.sh <name> <keep_layers> <max_steps> [overrides...]" >&2
  exit 2
fi
name=$1 layers=$2 steps=$3
shift 3
out=${CONVERGENCE_DIR:-runs/convergence}/$name
venv=$(cd "${FIRST_PL_VENV:-.venv}" && pwd)
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$venv/bin/first-pl" fit --config configs/trainer/cpu.yaml --config configs/data/generated.yaml \
  --config configs/model/student_finetune.yaml \
  --model.init_args.model "{\"name_or_path\": \"smollm2-135m-instruct\", \"keep_layers\": $layers}" \
  --trainer.max_steps "$steps" --trainer.val_check_interval 20 --trainer.limit_val_batches 1.0 \
  --trainer.check_val_every_n_epoch null --trainer.max_epochs -1 \
  --trainer.default_root_dir "$out" --trainer.logger.init_args.save_dir "$out" \
  --trainer.enable_checkpointing false "$@"
"$venv/bin/python" - "$out" <<'EOF'
import sys

from first_pl.report.run_metrics import read_curve

for task, points in read_curve(sys.argv[1]).items():
    for p in points:
        print(f"{task}  step {p['global_step']:4d}  Acc {p['acc']:5.1f}  ECE {p['ece']:5.1f}  loss {p['loss']:.3f}")
EOF
