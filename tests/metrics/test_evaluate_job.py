"""jobs/evaluate.py end to end on tiny synthetic tables, run in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz import flags as fl
from raypz.columns import DEFAULT_COLUMNS as C
from raypz.columns import flux_to_mag
from raypz.evaluation import EvaluationRequest, evaluate_predictions
from raypz.metrics import EvalConfig, evaluate
from raypz.pdf import ZGrid, normalize
from raypz.predictions import predictions_table, read_predictions
from raypz.schema import ContractError

GRID = ZGrid(0.0, 3.0, 301)
JOB = Path(__file__).resolve().parents[2] / "jobs" / "evaluate.py"


def load_job():
    spec = importlib.util.spec_from_file_location("evaluate_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def object_table(rng: np.random.Generator, ids: np.ndarray) -> pa.Table:
    """Objects whose colours are linear in redshift (fluxes in nJy, 2% errors)."""
    n = ids.size
    z = rng.uniform(0.1, 2.0, n)
    flux = rng.uniform(2e3, 2e4, n)[:, None] * np.exp(-np.outer(z, np.arange(6)) / 3.0)
    err = 0.02 * flux
    cols = {C.object_id: ids, C.ra: rng.uniform(0, 10, n), C.dec: rng.uniform(-5, 5, n)}
    for j, (f, e) in enumerate(zip(C.flux_columns(), C.flux_err_columns(), strict=True)):
        cols[f] = flux[:, j] + err[:, j] * rng.standard_normal(n)
        cols[e] = err[:, j]
    cols[C.redshift] = z
    return pa.table(cols)


def gaussian_predictions(rng, ids, z_true, width) -> pa.Table:
    sigma = width * (1 + z_true)
    mu = z_true + sigma * rng.standard_normal(z_true.size)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - mu[:, None]) / sigma[:, None]) ** 2), GRID)
    flags = np.zeros(ids.size, np.int32)
    flags[:3] = fl.NO_PDF
    pdf[:3] = 0.0
    return predictions_table(ids, pdf, GRID, flags=flags)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("evaluate_job")
    truth = object_table(rng, np.arange(1000, 1600))
    pq.write_table(truth, root / "truth.parquet")
    pq.write_table(object_table(rng, np.arange(5000, 7000)), root / "train.parquet")
    z = truth[C.redshift].to_numpy()
    # predictions for the first 550 truth objects plus 5 objects the truth does not have
    ids = np.r_[np.arange(1000, 1550), np.arange(9000, 9005)]
    z_pred = np.r_[z[:550], rng.uniform(0.1, 2.0, 5)]
    (root / "ens").mkdir()
    table = gaussian_predictions(rng, ids, z_pred, 0.03)
    pq.write_table(table.slice(0, 300), root / "ens" / "part-0.parquet")
    pq.write_table(table.slice(300), root / "ens" / "part-1.parquet")
    wide = gaussian_predictions(rng, ids[:400], z_pred[:400], 0.08)
    pq.write_table(wide, root / "wide.parquet")
    return {"root": root, "truth": truth, "ens": table}


def test_job_writes_metrics_report_and_plots(inputs, capsys):
    root = inputs["root"]
    report = root / "report"
    argv = ["--predictions", str(root / "ens"), "--truth", str(root / "truth.parquet")]
    argv += ["--report", str(report), "--name", "ensemble", "--train", str(root / "train.parquet")]
    argv += ["--compare", "wide model=" + str(root / "wide.parquet")]
    assert load_job().main(argv) == 0

    payload = json.loads((report / "metrics.json").read_text())
    assert list(payload["models"]) == ["ensemble", "wide model", "knn"]
    facts = payload["inputs"]
    assert facts["test rows (in predictions and truth)"] == 550
    assert facts["prediction rows without truth (not read)"] == 5
    assert facts["truth rows without prediction"] == 50
    assert facts["wide model: test rows without prediction (not scored)"] == 150

    # the job's numbers are those of the metric functions on the joined rows
    ens = inputs["ens"].slice(0, 550)
    pdf = np.stack(ens["pdf"].to_numpy(zero_copy_only=False)).astype(np.float32)
    truth = inputs["truth"].slice(0, 550)
    expected = evaluate(
        GRID,
        pdf,
        truth[C.redshift].to_numpy(),
        mag=flux_to_mag(truth["i_cModelFlux"].to_numpy()),
        flags=ens["flags"].to_numpy(),
        stored={"mode": ens["z_mode"].to_numpy(zero_copy_only=False)},  # float32, as served
    )
    got = payload["models"]["ensemble"]
    assert got["n_no_pdf"] == 3 and got["n_scored"] == 547
    for key in ("sigma_mad", "bias_median", "eta_0.05", "crps_mean", "pit_ks", "coverage_68"):
        assert got["overall"][key] == pytest.approx(expected["overall"][key], rel=1e-6)
    assert got["binned"]["mag"]["bins"][5]["n"] == expected["binned"]["mag"]["bins"][5]["n"]
    assert payload["models"]["wide model"]["n_rows"] == 400
    knn = payload["models"]["knn"]["overall"]
    assert knn["n"] == 550 and knn["sigma_mad"] < 0.05

    text = (report / "report.md").read_text()
    assert "| metric | ensemble | wide model | knn |" in text
    pngs = sorted(p.relative_to(report).as_posix() for p in report.rglob("*.png"))
    assert len(pngs) == 18 and "ensemble/pit.png" in pngs and "wide_model/nz.png" in pngs
    assert all(f"]({p})" in text for p in pngs)
    out = capsys.readouterr().out
    assert "| metric | ensemble | wide model | knn |" in out
    assert "evaluation written to " in out and "metrics.json, report.md and " in out


def test_job_scores_the_chosen_point_estimate(inputs):
    root = inputs["root"]
    report = root / "report-median"
    argv = ["--predictions", str(root / "ens"), "--truth", str(root / "truth.parquet")]
    argv += ["--report", str(report), "--point-estimate", "median", "--no-plots"]
    assert load_job().main(argv) == 0
    got = json.loads((report / "metrics.json").read_text())["models"]["model"]
    ens, truth = inputs["ens"].slice(0, 550), inputs["truth"].slice(0, 550)
    pdf = np.stack(ens["pdf"].to_numpy(zero_copy_only=False)).astype(np.float32)
    expected = evaluate(
        GRID,
        pdf,
        truth[C.redshift].to_numpy(),
        flags=ens["flags"].to_numpy(),
        config=EvalConfig(point_estimate="median"),
    )
    assert got["point_estimate"] == "median"
    assert got["overall"]["sigma_mad"] == pytest.approx(expected["overall"]["sigma_mad"])
    assert "z_phot = PDF median" in (report / "report.md").read_text()


def test_job_rejects_clashing_names():
    argv = ["--predictions", "p", "--truth", "t", "--report", "r", "--compare", "model=x"]
    with pytest.raises(SystemExit):
        load_job().main(argv)


def test_a_compared_models_unmatched_and_repeated_rows_are_counted(inputs, tmp_path):
    """As for the main model: rows without a test row, and repeated ids (the first is scored)."""
    root, ens = inputs["root"], inputs["ens"]
    # ids 1000-1039 twice, and the 5 ids (9000-9004) that the truth does not have
    pq.write_table(pa.concat_tables([ens.slice(0, 40), ens.slice(0, 40), ens.slice(550)]),
                   tmp_path / "other.parquet")
    argv = ["--predictions", str(root / "ens"), "--truth", str(root / "truth.parquet")]
    argv += ["--report", str(tmp_path / "report"), "--no-plots"]
    argv += ["--compare", "other=" + str(tmp_path / "other.parquet")]
    assert load_job().main(argv) == 0
    facts = json.loads((tmp_path / "report" / "metrics.json").read_text())["inputs"]
    assert facts["other: prediction rows without a test row (not read)"] == 5
    assert facts["other: duplicate objectId rows (first used)"] == 40
    assert facts["other: test rows without prediction (not scored)"] == 510


def test_a_null_truth_id_is_refused_naming_file_and_column(inputs, tmp_path):
    """One null would turn the ids into floats, merging distinct 64-bit ids."""
    truth = inputs["truth"]
    ids = pa.array([None, *truth[C.object_id].to_pylist()[1:]], pa.int64())
    pq.write_table(truth.set_column(0, C.object_id, ids), tmp_path / "truth.parquet")
    request = EvaluationRequest(
        predictions=str(inputs["root"] / "ens"),
        truth=str(tmp_path / "truth.parquet"),
        report=str(tmp_path / "report"),
        plots=False,
    )
    with pytest.raises(ContractError, match=r"truth\.parquet: column 'objectId': 1 null values"):
        evaluate_predictions(request)


def test_prediction_files_share_one_grid_and_any_integer_id_type(inputs, tmp_path):
    ens = inputs["ens"]
    (tmp_path / "mixed").mkdir()
    pq.write_table(ens.slice(0, 100), tmp_path / "mixed" / "a.parquet")
    b = ens.slice(100, 100)
    b = b.set_column(0, "objectId", b["objectId"].cast(pa.int32()))  # a writer's int32 ids
    pq.write_table(b, tmp_path / "mixed" / "b.parquet")
    pred = read_predictions(str(tmp_path / "mixed"))
    assert pred.object_id.dtype == np.int64 and len(pred.object_id) == 200

    coarse = ZGrid(0.0, 6.0, 61)  # decoded on the first file's grid, its PDFs would be wrong
    pdf = normalize(np.ones((3, coarse.n)), coarse)
    other = predictions_table(np.array([1, 2, 3]), pdf, coarse)
    pq.write_table(other, tmp_path / "mixed" / "c.parquet")
    with pytest.raises(ValueError, match=r"c\.parquet: z grid .* differs"):
        read_predictions(str(tmp_path / "mixed"))


def test_only_the_asked_ids_are_read_file_by_file(inputs, tmp_path):
    """An evaluation reads a catalog's rows of its spec-z sample only: the same rows, PDFs and
    columns as the whole read restricted to them, in the files' order; the rest counted."""
    ens = inputs["ens"]
    (tmp_path / "cat").mkdir()
    pq.write_table(ens.slice(0, 200), tmp_path / "cat" / "a.parquet")
    b = ens.slice(200, 200)
    pq.write_table(b.set_column(0, "objectId", b["objectId"].cast(pa.int32())),
                   tmp_path / "cat" / "b.parquet")
    pq.write_table(ens.slice(400), tmp_path / "cat" / "c.parquet")
    whole = read_predictions(str(tmp_path / "cat"))
    assert whole.n_not_kept == 0

    asked = np.array([9004, 1399, 1000, 1200, 1201, 1200, 77, 1549])  # any order, repeats, absent
    some = read_predictions(str(tmp_path / "cat"), only_ids=asked)
    rows = np.flatnonzero(np.isin(whole.object_id, asked))
    np.testing.assert_array_equal(some.object_id, whole.object_id[rows])
    np.testing.assert_array_equal(some.object_id, [1000, 1200, 1201, 1399, 1549, 9004])
    np.testing.assert_array_equal(some.pdf, whole.pdf[rows])
    expected = whole.table.take(rows)
    assert some.table.column_names == expected.column_names
    for name in expected.column_names:  # NaN summaries of the NO_PDF rows compare equal here
        np.testing.assert_array_equal(some.table[name].to_numpy(), expected[name].to_numpy())
    assert some.n_not_kept == ens.num_rows - rows.size

    none = read_predictions(str(tmp_path / "cat"), only_ids=np.array([], np.int64))
    assert none.object_id.size == 0 and none.pdf.shape == (0, GRID.n)
    assert none.n_not_kept == ens.num_rows


