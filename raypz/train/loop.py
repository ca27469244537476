"""The per-worker training loop run by Ray Train's TorchTrainer (one ensemble member).

Each worker reads its shard of the ``train`` and ``val`` Ray Datasets, so training streams the
same Parquet as inference. DDP wraps the model when there is more than one worker. Rank 0
writes a checkpoint (model, optimiser, epoch, best weights so far) every epoch; a restarted
worker resumes from ``ray.train.get_checkpoint()``. Early stopping acts on the validation loss
averaged over all workers, so every rank stops at the same epoch.
"""

from __future__ import annotations

import copy
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
from raypz.models.catalog_net import CatalogNet
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig

BEST_FILE = "best.safetensors"
STATE_FILE = "train_state.pt"


def _sum_over_workers(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def _epoch(
    model: torch.nn.Module,
    net: CatalogNet,
    it,
    prep: BatchPreparer,
    device: torch.device,
    batch_size: int,
    optimizer: torch.optim.Optimizer | None,
    shuffle_seed: int | None,
) -> tuple[float, int]:
    """One pass over a shard; trains when an optimiser is given.

    Returns the weighted mean loss and the rows seen, both over all workers.
    """
    total, count, rows_seen = 0.0, 0.0, 0
    amp = device.type == "cuda"
    kwargs = {"local_shuffle_buffer_size": 8 * batch_size, "local_shuffle_seed": shuffle_seed}
    for batch in it.iter_batches(
        batch_size=batch_size, batch_format="numpy", **(kwargs if optimizer else {})
    ):
        x, z, w = (
            torch.from_numpy(a).to(device) for a in prep(batch, augment=optimizer is not None)
        )
        with (
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp),
            torch.set_grad_enabled(optimizer is not None),
        ):
            rows = net.loss(model(x), x, z)
        loss = (rows * w).sum() / w.sum().clamp_min(1e-6)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        total += float((rows.detach() * w).sum())
        count += float(w.sum())
        rows_seen += len(z)
    total, count, rows_seen = _sum_over_workers([total, count, rows_seen], device)
    return total / max(count, 1.0), int(rows_seen)


def train_loop_per_worker(cfg: dict) -> None:
    """Train one member; ``cfg`` holds JSON-able configs plus optional initial weights."""
    config = TrainConfig.from_dict(cfg["train"])
    transform = FeatureTransform.from_dict(cfg["features"])
    epochs, lr = cfg["epochs"], cfg["lr"]
    ctx = ray.train.get_context()
    seed = cfg["seed"] * 1000 + ctx.get_world_rank()
    torch.manual_seed(seed)
    device = ray.train.torch.get_device()
    z_grid = torch.tensor(config.grid.values, dtype=torch.float32)
    net = CatalogNet(transform.n_features, z_grid, config.net)
    if cfg.get("init_state"):
        net.load_state_dict({k: torch.from_numpy(v) for k, v in cfg["init_state"].items()})
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay)
    start, best_loss, best_state, stale = 0, math.inf, None, 0
    # throughput bookkeeping (benchmarks/bench_train.py): rows and seconds of training epochs
    # and the wall-clock time of the best epoch, carried across restarts in the checkpoint
    train_rows, train_seconds, best_wall_time = 0, 0.0, math.nan

    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=True)
            best_state = load_file(str(Path(d) / BEST_FILE))
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best_loss, stale = state["epoch"] + 1, state["best_loss"], state["stale"]
        train_rows = state.get("train_rows", 0)
        train_seconds = state.get("train_seconds", 0.0)
        best_wall_time = state.get("best_wall_time", math.nan)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs))
    )
    for _ in range(start):
        schedule.step()
    model = ray.train.torch.prepare_model(net)
    net = net.to(device)
    prep = BatchPreparer(transform, config, seed)
    train_it = ray.train.get_dataset_shard("train")
    val_it = ray.train.get_dataset_shard("val")

    for epoch in range(start, epochs):
        t_epoch = time.perf_counter()
        model.train()
        train_loss, rows_seen = _epoch(
            model, net, train_it, prep, device, config.batch_size, optimizer, seed + epoch
        )
        train_rows += rows_seen
        train_seconds += time.perf_counter() - t_epoch
        schedule.step()
        model.eval()
        val_loss, _ = _epoch(model, net, val_it, prep, device, 4 * config.batch_size, None, None)
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
            "val_loss": val_loss,
            "best_val_loss": best_loss,
            "train_rows": train_rows,
            "train_seconds": train_seconds,
            "best_wall_time": best_wall_time,
            "done": stop,
        }
        if ctx.get_world_rank() == 0:
            print(
                f"member seed {cfg['seed']} epoch {epoch}: train {train_loss:.4f} "
                f"val {val_loss:.4f} ({metrics['epoch_seconds']:.1f} s)",
                flush=True,
            )
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if ctx.get_world_rank() == 0:
                save_file(best_state, str(Path(tmp) / BEST_FILE))
                torch.save(
                    {
                        "model": copy.deepcopy(net.state_dict()),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch,
                        "best_loss": best_loss,
                        "stale": stale,
                        "train_rows": train_rows,
                        "train_seconds": train_seconds,
                        "best_wall_time": best_wall_time,
                    },
                    Path(tmp) / STATE_FILE,
                )
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        if stop:
            break


def load_best_state(checkpoint: ray.train.Checkpoint) -> dict[str, torch.Tensor]:
    """The best-validation weights stored in a checkpoint written by this loop."""
    with checkpoint.as_directory() as d:
        return load_file(str(Path(d) / BEST_FILE))


def numpy_state(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A state dict as numpy arrays, to pass initial weights to workers."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
