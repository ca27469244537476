"""Train one ensemble member in this process, without Ray.

>>> spec = MemberSpec(config, transform, seed=0)                     # doctest: +SKIP
>>> result = train_member(spec, TableBatches(train), TableBatches(val))  # doctest: +SKIP
>>> net.load_state_dict(result.best_state)                           # doctest: +SKIP

:func:`train_member` is the whole training of a member: network built from the spec, AdamW with
a cosine schedule, an epoch over the training batches (augmented), an epoch over the validation
batches, early stopping on the validation loss, the best weights kept. It runs in a notebook or
a test on an in-memory table (:class:`TableBatches`), and inside a Ray Train worker on dataset
shards (:mod:`raypz.train.loop` passes a DDP-wrapped model, a resume state and a per-epoch
hook that writes checkpoints). Nothing here imports Ray.

Reproducibility: every random stream (torch's, the augmentation's, the shuffle) is seeded from
(member seed, epoch), so a member resumed at epoch k from its checkpoint trains epochs k, k+1,
... exactly as an uninterrupted run would.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import torch

from raypz.features import FeatureTransform
from raypz.features.cutouts import CutoutStretch
from raypz.models.artifact import build_network
from raypz.models.domain import reversal_weight
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig
from raypz.train.steps import Batch, restore_training_state, run_epoch, training_state

NumpyBatch = Mapping[str, np.ndarray]
"""Columns of a batch of object-table rows, as numpy arrays."""

LR_FLOOR = 0.05
"""The cosine schedule decays the learning rate to this fraction of its peak."""


@dataclass(frozen=True)
class MemberSpec:
    """What one member's training needs; a typed object that travels to Ray Train workers.

    Attributes:
        config: the ensemble's training configuration.
        transform: the feature transform fitted on the training rows.
        seed: this member's seed (``config.seed + i`` for member i).
        epochs: epochs to run (None: ``config.epochs``).
        lr: peak learning rate (None: ``config.lr``; fine-tuning passes a smaller one).
        cutouts: the fitted cutout stretch of an image model; None for a catalog model.
        init_state: weights to start from (numpy arrays by parameter name), e.g. a
            pre-trained network to fine-tune; None starts from a fresh initialisation.
    """

    config: TrainConfig
    transform: FeatureTransform
    seed: int
    epochs: int | None = None
    lr: float | None = None
    cutouts: CutoutStretch | None = None
    init_state: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_epochs(self) -> int:
        """Epochs the schedule spans."""
        return self.epochs if self.epochs is not None else self.config.epochs

    @property
    def peak_lr(self) -> float:
        """Peak learning rate of the schedule."""
        return self.lr if self.lr is not None else self.config.lr


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a member's training: losses (nats per row) and time.

    Attributes:
        epoch: epoch index, from 0.
        train_loss: weighted mean training loss of the epoch (augmented rows).
        val_loss: mean validation loss after the epoch.
        domain_loss: mean field-classifier loss (NaN without domain adaptation).
        best_val_loss: lowest validation loss so far.
        seconds: wall time of the epoch.
        lr: learning rate used during the epoch.
    """

    epoch: int
    train_loss: float
    val_loss: float
    domain_loss: float
    best_val_loss: float
    seconds: float
    lr: float


