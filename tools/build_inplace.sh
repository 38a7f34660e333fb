#!/usr/bin/env bash
# Rebuild higherpose._C in place, for development. Builds are serialised with a lock because
# several people (or agents) may share one checkout; ninja makes a rebuild incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/higherpose-build.lock env MAX_JOBS="${MAX_JOBS:-2}" "${PYTHON:-python}" setup.py build_ext --inplace "$@"
