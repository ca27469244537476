"""Ray workers that run the light stages (histogram, staging, merge) import neither torch nor
hats: each costs every fresh worker 1-1.6 s of start-up (raypz.infer.tasks' promise)."""

from __future__ import annotations

import subprocess
import sys


def test_light_stage_module_imports_neither_torch_nor_hats():
    code = (
        "import sys, raypz.infer.tasks; "
        "print(sorted(m for m in ('torch', 'hats') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
