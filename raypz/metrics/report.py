"""Evaluation reports: ``metrics.json`` (everything) and ``report.md`` (short Markdown tables).

``results`` maps a model name to the dict of :func:`~raypz.metrics.evaluate`, e.g.
``{"ensemble": ..., "best member": ..., "knn": ...}``; the headline table puts the models side
by side, the first one being the model under study. NaN values are written as JSON ``null``.
"""

from __future__ import annotations

import math

from raypz import __version__, io

METRIC_LABELS: dict[str, str] = {
    "n_scored": "rows scored",
    "n_no_pdf": "rows without PDF (not scored)",
    "n_bad_z_spec": "rows with bad z_spec (not scored)",
    "bias_median": "bias: median dz",
    "bias_mean": "bias: mean dz",
    "sigma_mad": "sigma_MAD",
    "sigma68": "sigma68",
    "eta_0.15": "eta_0.15 (abs dz > 0.15)",
    "eta_0.05": "eta_0.05 (abs dz > 0.05)",
    "eta_0.02": "eta_0.02 (abs dz > 0.02)",
    "eta_5sigma": "eta_5sigma (abs dz > 5 sigma_MAD)",
    "crps_mean": "mean CRPS",
    "pit_ks": "PIT KS statistic",
    "pit_cvm": "PIT CvM omega^2 (not n*omega^2)",
    "pit_extreme_frac": "PIT < 1e-4 or > 1-1e-4",
    "wasserstein1_mean": "n(z) W1, mean over tomo bins",
    "mean_z_shift_max_abs": "n(z) max abs mean-z shift",
}
"""Row labels of the headline table; keys not listed here are shown as they are."""

BINNED_METRICS: tuple[str, ...] = ("sigma_mad", "eta_0.15", "crps_mean")
"""Metrics shown per bin in the Markdown tables (metrics.json has all of them)."""

POINT_ESTIMATE_METRICS: tuple[str, ...] = ("bias_median", "sigma_mad", "eta_0.15", "eta_0.05")
"""Metrics shown per point estimate in the Markdown table (metrics.json has all of them)."""

_BINNING_TITLES = {
    "mag": "magnitude (AB)",
    "z_spec": "true redshift",
    "z_phot": "photometric redshift (z_phot)",
}


HEADLINE_METRICS = ("bias_median", "sigma_mad", "eta_0.15", "eta_0.05", "crps_mean", "pit_ks")
"""The overall metrics (keys of :func:`~raypz.metrics.evaluate`'s ``overall``) that jobs print
in their closing tables: the quality targets' metrics."""


