"""Gemm and MatMul on int8 tensors: int8 x int8 -> int32, per-channel weight scales, exact zero points.

A sibling of ops.py (which re-exports ``MatMul``); docs/int8.md 4.9 states the integer definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fx

__all__ = ["MatMul"]


@dataclass(frozen=True, eq=False)
class MatMul:
    """``y = clamp(requantize(acc, m[n], shift[n]) + z_y, lo, hi)`` along the last axis (docs/int8.md 4.9).

    Two forms:

    - constant weight (ONNX Gemm, or MatMul with a constant B): ``weight`` int8 (N, K) (Gemm's B with
      transB=1, else B transposed), ``weight_scale`` float64 (N,) (per output feature, or N equal entries),
      ``bias`` int32 (N,) (zeros when absent), ``b`` None:
      ``acc[..., n] = sum_k (a[..., k] - z_a) * w[n, k] + bias[n] = sum_k a * w + folded_bias[n]``;
    - two activations (MatMul of two int8 tensors): ``b`` the second input, ``weight``/``bias`` None,
      ``weight_scale`` (1,) its scale: ``acc = (a - z_a) @ (b - z_b)`` (numpy matmul broadcasting).

    ``(multiplier, shift)``: ``fixedpoint.conv_multipliers(s_a, s_b, s_y)``, (N,) or (1,).
    ``bounds``: the int8 output bounds (a fused Relu/Clip), (-128, 127) without.
    """

    name: str
    a: str
    b: str | None
    output: str
    weight: np.ndarray | None
    bias: np.ndarray | None
    a_scale: float
    a_zero_point: int
    weight_scale: np.ndarray
    b_zero_point: int
    output_scale: float
    output_zero_point: int
    multiplier: np.ndarray
    shift: np.ndarray
    bounds: tuple[int, int] = (fx.INT8_MIN, fx.INT8_MAX)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    @property
    def fan_in(self) -> int | None:
        """K for the constant-weight form (None for two activations: K comes from the shapes)."""
        return None if self.weight is None else int(self.weight.shape[1])

    @property
    def folded_bias(self) -> np.ndarray:
        """int32 (N,): ``bias[n] - z_a * sum_k w[n, k]`` (the constant-weight form; checked to fit by the reader)."""
        if self.weight is None:
            raise ValueError(f"{self.name}: a MatMul of two activations has no bias")
        if self.a_zero_point == 0:
            return self.bias
        wsum = self.weight.astype(np.int64).sum(axis=1)
        return (self.bias.astype(np.int64) - int(self.a_zero_point) * wsum).astype(np.int32)

    def output_shape(self, a: tuple[int, ...], b: tuple[int, ...] | None = None) -> tuple[int, ...]:
        if self.weight is not None:
            if a[-1] != self.weight.shape[1]:
                raise ValueError(f"{self.name}: input {a} does not match the weight's K={self.weight.shape[1]}")
            return (*a[:-1], int(self.weight.shape[0]))
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            raise ValueError(f"{self.name}: cannot multiply {a} by {b}")
        batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
        return (*batch, int(a[-2]), int(b[-1]))
