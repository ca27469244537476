"""The Ray Datasets that Ray Train workers stream: a member's train / validation rows and the
unlabelled target rows of domain-adversarial training.

Catalog rows are materialised in the object store once; cutouts are streamed from Parquet every
epoch, so a training set of images never has to fit in memory.
"""

from __future__ import annotations

import ray.data

from raypz import io
from raypz.train.augment import BalanceWeights
from raypz.train.config import TrainConfig
from raypz.train.labelled import has_epoch_columns, member_rows, training_columns


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
    cols = training_columns(config, with_epochs)
    base = ray.data.read_parquet(io.list_parquet_files(path), filesystem=fs, columns=cols)
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
        )
        # catalogs: read and split once; every epoch then streams blocks from the object store
        out[name] = selected if config.image is not None else selected.materialize()
    return out


def target_dataset(path: str, config: TrainConfig) -> ray.data.Dataset:
    """The unlabelled ``target`` rows of domain-adversarial training (every row; streamed)."""
    fs, _ = io.resolve(path)
    cols = training_columns(config, has_epoch_columns(path, config), labelled=False)
    return ray.data.read_parquet(io.list_parquet_files(path), filesystem=fs, columns=cols)
