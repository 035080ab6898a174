"""The torch int64 requantisation and add rule equal fcos3d.runtime.reference.fixedpoint bit for bit."""

import numpy as np
import torch

from fcos3d.int8 import fixedpoint as fx
from fcos3d.quant import intops


def test_requantize_equals_fixedpoint():
    rng = np.random.default_rng(0)
    scales = np.concatenate([2.0 ** rng.uniform(-20, 3, 300), [0.5, 0.25, 1.0, 2.0**-10, 0.3]])
    m, sh = fx.quantize_multiplier(scales)
    acc = rng.integers(-(2**20), 2**20, size=(64, scales.size))
    acc[:8] = np.arange(-4, 4)[:, None]  # small values: exact ties for the power-of-two scales
    want = fx.requantize(acc, m, sh, axis=1)
    got = intops.requantize(
        torch.from_numpy(acc),
        torch.from_numpy(m.astype(np.int64)).reshape(1, -1),
        torch.from_numpy(sh.astype(np.int64)).reshape(1, -1),
    )
    np.testing.assert_array_equal(got.numpy(), want)


def test_add_requantize_equals_fixedpoint_on_all_pairs():
    a, b = np.meshgrid(np.arange(-128, 128, dtype=np.int8), np.arange(-128, 128, dtype=np.int8))
    for s_a, s_b, s_o in ((0.05, 0.031, 0.06), (0.5, 0.25, 0.5), (0.01, 0.2, 0.15)):
        r = fx.add_multipliers(np.float32(s_a), np.float32(s_b), np.float32(s_o))
        want = fx.add_requantize(a, b, r)
        got = intops.add_requantize(torch.from_numpy(a), torch.from_numpy(b), r)
        np.testing.assert_array_equal(got.numpy(), want)
