"""Softmax over the last axis as an exact integer recipe: an exp table in fixed point, an int64 sum, one rounded
integer division (docs/int8.md 8.6). A sibling of ops.py (which re-exports it); the constants are built here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops_lut import round_half_up_float

__all__ = ["EXP_FRACTION_BITS", "MAX_SOFTMAX_LENGTH", "Softmax", "softmax_constants"]

EXP_FRACTION_BITS = 24  # T[d] = round(2**24 * exp(-s_in * d)): T[0] = 2**24, every entry < 2**25
MAX_SOFTMAX_LENGTH = 2**13  # keeps 2 * (S << K) + 2 * E * M below 2**63 (the overflow bound, 8.6)


def softmax_constants(s_in: float, s_out: float) -> tuple[np.ndarray, int, int]:
    """(exp table int64 (256,), M, K): ``T[d] = round_half_up(2**24 * exp(-s_in * d))`` for d in [0, 255] and
    ``M = round_half_up(2**K / s_out)`` with K chosen so that M lies in [2**24, 2**25]; float64 from the float32
    scales as stored. Needs ``s_out <= 1`` (a softmax output lies in [0, 1]) and ``s_out >= 2**-24``."""
    if not (2.0**-24 <= s_out <= 1.0):
        raise ValueError(f"softmax output scale {s_out!r} must lie in [2**-24, 1] (its values lie in [0, 1])")
    d = np.arange(256, dtype=np.float64)
    table = round_half_up_float(np.ldexp(np.exp(-np.float64(s_in) * d), EXP_FRACTION_BITS)).astype(np.int64)
    _, e = np.frexp(1.0 / np.float64(s_out))  # 1 / s_out = f * 2**e, f in [1/2, 1)
    k = int(25 - e)  # 2**k / s_out in [2**24, 2**25)
    m = int(round_half_up_float(np.ldexp(1.0 / np.float64(s_out), k)))
    return table, m, k


@dataclass(frozen=True, eq=False)
class Softmax:
    """``softmax`` over the last axis (docs/int8.md 8.6)::

    d = max(x) - x                              per row, in [0, 255]
    E = exp_table[d]; S = sum(E)                int64, S >= 2**24
    y = clamp(floor((2 E M + (S << K)) / (2 (S << K))) + z_out, lo, hi)     round_half_up(E M / (S 2**K))
    """

    name: str
    input: str
    output: str
    exp_table: np.ndarray
    multiplier: int
    shift: int
    output_zero_point: int
    bounds: tuple[int, int] = (-128, 127)
    axis: int = -1  # ONNX's attribute: -1 or the last axis's index (checked against the shape)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        if self.axis not in (-1, len(x) - 1):
            raise ValueError(f"Softmax {self.name}: axis {self.axis} of a rank-{len(x)} input is not the last axis")
        if not x or x[-1] > MAX_SOFTMAX_LENGTH:
            raise ValueError(f"Softmax {self.name}: a last axis of {x[-1] if x else 0} (at most {MAX_SOFTMAX_LENGTH})")
        return tuple(x)
