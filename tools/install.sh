#!/usr/bin/env bash
# Install higherpose into a virtual environment (default .venv in the checkout): the pinned
# requirements (torch 2.13.0 CPU wheel here), then the package itself, built with the torch
# already installed (--no-build-isolation: an isolated build would pull a multi-GB CUDA torch).
# Safe to run again: pip skips what is installed and ninja rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -r requirements.txt
MAX_JOBS="${MAX_JOBS:-2}" "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import higherpose.ops, torch; print('higherpose installed; torch', torch.__version__)"
