"""raypz.rowops: numpy's CPU kernels and the plain-torch (GPU) kernels give the same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raypz import rowops


@pytest.fixture
def both(monkeypatch):
    """Calls ``fn(*args)`` with numpy's kernels and with torch's, returns both results."""

    def run(fn, *args):
        monkeypatch.setattr(rowops, "NUMPY_ON_CPU", True)
        a = fn(*(x.clone() for x in args))
        monkeypatch.setattr(rowops, "NUMPY_ON_CPU", False)
        b = fn(*(x.clone() for x in args))
        return a, b

    return run


def _levels_input(rng) -> tuple[torch.Tensor, torch.Tensor]:
    pdf = rng.random((50, 40)).astype(np.float32) ** 6
    pdf[3] = 0.0
    pdf[4, 7] = np.nan
    pdf[0, :] = np.linspace(0, 1, 40, dtype=np.float32)  # a ramp: every level in one row
    peak = pdf.max(axis=1, keepdims=True)
    scale = np.where(peak > 0, np.float32(255.0**2) / np.where(peak > 0, peak, 1), 0)
    return torch.from_numpy(pdf), torch.from_numpy(scale.astype(np.float32))


def test_argmax_rows_takes_the_first_maximum(both):
    t = torch.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    a, b = both(rowops.argmax_rows, t)
    assert a.tolist() == b.tolist() == [1, 0, 0]
    mask = torch.tensor([[False, True, True], [False, False, False]])
    a, b = both(rowops.argmax_rows, mask)
    assert a.tolist() == b.tolist() == [1, 0]


def test_first_last_nonzero(both):
    t = torch.tensor([[0, 2, 0, 5, 0], [0, 0, 0, 0, 0], [7, 0, 0, 0, 1]], dtype=torch.uint8)
    (f1, l1), (f2, l2) = both(rowops.first_last_nonzero, t)
    assert f1.tolist() == f2.tolist() == [1, 0, 0]
    assert l1.tolist() == l2.tolist() == [4, 0, 5]


def test_sqrt_levels_round_half_to_even_and_zero_nan(both, rng):
    pdf, scale = _levels_input(rng)
    a, b = both(rowops.sqrt_levels, pdf, scale)
    assert a.dtype == b.dtype == torch.uint8
    expected = np.nan_to_num(np.rint(np.sqrt(pdf.numpy() * scale.numpy())), nan=0.0)
    np.testing.assert_array_equal(a.numpy(), expected.astype(np.uint8))
    # torch's CPU sqrt is not correctly rounded (1 ulp): a level may move by one quantum
    assert (a.int() - b.int()).abs().max() <= 1
    assert a[4].max() == b[4].max() == 0  # the row with a NaN: no levels


def test_masked_select_and_window_mask(both, rng):
    t = torch.from_numpy(rng.integers(0, 255, (6, 9), dtype=np.uint8))
    start, stop = torch.tensor([0, 2, 0, 8, 3, 0]), torch.tensor([9, 5, 0, 9, 3, 1])
    m1, m2 = both(lambda s, e: rowops.window_mask(s, e, 9), start, stop)
    assert torch.equal(m1, m2) and m1.sum() == 9 + 3 + 0 + 1 + 0 + 1
    a, b = both(rowops.masked_select, t, m1)
    assert torch.equal(a, b)
    np.testing.assert_array_equal(a.numpy(), t.numpy()[m1.numpy()])


def test_empty_batches(both):
    empty = torch.zeros((0, 7))
    a, b = both(rowops.argmax_rows, empty)
    assert a.shape == b.shape == (0,)
    (f1, _), (f2, _) = both(rowops.first_last_nonzero, empty.to(torch.uint8))
    assert f1.shape == f2.shape == (0,)
