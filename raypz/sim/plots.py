"""Figures and headline numbers of the simulated survey (the ones in docs/simulation.md).

:func:`simulation_figures` simulates, in-process and with fixed seeds, a wide y10 sample
(``n_objects`` rows), a deep y10 and a wide y1 sample (half as many each), a
spectroscopic-like wide sample and a few cutouts, writes ``sim_nz.png``, ``sim_counts.png``,
``sim_colours.png``, ``sim_snr.png`` and ``sim_cutouts.png`` and returns the numbers quoted in
the docs. ``jobs/plot_simulation.py`` is its command line.
"""

from __future__ import annotations

import io as _bytes_io

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from raypz import io
from raypz.columns import BANDS, DEFAULT_COLUMNS, flux_to_mag
from raypz.sim.catalog import written_per_deg2
from raypz.sim.config import SurveyConfig
from raypz.sim.photometry import noise_model
from raypz.sim.shard import simulate_shard

DPI = 90
TYPE_CLASSES = (
    ("red (El-Sbc)", 0.0, 1.0),
    ("spiral (Sbc-Im)", 1.0, 3.0),
    ("starburst (Im-SB2)", 3.0, 5.1),
)
"""(label, lowest, highest) SED type of the classes shown in the figures."""
COUNT_EDGES = np.arange(18.0, 25.31, 0.5)
"""i-band magnitude bins (AB) of the number counts."""

C = DEFAULT_COLUMNS


def _save(fig: Figure, path: str) -> str:
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    io.write_bytes_atomic(path, buf.getvalue())
    return path


def _mags(table: pa.Table) -> np.ndarray:
    """Observed AB magnitudes (NaN for non-positive fluxes), shape (n, 6)."""
    return np.stack([flux_to_mag(table[c].to_numpy()) for c in C.flux_columns()], axis=1)


