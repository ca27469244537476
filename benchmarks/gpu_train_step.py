"""The training step of ``jobs/train_ensemble.py --gpu yes`` on one device, without Ray: checks
and speed.

    PYTHONPATH=. python3 benchmarks/gpu_train_step.py                       # CUDA if present
    PYTHONPATH=. python3 benchmarks/gpu_train_step.py --device cpu --steps 10 --rows 8000

Needs only numpy, torch, safetensors and pyarrow (and this repository on ``PYTHONPATH``): no
Ray. It builds the default catalog network (MLP + DAE + MDN head, ``TrainConfig()``'s
architecture and z grid) with a feature transform fitted on a toy catalog (colours a smooth
function of z: ``raypz.sim`` would need speclite), starts a one-process ``torch.distributed``
group (NCCL on CUDA, gloo on CPU: what Ray Train's TorchConfig picks), wraps the network in
DistributedDataParallel as ``ray.train.torch.prepare_model`` does, and trains it with the
loop's own steps (:func:`raypz.train.steps.run_epoch`: inputs to the device, bf16 autocast on
CUDA, weighted loss, backward, gradient clip at 5, AdamW step). It prints and checks:

- the device, torch / CUDA / NCCL versions and the process-group backend;
- the precision policy: the first trunk layer's output is bfloat16 under autocast on CUDA
  (float32 on CPU, where the loop does not autocast) and the head's output is float32; the
  weights and their gradients are float32;
- for each ``--batch-sizes`` value, a fresh network trained for ``--steps`` steps in
  ``--chunks`` chunks: the mean loss of each chunk (it must go down), steps/s and rows/s
  (timed after a few warm-up steps; they include the host-to-device copy of every batch, as in
  the loop, but not Ray Data's batch preparation);
- the checkpoint round trip of the loop (:func:`raypz.train.steps.training_state`): every
  saved tensor is on the CPU, and restoring into a network already on the device puts the Adam
  moments on the device, gives the same evaluation loss, and the next step trains.

Exits 1 if a check fails. Under 60 s on one GPU; about 20 s on 2 CPU cores with
``--device cpu --steps 10 --rows 8000``.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raypz.columns import BANDS, mag_to_flux
from raypz.features import FeatureTransform, flux_arrays
from raypz.models.artifact import build_network
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig
from raypz.train.steps import (
    AMP_DTYPE,
    amp_enabled,
    restore_training_state,
    run_epoch,
    training_state,
)

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    """Print one check's outcome; remember failures for the exit code."""
    print(f"  [{'ok' if ok else 'FAILED'}] {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_group(device: torch.device) -> str:
    """A one-process group on loopback: NCCL on CUDA, gloo on CPU; its backend."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=0, world_size=1)
    return dist.get_backend()


def toy_survey(rows: int, seed: int, config: TrainConfig) -> dict[str, np.ndarray]:
    """A toy labelled catalog in the pipeline's columns: redshifts in (0, 3.4), i magnitudes
    20-25, colours a smooth non-degenerate function of z, Gaussian flux noise of a 5-sigma
    depth of 25.5. (``raypz.sim`` needs speclite, which this script does without: the point
    is the training step, not the model.)"""
    rng = np.random.default_rng(seed)
    z = np.clip(rng.gamma(2.0, 0.35, rows), 0.01, 3.4)
    i_mag = rng.uniform(20.0, 25.0, rows)
    out = {config.columns.redshift: z.astype(np.float32)}
    sky = mag_to_flux(np.float64(25.5)) / 5.0
    for b, (flux_col, err_col) in enumerate(
        zip(config.columns.flux_columns(BANDS), config.columns.flux_err_columns(BANDS), strict=True)
    ):
        colour = 0.6 * np.sin(0.8 * (b + 1) * z) + 0.25 * (3 - b) * np.log1p(z)
        flux = mag_to_flux(i_mag + colour)
        out[flux_col] = flux + rng.normal(0.0, sky, rows)
        out[err_col] = np.full(rows, sky)
    return out


def prepared_arrays(rows: int, seed: int, config: TrainConfig):
    """Features, redshifts and weights of the toy survey (the loop's BatchPreparer), and the
    feature transform fitted on it."""
    t0 = time.perf_counter()
    columns = toy_survey(rows, seed, config)
    transform = FeatureTransform.fit(*flux_arrays(columns, config.columns), columns=config.columns)
    (x,), z, w = BatchPreparer(transform, config, seed)(columns, augment=False)
    print(
        f"data: {len(z)} toy catalog rows, {x.shape[1]} features, "
        f"{int((w > 0).sum())} usable ({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    return transform, x, z, w


def batches(x, z, w, batch_size: int, steps: int, rng: np.random.Generator):
    """``steps`` random batches (inputs, z, w) drawn with replacement between batches."""
    for _ in range(steps):
        idx = rng.integers(0, len(z), batch_size)
        yield (x[idx],), z[idx], w[idx]


class DtypeProbe:
    """Records the dtype of a module's output (the last forward)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.dtype: torch.dtype | None = None
        module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        self.dtype = output.dtype


def fresh_model(config: TrainConfig, transform, device: torch.device, seed: int):
    """The network on ``device``, DDP-wrapped as Ray Train's prepare_model does, and AdamW."""
    torch.manual_seed(seed)
    net = build_network(config.network, transform, config.grid).to(device)
    ddp = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return net, ddp, opt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed_and_loss(args, config, transform, data, device) -> dict | None:
    """Train a fresh network at each batch size; print loss per chunk and speed."""
    x, z, w = data
    print(f"\ntraining: {args.steps} steps per batch size in {args.chunks} chunks", flush=True)
    print("| batch | loss per chunk | steps/s | rows/s |\n| --- | --- | --- | --- |", flush=True)
    kept = None
    for bs in args.batch_sizes:
        net, ddp, opt = fresh_model(config, transform, device, args.seed)
        ddp.train()
        rng = np.random.default_rng(args.seed)
        run_epoch(ddp, net, batches(x, z, w, bs, args.warmup, rng), device, opt)  # warm-up
        sync(device)
        losses, seconds = [], 0.0
        per_chunk = max(1, args.steps // args.chunks)
        for _ in range(args.chunks):
            t0 = time.perf_counter()
            loss = run_epoch(ddp, net, batches(x, z, w, bs, per_chunk, rng), device, opt).loss
            sync(device)
            seconds += time.perf_counter() - t0
            losses.append(loss)
        steps = per_chunk * args.chunks
        print(
            f"| {bs} | {' > '.join(f'{v:.3f}' for v in losses)} | {steps / seconds:.1f} "
            f"| {steps * bs / seconds:,.0f} |",
            flush=True,
        )
        check(
            all(np.isfinite(losses)) and losses[-1] < losses[0],
            f"batch {bs}: loss goes down ({losses[0]:.3f} -> {losses[-1]:.3f})",
        )
        kept = {"net": net, "ddp": ddp, "opt": opt, "bs": bs}
    return kept


def precision_checks(config, transform, data, device) -> None:
    x, z, w = data
    net, ddp, opt = fresh_model(config, transform, device, 0)
    trunk, head = DtypeProbe(net.mlp[0][0]), DtypeProbe(net.head)
    ddp.train()
    run_epoch(ddp, net, batches(x, z, w, 256, 1, np.random.default_rng(0)), device, opt)
    amp = amp_enabled(device)
    want = AMP_DTYPE if amp else torch.float32
    print(
        f"\nprecision: autocast {'on (' + str(AMP_DTYPE) + ')' if amp else 'off'} on {device.type}",
        flush=True,
    )
    check(trunk.dtype == want, f"first trunk layer output is {trunk.dtype} (want {want})")
    check(head.dtype == torch.float32, f"head output is {head.dtype} (want torch.float32)")
    params = list(net.parameters())
    check(all(p.dtype == torch.float32 for p in params), "weights are float32 (AMP keeps masters)")
    check(
        all(p.grad is None or p.grad.dtype == torch.float32 for p in params),
        "gradients are float32",
    )


def checkpoint_checks(kept, config, transform, data, device) -> None:
    """Save as the loop does, reload into a network already on the device, train on."""
    x, z, w = data
    net, opt = kept["net"], kept["opt"]
    print("\ncheckpoint round trip (raypz.train.steps.training_state)", flush=True)
    state = training_state(net, opt, epoch=0)
    tensors = [t for t in _tensors(state)]
    check(all(t.device.type == "cpu" for t in tensors), f"all {len(tensors)} saved tensors on CPU")
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, map_location="cpu", weights_only=True)
    net2, ddp2, opt2 = fresh_model(config, transform, device, 1)
    restore_training_state(net2, opt2, loaded)
    moments = [t for s in opt2.state.values() for t in s.values() if t.dim() > 0]
    check(
        bool(moments) and all(t.device == next(net2.parameters()).device for t in moments),
        f"restored Adam moments on {device}",
    )
    rng = np.random.default_rng(99)
    val = list(batches(x, z, w, 4096, 2, rng))
    kept["ddp"].eval()
    ddp2.eval()
    a = run_epoch(kept["ddp"], net, val, device, None).loss
    b = run_epoch(ddp2, net2, val, device, None).loss
    check(abs(a - b) <= 1e-5 * max(1.0, abs(a)), f"same evaluation loss ({a:.5f} vs {b:.5f})")
    ddp2.train()
    c = run_epoch(ddp2, net2, batches(x, z, w, kept["bs"], 2, rng), device, opt2).loss
    check(bool(np.isfinite(c)), f"restored optimiser steps on {device} (loss {c:.3f})")


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda[:n] or cpu")
    p.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384], help="rows per step"
    )
    p.add_argument(
        "--steps", type=int, help="timed steps per batch size (default 300 CUDA, 20 CPU)"
    )
    p.add_argument("--chunks", type=int, default=5, help="loss is printed per chunk of steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--rows", type=int, default=100_000, help="toy catalog rows")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if args.steps is None:
        args.steps = 300 if device.type == "cuda" else 20
    if args.threads:
        torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, device {device}", flush=True)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(
            f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}, "
            f"bf16 supported: {torch.cuda.is_bf16_supported()}",
            flush=True,
        )
    else:
        print(f"CPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}", flush=True)
    backend = init_group(device)
    print(f"process group: {backend}, world size {dist.get_world_size()}", flush=True)
    check(backend == ("nccl" if device.type == "cuda" else "gloo"), f"backend {backend}")
    try:
        config = TrainConfig()
        transform, *data = prepared_arrays(args.rows, args.seed, config)
        precision_checks(config, transform, data, device)
        kept = speed_and_loss(args, config, transform, data, device)
        checkpoint_checks(kept, config, transform, data, device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
            print(f"\npeak GPU memory allocated: {peak:.0f} MiB", flush=True)
    finally:
        dist.destroy_process_group()
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s", flush=True)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) FAILED: {FAILURES}", flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
