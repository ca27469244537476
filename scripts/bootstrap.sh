#!/usr/bin/env bash
# Install raypz and its test tools into the current Python.
# torch==2.13.0 goes in first when no torch is present, so that nothing that depends on torch
# pulls another version. Where it comes from is pip's configuration (the CI machines find a
# local CPU wheel; PyPI serves the CUDA build on Linux); TORCH_INDEX_URL picks an index, e.g.
# https://download.pytorch.org/whl/cpu for the small CPU build on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
"$PY" -m pip install --quiet -e ".[test]"
