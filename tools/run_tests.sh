#!/usr/bin/env bash
# Install (if needed) and run the test suite. Extra arguments go to pytest, e.g. -m cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
