"""The documentation figures are made, small, from a small simulation."""

from __future__ import annotations

from raypz.sim import plots


def test_plots_command_writes_small_pngs(tmp_path, capsys):
    plots.main(["--output", str(tmp_path), "--n-objects", "3000"])
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
