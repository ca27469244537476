"""Model artifacts (DESIGN 3.2): a directory with ``model.json`` and ``member-NN.safetensors``.

``model.json`` holds everything needed to predict anywhere: the kind ("catalog" or "image") and
architecture config, bands and the fitted feature transform, for image models the cutout
normalisation (which also says which column holds the cutouts), the z grid, the training-data
fingerprint and config, validation metrics, the raypz version, and the SHA-256 of every member
file. Loading checks those hashes and never unpickles (safetensors holds plain tensors only).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatch

import pyarrow.fs as pafs
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import raypz
from raypz import io
from raypz.features import FeatureTransform
from raypz.features.cutouts import CutoutStretch
from raypz.models.catalog_net import CatalogNet, CatalogNetConfig
from raypz.models.image_net import ImageNet, ImageNetConfig
from raypz.models.reference import TrainingReference
from raypz.pdf import ZGrid

FORMAT_VERSION = 2
"""2: the model hash covers the architecture and the z grid (format 1's did not)."""
MODEL_JSON = "model.json"
REFERENCE_FILE = "reference.safetensors"
"""File of the artifact: the training-feature sample of :class:`TrainingReference`."""
TRAINING_CURVES = "training_curves.png"
"""Plot in the artifact directory of every member's training and validation loss per epoch
(written by training; not part of the model hash)."""

NetConfig = CatalogNetConfig | ImageNetConfig
_ARCHITECTURES: dict[str, type] = {"CatalogNet": CatalogNetConfig, "ImageNet": ImageNetConfig}


class ArtifactError(ValueError):
    """An artifact is incomplete, altered or of an unknown format."""


MEMBER_FILES = "member-*.safetensors"
"""Shell pattern of the members' file names (:func:`member_file`)."""


def member_file(index: int) -> str:
    """File name of ensemble member ``index``."""
    return f"member-{index:02d}.safetensors"


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified model artifact.

    Attributes:
        path: where it was loaded from.
        meta: the parsed model.json.
        transform: the fitted flux -> feature transform.
        grid: the z grid of the PDFs.
        net_config: the network architecture (CatalogNetConfig or ImageNetConfig).
        states: one state dict (name -> tensor) per ensemble member.
        cutouts: the cutout normalisation of an image model; None for a catalog model.
        reference: the training-feature sample behind the ``train_distance`` column; None for
            artifacts written before it existed.
    """

    path: str
    meta: dict
    transform: FeatureTransform
    grid: ZGrid
    net_config: NetConfig
    states: tuple[dict[str, torch.Tensor], ...]
    cutouts: CutoutStretch | None = None
    reference: TrainingReference | None = None

    @property
    def model_hash(self) -> str:
        """SHA-256 over model.json's member hashes and transform: identifies the weights."""
        return self.meta["model_hash"]

    @property
    def model_id(self) -> str:
        """Human-readable id: the artifact's name plus a short hash."""
        return self.meta["model_id"]

    def build_network(self) -> CatalogNet | ImageNet:
        """A freshly initialised network of this artifact's architecture (CPU, train mode)."""
        return build_network(self.net_config, self.transform, self.grid, self.cutouts)

    def build_members(self, device: torch.device | str = "cpu") -> list[CatalogNet | ImageNet]:
        """The ensemble members as networks in eval mode on ``device``."""
        nets = []
        for state in self.states:
            net = self.build_network()
            net.load_state_dict(state)
            nets.append(net.to(device).eval())
        return nets


def build_network(
    config: NetConfig,
    transform: FeatureTransform,
    grid: ZGrid,
    cutouts: CutoutStretch | None = None,
) -> CatalogNet | ImageNet:
    """The network an architecture config describes, sized by its inputs (CPU, train mode)."""
    z = torch.tensor(grid.values, dtype=torch.float32)
    if isinstance(config, ImageNetConfig):
        if cutouts is None:
            raise ValueError("an ImageNet needs the cutout normalisation (CutoutStretch)")
        return ImageNet(cutouts.shape[0], transform.n_features, z, config)
    return CatalogNet(transform.n_features, z, config)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_artifact(
    path: str,
    *,
    name: str,
    transform: FeatureTransform,
    grid: ZGrid,
    net_config: NetConfig,
    states: list[dict[str, torch.Tensor]],
    members: list[dict],
    training: dict,
    metrics: dict,
    cutouts: CutoutStretch | None = None,
    reference: TrainingReference | None = None,
) -> str:
    """Write an artifact directory (local or URI) and return its model hash.

    Args:
        path: target directory.
        name: short model name, used in the model id.
        transform: fitted feature transform.
        grid: z grid of the PDFs.
        net_config: architecture of every member.
        states: member state dicts (tensors are copied to CPU).
        members: per-member facts (seed, fold, best validation loss, epochs...).
        training: training config and data fingerprint (no credentials).
        metrics: validation metrics of the ensemble.
        cutouts: the cutout normalisation of an image model.
        reference: the training-feature sample for ``train_distance`` (in the model hash).
    """
    io.makedirs(path)
    entries = []
    for i, (state, info) in enumerate(zip(states, members, strict=True)):
        blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()})
        io.write_bytes_atomic(io.join(path, member_file(i)), blob)
        entries.append({**info, "file": member_file(i), "sha256": _sha256(blob)})
    reference_entry = None
    if reference is not None:
        blob = save_safetensors({"features": torch.from_numpy(reference.features)})
        io.write_bytes_atomic(io.join(path, REFERENCE_FILE), blob)
        reference_entry = {
            "file": REFERENCE_FILE,
            "sha256": _sha256(blob),
            "k": reference.k,
            "scale": reference.scale,
        }
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "image" if cutouts is not None else "catalog",
        "raypz_version": raypz.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": {
            "name": type(net_config).__name__[: -len("Config")],
            "config": net_config.to_dict(),
        },
        "bands": list(transform.bands),
        "features": transform.to_dict(),
        "cutouts": cutouts.to_dict() if cutouts is not None else None,
        "reference": reference_entry,
        "z_grid": grid.to_dict(),
        "members": entries,
        "training": training,
        "metrics": metrics,
    }
    model_hash = _model_hash(meta)
    meta = {"model_id": f"{name}-{model_hash[:12]}", "model_hash": model_hash, **meta}
    io.write_json(io.join(path, MODEL_JSON), meta)
    return model_hash