def _type_masks(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    t = table["sed_type"].to_numpy()
    return [(label, (t >= lo) & (t < hi)) for label, lo, hi in TYPE_CLASSES]


def plot_nz(wide: pa.Table, deep: pa.Table, spec: pa.Table, path: str) -> str:
    """n(z) of the wide sample by type class, with the deep and spectroscopic samples."""
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    edges = np.arange(0.0, 3.51, 0.05)
    z = wide[C.redshift].to_numpy()
    ax.hist(z, edges, histtype="step", color="k", lw=2, density=True, label="wide y10, all")
    for label, mask in _type_masks(wide):
        weights = np.full(mask.sum(), 1.0 / (z.size * 0.05))
        ax.hist(z[mask], edges, weights=weights, histtype="step", label=f"wide, {label}")
    for table, label, style in ((deep, "deep y10", "--"), (spec, "wide spec-z sample", ":")):
        ax.hist(
            table[C.redshift].to_numpy(),
            edges,
            histtype="step",
            density=True,
            ls=style,
            color="0.4",
            label=label,
        )
    ax.set(
        xlabel="redshift",
        ylabel="n(z) (normalised)",
        xlim=(0, 3.5),
        title="Redshift distribution, observed i < 25.3",
    )
    ax.legend(fontsize=7)
    return _save(fig, path)


def counts_per_deg2(table: pa.Table, density_deg2: float) -> np.ndarray:
    """Galaxies per deg^2 per 0.5 mag in the bins of :data:`COUNT_EDGES` (observed i)."""
    mag_i = flux_to_mag(table["i_cModelFlux"].to_numpy())
    hist, _ = np.histogram(mag_i, COUNT_EDGES)
    return hist * density_deg2 / table.num_rows


def plot_counts(counts: dict[str, np.ndarray], path: str) -> str:
    """i-band differential number counts per deg^2 per 0.5 mag."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    centres = 0.5 * (COUNT_EDGES[1:] + COUNT_EDGES[:-1])
    for label, values in counts.items():
        ax.semilogy(centres, values, "o-", ms=3, label=label)
    ax.set(
        xlabel="observed i (AB)", ylabel="N per deg$^2$ per 0.5 mag", title="i-band number counts"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_colours(wide: pa.Table, path: str) -> str:
    """g-r, r-i and u-g against redshift: all rows (grey) and the median per type class.

    Rows need S/N > 5 in the redder band; the bluer band's flux is floored at its 1-sigma
    error, so non-detections (e.g. u-band dropouts) enter as lower limits on the colour.
    """
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    flux = np.stack([wide[c].to_numpy() for c in C.flux_columns()], 1)
    err = np.stack([wide[c].to_numpy() for c in C.flux_err_columns()], 1)
    z = wide[C.redshift].to_numpy()
    edges = np.arange(0.0, 3.51, 0.1)
    for ax, (a, b) in zip(axes, (("g", "r"), ("r", "i"), ("u", "g")), strict=True):
        ia, ib = BANDS.index(a), BANDS.index(b)
        good = flux[:, ib] > 5 * err[:, ib]
        colour = flux_to_mag(np.maximum(flux[:, ia], err[:, ia])) - flux_to_mag(flux[:, ib])
        ax.scatter(z[good], colour[good], s=0.3, c="0.75", rasterized=True, lw=0)
        for label, mask in _type_masks(wide):
            sel = good & mask
            idx = np.digitize(z[sel], edges)
            med = [
                np.median(colour[sel][idx == k]) if np.sum(idx == k) > 10 else np.nan
                for k in range(1, edges.size)
            ]
            ax.plot(0.5 * (edges[1:] + edges[:-1]), med, lw=2, label=label)
        ax.set(xlabel="redshift", ylabel=f"{a} - {b}", xlim=(0, 3.5), ylim=(-0.5, 3.5))
    axes[0].legend(fontsize=7)
    fig.suptitle("Observed colours vs redshift, wide y10 (bluer band floored at 1 sigma)")
    return _save(fig, path)


def median_snr_at_m5(table: pa.Table, m5: np.ndarray, half_width: float = 0.1) -> np.ndarray:
    """Median S/N per band of galaxies whose observed magnitude is within m5 +- half_width.

    ``m5`` is the 5-sigma point-source depth per band (AB), shape (6,); returns shape (6,).
    """
    mags = _mags(table)
    out = []
    for b, (flux, err) in enumerate(zip(C.flux_columns(), C.flux_err_columns(), strict=True)):
        snr = table[flux].to_numpy() / table[err].to_numpy()
        near = np.abs(mags[:, b] - m5[b]) < half_width
        out.append(np.median(snr[near]) if near.any() else np.nan)
    return np.array(out)


def plot_snr(samples: dict[str, tuple[pa.Table, np.ndarray]], path: str) -> str:
    """Median S/N per band against observed magnitude, one panel per band.

    ``samples`` maps a label to (table, 5-sigma point-source depths m5 per band); each m5 is
    marked by a tick of the sample's colour on the S/N = 5 line.
    """
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True, sharey=True).ravel()
    edges = np.arange(20.0, 28.51, 0.25)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for label, (table, m5) in samples.items():
        mags = _mags(table)
        for b, ax in enumerate(axes):
            snr = table[C.flux_columns()[b]].to_numpy() / table[C.flux_err_columns()[b]].to_numpy()
            idx = np.digitize(mags[:, b], edges)
            med = [
                np.median(snr[idx == k]) if np.sum(idx == k) > 20 else np.nan
                for k in range(1, edges.size)
            ]
            (line,) = ax.semilogy(centres, med, label=label)
            ax.plot([m5[b]], [5.0], "|", ms=14, mew=2, color=line.get_color())
    for b, ax in enumerate(axes):
        ax.axhline(5.0, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{BANDS[b]} band", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    for ax in axes[3:]:
        ax.set_xlabel("observed magnitude (AB)")
    for ax in axes[::3]:
        ax.set_ylabel("median S/N")
    fig.suptitle("Median S/N of the galaxies (ticks: 5-sigma point-source depth m5)")
    return _save(fig, path)


def plot_cutouts(table: pa.Table, path: str, n: int = 8) -> str:
    """i-band cutouts of the ``n`` brightest rows, with redshift and i magnitude."""
    mag_i = flux_to_mag(table["i_cModelFlux"].to_numpy())
    rows = np.argsort(mag_i)[:n]
    images = table[C.cutout].combine_chunks().to_numpy_ndarray()[rows, BANDS.index("i")]
    z = table[C.redshift].to_numpy()[rows]
    fig = Figure(figsize=(1.4 * n, 1.7))
    for k, ax in enumerate(fig.subplots(1, n)):
        lo, hi = np.percentile(images[k], [1, 99.7])
        ax.imshow(images[k], origin="lower", cmap="gray_r", vmin=lo, vmax=hi)
        ax.set_title(f"z={z[k]:.2f} i={mag_i[rows[k]]:.1f}", fontsize=7)
        ax.set_axis_off()
    return _save(fig, path)


def headline_numbers(
    samples: dict[str, SurveyConfig], tables: dict[str, pa.Table], spec: pa.Table
) -> list[str]:
    """The numbers quoted in docs/simulation.md, one text line each."""
    lines = []
    for label, table in {**tables, "wide spec-z": spec}.items():
        z = table[C.redshift].to_numpy()
        q = " ".join(f"{v:.2f}" for v in np.percentile(z, [10, 25, 50, 75, 90]))
        lines.append(
            f"n(z) {label}: p10/25/50/75/90 = {q}; mean {z.mean():.2f}; "
            f"z>2: {np.mean(z > 2):.3f}; z>3: {np.mean(z > 3):.3f}"
        )
    lines.append(
        "i counts per deg^2 per 0.5 mag from " + " ".join(f"{e:.1f}" for e in COUNT_EDGES[:-1])
    )
    for label, c in samples.items():
        density = written_per_deg2(c.years, c.field, c.mag_limit, False)
        counts = " ".join(f"{v:.0f}" for v in counts_per_deg2(tables[label], density))
        lines.append(f"{label}: {density / 3600:.1f} per arcmin^2 (i < {c.mag_limit}); {counts}")
    for label, c in samples.items():
        m5 = noise_model(c.years, c.field).m5
        snr = median_snr_at_m5(tables[label], m5)
        at_limit = median_snr_at_m5(tables[label], np.full(len(BANDS), c.mag_limit))
        lines.append(
            f"{label}: m5 " + " ".join(f"{b}={m:.2f}" for b, m in zip(BANDS, m5, strict=True))
        )
        lines.append(
            f"{label}: median S/N at m5 "
            + " ".join(f"{b}={v:.1f}" for b, v in zip(BANDS, snr, strict=True))
        )
        lines.append(
            f"{label}: median S/N at {c.mag_limit} "
            + " ".join(f"{b}={v:.1f}" for b, v in zip(BANDS, at_limit, strict=True))
        )
    return lines


def simulation_figures(output: str, n_objects: int = 100_000) -> list[str]:
    """Simulate the samples, write every figure under ``output`` (local or URI) and return the
    headline numbers, one line each."""
    n = n_objects
    samples = {
        "wide y10": SurveyConfig(n_objects=n, seed=1, rows_per_shard=n),
        "deep y10": SurveyConfig(n_objects=n // 2, seed=2, rows_per_shard=n, field="deep"),
        "wide y1": SurveyConfig(n_objects=n // 2, seed=3, rows_per_shard=n, depth="y1"),
    }
    tables = {label: simulate_shard(config, 0) for label, config in samples.items()}
    spec = simulate_shard(SurveyConfig(n_objects=n // 5, seed=4, spec_selection=True), 0)
    cutouts = simulate_shard(SurveyConfig(n_objects=400, seed=5, cutouts=True), 0)
    wide = tables["wide y10"]

    def path(name: str) -> str:
        return io.join(output, name)

    plot_nz(wide, tables["deep y10"], spec, path("sim_nz.png"))
    counts = {
        label: counts_per_deg2(
            tables[label], written_per_deg2(c.years, c.field, c.mag_limit, False)
        )
        for label, c in samples.items()
    }
    plot_counts(counts, path("sim_counts.png"))
    plot_colours(wide, path("sim_colours.png"))
    depths = {
        label: (tables[label], noise_model(c.years, c.field).m5) for label, c in samples.items()
    }
    plot_snr(depths, path("sim_snr.png"))
    plot_cutouts(cutouts, path("sim_cutouts.png"))
    return headline_numbers(samples, tables, spec)
