"""The optimisation steps of the training loop, without Ray: one epoch over batches, the mixed
precision policy, and checkpointable training state.

:mod:`raypz.train.loop` runs these inside Ray Train workers; ``benchmarks/gpu_train_step.py``
runs the same steps under a plain ``torch.distributed`` process group on a machine that has
CUDA but no Ray. Nothing here imports Ray.

Precision: on CUDA the forward pass and the loss run under bf16 autocast (the trunk's matrix
products in bf16; the PDF heads force float32, see ``raypz.models.heads._full_precision``);
bf16 has float32's exponent range, so no gradient scaler is needed. On CPU everything is
float32. Weights, gradients and optimiser state stay float32 everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from raypz.models.domain import DomainClassifier
from raypz.models.ensemble import to_device

AMP_DTYPE = torch.bfloat16
"""Autocast dtype of the trunk on CUDA."""
MAX_GRAD_NORM = 5.0
"""Gradient-norm clip of every optimiser step."""

Batch = tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]
"""(network inputs, redshifts z (N,), weights w (N,)) as numpy arrays (see BatchPreparer)."""


def amp_enabled(device: torch.device) -> bool:
    """bf16 autocast is used on CUDA only (CPU autocast was slower and is not needed)."""
    return device.type == "cuda"


def sum_over_workers(values: torch.Tensor | list[float], device: torch.device) -> list[float]:
    """``values`` summed over the workers of the process group (as they are without one)."""
    t = torch.as_tensor(values, dtype=torch.float64).to(device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def join_target(
    source: Batch, target: Batch
) -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A source batch and a target batch as one: inputs, z, w (0 on target rows), the
    is-target label of every row (one forward pass, so DDP sees each parameter once) and the
    rows the domain loss counts (1/0): source rows that train, target rows with usable inputs.
    Rows without a usable band or cutout hold fill values (zeroed images), which would let
    the classifier tell the fields apart by their missing data."""
    (s_in, s_z, s_w), (t_in, t_z, t_w) = source, target
    inputs = tuple(np.concatenate([a, b]) for a, b in zip(s_in, t_in, strict=True))
    z = np.concatenate([s_z, t_z])
    w = np.concatenate([s_w, np.zeros(len(t_z), np.float32)])
    is_target = np.concatenate([np.zeros(len(s_z), np.float32), np.ones(len(t_z), np.float32)])
    counted = np.concatenate([s_w > 0, t_w > 0]).astype(np.float32)
    return inputs, z, w, is_target, counted


class EpochSums(NamedTuple):
    """One pass over the batches of every worker's shard, summed over the workers."""

    loss: float
    """Weighted mean redshift loss (nats)."""
    domain_loss: float
    """Mean domain-classifier loss; NaN without a target."""
    rows: int
    """Source rows seen."""
    unused_rows: int
    """Source rows of weight 0, which teach nothing: no usable band or cutout, or no usable
    redshift (BatchPreparer)."""


def run_epoch(
    model: torch.nn.Module,
    net: torch.nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    target: Iterator[Batch] | None = None,
) -> EpochSums:
    """One pass over a shard's batches; trains when an optimiser is given.

    ``model`` is what is called (the DDP wrapper, or ``net`` itself); ``net`` is the bare
    network, whose ``loss`` is used. ``target`` yields unlabelled target batches for
    domain-adversarial training. Each step: inputs to ``device``; forward and loss under bf16
    autocast on CUDA; weighted mean loss; backward; gradient clip; optimiser step. The sums are
    kept on the device and read once at the end (no host sync per step).

    Returns the sums of the epoch over all workers (:class:`EpochSums`).
    """
    acc = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, weight sum, domain sum
    rows_seen, unused, dom_rows = 0, 0, 0
    amp = amp_enabled(device)
    for source in batches:
        is_target = counted = None
        if target is not None:
            inputs, z, w, is_target, counted = join_target(source, next(target))
        else:
            inputs, z, w = source
        n_source = len(source[1])
        unused += int(np.count_nonzero(source[2] == 0))
        xs = [to_device(a, device) for a in inputs]
        zt, wt = to_device(z, device), to_device(w, device)
        with (
            torch.autocast(device.type, dtype=AMP_DTYPE, enabled=amp),
            torch.set_grad_enabled(optimizer is not None),
        ):
            outputs = model(*xs)
            rows = net.loss(outputs, xs[0], zt)
        loss = (rows * wt).sum() / wt.sum().clamp_min(1e-6)
        if is_target is not None:
            dw = to_device(counted, device)
            dom_rows_loss = DomainClassifier.loss(outputs[1], to_device(is_target, device))
            dom = (dom_rows_loss * dw).sum() / dw.sum().clamp_min(1.0)
            loss = loss + dom
            acc[2] += dom.detach().double() * len(z)
            dom_rows += len(z)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
        acc[0] += (rows.detach() * wt).sum().double()
        acc[1] += wt.sum().double()
        rows_seen += n_source
    counts = torch.tensor([rows_seen, unused, dom_rows], dtype=torch.float64, device=device)
    total, count, dom_total, rows_seen, unused, dom_rows = sum_over_workers(
        torch.cat([acc, counts]), device
    )
    dom_loss = dom_total / dom_rows if dom_rows else math.nan
    # no weighted row anywhere: no loss (NaN), not a perfect one (0)
    loss = total / count if count > 0 else math.nan
    return EpochSums(loss, dom_loss, int(rows_seen), int(unused))


def to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` (tensors in dicts, lists and tuples) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def training_state(
    net: torch.nn.Module, optimizer: torch.optim.Optimizer, **extra: Any
) -> dict[str, Any]:
    """Model and optimiser state (CPU tensors, so a checkpoint written on a GPU loads on any
    device) plus ``extra`` bookkeeping, for ``torch.save``."""
    return {"model": to_cpu(net.state_dict()), "optimizer": to_cpu(optimizer.state_dict()), **extra}


def restore_training_state(
    net: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load :func:`training_state` into ``net`` and ``optimizer``. Call it once ``net`` is on
    its device and ``optimizer`` holds its parameters: the optimiser moves its restored state
    to the device of each parameter (restoring first and moving the net afterwards would leave
    the Adam moments on the CPU beside CUDA weights)."""
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
