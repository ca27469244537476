"""The per-worker function of Ray Train's TorchTrainer: one ensemble member on dataset shards.

It wraps :func:`raypz.train.member.train_member` (the Ray-free trainer) for Ray: the worker
reads its shards of the ``train`` and ``val`` Ray Datasets (and, for domain-adversarial
training, of the unlabelled ``target`` dataset), so training streams the same Parquet as
inference; DDP wraps the model when there is more than one worker (NCCL on GPUs, gloo on CPUs);
rank 0 writes a checkpoint after every epoch, and a restarted worker resumes from
``ray.train.get_checkpoint()``. Early stopping acts on the validation loss averaged over all
workers, so every rank stops at the same epoch. The metrics reported each epoch include
``worker_nodes``: the Ray node id of every rank, in rank order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from raypz.train.member import (
    MemberProgress,
    MemberSpec,
    NumpyBatch,
    epochs_reached,
    train_member,
)

STATE_FILE = "member_state.pt"
"""File of a checkpoint directory: :func:`raypz.train.member.member_checkpoint`."""


class ShardBatches:
    """A worker's Ray Data shard as a :class:`raypz.train.member.BatchSource` (shuffled
    through a local buffer of 8 batches)."""

    def __init__(self, shard: ray.data.DataIterator) -> None:
        self.shard = shard

    def batches(self, batch_size: int, shuffle_seed: int | None) -> Iterator[NumpyBatch]:
        """Numpy batches of the shard."""
        shuffle = (
            {"local_shuffle_buffer_size": 8 * batch_size, "local_shuffle_seed": shuffle_seed}
            if shuffle_seed is not None
            else {}
        )
        return self.shard.iter_batches(batch_size=batch_size, batch_format="numpy", **shuffle)


def train_loop_per_worker(job: dict[str, Any]) -> None:
    """Train one member on this worker's shards; checkpoints and metrics go to Ray Train.

    ``job`` (Ray Train's loop config) holds ``spec``, the :class:`MemberSpec`, and
    ``progress``, the handle of the driver's epoch counter
    (:class:`raypz.ray_runtime.RemoteProgress`) or None.
    """
    spec: MemberSpec = job["spec"]
    rank = ray.train.get_context().get_world_rank()
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    worker_nodes = _gather(ray.get_runtime_context().get_node_id())
    target = (
        ShardBatches(ray.train.get_dataset_shard("target")) if spec.config.domain_adapt else None
    )
    train_member(
        spec,
        ShardBatches(ray.train.get_dataset_shard("train")),
        ShardBatches(ray.train.get_dataset_shard("val")),
        device=ray.train.torch.get_device(),
        target=target,
        resume=resume,
        on_epoch=_reporter(rank, worker_nodes, spec, job.get("progress")),
        wrap_model=ray.train.torch.prepare_model,
        rank=rank,
    )


def _reporter(
    rank: int, worker_nodes: list[str], spec: MemberSpec, counter: Any
) -> Callable[[MemberProgress, Callable[[], dict[str, Any]], bool], None]:
    """The per-epoch hook: every rank reports the epoch's metrics; rank 0 adds a checkpoint
    and advances the driver's epoch counter (a member that stops early counts the epochs it
    skips, so the count ends at members x epochs)."""

    def report(progress: MemberProgress, state: Callable[[], dict[str, Any]], stop: bool) -> None:
        if rank == 0 and counter is not None:
            counter.reach.remote(spec.seed, *epochs_reached(spec, progress, stop))
        metrics = {
            **asdict(progress.history[-1]),
            **{k: v for k, v in progress.to_dict().items() if k != "history"},
            "worker_nodes": worker_nodes,
            "done": stop,
        }
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                torch.save(state(), Path(tmp) / STATE_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)

    return report


def _gather(value: str) -> list[str]:
    """``value`` of every rank, in rank order (one collective; [value] without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def load_member_checkpoint(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    """The state a checkpoint written by this loop holds (see ``member_checkpoint``): its
    ``best`` weights and ``progress`` (history per epoch) are what the driver keeps."""
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
