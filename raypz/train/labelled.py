"""Labelled tables on the driver (or in a notebook): the columns that fitting needs, as numpy.

The driver reads only objectId, fluxes, errors and redshift to fit the feature transform and
the balance weights (plus, for image models, a sample of cutouts to fit their stretch and the
validation rows' cutouts). :func:`train_mask` says which rows train a member. Nothing here
imports Ray; the Ray Datasets that workers stream are in :mod:`raypz.train.datasets`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from raypz import io, tables
from raypz.columns import BANDS
from raypz.cutout_store import CutoutStore, read_store_cutouts
from raypz.features import flux_arrays
from raypz.features.cutouts import cutout_array
from raypz.train.augment import BalanceWeights, r_magnitude
from raypz.train.batches import WEIGHT_COLUMN
from raypz.train.config import TrainConfig
from raypz.train.splits import is_validation, kfold_of


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
    """Read objectId, fluxes, errors and labels of a labelled table (Parquet or FITS table
    files, a directory of them or a HATS catalog; local or URI)."""
    c = config.columns
    fluxes, errs = c.flux_columns(BANDS), c.flux_err_columns(BANDS)
    table = tables.read_table(path, [c.object_id, *fluxes, *errs, c.redshift])
    flux, err = flux_arrays(table, c, BANDS)
    return LabelledArrays(
        object_id=table[c.object_id].to_numpy().astype(np.int64),
        flux=flux,
        err=err,
        z=table[c.redshift].to_numpy().astype(np.float64),
    )


def read_cutouts(
    path: str,
    config: TrainConfig,
    object_ids: np.ndarray,
    cutouts: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw cutouts (n, C, H, W) in nJy/pixel and their usable-row mask (n,) of the given
    objectIds, in that order; from the cutout column of the table ``path``, or from the cutout
    store ``cutouts`` (:mod:`raypz.cutout_store`; an object without a cutout there is not
    usable)."""
    c = config.columns
    if cutouts is not None:
        store = CutoutStore.open(cutouts)
        return read_store_cutouts(store, object_ids, c.object_id, c.cutout)
    fs, _ = io.resolve(path)
    ds = pads.dataset(io.list_parquet_files(path), filesystem=fs, format="parquet")
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
    """Rows a member fits on: outside the validation split and, in k-fold mode, outside its
    ``fold`` as well (``None``: every row outside the validation split)."""
    if config.kfold and fold is not None:
        folds = kfold_of(object_id, config.kfold, config.val_fraction)
        return (folds >= 0) & (folds != fold)
    return ~is_validation(object_id, config.val_fraction)


def has_epoch_columns(path: str, config: TrainConfig) -> bool:
    """True when the table carries single-exposure flux columns for every band, as its first
    file's schema says."""
    names = tables.column_names(path)
    ef, ee = config.columns.epoch_columns(BANDS)
    return all(name in names for name in ef + ee)


def training_columns(config: TrainConfig, with_epochs: bool, labelled: bool = True) -> list[str]:
    """The columns a member's training reads: objectId, fluxes and errors, the redshift (when
    ``labelled``), single-exposure columns (``with_epochs``) and cutouts (image models)."""
    c = config.columns
    cols = [c.object_id, *c.flux_columns(BANDS), *c.flux_err_columns(BANDS)]
    cols += [c.redshift] if labelled else []
    if with_epochs:
        ef, ee = c.epoch_columns(BANDS)
        cols += ef + ee
    return cols + ([c.cutout] if config.image is not None else [])


def member_rows(
    table: pa.Table,
    config: TrainConfig,
    fold: int | None,
    want_train: bool,
    balance: BalanceWeights | None = None,
) -> pa.Table:
    """The rows of ``table`` that train a member (``want_train``) or validate it, by objectId
    (:func:`train_mask`); with ``balance``, a weight column :data:`WEIGHT_COLUMN` is added."""
    mask = train_mask(table[config.columns.object_id].to_numpy(), config, fold)
    out = table.filter(pa.array(mask if want_train else ~mask))
    if balance is not None:
        z = out[config.columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
        r = out[config.columns.flux.format(band="r")].to_numpy(zero_copy_only=False)
        w = balance(z, r_magnitude(r.astype(np.float64)))
        out = out.append_column(WEIGHT_COLUMN, pa.array(w.astype(np.float32)))
    return out


def read_training_rows(path: str, config: TrainConfig) -> pa.Table:
    """Every row of a labelled table with the columns that training reads, in memory (for
    in-process training of small spec-z sets; Ray Train workers stream them instead).
    Parquet or FITS table files, as :func:`read_labelled`."""
    columns = training_columns(config, has_epoch_columns(path, config))
    return tables.read_table(path, columns)
