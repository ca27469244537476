"""A HATS object catalog written by lsdb (a collection, with a margin cache) is an inference
input: its partition files are the sources, margin rows are not read, the output opens in lsdb."""

from __future__ import annotations

from pathlib import Path

import hats
import lsdb
import numpy as np
import pytest

from raypz import tables
from raypz.infer import InferConfig, run_inference
from raypz.schema import validate_dataset
from raypz.sim import SurveyConfig, simulate_shard

# 30 deg^2 so that 3000 objects spread over several HEALPix partitions of <= 800 rows
SURVEY = SurveyConfig(n_objects=3000, seed=17, area_deg2=30.0)
CONFIG = InferConfig(max_rows_per_partition=1000, batch_size=1024)


@pytest.fixture(scope="module")
def hats_input(tmp_path_factory):
    """The simulated object table as an lsdb collection (catalog + 5 arcsec margin cache)."""
    frame = simulate_shard(SURVEY, 0).to_pandas()
    catalog = lsdb.from_dataframe(
        frame,
        ra_column="coord_ra",
        dec_column="coord_dec",
        partition_rows=800,
        catalog_name="objects",
        margin_threshold=5.0,
    )
    root = tmp_path_factory.mktemp("hats_input") / "objects"
    catalog.write_catalog(root, progress_bar=False)
    return root, frame


def _partition_files(root: Path) -> list[Path]:
    return sorted((root / "objects" / "dataset").rglob("Npix=*.parquet"))


def test_the_input_is_a_collection_with_a_margin(hats_input):
    root, frame = hats_input
    assert (root / "collection.properties").exists()
    margin = sorted(root.glob("objects_*arcs/dataset/**/Npix=*.parquet"))
    assert margin, "lsdb wrote no margin cache; the test would not show it is skipped"
    files = tables.list_table_files(str(root))
    assert [Path(f) for f in files] == _partition_files(root)
    assert len(files) == len(hats.read_hats(root / "objects").get_healpix_pixels()) > 2
    report = validate_dataset(str(root))
    assert report.rows == len(frame) and report.files == len(files)


def test_inference_over_hats_partitions(ray_session, hats_input, small_model, tmp_path):
    root, frame = hats_input
    out = str(tmp_path / "photoz")
    summary = run_inference(str(root), small_model, out, CONFIG)
    assert summary.sources == len(_partition_files(root))
    assert summary.rows_in == summary.rows_out == len(frame)

    result = lsdb.open_catalog(out).compute()
    ids = result["objectId"].to_numpy()
    assert len(ids) == len(np.unique(ids)) == len(frame)
    assert set(ids) == set(frame["objectId"])
