"""Evaluation plots as small PNG files (Agg, no pyplot state): one function per plot.

Each ``plot_*`` function takes plain arrays, writes one PNG to ``path`` (local path or URI, via
:mod:`raypz.io`) and returns the path; :func:`make_all_plots` makes the whole set for one model.
Redshifts are dimensionless, magnitudes are AB; ``dz = (z_phot - z_spec) / (1 + z_spec)``.
"""

from __future__ import annotations

import io as _bytes_io
import math
from collections.abc import Mapping

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from raypz import io
from raypz.metrics import (
    TOMO_EDGES,
    EvalConfig,
    bin_index,
    coverage_curve,
    nz_stacks,
    pit,
    pit_metrics,
    scaled_residual,
    scorable_rows,
    served_point_estimates,
)
from raypz.pdf import ZGrid

DPI = 100
"""Resolution of every PNG; with figures of ~5x4 inches files stay well under 200 kB."""

DZ_LIMIT = 0.3
"""The dz axis of the residual plots spans +-DZ_LIMIT."""

OUTLIER_DZ = 0.15
"""|dz| of the outlier lines (eta_0.15)."""


def _save(fig: Figure, path: str) -> str:
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    io.write_bytes_atomic(path, buf.getvalue())
    return path


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)


def _density(ax, x: np.ndarray, y: np.ndarray, x_range, y_range, cmap: str) -> None:
    """2-D histogram of (x, y) with a logarithmic colour scale; empty cells left blank."""
    ok = np.isfinite(x) & np.isfinite(y)
    counts, xe, ye = np.histogram2d(x[ok], y[ok], bins=100, range=[x_range, y_range])
    if counts.max() == 0:
        _no_data(ax, "rows")
        return
    mesh = ax.pcolormesh(
        xe, ye, np.ma.masked_equal(counts.T, 0), norm=LogNorm(1, counts.max()), cmap=cmap
    )
    ax.figure.colorbar(mesh, ax=ax, label="objects per cell")


