"""Point-estimate metrics of photometric redshifts (DESIGN 8).

All of them are functions of the scaled residual ``dz = (z_phot - z_spec) / (1 + z_spec)``,
where ``z_phot`` is the PDF mode unless a caller passes another point estimate.
"""

from __future__ import annotations

import numpy as np

OUTLIER_THRESHOLDS: tuple[float, ...] = (0.15, 0.05, 0.02)
"""|dz| thresholds of the outlier fractions eta_0.15, eta_0.05 and eta_0.02."""

MAD_TO_SIGMA = 1.4826
"""sigma = 1.4826 * MAD for a Gaussian."""


def scaled_residual(z_phot: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """``dz = (z_phot - z_spec) / (1 + z_spec)``, shape (N,)."""
    z_spec = np.asarray(z_spec, dtype=np.float64)
    return (np.asarray(z_phot, dtype=np.float64) - z_spec) / (1.0 + z_spec)


def point_metrics(z_phot: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """Bias, scatter and outlier fractions of point estimates, each a float (NaN when N = 0).

    With ``dz`` from :func:`scaled_residual`:

    - ``bias_median`` = median(dz); ``bias_mean`` = mean(dz);
    - ``sigma_mad`` = 1.4826 * median(|dz - median(dz)|);
    - ``sigma68`` = (P84.1(dz) - P15.9(dz)) / 2 (percentiles linearly interpolated);
    - ``eta_0.15``, ``eta_0.05``, ``eta_0.02`` = fraction of rows with |dz| > 0.15, 0.05, 0.02;
    - ``eta_5sigma`` = fraction with |dz| > 5 sigma_mad.

    Args:
        z_phot: (N,) point estimates (redshift).
        z_spec: (N,) true (spectroscopic) redshifts.
    """
    dz = scaled_residual(z_phot, z_spec)
    keys = ["bias_median", "bias_mean", "sigma_mad", "sigma68"]
    keys += [f"eta_{t}" for t in OUTLIER_THRESHOLDS] + ["eta_5sigma"]
    if dz.size == 0:
        return dict.fromkeys(keys, float("nan"))
    median = float(np.median(dz))
    sigma_mad = MAD_TO_SIGMA * float(np.median(np.abs(dz - median)))
    p_lo, p_hi = np.percentile(dz, [15.9, 84.1])
    abs_dz = np.abs(dz)
    values = [median, float(np.mean(dz)), sigma_mad, float(p_hi - p_lo) / 2.0]
    values += [float(np.mean(abs_dz > t)) for t in OUTLIER_THRESHOLDS]
    values.append(float(np.mean(abs_dz > 5.0 * sigma_mad)))
    return dict(zip(keys, values, strict=True))
