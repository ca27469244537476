"""raypz.predictions.crossmatch_catalog: the PDF catalog matched on the sky through lsdb."""

from __future__ import annotations

import lsdb
import numpy as np
import pytest

from raypz.predictions import crossmatch_catalog

SHIFT_ARCSEC = 0.3


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, patch_rows, write_catalog) -> str:
    root = str(tmp_path_factory.mktemp("xmatch") / "photoz")
    write_catalog(patch_rows, root)
    return root


def test_a_catalog_matched_with_itself_finds_every_object_at_zero_distance(catalog, patch_rows):
    with pytest.warns(RuntimeWarning, match="margin cache"):  # lsdb's, passed on
        lazy = crossmatch_catalog(
            catalog, catalog, columns=["objectId", "z_mode"], other_columns=["objectId"]
        )
    matched = lazy.compute(progress_bar=False)
    assert sorted(matched["objectId_pz"]) == sorted(patch_rows["objectId"].to_pylist())
    assert (matched["objectId_pz"] == matched["objectId_other"]).all()
    assert matched["_dist_arcsec"].max() < 1e-6
    assert "z_mode" in matched.columns and "pdf" not in matched.columns


def test_a_shifted_truth_table_matches_at_the_shift(catalog, patch_rows):
    """An lsdb catalog made from a table (positions moved north by SHIFT_ARCSEC), with a margin
    cache, as the other side: each object finds its own row, at the shift; a radius below the
    shift finds none."""
    truth = patch_rows.select(["objectId", "coord_ra", "coord_dec"]).to_pandas()
    truth["coord_dec"] += SHIFT_ARCSEC / 3600.0
    truth["z_true"] = truth["objectId"] * 1e-4  # a column only the truth has
    other = lsdb.from_dataframe(
        truth, ra_column="coord_ra", dec_column="coord_dec", margin_threshold=5.0
    )
    matched = crossmatch_catalog(catalog, other, columns=["objectId"]).compute(progress_bar=False)
    assert len(matched) == len(truth)
    assert (matched["objectId_pz"] == matched["objectId_other"]).all()
    np.testing.assert_allclose(matched["_dist_arcsec"], SHIFT_ARCSEC, rtol=1e-4)
    np.testing.assert_array_equal(matched["z_true"], matched["objectId_pz"] * 1e-4)
    none = crossmatch_catalog(catalog, other, radius_arcsec=0.1, columns=["objectId"])
    assert len(none.compute(progress_bar=False)) == 0
