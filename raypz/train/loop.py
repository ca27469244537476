"""The per-worker training loop run by Ray Train's TorchTrainer (one ensemble member).

Each worker reads its shard of the ``train`` and ``val`` Ray Datasets, so training streams the
same Parquet as inference. DDP wraps the model when there is more than one worker. Catalog
networks and CNNs on cutouts share this loop; for domain-adversarial training each step also
draws a batch of the unlabelled ``target`` dataset, and the loss adds the field classifier's
cross-entropy on both batches (its gradient reversed into the CNN). Rank 0
writes a checkpoint (model, optimiser, epoch, best weights so far) every epoch; a restarted
worker resumes from ``ray.train.get_checkpoint()``. Early stopping acts on the validation loss
averaged over all workers, so every rank stops at the same epoch.

The steps themselves (bf16 autocast on CUDA, loss, clip, optimiser step; checkpoint state as
CPU tensors) are in :mod:`raypz.train.steps`, which does not need Ray. The metrics reported
each epoch include ``worker_nodes``: the Ray node id of every rank, in rank order.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from raypz.features import FeatureTransform
from raypz.features.cutouts import CutoutStretch
from raypz.models.artifact import build_network
from raypz.models.domain import reversal_weight
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig
from raypz.train.steps import restore_training_state, run_epoch, training_state

BEST_FILE = "best.safetensors"
STATE_FILE = "train_state.pt"


def _batches(it, prep: BatchPreparer, batch_size: int, augment: bool, shuffle_seed: int | None):
    """(inputs, z, w) numpy batches of a dataset shard, shuffled locally when augmenting."""
    kwargs = {"local_shuffle_buffer_size": 8 * batch_size, "local_shuffle_seed": shuffle_seed}
    for batch in it.iter_batches(
        batch_size=batch_size, batch_format="numpy", **(kwargs if augment else {})
    ):
        yield prep(batch, augment=augment)


def _endless(it, prep: BatchPreparer, batch_size: int, seed: int):
    """Target batches for domain adaptation, cycling through the shard as often as needed."""
    for rep in itertools.count():
        yield from _batches(it, prep, batch_size, True, seed + rep)


def train_loop_per_worker(cfg: dict) -> None:
    """Train one member; ``cfg`` holds JSON-able configs plus optional initial weights."""
    config = TrainConfig.from_dict(cfg["train"])
    transform = FeatureTransform.from_dict(cfg["features"])
    cutouts = CutoutStretch.from_dict(cfg["cutouts"]) if cfg.get("cutouts") else None
    epochs, lr = cfg["epochs"], cfg["lr"]
    ctx = ray.train.get_context()
    seed = cfg["seed"] * 1000 + ctx.get_world_rank()
    torch.manual_seed(seed)
    device = ray.train.torch.get_device()
    net = build_network(config.network, transform, config.grid, cutouts)
    if cfg.get("init_state"):
        net.load_state_dict({k: torch.from_numpy(v) for k, v in cfg["init_state"].items()})
    if cutouts is not None and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    # on the device before the optimiser exists, so that restored Adam moments land beside
    # the weights (see restore_training_state)
    net = net.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay)
    start, best_loss, best_state, stale = 0, math.inf, None, 0
    # throughput bookkeeping (benchmarks/bench_train.py): rows and seconds of training epochs
    # and the wall-clock time of the best epoch, carried across restarts in the checkpoint
    train_rows, train_seconds, best_wall_time = 0, 0.0, math.nan

    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
            best_state = load_file(str(Path(d) / BEST_FILE))
        restore_training_state(net, optimizer, state)
        start, best_loss, stale = state["epoch"] + 1, state["best_loss"], state["stale"]
        train_rows = state.get("train_rows", 0)
        train_seconds = state.get("train_seconds", 0.0)
        best_wall_time = state.get("best_wall_time", math.nan)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs))
    )
    for _ in range(start):
        schedule.step()
    # DDP (NCCL on GPUs, gloo on CPUs: Ray Train's TorchConfig default) when world size > 1
    model = ray.train.torch.prepare_model(net)
    worker_nodes = _gather(ray.get_runtime_context().get_node_id())
    prep = BatchPreparer(transform, config, seed, cutouts)
    train_it = ray.train.get_dataset_shard("train")
    val_it = ray.train.get_dataset_shard("val")
    target_it = ray.train.get_dataset_shard("target") if config.domain_adapt else None
    bs = config.batch_size

    for epoch in range(start, epochs):
        t_epoch = time.perf_counter()
        model.train()
        target = None
        if target_it is not None:
            net.domain.weight = reversal_weight((epoch + 0.5) / epochs, config.domain_weight)
            target = _endless(target_it, prep, bs, seed + 7919 * (epoch + 1))
        train_loss, domain_loss, rows_seen = run_epoch(
            model, net, _batches(train_it, prep, bs, True, seed + epoch), device, optimizer, target
        )
        if target is not None:
            target.close()  # stops the target shard's half-read stream
        train_rows += rows_seen
        train_seconds += time.perf_counter() - t_epoch
        schedule.step()
        model.eval()
        val_batches = _batches(val_it, prep, 4 * bs, False, None)
        val_loss, _, _ = run_epoch(model, net, val_batches, device, None)
        if val_loss < best_loss:
            best_loss, stale, best_wall_time = val_loss, 0, time.time()
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        stop = stale >= config.patience or epoch == epochs - 1
        metrics = {
            "epoch": epoch,
            "epoch_seconds": time.perf_counter() - t_epoch,
            "train_loss": train_loss,
            "domain_loss": domain_loss,
            "val_loss": val_loss,
            "best_val_loss": best_loss,
            "train_rows": train_rows,
            "train_seconds": train_seconds,
            "best_wall_time": best_wall_time,
            "worker_nodes": worker_nodes,
            "done": stop,
        }
        if ctx.get_world_rank() == 0:
            print(
                f"member seed {cfg['seed']} epoch {epoch}: train {train_loss:.4f} "
                f"val {val_loss:.4f}"
                + (f" domain {domain_loss:.3f}" if target is not None else "")
                + f" ({metrics['epoch_seconds']:.1f} s)",
                flush=True,
            )
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if ctx.get_world_rank() == 0:
                save_file(best_state, str(Path(tmp) / BEST_FILE))
                state = training_state(
                    net,
                    optimizer,
                    epoch=epoch,
                    best_loss=best_loss,
                    stale=stale,
                    train_rows=train_rows,
                    train_seconds=train_seconds,
                    best_wall_time=best_wall_time,
                )
                torch.save(state, Path(tmp) / STATE_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        if stop:
            break


def _gather(value: str) -> list[str]:
    """``value`` of every rank, in rank order (one collective; [value] without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def load_best_state(checkpoint: ray.train.Checkpoint) -> dict[str, torch.Tensor]:
    """The best-validation weights stored in a checkpoint written by this loop."""
    with checkpoint.as_directory() as d:
        return load_file(str(Path(d) / BEST_FILE))


def numpy_state(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A state dict as numpy arrays, to pass initial weights to workers."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
