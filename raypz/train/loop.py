"""The per-worker training loop run by Ray Train's TorchTrainer (one ensemble member).

Each worker reads its shard of the ``train`` and ``val`` Ray Datasets, so training streams the
same Parquet as inference. DDP wraps the model when there is more than one worker. Catalog
networks and CNNs on cutouts share this loop; for domain-adversarial training each step also
draws a batch of the unlabelled ``target`` dataset, and the loss adds the field classifier's
cross-entropy on both batches (its gradient reversed into the CNN). Rank 0
writes a checkpoint (model, optimiser, epoch, best weights so far) every epoch; a restarted
worker resumes from ``ray.train.get_checkpoint()``. Early stopping acts on the validation loss
averaged over all workers, so every rank stops at the same epoch.
"""

from __future__ import annotations

import copy
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
from raypz.models.domain import DomainClassifier, reversal_weight
from raypz.models.ensemble import to_device
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig

BEST_FILE = "best.safetensors"
STATE_FILE = "train_state.pt"


def _sum_over_workers(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


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


def _join(source: tuple, target: tuple) -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray]:
    """A source batch and a target batch as one: inputs, z, w (0 on target rows) and the
    is-target label of every row (one forward pass, so DDP sees each parameter once)."""
    (s_in, s_z, s_w), (t_in, t_z, _) = source, target
    inputs = tuple(np.concatenate([a, b]) for a, b in zip(s_in, t_in, strict=True))
    z = np.concatenate([s_z, t_z])
    w = np.concatenate([s_w, np.zeros(len(t_z), np.float32)])
    is_target = np.concatenate([np.zeros(len(s_z), np.float32), np.ones(len(t_z), np.float32)])
    return inputs, z, w, is_target


def _epoch(
    model: torch.nn.Module,
    net: torch.nn.Module,
    batches,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    target=None,
) -> tuple[float, float, int]:
    """One pass over a shard's batches; trains when an optimiser is given. ``target`` yields
    unlabelled target batches for domain-adversarial training.

    Returns the weighted mean redshift loss, the mean domain loss (NaN without a target) and
    the rows seen, all over all workers.
    """
    total, count, rows_seen, dom_total, dom_rows = 0.0, 0.0, 0, 0.0, 0
    amp = device.type == "cuda"
    for source in batches:
        is_target = None
        if target is not None:
            inputs, z, w, is_target = _join(source, next(target))
        else:
            inputs, z, w = source
        n_source = len(source[1])
        xs = [to_device(a, device) for a in inputs]
        zt, wt = to_device(z, device), to_device(w, device)
        with (
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp),
            torch.set_grad_enabled(optimizer is not None),
        ):
            outputs = model(*xs)
            rows = net.loss(outputs, xs[0], zt)
        loss = (rows * wt).sum() / wt.sum().clamp_min(1e-6)
        if is_target is not None:
            dom = DomainClassifier.loss(outputs[1], to_device(is_target, device)).mean()
            loss = loss + dom
            dom_total += float(dom.detach()) * len(z)
            dom_rows += len(z)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        total += float((rows.detach() * wt).sum())
        count += float(wt.sum())
        rows_seen += n_source
    total, count, rows_seen, dom_total, dom_rows = _sum_over_workers(
        [total, count, rows_seen, dom_total, dom_rows], device
    )
    dom_loss = dom_total / dom_rows if dom_rows else math.nan
    return total / max(count, 1.0), dom_loss, int(rows_seen)


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
    if cutouts is not None and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(net)
    net = net.to(device)
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
        train_loss, domain_loss, rows_seen = _epoch(
            model, net, _batches(train_it, prep, bs, True, seed + epoch), device, optimizer, target
        )
        if target is not None:
            target.close()  # stops the target shard's half-read stream
        train_rows += rows_seen
        train_seconds += time.perf_counter() - t_epoch
        schedule.step()
        model.eval()
        val_batches = _batches(val_it, prep, 4 * bs, False, None)
        val_loss, _, _ = _epoch(model, net, val_batches, device, None)
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
