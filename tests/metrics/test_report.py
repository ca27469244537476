"""metrics.json and report.md."""

from __future__ import annotations

import json

import numpy as np

from raypz.metrics import EvalConfig, evaluate, headline_table, render_markdown, write_report
from raypz.pdf import ZGrid, normalize

GRID = ZGrid(0.0, 3.0, 301)


def _result(rng: np.random.Generator, width: float) -> dict:
    z = rng.uniform(0.1, 1.4, 200)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - z[:, None]) / width) ** 2), GRID)
    return evaluate(GRID, pdf, z, mag=rng.uniform(20, 25, 200))


def test_headline_table_puts_models_side_by_side(rng):
    results = {"ensemble": _result(rng, 0.05), "knn": _result(rng, 0.1)}
    table = headline_table(results)
    lines = table.splitlines()
    assert lines[0] == "| metric | ensemble | knn |"
    assert any(line.startswith("| sigma_MAD |") for line in lines)
    assert all(line.count("|") == 4 for line in lines)


def test_write_report_is_strict_json_and_markdown(rng, tmp_path):
    results = {"ensemble": _result(rng, 0.05), "knn": _result(rng, 0.1)}
    paths = write_report(results, str(tmp_path), inputs={"truth rows": 200}, images=["a/pit.png"])
    payload = json.loads(
        (tmp_path / "metrics.json").read_text(), parse_constant=lambda c: 1 / 0
    )  # NaN is written as null, never as a bare NaN
    assert set(payload["models"]) == {"ensemble", "knn"}
    assert payload["models"]["knn"]["overall"]["n"] == 200
    assert payload["models"]["knn"]["binned"]["z_spec"]["bins"][-1]["crps_mean"] is None
    text = (tmp_path / "report.md").read_text()
    for expected in (
        "## Headline",
        "| metric | ensemble | knn |",
        "Binned in magnitude",
        "## Point estimates",
        "| z_phot | metric | ensemble | knn |",
        "| best | eta_0.15 (abs dz > 0.15) |",
        "![a/pit.png]",
    ):
        assert expected in text
    assert paths["markdown"].endswith("report.md")


def test_headline_names_the_point_estimate(rng):
    z = rng.uniform(0.1, 1.4, 50)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - z[:, None]) / 0.05) ** 2), GRID)
    for kind, words in [("mode", "z_phot = PDF mode;"), ("best", "z_phot = z_best (")]:
        result = evaluate(GRID, pdf, z, config=EvalConfig(point_estimate=kind))
        assert words in render_markdown({"ensemble": result})
