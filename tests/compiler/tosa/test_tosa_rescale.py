"""Our (multiplier, shift) as TOSA RESCALE operands compute docs/int8.md's requantisation exactly.

TOSA 1.0's apply_scale_32 (SINGLE_ROUND) is written out here in Python integers, the spec's formula and its
REQUIREs, and compared with fixedpoint.requantize on every admitted value class; no tools needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from fcos3d.compiler.tosa.rescale import TosaEmitError, check_value_range, tosa_rescale
from fcos3d.int8 import fixedpoint as fx


def apply_scale_32(value: int, multiplier: int, shift: int) -> int:
    """TOSA 1.0 apply_scale_32(value, multiplier, shift, double_round=false), REQUIREs included."""
    assert multiplier >= 0 and 2 <= shift <= 62
    assert -(1 << (shift - 1)) <= value < (1 << (shift - 1))
    return (value * multiplier + (1 << (shift - 1))) >> shift


@pytest.mark.parametrize("seed", range(4))
def test_tosa_rescale_equals_requantize(seed):
    rng = np.random.default_rng(seed)
    scales = np.concatenate(
        [
            2.0 ** rng.uniform(-30, 20, 300),  # conv / add factors, tiny to the add rule's 2**20
            2.0 ** rng.integers(-30, 21, 40).astype(float),  # powers of two: multiplier 2**29
            [1.0, 0.5, 2.0**20, 2.0**-33, 0.0],  # exact ones, a flushed scale, zero
        ]
    )
    m, sh = fx.quantize_multiplier(scales)
    tm, ts = tosa_rescale(m, sh, "op")
    checked = 0
    for k in range(scales.size):
        limit = 1 << (int(ts[k]) - 1)
        values = [0, 1, -1, 2, -2, 127, -128, 255, -255, 3, -3]
        values += [int(v) for v in rng.integers(-(2**31), 2**31, 20)]
        for v in values:
            if not -limit <= v < limit:
                continue  # outside TOSA's REQUIRE: the emitter refuses such ops (check_value_range)
            try:
                want = int(fx.requantize(np.int64(v), int(m[k]), int(sh[k])))
            except ValueError:
                continue  # the result leaves int32: outside docs/int8.md 2.2's domain too
            assert apply_scale_32(v, int(tm[k]), int(ts[k])) == want, (scales[k], v)
            checked += 1
    assert checked > 4000


def test_power_of_two_multiplier_is_widened():
    """2**20 (the add rule's larger input) is (2**29, 22) here: TOSA gets (2**30, 10), admitting |v| < 512."""
    m, s = tosa_rescale(2**29, 22, "add")
    assert (int(m[0]), int(s[0])) == (2**30, 10)
    check_value_range(s, 255, "add", "x")


def test_out_of_range_shift_and_value_are_refused():
    with pytest.raises(TosaEmitError, match="conv7"):
        tosa_rescale(2**30 + 1, 30, "conv7")  # a factor of ~2**29: S = 1
    with pytest.raises(TosaEmitError, match="head"):
        check_value_range(np.array([20], np.int8), 2**19, "head", "the accumulator")
