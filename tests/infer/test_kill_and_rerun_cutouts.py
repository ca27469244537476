"""A real interruption of a shard-joined image inference: jobs/infer_lsst.py --cutouts STORE
killed (SIGKILL to its process group) mid-run, rerun (issue 15).

The input is a wide field of 4 object files (Parquet, 1000 rows each) whose 6 x 32 x 32 cutouts
live apart, in a FITS cutout store co-partitioned with them (``shard-0000N.fits``, rows
shuffled within a file, as the simulator writes them); the job joins each object file with its
cutout file inside the Ray Data stream. The model is a CNN of one member, trained in-process for
one epoch on the first file's joined rows, wide enough (stem 64, blocks 128/192/256: ~1.2 s per
1000 rows on one thread here) that with one predictor actor and batches of 250 rows the predict
stage lasts seconds and stages each file in several fragments.
As in tests/infer/test_kill_and_rerun.py, the driver and the whole embedded Ray are SIGKILLed
during the predict stage, here as soon as one input file is fully staged and another in part;
the test asserts that the kill hit the predict stage (some files finished, others not, one
staged in part, no summary). The same command then runs again: it must skip exactly the
finished files, drop the partial fragments and predict only the others' rows, count every row's
cutout as joined, and write a catalog with every objectId once, whose PDFs, summaries and flags
are those of the in-process predictor over the same joined rows (what an uninterrupted run
stores). About 75 s on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray_nodes import (
    assert_catalog_matches_predictor,
    assert_rerun_finished_the_rest,
    kill_job_when,
    rerun_job,
    staged_so_far,
)

from raypz.cutout_store import CutoutStore
from raypz.infer import staging
from raypz.infer.predictor import input_columns
from raypz.models import ImageNetConfig, load_artifact
from raypz.object_stream import CutoutJoin, read_object_file
from raypz.sim import SurveyConfig
from raypz.sim.survey import CUTOUT_DIR, write_shard
from raypz.tables import list_table_files

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find pids"),
]

N_FILES = 4  # object files of ROWS rows, each with its FITS cutout file
ROWS = 1000
CUTOUT = 32  # pixels on a side
IMAGE = ImageNetConfig(stem_channels=64, blocks=(128, 192, 256))  # ~1.2 s per 1000 rows
JOB_S = 180.0  # either run taking longer is stuck


@pytest.fixture(scope="module")
def fits_survey(tmp_path_factory) -> tuple[Path, Path]:
    """(object table, FITS cutout store): 4 wide-field object files and their cutout files."""
    objects = tmp_path_factory.mktemp("fits_survey") / "objects"
    config = SurveyConfig(
        n_objects=N_FILES * ROWS,
        seed=41,
        field="wide",
        cutouts=True,
        cutout_size=CUTOUT,
        rows_per_shard=ROWS,
        cutout_layout="fits",
    )
    for i in range(config.n_shards):
        write_shard(config, i, str(objects))
    store = objects / CUTOUT_DIR  # the default store, marked so it is not read as objects
    assert sorted(p.name for p in store.glob("*.fits")) == [
        f"shard-{i:05d}.fits" for i in range(N_FILES)
    ]
    return objects, store


def _joined(objects: Path, store: Path, path: str, columns: list[str]) -> pa.Table:
    """The rows of object file ``path`` with their cutouts joined from the store, read
    in-process as the job's read tasks read them (``columns`` of the object table)."""
    join = CutoutJoin(CutoutStore.open(str(store)), "cutout", (6, CUTOUT, CUTOUT))
    return pa.concat_tables(read_object_file(path, str(objects), columns, join))