def test_a_catalog_is_scored_on_the_point_estimates_it_serves(tmp_path):
    """Compact PDFs quantise the peak flat over a few grid points, and the decoded PDF's
    argmax is the first of them: ~0.004 low. The evaluation scores the catalog's own z_mode
    (and z_median...), computed from the full-precision PDFs, as the catalog serves them."""
    from raypz import compact
    from raypz.metrics import point_metrics

    rng = np.random.default_rng(3)
    grid, n = ZGrid(0.0, 3.5, 701), 3000
    ids = np.arange(n)
    truth = object_table(rng, ids)
    z_true = truth[C.redshift].to_numpy()
    mu = z_true + 0.03 * (1 + z_true) * rng.standard_normal(n)
    sigma = 0.03 * (1 + mu[:, None])
    pdf = normalize(np.exp(-0.5 * ((grid.values - mu[:, None]) / sigma) ** 2), grid)
    table = predictions_table(ids, pdf, grid)  # summaries of the full-precision PDFs
    start, values = compact.encode(pdf)
    table = table.drop_columns(["pdf"]).append_column("pdf_start", pa.array(start))
    pq.write_table(table.append_column("pdf", values), tmp_path / "catalog.parquet")
    pq.write_table(truth, tmp_path / "truth.parquet")

    request = EvaluationRequest(
        str(tmp_path / "catalog.parquet"), str(tmp_path / "truth.parquet"),
        str(tmp_path / "report"), plots=False,
    )  # fmt: skip
    got = evaluate_predictions(request)["model"]
    stored = point_metrics(table["z_mode"].to_numpy().astype(np.float64), z_true)
    assert got["overall"]["bias_median"] == pytest.approx(stored["bias_median"])
    median = point_metrics(table["z_median"].to_numpy().astype(np.float64), z_true)
    assert got["by_point_estimate"]["median"]["sigma_mad"] == pytest.approx(median["sigma_mad"])
    decoded = read_predictions(str(tmp_path / "catalog.parquet")).pdf
    from_decoded = point_metrics(grid.values[np.argmax(decoded, axis=1)], z_true)
    assert stored["bias_median"] - from_decoded["bias_median"] > 0.001  # what was scored


