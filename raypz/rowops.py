"""Row-wise tensor primitives of the inference hot path, one function per operation.

The predictor's per-object work (PDF summaries, compact encoding) is written once in torch and
runs on the actor's device. On a GPU these functions are plain torch. On a CPU, torch's
single-threaded kernels for these few operations were measured 3-15x slower than numpy's on
(1024, 701) float32 PDF blocks (argmax 8x, boolean-mask select 3x, sqrt 3x, a product with a
(N, 1) column 15x; 2-core x86 VM, torch 2.13), so there each runs numpy's kernel on the
tensor's memory: same inputs, same results.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

NUMPY_ON_CPU = True
"""Use numpy's kernels for CPU tensors. Tests set it False to run the GPU branches (plain
torch) on the CPU and compare."""


def _numpy_kernel(t: torch.Tensor) -> bool:
    return NUMPY_ON_CPU and t.device.type == "cpu"


def host_tensor(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``a``'s memory, also for a read-only array (a view of an Arrow
    buffer, which torch warns about): callers never write to it in place."""
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return torch.from_numpy(a)


def argmax_rows(t: torch.Tensor) -> torch.Tensor:
    """Column index (N,) int64 of each row's first maximum of a 2-D tensor (bool allowed)."""
    if _numpy_kernel(t):
        return torch.from_numpy(np.argmax(t.numpy(), axis=1))
    return (t.to(torch.uint8) if t.dtype == torch.bool else t).argmax(dim=1)


def first_last_nonzero(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (N,) int64 of the first and one past the last non-zero element of each row of
    a 2-D tensor; (0, 0) for a row of zeros."""
    n_cols = t.shape[1]
    if _numpy_kernel(t):
        m = t.numpy() != 0
        first, last = np.argmax(m, axis=1), n_cols - np.argmax(m[:, ::-1], axis=1)
        has = m[np.arange(len(m)), first]
        return torch.from_numpy(np.where(has, first, 0)), torch.from_numpy(np.where(has, last, 0))
    mask, cols = t != 0, torch.arange(n_cols, device=t.device)
    first = torch.where(mask, cols, n_cols).amin(dim=1)
    last = torch.where(mask, cols + 1, 0).amax(dim=1)
    return torch.where(first < n_cols, first, 0), last


def sqrt_levels(t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``rint(sqrt(t * scale))`` as uint8, with ``scale`` (N, 1) per row; a NaN gives 0 (so
    does an inf in a row of scale 0). Values must lie in [0, 255.5) where finite."""
    if _numpy_kernel(t):
        with np.errstate(invalid="ignore"):  # inf * 0
            a = np.multiply(t.numpy(), scale.numpy())
        np.fmax(a, 0.0, out=a)  # NaN -> 0 in one pass (nan_to_num makes three)
        np.rint(np.sqrt(a, out=a), out=a)
        return torch.from_numpy(a.astype(np.uint8))
    return (t * scale).sqrt_().round_().nan_to_num_(0.0).to(torch.uint8)


def masked_select(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The elements of ``t`` where ``mask`` is True, in row-major order, (K,)."""
    if _numpy_kernel(t):
        return torch.from_numpy(t.numpy()[mask.numpy()])
    return t[mask]


def window_mask(start: torch.Tensor, stop: torch.Tensor, n_cols: int) -> torch.Tensor:
    """(N, n_cols) bool: True in row i for columns start[i] <= j < stop[i]."""
    if _numpy_kernel(start):
        cols = np.arange(n_cols)
        s, e = start.numpy()[:, None], stop.numpy()[:, None]
        return torch.from_numpy((cols >= s) & (cols < e))
    cols = torch.arange(n_cols, device=start.device)
    return (cols >= start[:, None]) & (cols < stop[:, None])