@dataclass
class MemberProgress:
    """A member's training state between epochs; what a checkpoint stores to resume from.

    Attributes:
        next_epoch: the epoch to run next.
        best_loss: lowest validation loss so far.
        stale: epochs since the last improvement.
        history: one record per epoch run.
        train_rows: training rows seen (summed over epochs).
        unused_rows: the most training rows of weight 0 in one epoch (no usable band or
            cutout, or no usable redshift): they are in the table but teach nothing.
        train_seconds: seconds spent in training epochs.
        best_wall_time: Unix time of the best epoch (NaN before the first).
        resumed_at: epochs at which training resumed from a checkpoint (after a failure).
    """

    next_epoch: int = 0
    best_loss: float = math.inf
    stale: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    train_rows: int = 0
    unused_rows: int = 0
    train_seconds: float = 0.0
    best_wall_time: float = math.nan
    resumed_at: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for ``torch.save(..., weights_only)`` checkpoints and JSON)."""
        return {**asdict(self), "history": [asdict(r) for r in self.history]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemberProgress:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "history": [EpochRecord(**r) for r in d["history"]]})


@dataclass(frozen=True)
class MemberResult:
    """What training one member produced.

    Attributes:
        best_state: weights of the epoch with the lowest validation loss (CPU tensors).
        progress: the final state: history per epoch, best loss, rows and seconds.
    """

    best_state: dict[str, torch.Tensor]
    progress: MemberProgress

    @property
    def epochs_run(self) -> int:
        """Epochs trained (early stopping may end before the schedule)."""
        return self.progress.next_epoch


class BatchSource(Protocol):
    """Rows of a table as numpy batches: an in-memory table or a Ray dataset shard."""

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[NumpyBatch]:
        """Batches of ``batch_size`` rows; shuffled with that seed, in order when None."""
        ...


class TableBatches:
    """An in-memory table (pyarrow, or numpy columns) as a :class:`BatchSource`.

    Shuffling permutes all rows (a full shuffle, not a buffer). Only numeric columns and the
    fixed-shape cutout tensor column are kept.
    """

    def __init__(self, table: pa.Table | Mapping[str, np.ndarray]) -> None:
        if isinstance(table, pa.Table):
            table = {name: _column_array(table[name]) for name in table.column_names}
        self.columns = {k: np.asarray(v) for k, v in table.items() if v is not None}
        self.n_rows = len(next(iter(self.columns.values()))) if self.columns else 0

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[NumpyBatch]:
        """Batches of ``batch_size`` rows (the last may be smaller)."""
        order = (
            np.random.default_rng(shuffle_seed).permutation(self.n_rows)
            if shuffle_seed is not None
            else None
        )
        for start in range(0, self.n_rows, batch_size):
            rows = slice(start, start + batch_size) if order is None else order[start:][:batch_size]
            yield {k: v[rows] for k, v in self.columns.items()}


def _column_array(column: pa.ChunkedArray) -> np.ndarray:
    """A table column as numpy; the fixed-shape cutout tensors as (N, C, H, W)."""
    if isinstance(column.type, pa.FixedShapeTensorType):
        return column.combine_chunks().to_numpy_ndarray()
    return column.to_numpy()


def cosine_lr_factor(epoch: int, epochs: int) -> float:
    """Learning-rate factor of ``epoch``: cosine from 1 down to :data:`LR_FLOOR` over ``epochs``."""
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _prepared(
    source: BatchSource, prep: BatchPreparer, batch_size: int, augment: bool, seed: int | None
) -> Iterator[Batch]:
    batches = source.batches(batch_size, seed)
    for batch in _no_single_row_batches(batches) if augment else batches:
        yield prep(batch, augment=augment)


def _no_single_row_batches(batches: Iterator[NumpyBatch]) -> Iterator[NumpyBatch]:
    """The training batches, a one-row batch joined to the batch before it.

    Batch normalisation cannot train on one row, and a table whose training rows number
    1 modulo the batch size ends each epoch with one. Joining (rather than skipping) keeps
    every row in every epoch; all other batches pass through unchanged.
    """
    held: NumpyBatch | None = None
    for batch in batches:
        if held is not None and len(next(iter(batch.values()))) == 1:
            held = {k: np.concatenate([v, batch[k]]) for k, v in held.items()}
            continue
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


def _endless(source: BatchSource, prep: BatchPreparer, batch_size: int, seed: int):
    """Target batches for domain adaptation, cycling through the source as often as needed."""
    for rep in itertools.count():
        yield from _prepared(source, prep, batch_size, True, seed + rep)


EpochHook = Callable[[MemberProgress, Callable[[], dict[str, Any]], bool], None]
"""Called after every epoch with the progress (its last history record is that epoch), a
function returning the checkpoint (weights, optimiser, progress, best weights) and whether
training stops after this epoch."""


def train_member(
    spec: MemberSpec,
    train: BatchSource,
    val: BatchSource,
    *,
    device: torch.device | str | None = None,
    target: BatchSource | None = None,
    resume: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    rank: int = 0,
) -> MemberResult:
    """Train one member of the ensemble; returns its best weights and its history.

    Args:
        spec: the member's config, feature transform, seed, schedule and initial weights.
        train: the training rows (augmented and shuffled each epoch).
        val: the validation rows (early stopping acts on their mean loss).
        device: where to train (None: CUDA when available, else CPU).
        target: unlabelled target-field rows, for domain-adversarial image models.
        resume: a checkpoint written through ``on_epoch`` (see :func:`member_checkpoint`);
            training continues at the epoch after it.
        on_epoch: hook called after each epoch (Ray Train reports and checkpoints here).
        wrap_model: wraps the network for the forward pass, e.g. in DDP; the bare network
            still provides the loss and the state dicts.
        rank: this worker's rank in a data-parallel group (seeds its random streams).
    """
    config = spec.config
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    stream_seed = spec.seed * 1000 + rank
    torch.manual_seed(stream_seed)
    net = build_network(config.network, spec.transform, config.grid, spec.cutouts)
    if spec.init_state is not None:
        net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in spec.init_state.items()})
    if spec.cutouts is not None and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    # on the device before the optimiser exists, so that restored Adam moments land beside the
    # weights (see restore_training_state)
    net = net.to(device)
    epochs, peak = spec.n_epochs, spec.peak_lr
    optimizer = torch.optim.AdamW(net.parameters(), lr=peak, weight_decay=config.weight_decay)
    progress, best_state = MemberProgress(), None
    if resume is not None:
        restore_training_state(net, optimizer, resume)
        progress = MemberProgress.from_dict(resume["progress"])
        progress.resumed_at.append(progress.next_epoch)
        best_state = resume["best"] or None  # saved as {} before a first best epoch
    model = wrap_model(net) if wrap_model is not None else net
    prep = BatchPreparer(spec.transform, config, stream_seed, spec.cutouts)
    bs = config.batch_size

    # a checkpoint of a member that stopped early (its final one, when Ray Train restarts a
    # finished run or its worker after the last report) is resumed as finished: another
    # epoch could find a lower validation loss and train on past the stopping rule
    first = epochs if progress.stale >= config.patience else progress.next_epoch
    for epoch in range(first, epochs):
        t_epoch = time.perf_counter()
        lr = peak * cosine_lr_factor(epoch, epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # every stream restarts from (seed, epoch): a resumed epoch is the uninterrupted one
        torch.manual_seed(stream_seed * 100_003 + epoch)
        prep.rng = np.random.default_rng([stream_seed, epoch])
        model.train()
        target_batches = None
        if target is not None:
            net.domain.weight = reversal_weight((epoch + 0.5) / epochs, config.domain_weight)
            target_batches = _endless(target, prep, bs, stream_seed + 7919 * (epoch + 1))
        sums = run_epoch(
            model,
            net,
            _prepared(train, prep, bs, True, stream_seed + epoch),
            device,
            optimizer,
            target_batches,
        )
        if target_batches is not None:
            target_batches.close()  # stops a half-read target stream
        if not math.isfinite(sums.loss):
            raise FloatingPointError(
                f"member seed {spec.seed}, epoch {epoch}: the training loss is {sums.loss} "
                "(labels, weights or inputs outside what the network can fit)"
            )
        progress.train_rows += sums.rows
        progress.unused_rows = max(progress.unused_rows, sums.unused_rows)
        progress.train_seconds += time.perf_counter() - t_epoch
        model.eval()
        val_batches = _prepared(val, prep, 4 * bs, False, None)
        val_loss = run_epoch(model, net, val_batches, device, None).loss
        if val_loss < progress.best_loss:
            progress.best_loss, progress.stale = val_loss, 0
            progress.best_wall_time = time.time()
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            progress.stale += 1
        record = EpochRecord(
            epoch=epoch,
            train_loss=sums.loss,
            val_loss=val_loss,
            domain_loss=sums.domain_loss,
            best_val_loss=progress.best_loss,
            seconds=time.perf_counter() - t_epoch,
            lr=lr,
        )
        progress.history.append(record)
        progress.next_epoch = epoch + 1
        stop = progress.stale >= config.patience or epoch == epochs - 1
        if on_epoch is not None:
            checkpoint = partial(member_checkpoint, net, optimizer, progress, best_state)
            on_epoch(progress, checkpoint, stop)
        if stop:
            break
    if best_state is None:
        if not progress.history:
            raise RuntimeError(f"member seed {spec.seed}: no epoch was trained (epochs={epochs})")
        raise FloatingPointError(
            f"member seed {spec.seed}: no epoch of {len(progress.history)} gave a finite "
            f"validation loss (last: {progress.history[-1].val_loss}); the validation rows "
            "have no usable label or band, or the network diverged"
        )
    return MemberResult(best_state, progress)


def epochs_reached(spec: MemberSpec, progress: MemberProgress, stop: bool) -> tuple[int, str]:
    """How many of its epochs a member has accounted for after a finished epoch, for a
    progress count over all members' epochs, and a note for the progress line: the epochs
    run (those before a resume included), or all of them when the member stops (early), so
    that the count ends at members x epochs."""
    record = progress.history[-1]
    reached = spec.n_epochs if stop else record.epoch + 1
    return reached, f"member seed {spec.seed} epoch {record.epoch}: val loss {record.val_loss:.3f}"


def member_checkpoint(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: MemberProgress,
    best_state: dict[str, torch.Tensor] | None,
) -> dict[str, Any]:
    """A checkpoint that :func:`train_member` resumes from: weights and optimiser (CPU
    tensors), progress (plain values) and the best weights so far; loads with
    ``torch.load(..., weights_only=True)``."""
    return training_state(net, optimizer, progress=progress.to_dict(), best=best_state or {})
