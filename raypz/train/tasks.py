"""Members of small labelled sets trained as plain Ray tasks with the in-process trainer.

A spec-z set of 10^4-10^5 rows trains a member in seconds to minutes; Ray Train's fixed costs
per member (a controller, a worker group, dataset split coordinators, a checkpoint every epoch)
were measured at several times that (568 s for 5 members on 10k rows on 2 cores, most of it not
arithmetic). Here the labelled table goes to the object store once and each member is one task
(1 CPU, or 1 GPU when the cluster has them) that runs :func:`raypz.train.member.train_member` on
its rows in memory, so members still run side by side across a cluster. Rerunning the same
command skips finished members (:mod:`raypz.train.finished`); an interrupted member restarts
from its first epoch (a few seconds of work at these sizes).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray
import torch

from raypz.ray_runtime import assigned_device
from raypz.train.augment import BalanceWeights
from raypz.train.labelled import member_rows
from raypz.train.member import (
    MemberProgress,
    MemberSpec,
    TableBatches,
    epochs_reached,
    train_member,
)


def _train_task(
    table: pa.Table,
    spec: MemberSpec,
    fold: int | None,
    balance: BalanceWeights | None,
    counter: Any,
) -> dict[str, Any]:
    """The task body: the member's rows, training, and its result as plain tensors/values."""
    torch.set_num_threads(1)  # one task per CPU: more threads than that only contend
    config = spec.config
    train = TableBatches(member_rows(table, config, fold, True, balance))
    val = TableBatches(member_rows(table, config, fold, False))

    def report(progress: MemberProgress, _checkpoint, stop: bool) -> None:
        if counter is not None:
            counter.reach.remote(spec.seed, *epochs_reached(spec, progress, stop))

    result = train_member(spec, train, val, device=assigned_device(), on_epoch=report)
    return {"best": result.best_state, "progress": result.progress.to_dict()}


def fit_in_task(
    table: ray.ObjectRef,
    spec: MemberSpec,
    fold: int | None,
    balance: BalanceWeights | None,
    use_gpu: bool,
    counter: Any = None,
) -> tuple[dict[str, torch.Tensor], MemberProgress]:
    """Train one member in a Ray task on the labelled ``table`` (an object-store reference);
    returns its best weights and progress. ``counter`` is a
    :class:`raypz.ray_runtime.RemoteProgress` handle or None."""
    task = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(_train_task)
    state = ray.get(task.remote(table, spec, fold, balance, counter))
    return state["best"], MemberProgress.from_dict(state["progress"])
