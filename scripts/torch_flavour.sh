#!/usr/bin/env bash
# Which torch lock scripts/install.sh installs: prints `cpu` or `gpu` on stdout, and on stderr
# one line saying which and why.
#   FIRST_PL_TORCH  cpu or gpu: used as given (an override on either kind of machine)
#   NVIDIA_SMI      the nvidia-smi to ask (default: nvidia-smi on PATH)
# Without FIRST_PL_TORCH: gpu when `nvidia-smi -L` lists a GPU (a driver is installed and sees
# one), else cpu. Nothing is installed here, so the choice can be tested with a fake nvidia-smi.
set -euo pipefail
if [[ -n "${FIRST_PL_TORCH:-}" ]]; then
    echo "install.sh: torch $FIRST_PL_TORCH (set by FIRST_PL_TORCH)" >&2
    echo "$FIRST_PL_TORCH"
    exit 0
fi
smi=${NVIDIA_SMI:-nvidia-smi}
if ! command -v "$smi" >/dev/null 2>&1; then
    echo "install.sh: torch cpu (no $smi found, so no NVIDIA driver; FIRST_PL_TORCH=gpu overrides)" >&2
    echo cpu
    exit 0
fi
if ! listed=$("$smi" -L 2>&1); then
    echo "install.sh: torch cpu ($smi -L failed: $(head -n 1 <<<"$listed"); FIRST_PL_TORCH=gpu overrides)" >&2
    echo cpu
    exit 0
fi
gpus=$(grep -c '^GPU [0-9]' <<<"$listed" || true)
if (( gpus > 0 )); then
    first=$(grep -m 1 '^GPU [0-9]' <<<"$listed" | sed -e 's/^GPU [0-9]*: //' -e 's/ (UUID.*//')
    echo "install.sh: torch gpu ($smi -L lists $gpus GPU(s), the first $first; FIRST_PL_TORCH=cpu overrides)" >&2
    echo gpu
else
    echo "install.sh: torch cpu ($smi -L lists no GPU; FIRST_PL_TORCH=gpu overrides)" >&2
    echo cpu
fi
