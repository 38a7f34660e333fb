#!/usr/bin/env bash
# Install, then run the main job: synthetic crowds -> train on the CPU -> evaluate -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec "${VENV:-.venv}/bin/python" tools/quickstart.py "$@"