def plot_zphot_vs_zspec(
    z_phot: np.ndarray, z_spec: np.ndarray, path: str, title: str = "", point: str = "mode"
) -> str:
    """Density of z_phot (the PDF's ``point`` estimate) against z_spec with the 1:1 line and
    the |dz| = 0.15 outlier lines."""
    z_phot, z_spec = np.asarray(z_phot, float), np.asarray(z_spec, float)
    top = max(float(np.nanmax(z_spec, initial=0.0)), float(np.nanmax(z_phot, initial=0.0)), 0.1)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    _density(ax, z_spec, z_phot, (0, top), (0, top), "viridis")
    line = np.array([0.0, top])
    ax.plot(line, line, "k-", lw=0.8, label="z_phot = z_spec")
    for sign in (1, -1):
        ax.plot(line, line + sign * OUTLIER_DZ * (1 + line), "r--", lw=0.8)
    ax.plot([], [], "r--", lw=0.8, label=f"|dz| = {OUTLIER_DZ}")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="z_spec (true redshift)")
    ax.set(ylabel=f"z_phot (PDF {point})", title=title or "z_phot vs z_spec")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _running_percentiles(x: np.ndarray, y: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """(K, 4) rows of (median x, P15.9 y, median y, P84.1 y) in bins of equal counts of x."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n_bins = min(n_bins, x.size // 20)
    if n_bins < 1:
        return np.empty((0, 4))
    order = np.argsort(x)
    rows = [
        [np.median(x[part]), *np.percentile(y[part], [15.9, 50.0, 84.1])]
        for part in np.array_split(order, n_bins)
    ]
    return np.asarray(rows)


def _plot_dz(x: np.ndarray, dz: np.ndarray, path: str, xlabel: str, title: str) -> str:
    """dz against x: density, running median and 68% band, and the outlier lines."""
    x, dz = np.asarray(x, float), np.asarray(dz, float)
    finite_x = x[np.isfinite(x)]
    x_range = (float(finite_x.min()), float(finite_x.max())) if finite_x.size else (0.0, 1.0)
    if x_range[1] <= x_range[0]:
        x_range = (x_range[0] - 0.5, x_range[0] + 0.5)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    _density(ax, x, dz, x_range, (-DZ_LIMIT, DZ_LIMIT), "Greys")
    run = _running_percentiles(x, dz)
    if run.size:
        ax.fill_between(run[:, 0], run[:, 1], run[:, 3], color="C0", alpha=0.3, label="68% band")
        ax.plot(run[:, 0], run[:, 2], "C0-", lw=1.5, label="running median")
    ax.axhline(0.0, color="k", lw=0.8)
    for sign in (1, -1):
        ax.axhline(sign * OUTLIER_DZ, color="r", ls="--", lw=0.8)
    ax.set(xlim=x_range, ylim=(-DZ_LIMIT, DZ_LIMIT), xlabel=xlabel)
    ax.set(ylabel="dz = (z_phot - z_spec) / (1 + z_spec)", title=title)
    if run.size:
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_dz_vs_zspec(z_phot: np.ndarray, z_spec: np.ndarray, path: str, title: str = "") -> str:
    """Scaled residual dz against the true redshift, with running median and 68% band."""
    dz = scaled_residual(z_phot, z_spec)
    return _plot_dz(z_spec, dz, path, "z_spec (true redshift)", title or "dz vs z_spec")


def plot_dz_vs_mag(
    z_phot: np.ndarray,
    z_spec: np.ndarray,
    mag: np.ndarray,
    path: str,
    band: str = "i",
    title: str = "",
) -> str:
    """Scaled residual dz against the ``band`` AB magnitude, with running median and 68% band."""
    dz = scaled_residual(z_phot, z_spec)
    return _plot_dz(mag, dz, path, f"{band} (AB mag)", title or f"dz vs {band} magnitude")


def plot_pit_histogram(pit_values: np.ndarray, path: str, title: str = "", bins: int = 50) -> str:
    """Histogram of PIT values (density) against the uniform density 1 of calibrated PDFs."""
    u = np.asarray(pit_values, float)
    u = u[np.isfinite(u)]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    if u.size:
        ax.hist(u, bins=bins, range=(0, 1), density=True, color="C0", alpha=0.7)
        m = pit_metrics(u)
        text = f"KS = {m['pit_ks']:.3f}\nCvM omega^2 = {m['pit_cvm']:.2e}"
        ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=8)
    else:
        _no_data(ax, "PIT values")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="uniform (calibrated)")
    ax.set(xlim=(0, 1), xlabel="PIT = CDF(z_spec)", ylabel="density", title=title or "PIT")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_coverage(pit_values: np.ndarray, path: str, title: str = "") -> str:
    """Observed against expected coverage of central credible intervals (from the PIT)."""
    u = np.asarray(pit_values, float)
    u = u[np.isfinite(u)]
    levels = np.linspace(0.0, 1.0, 101)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    if u.size:
        ax.plot(levels, coverage_curve(u, levels), "C0-", lw=1.5, label="observed")
    else:
        _no_data(ax, "PIT values")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credible interval probability content")
    ax.set(ylabel="fraction of z_spec inside", title=title or "interval coverage")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_nz(
    grid: ZGrid,
    pdf: np.ndarray,
    z_phot: np.ndarray,
    z_spec: np.ndarray,
    path: str,
    edges: tuple[float, ...] = TOMO_EDGES,
    title: str = "",
    hist_width: float = 0.05,
) -> str:
    """Stacked PDFs per tomographic bin (in z_phot) against histograms of the true redshifts."""
    st = nz_stacks(pdf, grid, z_phot, z_spec, edges)
    n_bins = st.counts.size
    ncols = min(4, n_bins)
    nrows = math.ceil(n_bins / ncols)
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    hist_edges = np.arange(grid.z_min, grid.z_max + hist_width / 2, hist_width)
    idx = bin_index(z_phot, edges)  # the rows of each stack, as nz_stacks bins them
    for b, ax in enumerate(axes):
        if b >= n_bins:
            ax.set_visible(False)
            continue
        ax.set_title(f"{edges[b]:g} <= z_phot < {edges[b + 1]:g} (n={st.counts[b]})", fontsize=8)
        if st.counts[b] == 0:
            _no_data(ax, "objects")
            continue
        true_hist, _ = np.histogram(np.asarray(z_spec)[idx == b], bins=hist_edges, density=True)
        ax.stairs(true_hist, hist_edges, fill=True, color="0.75", label="true z")
        ax.plot(grid.values, st.stack[b], "C0-", lw=1.2, label="stacked PDFs")
        ax.axvspan(edges[b], edges[b + 1], color="C1", alpha=0.08)
    for ax in axes[-ncols:]:
        ax.set_xlabel("redshift")
    for ax in axes[::ncols]:
        ax.set_ylabel("n(z) (per unit z)")
    filled = [ax for ax, n in zip(axes, st.counts, strict=False) if n > 0]
    if filled:
        filled[0].legend(fontsize=7)
    fig.suptitle(title or "n(z) per tomographic bin")
    return _save(fig, path)


def plot_nz_stacks(
    grid: ZGrid,
    stack: np.ndarray,
    edges: np.ndarray,
    counts: np.ndarray,
    path: str,
    title: str = "",
) -> str:
    """n(z) of each tomographic bin (``stack`` (B, G), per unit z) as one curve per bin on one
    axis, labelled with the bin's z_phot range and row count; empty bins are named, not drawn."""
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.subplots()
    for b, (row, n) in enumerate(zip(stack, counts, strict=True)):
        label = f"{edges[b]:g} <= z_phot < {edges[b + 1]:g}"
        if n > 0:
            ax.plot(grid.values, row, lw=1.2, color=f"C{b % 10}", label=f"{label} (n={n:,})")
        else:
            ax.plot([], [], " ", label=f"{label}: empty")
    ax.set(xlim=(grid.z_min, grid.z_max), xlabel="redshift", ylabel="n(z) (per unit z)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "n(z) per tomographic bin (stacked PDFs)")
    return _save(fig, path)


def plot_training_curves(members: list[dict], path: str, title: str = "") -> str:
    """Training (dashed) and validation (solid) loss per epoch of every ensemble member, one
    colour per member, the best validation epoch marked; ``members`` as in model.json (each
    with a ``history`` of epoch, train_loss and val_loss columns). Losses are the heads'
    negative log-likelihoods (nats per object, plus the autoencoder term)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    drawn = False
    for i, member in enumerate(members):
        history = member.get("history") or {}
        epochs = np.asarray(history.get("epoch", []), dtype=float)
        if not len(epochs):
            continue
        colour = f"C{i % 10}"
        val = np.asarray(history["val_loss"], dtype=float)
        ax.plot(epochs, history["train_loss"], ls="--", lw=1, color=colour)
        ax.plot(epochs, val, lw=1.5, color=colour, label=f"member {i} (seed {member.get('seed')})")
        best = int(np.nanargmin(val))
        ax.plot(epochs[best], val[best], "o", color=colour, ms=4)
        drawn = True
    if not drawn:
        _no_data(ax, "training history")
    else:
        ax.legend(fontsize=7, title="solid: validation, dashed: training", title_fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per object)")
    ax.set_title(title or "training curves")
    return _save(fig, path)


def make_all_plots(
    directory: str,
    grid: ZGrid,
    pdf: np.ndarray,
    z_spec: np.ndarray,
    mag: np.ndarray | None = None,
    flags: np.ndarray | None = None,
    config: EvalConfig | None = None,
    band: str = "i",
    title: str = "",
    stored: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """All evaluation plots of one model into ``directory``; returns the paths written.

    Only scorable rows are plotted (see :func:`raypz.metrics.scorable_rows`). Files:
    zphot_vs_zspec.png, dz_vs_zspec.png, dz_vs_mag.png (with ``mag``), pit.png, coverage.png,
    nz.png. ``config`` (default :class:`~raypz.metrics.EvalConfig`) gives the tomographic bins;
    ``band`` names the magnitude; ``title`` (e.g. the model name) prefixes every plot title.
    ``stored`` point estimates (a catalog's ``z_mode``... columns, as for
    :func:`raypz.metrics.evaluate`) are plotted where given, so the plots show the z_phot that
    the metrics score.
    """
    config = config or EvalConfig()
    keep, _ = scorable_rows(pdf, z_spec, flags)
    pdf = pdf if keep.all() else np.asarray(pdf)[keep]
    z_spec = np.asarray(z_spec, float)[keep]
    z_phot = served_point_estimates(
        pdf, grid, config.point_estimate, keep, stored, config.chunk_rows
    )
    u = pit(pdf, grid, z_spec, config.chunk_rows)
    prefix = f"{title}: " if title else ""

    def path(name: str) -> str:
        return io.join(directory, name)

    written = [
        plot_zphot_vs_zspec(
            z_phot,
            z_spec,
            path("zphot_vs_zspec.png"),
            f"{prefix}z_phot vs z_spec",
            config.point_estimate,
        ),
        plot_dz_vs_zspec(z_phot, z_spec, path("dz_vs_zspec.png"), f"{prefix}dz vs z_spec"),
    ]
    if mag is not None:
        mag = np.asarray(mag, float)[keep]
        written.append(
            plot_dz_vs_mag(
                z_phot, z_spec, mag, path("dz_vs_mag.png"), band, f"{prefix}dz vs {band}"
            )
        )
    written += [
        plot_pit_histogram(u, path("pit.png"), f"{prefix}PIT"),
        plot_coverage(u, path("coverage.png"), f"{prefix}interval coverage"),
        plot_nz(grid, pdf, z_phot, z_spec, path("nz.png"), config.tomo_edges, f"{prefix}n(z)"),
    ]
    return written
