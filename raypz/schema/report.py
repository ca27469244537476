"""What validation found: per-row problem counts and a summary for logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowProblems:
    """Counts of rows with each per-row problem; a row may count under several.

    Attributes:
        flagged_rows: rows with at least one of the problems below.
        nonfinite_coords: rows whose coordinates are NaN, null or infinite (no sky position).
        all_bands_missing: rows whose flux is non-finite in every band (no PDF possible).
        nonfinite_flux: per band, rows whose flux is NaN, null or infinite (masked band).
        bad_flux_err: per band, rows with a finite flux whose error is not finite and > 0.
        absurd_flux: per band, rows with a finite ``|flux| > 1e12`` nJy (brighter than mag 1.4).
        missing_redshift: rows whose label is not finite; None when labels are not checked.
        redshift_out_of_range: rows with a finite label outside [0, 10]; None when not checked.
    """

    flagged_rows: int
    nonfinite_coords: int
    all_bands_missing: int
    nonfinite_flux: dict[str, int]
    bad_flux_err: dict[str, int]
    absurd_flux: dict[str, int]
    missing_redshift: int | None
    redshift_out_of_range: int | None

    def __add__(self, other: RowProblems) -> RowProblems:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + b

        def add_bands(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {band: a[band] + b[band] for band in a}

        return RowProblems(
            flagged_rows=self.flagged_rows + other.flagged_rows,
            nonfinite_coords=self.nonfinite_coords + other.nonfinite_coords,
            all_bands_missing=self.all_bands_missing + other.all_bands_missing,
            nonfinite_flux=add_bands(self.nonfinite_flux, other.nonfinite_flux),
            bad_flux_err=add_bands(self.bad_flux_err, other.bad_flux_err),
            absurd_flux=add_bands(self.absurd_flux, other.absurd_flux),
            missing_redshift=add(self.missing_redshift, other.missing_redshift),
            redshift_out_of_range=add(self.redshift_out_of_range, other.redshift_out_of_range),
        )


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_dataset` found in an input that meets the contract.

    Attributes:
        path: the input validated.
        files: number of table files (Parquet or FITS).
        rows: number of rows (from the files' footers or headers).
        bands: the bands checked, in order.
        problems: per-row problem counts; None when rows were not read (``check_rows=False``).
    """

    path: str
    files: int
    rows: int
    bands: tuple[str, ...]
    problems: RowProblems | None

    def summary(self) -> str:
        """A few human-readable lines for logs and job summaries: the counts, then one line
        per kind of problem that some row has (a clean table gets one line)."""
        head = f"{self.path}: {self.files} files, {self.rows:,} rows"
        p = self.problems
        if p is None:
            return head + " (schemas checked; rows not read)"
        share = p.flagged_rows / self.rows if self.rows else 0.0
        lines = [f"{head}; {p.flagged_rows:,} rows ({share:.2%}) with a per-row problem"]
        for label, count in (
            ("non-finite coordinates:", p.nonfinite_coords),
            ("all bands missing:", p.all_bands_missing),
            ("missing redshift:", p.missing_redshift or 0),
            ("redshift outside [0, 10]:", p.redshift_out_of_range or 0),
        ):
            if count:
                lines.append(f"  {label:<26}{count:,}")
        for label, counts in (
            ("non-finite flux:", p.nonfinite_flux),
            ("bad flux error:", p.bad_flux_err),
            ("absurd flux:", p.absurd_flux),
        ):
            if any(counts[b] for b in self.bands):
                per_band = "  ".join(f"{b}={counts[b]:,}" for b in self.bands)
                lines.append(f"  {label:<26}{per_band}")
        return "\n".join(lines)
