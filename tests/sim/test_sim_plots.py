"""The documentation figures are made, small, from a small simulation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

JOB = Path(__file__).resolve().parents[2] / "jobs" / "plot_simulation.py"


def test_plots_command_writes_small_pngs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("plot_simulation_job", JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main(["--output", str(tmp_path), "--n-objects", "3000"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "sim_colours.png",
        "sim_counts.png",
        "sim_cutouts.png",
        "sim_nz.png",
        "sim_snr.png",
    ]
    assert all(0 < (tmp_path / n).stat().st_size < 200_000 for n in names)
    assert "n(z) wide y10" in capsys.readouterr().out