@pytest.fixture(scope="module")
def image_model(fits_survey, tmp_path_factory) -> str:
    """A one-member CNN, fitted in-process (no Ray) for one epoch on the first object file's
    rows joined with their FITS cutouts; its artifact directory."""
    from raypz.features import FeatureTransform, flux_arrays
    from raypz.features.cutouts import CutoutStretch
    from raypz.models import save_artifact
    from raypz.models.reference import TrainingReference
    from raypz.pdf import ZGrid
    from raypz.train import TrainConfig
    from raypz.train.labelled import member_rows
    from raypz.train.member import MemberSpec, TableBatches, train_member

    objects, store = fits_survey
    first = list_table_files(str(objects))[0]
    table = _joined(objects, store, first, pq.read_schema(first).names)
    config = TrainConfig(members=1, epochs=1, batch_size=128, seed=3, grid=ZGrid(), image=IMAGE)
    flux, err = flux_arrays(table)
    transform = FeatureTransform.fit(flux, err)
    stretch = CutoutStretch.fit(table["cutout"].combine_chunks().to_numpy_ndarray())
    reference = TrainingReference.fit(transform.transform_fluxes(flux, err)[0], rows=1024)
    train, val = (TableBatches(member_rows(table, config, None, w)) for w in (True, False))
    spec = MemberSpec(config, transform, config.seed, cutouts=stretch)
    result = train_member(spec, train, val, device="cpu")
    path = str(tmp_path_factory.mktemp("image_model"))
    save_artifact(
        path,
        name="cnn",
        transform=transform,
        grid=config.grid,
        net_config=IMAGE,
        states=[result.best_state],
        members=[{"seed": config.seed, "fold": None, "epochs_run": result.epochs_run}],
        training={"config": config.to_dict(), "note": "fitted in-process by this test"},
        metrics={},
        cutouts=stretch,
        reference=reference,
    )
    return path


def _job(objects: Path, store: Path, model: str, out: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(objects),
        "--cutouts", str(store),
        "--model", model,
        "--output", str(out),
        "--validate", "schema",
        "--batch-size", "250",
        "--concurrency", "1",
    ]  # fmt: skip


def test_killed_cutout_store_job_rerun_is_exactly_once(tmp_path, fits_survey, image_model):
    objects, store = fits_survey
    files = list_table_files(str(objects))  # the job's input file numbering
    assert len(files) == N_FILES  # the cutout store is not read as object files
    expected = [pq.read_metadata(f).num_rows for f in files]
    rows = sum(expected)
    out = tmp_path / "catalog"
    root = Path(staging.staging_root(str(out)))
    observed: dict[str, object] = {"rows": rows, "files": N_FILES}
    job = _job(objects, store, image_model, out)
    seen: dict[Path, tuple[int, int]] = {}

    def a_file_done_the_next_under_way() -> bool:
        finished, in_part = staged_so_far(root, expected, seen)
        return finished > 0 and in_part > 0

    observed["s_to_kill"] = kill_job_when(
        job, REPO, tmp_path / "killed.log", a_file_done_the_next_under_way, JOB_S
    )

    # What the kill left: the predict stage under way, some files finished, others not.
    assert not (out / "raypz_run_summary.json").exists()
    done, partial = staging.finished_sources(str(root), expected, "objectId")
    observed["finished_at_kill"] = sorted(done)
    observed["fragments_of_unfinished_files"] = len(partial)
    assert 1 <= len(done) < N_FILES, f"not killed mid-predict: {observed}"
    assert partial, f"no file staged in part at the kill: {observed}"  # the rerun deletes them

    observed["rerun_s"] = rerun_job(job, REPO, tmp_path / "rerun.log", JOB_S)
    summary = assert_rerun_finished_the_rest(out, expected, done, observed)
    counts = summary["cutouts"]  # the join is counted over every input file, skipped or not
    assert counts["objects"] == counts["matched"] == rows, counts
    assert counts["without_cutout"] == counts["cutouts_without_object"] == 0, counts
    assert Path(counts["store"]).resolve() == store.resolve()
    assert summary["flagged"]["no_cutout"] == 0

    # The reference: the in-process predictor over the same rows, joined in-process from the
    # FITS store and written as Parquet with the cutout column (what a "column" layout holds).
    joined = tmp_path / "joined"
    joined.mkdir()
    columns = [c for c in input_columns(load_artifact(image_model)) if c != "cutout"]
    for i, path in enumerate(files):
        pq.write_table(_joined(objects, store, path, columns), joined / f"part-{i:03d}.parquet")
    assert assert_catalog_matches_predictor(out, joined, image_model) == rows
