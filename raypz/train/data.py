"""Labelled tables for training: driver-side arrays (to fit normalisation) and Ray Datasets.

The driver reads only objectId, fluxes, errors and redshift to fit the feature transform and
the balance weights (plus, for image models, a sample of cutouts to fit their stretch and the
validation rows' cutouts); the workers stream the full rows they need through Ray Data shards.
Catalog rows are materialised in the object store once; cutouts are streamed from Parquet every
epoch, so a training set of images never has to fit in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import ray.data

from raypz import io
from raypz.columns import BANDS
from raypz.features.cutouts import cutout_array
from raypz.train.augment import BalanceWeights, r_magnitude
from raypz.train.batches import WEIGHT_COLUMN
from raypz.train.config import TrainConfig
from raypz.train.splits import fold_of, is_validation


@dataclass(frozen=True)
class LabelledArrays:
    """The columns of a labelled table that the driver needs, as numpy arrays.

    Attributes:
        object_id: (N,) int64.
        flux: (N, B) nJy.
        err: (N, B) nJy.
        z: (N,) labels.
        images: (N, C, H, W) stretched cutouts when an image model needs them, else None.
    """

    object_id: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    z: np.ndarray
    images: np.ndarray | None = None

    def take(self, mask: np.ndarray) -> LabelledArrays:
        """The rows where ``mask`` is true (or the rows at the given indices)."""
        images = self.images[mask] if self.images is not None else None
        return LabelledArrays(
            self.object_id[mask], self.flux[mask], self.err[mask], self.z[mask], images
        )

    def fingerprint(self, path: str) -> dict:
        """What identifies the training data in model.json: path, rows, and a content hash."""
        order = np.argsort(self.object_id)
        h = hashlib.sha256(self.object_id[order].tobytes())
        h.update(self.z[order].astype(np.float32).tobytes())
        return {"path": path, "rows": len(self.z), "sha256_ids_labels": h.hexdigest()}


def read_labelled(path: str, config: TrainConfig) -> LabelledArrays:
    """Read objectId, fluxes, errors and labels of a labelled table (local or URI)."""
    c = config.columns
    fluxes, errs = c.flux_columns(BANDS), c.flux_err_columns(BANDS)
    fs, _ = io.resolve(path)
    files = io.list_parquet_files(path)
    table = pads.dataset(files, filesystem=fs, format="parquet").to_table(
        columns=[c.object_id, *fluxes, *errs, c.redshift]
    )

    def arr(name: str) -> np.ndarray:
        return table[name].to_numpy().astype(np.float64)

    return LabelledArrays(
        object_id=table[c.object_id].to_numpy().astype(np.int64),
        flux=np.stack([arr(n) for n in fluxes], axis=1),
        err=np.stack([arr(n) for n in errs], axis=1),
        z=arr(c.redshift),
    )


def read_cutouts(
    path: str, config: TrainConfig, object_ids: np.ndarray | None = None, rows: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Raw cutouts (n, C, H, W) in nJy/pixel and their usable-row mask (n,): of the given
    objectIds in that order, or of the first ``rows`` rows when ``object_ids`` is None."""
    c = config.columns
    fs, _ = io.resolve(path)
    ds = pads.dataset(io.list_parquet_files(path), filesystem=fs, format="parquet")
    if object_ids is None:
        return cutout_array(ds.head(rows, columns=[c.cutout])[c.cutout])
    table = ds.to_table(
        columns=[c.object_id, c.cutout], filter=pc.field(c.object_id).isin(object_ids)
    )
    order = pc.index_in(pa.array(object_ids), table[c.object_id])
    if order.null_count:
        raise ValueError(f"{path}: {order.null_count} objectIds have no row with a cutout")
    images, usable = cutout_array(table[c.cutout])
    idx = order.to_numpy(zero_copy_only=False)
    return images[idx], usable[idx]


def train_mask(object_id: np.ndarray, config: TrainConfig, fold: int | None) -> np.ndarray:
    """Rows used for fitting: outside the validation split, or outside ``fold`` in k-fold mode."""
    if config.kfold:
        return fold_of(object_id, config.kfold) != fold
    return ~is_validation(object_id, config.val_fraction)


def _select(
    batch: pa.Table, config_dict: dict, fold: int | None, want_train: bool, balance: dict | None
) -> pa.Table:
    config = TrainConfig.from_dict(config_dict)
    ids = batch[config.columns.object_id].to_numpy()
    mask = train_mask(ids, config, fold)
    out = batch.filter(pa.array(mask if want_train else ~mask))
    if balance is not None:
        weights = BalanceWeights(**balance)
        z = out[config.columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
        r = out[config.columns.flux.format(band="r")].to_numpy(zero_copy_only=False)
        w = weights(z, r_magnitude(r.astype(np.float64)))
        out = out.append_column(WEIGHT_COLUMN, pa.array(w.astype(np.float32)))
    return out


def _input_columns(config: TrainConfig, with_epochs: bool, labelled: bool = True) -> list[str]:
    c = config.columns
    cols = [c.object_id, *c.flux_columns(BANDS), *c.flux_err_columns(BANDS)]
    cols += [c.redshift] if labelled else []
    if with_epochs:
        ef, ee = c.epoch_columns(BANDS)
        cols += ef + ee
    return cols + ([c.cutout] if config.image is not None else [])


def member_datasets(
    path: str,
    config: TrainConfig,
    fold: int | None,
    balance: BalanceWeights | None,
    with_epochs: bool,
) -> dict[str, ray.data.Dataset]:
    """The ``train`` and ``val`` Ray Datasets of one member.

    Catalog rows are read from Parquet once and materialised in the object store (distributed,
    spillable): labelled catalogs are small next to the survey, and re-reading Parquet every
    epoch cost more than the training. Rows with cutouts stream from Parquet every epoch.
    """
    fs, _ = io.resolve(path)
    cols = _input_columns(config, with_epochs)
    base = ray.data.read_parquet(io.list_parquet_files(path), filesystem=fs, columns=cols)
    bal = (
        None
        if balance is None
        else {
            "z_edges": balance.z_edges,
            "mag_edges": balance.mag_edges,
            "weights": balance.weights,
        }
    )
    out = {}
    for name, want_train in (("train", True), ("val", False)):
        selected = base.map_batches(
            _select,
            batch_format="pyarrow",
            fn_kwargs={
                "config_dict": config.to_dict(),
                "fold": fold,
                "want_train": want_train,
                "balance": bal if want_train else None,
            },
        )
        # catalogs: read and split once; every epoch then streams blocks from the object store
        out[name] = selected if config.image is not None else selected.materialize()
    return out


def target_dataset(path: str, config: TrainConfig) -> ray.data.Dataset:
    """The unlabelled ``target`` rows of domain-adversarial training (every row; streamed)."""
    fs, _ = io.resolve(path)
    cols = _input_columns(config, has_epoch_columns(path, config), labelled=False)
    return ray.data.read_parquet(io.list_parquet_files(path), filesystem=fs, columns=cols)


def has_epoch_columns(path: str, config: TrainConfig) -> bool:
    """True when the table carries single-exposure flux columns for every band."""
    fs, _ = io.resolve(path)
    schema = pads.dataset(io.list_parquet_files(path)[:1], filesystem=fs).schema
    ef, ee = config.columns.epoch_columns(BANDS)
    return all(name in schema.names for name in ef + ee)