def _fmt(value) -> str:
    """A table cell: integers as they are, floats to 4 decimals (or 3 significant if tiny)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def headline_table(results: dict[str, dict]) -> str:
    """Markdown table: one row per overall metric, one column per model."""
    names = list(results)
    first = results[names[0]]
    keys = ["n_scored", "n_no_pdf", "n_bad_z_spec"]
    keys += [k for k in first["overall"] if k != "n"]
    keys += ["wasserstein1_mean", "mean_z_shift_max_abs"]

    def value(result: dict, key: str):
        for section in (result, result["overall"], result["nz"]):
            if key in section:
                return section[key]
        return None

    rows = [[METRIC_LABELS.get(k, k)] + [_fmt(value(results[n], k)) for n in names] for k in keys]
    return _table(["metric", *names], rows)


def _binned_table(results: dict[str, dict], binning: str) -> str:
    """Markdown table of a few metrics per bin, models side by side; empty bins left out."""
    names = [n for n in results if binning in results[n]["binned"]]
    bins_by_model = [results[n]["binned"][binning]["bins"] for n in names]
    header = ["bin", f"n ({names[0]})"]
    header += [f"{m} {n}" for m in BINNED_METRICS for n in names]
    rows = []
    for b, first in enumerate(bins_by_model[0]):
        if not any(bins[b]["n"] for bins in bins_by_model):
            continue
        row = [f"{first['lo']:g}-{first['hi']:g}", str(first["n"])]
        row += [_fmt(bins[b][m]) for m in BINNED_METRICS for bins in bins_by_model]
        rows.append(row)
    return _table(header, rows)


def _nz_table(results: dict[str, dict]) -> str:
    """Markdown table of the n(z) metrics per tomographic bin, models side by side."""
    names = list(results)
    header = ["z_phot bin", f"n ({names[0]})"]
    header += [f"W1 {n}" for n in names] + [f"mean-z shift {n}" for n in names]
    rows = []
    for b, first in enumerate(results[names[0]]["nz"]["bins"]):
        row = [f"{first['lo']:g}-{first['hi']:g}", str(first["n"])]
        for key in ("wasserstein1", "mean_z_shift"):
            row += [_fmt(results[n]["nz"]["bins"][b][key]) for n in names]
        rows.append(row)
    return _table(header, rows)


def _flag_table(results: dict[str, dict]) -> str:
    """Markdown table: per model and quality flag, the fraction flagged and eta_0.15,
    eta_0.05 and sigma_MAD of the flagged and the unflagged rows."""
    header = ["model", "flag", "fraction flagged"]
    for metric in ("eta_0.15", "eta_0.05", "sigma_mad"):
        header += [f"{metric} flagged", f"{metric} unflagged"]
    rows = []
    for name, result in results.items():
        for flag, entry in result.get("by_flag", {}).items():
            row = [name, flag, _fmt(entry["fraction"])]
            for metric in ("eta_0.15", "eta_0.05", "sigma_mad"):
                row += [_fmt(entry["flagged"][metric]), _fmt(entry["unflagged"][metric])]
            rows.append(row)
    return _table(header, rows)


def _point_estimate_table(results: dict[str, dict]) -> str:
    """Markdown table of a few point metrics under each point estimate, models side by side."""
    names = [n for n in results if "by_point_estimate" in results[n]]
    kinds = list(results[names[0]]["by_point_estimate"])
    rows = [
        [kind, METRIC_LABELS.get(m, m)]
        + [_fmt(results[n]["by_point_estimate"].get(kind, {}).get(m)) for n in names]
        for kind in kinds
        for m in POINT_ESTIMATE_METRICS
    ]
    return _table(["z_phot", "metric", *names], rows)


def _point_estimate(results: dict[str, dict]) -> str:
    """What z_phot is in these results (all models are scored alike); "mode" for results
    written before the choice existed."""
    return next(iter(results.values()), {}).get("point_estimate", "mode")


def _point_estimate_label(results: dict[str, dict]) -> str:
    """z_phot in words, for the headline."""
    kind = _point_estimate(results)
    if kind == "best":
        return "z_best (the redshift of least expected loss, see Point estimates)"
    return f"PDF {kind}"


def render_markdown(
    results: dict[str, dict], inputs: dict | None = None, images: list[str] | None = None
) -> str:
    """The text of report.md: inputs, headline table, binned and n(z) tables, image links.

    Args:
        results: model name -> :func:`~raypz.metrics.evaluate` result.
        inputs: facts about the inputs (paths, matched and unmatched row counts), listed first.
        images: PNG paths relative to the report directory, linked at the end.
    """
    parts = ["# Photo-z evaluation", ""]
    if inputs:
        parts += ["## Inputs", ""] + [f"- {k}: {v}" for k, v in inputs.items()] + [""]
    parts += [
        "## Headline",
        "",
        f"dz = (z_phot - z_spec)/(1 + z_spec), z_phot = {_point_estimate_label(results)}; "
        "coverage_P = fraction of true redshifts inside the central P% interval.",
        "",
        headline_table(results),
        "",
    ]
    if any("by_point_estimate" in r for r in results.values()):
        parts += [
            "## Point estimates",
            "",
            "The point metrics with each point estimate as z_phot: the PDF's mode, median, mean"
            " and best (z_best, the redshift of least expected loss 1 - 1/(1 + (dz/0.15)^2),"
            " Tanaka 2015).",
            "",
            _point_estimate_table(results),
            "",
        ]
    for binning, title in _BINNING_TITLES.items():
        if any(binning in r["binned"] for r in results.values()):
            parts += [f"## Binned in {title}", "", _binned_table(results, binning), ""]
    parts += ["## n(z) per tomographic bin", "", _nz_table(results), ""]
    if any("by_flag" in r for r in results.values()):
        parts += [
            "## Quality flags",
            "",
            "Point metrics of the rows each quality flag marks, against the rows it does not.",
            "",
            _flag_table(results),
            "",
        ]
    if images:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in images] + [""]
    return "\n".join(parts)


def write_report(
    results: dict[str, dict],
    directory: str,
    inputs: dict | None = None,
    images: list[str] | None = None,
) -> dict[str, str]:
    """Write ``metrics.json`` and ``report.md`` into ``directory`` (local path or URI).

    metrics.json is ``{"raypz_version", "inputs", "models": results}`` with NaN as null.
    Returns the paths written, keyed ``"json"`` and ``"markdown"``.
    """
    paths = {
        "json": io.join(directory, "metrics.json"),
        "markdown": io.join(directory, "report.md"),
    }
    payload = {"raypz_version": __version__, "inputs": inputs or {}, "models": results}
    io.write_json(paths["json"], payload)
    io.write_bytes_atomic(paths["markdown"], render_markdown(results, inputs, images).encode())
    return paths