def test_rows_paired_by_objectid_must_be_the_same_objects_on_the_sky(inputs, tmp_path):
    """A truth table of another simulation reuses the ids of the predicted one (they do not
    depend on the seed): every row paired, every score noise, exit status 0. Positions on
    both sides now decide: most rows apart is refused, a few apart are counted, not scored."""
    from raypz.schema import RefusedError

    truth = inputs["truth"]
    ids = truth[C.object_id].to_numpy()[:200]
    z = truth[C.redshift].to_numpy()[:200]
    ra, dec = truth[C.ra].to_numpy()[:200].copy(), truth[C.dec].to_numpy()[:200]
    ra[:10] += 2.0 / 3600  # 2 arcsec off (at |dec| <= 5 deg), e.g. a blend split differently
    pdf = normalize(np.exp(-0.5 * ((GRID.values - z[:, None]) / 0.03) ** 2), GRID)
    table = predictions_table(ids, pdf, GRID, extra={C.ra: ra, C.dec: dec})
    pq.write_table(table, tmp_path / "near.parquet")
    request = EvaluationRequest(
        str(tmp_path / "near.parquet"), str(inputs["root"] / "truth.parquet"),
        str(tmp_path / "report"), plots=False,
    )  # fmt: skip
    got = evaluate_predictions(request)["model"]
    assert got["n_rows"] == 190
    facts = json.loads((tmp_path / "report" / "metrics.json").read_text())["inputs"]
    assert facts["rows paired by objectId but > 1 arcsec apart (not scored)"] == 10

    other_sim = table.set_column(table.schema.get_field_index(C.ra), C.ra, pa.array(ra + 1.0))
    pq.write_table(other_sim, tmp_path / "other_sim.parquet")
    request = EvaluationRequest(
        str(tmp_path / "other_sim.parquet"), str(inputs["root"] / "truth.parquet"),
        str(tmp_path / "report2"), plots=False,
    )  # fmt: skip
    with pytest.raises(RefusedError, match=r"200 of 200 rows paired by objectId lie more than"):
        evaluate_predictions(request)


