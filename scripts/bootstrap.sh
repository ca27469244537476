#!/usr/bin/env bash
# Install raypz and its test tools into the current Python.
# torch==2.13.0 (a CPU build on this machine kind) goes in first when no torch is present, so
# that nothing that depends on torch pulls the registry's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet torch==2.13.0
fi
"$PY" -m pip install --quiet -e ".[test]"
