#!/usr/bin/env bash
# Build higherpose's wheel and try it as a user would: a fresh virtual environment that has only
# torch, then `pip install` of the wheel, which must pull every declared dependency; the ops must
# import with torch and numpy alone; then tests/smoke_installed_package.py runs from an empty
# directory. Versions are constrained to requirements.txt so CI installs the same thing each time.
# Usage: PYTHON=.venv/bin/python tools/check_wheel.sh   (PYTHON: the build environment, with torch)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
PY="${PYTHON:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" .
wheel="$(ls "$work"/dist/higherpose-*.whl)"
echo "built $(basename "$wheel")"
"$PY" -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); \
assert any(n.startswith('higherpose/configs/crowd_pose/') for n in names), 'no configs in the wheel'; \
assert any(n.startswith('higherpose/data/layouts/') for n in names), 'no layouts in the wheel'; \
assert not any('emulat' in n for n in names), 'test machinery in the wheel'" "$wheel"

python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install -q -c "$root/requirements.txt")
"${pip[@]}" "torch==$(grep -E '^torch==' requirements.txt | cut -d= -f3)"
# The operators alone: torch and numpy only.
"${pip[@]}" --no-deps "$wheel" numpy
(cd "$work" && "$work/venv/bin/python" -c "import torch, higherpose.ops as ops; \
v, x, y, t = ops.heatmap_peaks(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8, 1)); print('ops with torch + numpy only:', tuple(v.shape))")
# The whole package: its declared dependencies.
"$work/venv/bin/python" -m pip uninstall -q -y higherpose
"${pip[@]}" "$wheel"
mkdir "$work/run"
(cd "$work/run" && "$work/venv/bin/python" "$root/tests/smoke_installed_package.py")
