#!/usr/bin/env bash
# One-time set-up on a fresh machine: the CPU build of PyTorch, then this package.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
# Pinned so pip takes the CPU build (an unpinned torch may pull a multi-GB CUDA build).
# On a GPU machine, install the CUDA torch of your choice first; this line then keeps it.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