def test_a_knn_training_table_without_usable_labels_is_named(inputs, tmp_path):
    train = pq.read_table(inputs["root"] / "train.parquet")
    z = pa.array(np.full(train.num_rows, np.nan))
    train = train.set_column(train.schema.get_field_index(C.redshift), C.redshift, z)
    pq.write_table(train, tmp_path / "train.parquet")
    request = EvaluationRequest(
        str(inputs["root"] / "ens"), str(inputs["root"] / "truth.parquet"),
        str(tmp_path / "report"), train=str(tmp_path / "train.parquet"), plots=False,
    )  # fmt: skip
    with pytest.raises(ContractError, match=r"train\.parquet: column 'redshift': kNN baseline"):
        evaluate_predictions(request)


def test_a_knn_training_table_in_magnitudes_is_refused_before_any_report(inputs, tmp_path):
    """Magnitudes in the flux columns trained a kNN baseline on nonsense, and the report
    compared the model with it."""
    train = pq.read_table(inputs["root"] / "train.parquet")
    i = train.schema.get_field_index("g_cModelFlux")
    mags = 31.4 - 2.5 * np.log10(np.clip(train[i].to_numpy(), 1.0, None))
    pq.write_table(train.set_column(i, "g_cModelFlux", pa.array(mags)), tmp_path / "train.parquet")
    request = EvaluationRequest(
        str(inputs["root"] / "ens"), str(inputs["root"] / "truth.parquet"),
        str(tmp_path / "report"), train=str(tmp_path / "train.parquet"), plots=False,
    )  # fmt: skip
    with pytest.raises(ContractError, match=r"train\.parquet.*g_cModelFlux.*AB magnitudes"):
        evaluate_predictions(request)
    assert not (tmp_path / "report").exists()


