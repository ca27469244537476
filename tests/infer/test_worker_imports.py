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


def test_every_exported_name_imports_and_is_listed_without_importing_ray():
    """The names that raypz.train and raypz.infer import on first use are in dir() (a
    notebook's tab completion) and resolve; listing them imports no Ray."""
    code = (
        "import sys, raypz.train as t, raypz.infer as i; "
        "listed = all(n in dir(m) for m in (t, i) for n in m.__all__); "
        "ray = 'ray' in sys.modules; "
        "[getattr(m, n) for m in (t, i) for n in m.__all__]; "
        "print(listed, ray)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True False"
