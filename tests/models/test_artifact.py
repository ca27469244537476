"""Model artifacts: round trip, integrity checks and refusal of anything but safetensors."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from raypz.models import ArtifactError, EnsemblePredictor, load_artifact
from raypz.models.artifact import MODEL_JSON, _model_hash, member_file


@pytest.fixture
def artifact_copy(small_model, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(small_model, target)
    return target


def test_round_trip_predicts_normalised_pdfs(small_model, small_survey):
    artifact = load_artifact(small_model)
    meta = json.loads((Path(small_model) / MODEL_JSON).read_text())
    assert meta["model_id"].startswith("test-") and len(meta["members"]) == 2
    table = pads.dataset(small_survey, format="parquet").head(100)
    x, flags = artifact.transform(table)
    pdf, ens_flags = EnsemblePredictor(artifact, "cpu").predict(x)
    grid = artifact.grid
    mass = (pdf.sum(axis=1) - 0.5 * (pdf[:, 0] + pdf[:, -1])) * grid.dz
    np.testing.assert_allclose(mass, 1.0, atol=1e-4)
    assert ens_flags.shape == flags.shape == (100,)


def test_altered_member_file_is_refused(artifact_copy):
    path = artifact_copy / member_file(1)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"member-01.*SHA-256 differs"):
        load_artifact(str(artifact_copy))


def test_missing_member_file_is_refused(artifact_copy):
    (artifact_copy / member_file(0)).unlink()
    with pytest.raises(ArtifactError, match="member file missing"):
        load_artifact(str(artifact_copy))


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_planted_pickle_is_never_unpickled(artifact_copy, monkeypatch, tmp_path):
    """A pickle in place of a member, with model.json's hash updated to match: refused."""
    monkeypatch.chdir(tmp_path)
    blob = pickle.dumps({"weight": _Payload()})
    (artifact_copy / member_file(0)).write_bytes(blob)
    meta_path = artifact_copy / MODEL_JSON
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["members"][0]["sha256"] = hashlib.sha256(blob).hexdigest()
    meta["model_hash"] = _model_hash(meta)  # a consistent forgery
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own parse error
        load_artifact(str(artifact_copy))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("edit", ["feature scaling", "a member dropped", "z grid", "architecture"])
def test_an_edited_model_json_is_refused(artifact_copy, edit):
    """model.json's own content (not only the files it lists) must give its model_hash, which
    the catalog records as its provenance: an MDN's weights fit any z grid, and the
    architecture holds settings (dropout, the soft-label width) that change no weight."""
    meta_path = artifact_copy / MODEL_JSON
    meta = json.loads(meta_path.read_text())
    if edit == "feature scaling":
        meta["features"]["mean"][0] += 3.0
    elif edit == "a member dropped":
        meta["members"].pop()
    elif edit == "z grid":
        meta["z_grid"]["z_max"] += 0.5
    else:
        meta["architecture"]["config"]["dropout"] = 0.3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"model\.json: .*do not give its model_hash"):
        load_artifact(str(artifact_copy))


def test_model_json_is_strict_json_and_a_broken_one_is_named(artifact_copy):
    """Empty magnitude bins' metrics are null, not NaN (which JSON parsers other than
    Python's refuse); a truncated model.json is named."""
    text = (artifact_copy / MODEL_JSON).read_text()

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    json.loads(text, parse_constant=refuse)
    (artifact_copy / MODEL_JSON).write_text(text[:500])
    with pytest.raises(ArtifactError, match=r"model\.json: not readable JSON"):
        load_artifact(str(artifact_copy))


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match=r"model\.json: missing"):
        load_artifact(str(tmp_path))


def test_member_files_outside_the_artifact_and_a_foreign_model_id_are_refused(artifact_copy):
    """model.json names its members' files: '../x' or an absolute path read a file outside
    the artifact (its hash still had to match); the model_id, which catalogs show as their
    provenance, must end with the model hash."""
    meta_path = artifact_copy / MODEL_JSON
    meta = json.loads(meta_path.read_text())
    for name in ("../member-00.safetensors", "/etc/passwd", ".."):
        edited = json.loads(json.dumps(meta))
        edited["members"][0]["file"] = name
        meta_path.write_text(json.dumps(edited))
        with pytest.raises(ArtifactError, match="is not a file name"):
            load_artifact(str(artifact_copy))
    meta_path.write_text(json.dumps({**meta, "model_id": "ens-v3-aaaaaaaaaaaa"}))
    with pytest.raises(ArtifactError, match="model_id 'ens-v3-aaaaaaaaaaaa' does not end with"):
        load_artifact(str(artifact_copy))
    meta_path.write_text(json.dumps(meta))
    assert load_artifact(str(artifact_copy)).model_id == meta["model_id"]