def test_the_training_curves_shown_are_those_of_the_model_that_made_the_predictions(
    inputs, tmp_path
):
    """--model of another model showed its curves as the catalog's model's; a --model that
    does not exist was a note on stdout (nothing at all without plots)."""
    from raypz.predictions import MODEL_HASH_KEY
    from raypz.schema import RefusedError

    table = inputs["ens"]
    meta = {**table.schema.metadata, MODEL_HASH_KEY: b"a" * 64}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "catalog.parquet")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text(json.dumps({"model_hash": "b" * 64}))
    argv = ["--predictions", str(tmp_path / "catalog.parquet")]
    argv += ["--truth", str(inputs["root"] / "truth.parquet"), "--report", str(tmp_path / "r")]
    with pytest.raises(RefusedError, match=r"model hash bbbbbbbbbbbb, but .* aaaaaaaaaaaa"):
        load_job().main([*argv, "--model", str(tmp_path / "model")])
    with pytest.raises(FileNotFoundError, match="absent: no such file"):
        load_job().main([*argv, "--model", str(tmp_path / "absent"), "--no-plots"])


def test_an_evaluation_with_no_row_to_score_is_refused(inputs, tmp_path):
    """It wrote a report of empty metrics and ended with exit status 0."""
    truth = inputs["truth"]
    z = pa.array(np.full(truth.num_rows, -99.0))
    truth = truth.set_column(truth.schema.get_field_index(C.redshift), C.redshift, z)
    pq.write_table(truth, tmp_path / "truth.parquet")
    request = EvaluationRequest(
        str(inputs["root"] / "ens"), str(tmp_path / "truth.parquet"), str(tmp_path / "report"),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"no row to score of 550 paired \(3 without a PDF, 547"):
        evaluate_predictions(request)
    assert not (tmp_path / "report").exists()