def remove_artifact(path: str) -> None:
    """Delete the artifact under ``path`` (model.json first, so that no half-removed directory
    loads as a model; then the member, reference and plot files), leaving other files."""
    fs, inner = io.resolve(path)
    listing = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    files = {f.base_name for f in listing if f.type == pafs.FileType.File}
    names = [n for n in (MODEL_JSON, REFERENCE_FILE, TRAINING_CURVES) if n in files]
    names += sorted(n for n in files if fnmatch(n, MEMBER_FILES))
    for name in names:
        fs.delete_file(posixpath.join(inner, name))


def _model_hash(meta: dict) -> str:
    """SHA-256 of everything in model.json that the model's predictions depend on: the members'
    file hashes, the architecture, the z grid and the fitted input maps (feature transform,
    cutout stretch, training reference). Training facts and metrics are left out."""
    content = [
        [entry["sha256"] for entry in meta["members"]],
        meta["architecture"],
        meta["z_grid"],
        meta["features"],
        meta["cutouts"],
        meta["reference"],
    ]
    return _sha256(json.dumps(content, sort_keys=True).encode())


def load_artifact(path: str) -> ModelArtifact:
    """Load and verify an artifact; raises :class:`ArtifactError` naming the file at fault.

    Every member and reference file must match its SHA-256 in model.json, and the members and
    fitted input maps listed there must give the model hash it records.
    """
    where = io.join(path, MODEL_JSON)
    try:
        meta = json.loads(io.read_bytes(where))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{where}: missing; not a raypz artifact") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: not readable JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ArtifactError(
            f"{where}: artifact format {version!r}, this raypz reads format {FORMAT_VERSION} "
            "(retrain the model with this raypz)"
        )
    try:
        return _artifact(path, meta)
    except KeyError as exc:
        raise ArtifactError(f"{where}: entry {exc} missing") from exc


def _artifact(path: str, meta: dict) -> ModelArtifact:
    """The artifact that the parsed model.json ``meta`` describes, verified."""
    cutouts, reference = meta["cutouts"], meta["reference"]
    if _model_hash(meta) != meta["model_hash"]:
        raise ArtifactError(
            f"{io.join(path, MODEL_JSON)}: its members, architecture, z grid, features, cutout "
            "stretch or reference do not give its model_hash (altered or corrupt)"
        )
    if not str(meta["model_id"]).endswith(f"-{meta['model_hash'][:12]}"):  # catalogs show it
        raise ArtifactError(
            f"{io.join(path, MODEL_JSON)}: model_id {meta['model_id']!r} does not end with its "
            "model_hash's first 12 digits (altered)"
        )
    states = [_verified_tensors(path, entry, "member file") for entry in meta["members"]]
    arch = meta["architecture"]
    if arch["name"] not in _ARCHITECTURES:
        raise ArtifactError(f"{path}: unknown architecture {arch['name']!r}")
    return ModelArtifact(
        path=path,
        meta=meta,
        transform=FeatureTransform.from_dict(meta["features"]),
        grid=ZGrid.from_dict(meta["z_grid"]),
        net_config=_ARCHITECTURES[arch["name"]].from_dict(arch["config"]),
        states=tuple(states),
        cutouts=CutoutStretch.from_dict(cutouts) if cutouts else None,
        reference=_load_reference(path, reference),
    )


def _verified_tensors(path: str, entry: dict, what: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file that a model.json ``entry`` (``file``, ``sha256``)
    names (a file of the artifact's directory), after checking its hash;
    :class:`ArtifactError` naming the file otherwise."""
    name = str(entry["file"])
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ArtifactError(f"{io.join(path, MODEL_JSON)}: {what} {name!r} is not a file name")
    where = io.join(path, name)
    try:
        blob = io.read_bytes(where)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{where}: {what} missing") from exc
    if _sha256(blob) != entry["sha256"]:
        raise ArtifactError(f"{where}: SHA-256 differs from model.json (altered or corrupt)")
    return load_safetensors(blob)


def _load_reference(path: str, entry: dict | None) -> TrainingReference | None:
    """The artifact's training reference, verified against model.json (None when absent)."""
    if entry is None:
        return None
    features = _verified_tensors(path, entry, "training reference file")["features"].numpy()
    return TrainingReference(features, int(entry["k"]), float(entry["scale"]))

