"""A float activation feeding an average pool with no Q between them (``DQ -> PRelu/Tanh/... -> AveragePool -> Q``,
as quantize_static leaves the activations it does not quantise): a fixed-point table then the integer mean
(docs/int8.md 8.9). A sibling of ops.py (which re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops_pool import AveragePool

__all__ = ["LUT_POOL_FRACTION_BITS", "MIN_FRACTION_BITS", "LutAveragePool"]

# T[q] = round_half_up(f(x_q) / s_out * 2**F): the table's rounding moves a mean by at most 2**-(F+1) LSB.
# F = min(16, the most bits with max|T| * window <= 2**31 - 1); fewer than 8 is refused.
LUT_POOL_FRACTION_BITS = 16
MIN_FRACTION_BITS = 8


@dataclass(frozen=True, eq=False)
class LutAveragePool:
    """``y = clamp(requantize(sum_{window} T[x + 128], m[p], shift[p]) + z_out, lo, hi)``: ``T`` int32 (256,) or
    per channel (C, 256) holds ``f`` in output steps with F fraction bits; ``pool`` is an AveragePool whose
    (input, output) scales are (2**-F, 1), so its ``requant_tables`` give ``2**-F / count`` per position and its
    geometry the windows (padding adds 0, the real zero)."""

    name: str
    input: str
    output: str
    table: np.ndarray
    pool: AveragePool
    output_zero_point: int
    bounds: tuple[int, int] = (-128, 127)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def per_channel(self) -> bool:
        return self.table.ndim == 2

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        return self.pool.output_shape(x)
