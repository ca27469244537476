"""The Ray Datasets that Ray Train workers stream: a member's train / validation rows and the
unlabelled target rows of domain-adversarial training.

Catalog rows are materialised in the object store once; cutouts are streamed from Parquet every
epoch (from the table's cutout column, or joined from a cutout store on objectId,
:mod:`raypz.object_stream`), so a training set of images never has to fit in memory.
"""

from __future__ import annotations

import ray.data

from raypz.object_stream import CutoutJoin, object_dataset
from raypz.tables import list_table_files
from raypz.train.augment import BalanceWeights
from raypz.train.config import TrainConfig
from raypz.train.labelled import has_epoch_columns, member_rows, training_columns


def member_datasets(
    path: str,
    config: TrainConfig,
    fold: int | None,
    balance: BalanceWeights | None,
    with_epochs: bool,
    join: CutoutJoin | None = None,
) -> dict[str, ray.data.Dataset]:
    """The ``train`` and ``val`` Ray Datasets of one member (cutouts joined from ``join``'s
    store when given).

    Catalog rows are read once and materialised in the object store (distributed,
    spillable): labelled catalogs are small next to the survey, and re-reading Parquet every
    epoch cost more than the training. Rows with cutouts stream from the files every epoch.
    """
    base = _read(path, training_columns(config, with_epochs), join)
    # rows in file order whichever read task finishes first: a member's batches, and so its
    # weights, are then the same on every run (a resumed member equals an uninterrupted one)
    base.context.execution_options.preserve_order = True
    out = {}
    for name, want_train in (("train", True), ("val", False)):
        selected = base.map_batches(
            member_rows,
            batch_format="pyarrow",
            fn_kwargs={
                "config": config,
                "fold": fold,
                "want_train": want_train,
                "balance": balance if want_train else None,
            },
            # a 1-CPU task waits forever beside a worker that holds part of a 1-CPU node
            num_cpus=0.25,
        )
        # catalogs: read and split once; every epoch then streams blocks from the object store
        out[name] = selected if config.image is not None else selected.materialize()
    return out


def target_dataset(
    path: str, config: TrainConfig, join: CutoutJoin | None = None
) -> ray.data.Dataset:
    """The unlabelled ``target`` rows of domain-adversarial training (every row; streamed;
    cutouts joined from ``join``'s store when given)."""
    cols = training_columns(config, has_epoch_columns(path, config), labelled=False)
    return _read(path, cols, join)


def _read(path: str, columns: list[str], join: CutoutJoin | None) -> ray.data.Dataset:
    """The table ``path`` (Parquet or FITS), ``columns`` only; the cutout column comes from
    ``join``'s store when given."""
    if join is not None:
        columns = [c for c in columns if c != join.column]
    return object_dataset(path, list_table_files(path), columns, join)
