"""Every plot is written as a valid, small PNG on seeded data, and empty data does not fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raypz import flags as fl
from raypz.pdf import ZGrid, normalize
from raypz.plots import make_all_plots, plot_coverage, plot_nz, plot_pit_histogram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = ZGrid(0.0, 3.0, 301)


def _is_small_png(path) -> bool:
    data = Path(path).read_bytes()
    return data.startswith(PNG_SIGNATURE) and 1_000 < len(data) < 300_000


def test_make_all_plots_writes_valid_pngs(rng, tmp_path):
    n = 2000
    z_true = rng.uniform(0.05, 2.5, n)
    sigma = 0.04 * (1 + z_true)
    mu = z_true + sigma * rng.standard_normal(n)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - mu[:, None]) / sigma[:, None]) ** 2), GRID)
    mag = rng.uniform(19.0, 26.0, n)
    mag[:5] = np.nan
    flags = np.zeros(n, np.int32)
    flags[:10] = fl.NO_PDF
    pdf[:10] = 0.0
    paths = make_all_plots(
        str(tmp_path / "model"), GRID, pdf, z_true, mag=mag, flags=flags, title="test"
    )
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == [
        "coverage.png",
        "dz_vs_mag.png",
        "dz_vs_zspec.png",
        "nz.png",
        "pit.png",
        "zphot_vs_zspec.png",
    ]
    assert all(_is_small_png(p) for p in paths)


def test_plots_of_empty_data_still_write_pngs(tmp_path):
    empty = np.empty(0)
    paths = [
        plot_pit_histogram(empty, str(tmp_path / "pit.png")),
        plot_coverage(empty, str(tmp_path / "coverage.png")),
        plot_nz(GRID, np.empty((0, GRID.n)), empty, empty, str(tmp_path / "nz.png")),
    ]
    paths += make_all_plots(str(tmp_path / "all"), GRID, np.zeros((3, GRID.n)), np.ones(3))
    assert all(_is_small_png(p) for p in paths)


def test_plots_show_the_point_estimates_that_the_metrics_score(rng, tmp_path, monkeypatch):
    """A catalog's stored z_mode (from its full-precision PDFs) is what evaluate scores; the
    plots drew the decoded PDFs' own mode instead. Stored NaNs fall back to the PDFs' mode."""
    import raypz.plots as plots

    n = 50
    mu = rng.uniform(0.2, 2.0, n)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - mu[:, None]) / 0.05) ** 2), GRID)
    pdf[0] = 0.0  # no PDF: not plotted
    flags = np.where(np.arange(n) == 0, fl.NO_PDF, 0).astype(np.int32)
    stored = mu + 0.001  # off the grid, unlike any mode of the PDFs
    stored[1] = np.nan
    drawn = {}

    def capture(z_phot, z_spec, *args, **kwargs):
        drawn["z_phot"] = z_phot
        return str(tmp_path / "captured.png")

    monkeypatch.setattr(plots, "plot_zphot_vs_zspec", capture)
    make_all_plots(str(tmp_path / "m"), GRID, pdf, mu, flags=flags, stored={"mode": stored})
    expected = stored[1:].copy()
    expected[0] = GRID.values[np.argmax(pdf[1])]
    np.testing.assert_allclose(drawn["z_phot"], expected)
