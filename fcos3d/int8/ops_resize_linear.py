"""Bilinear Resize (ONNX mode linear, coordinate modes half_pixel, align_corners, asymmetric) with exact integer
weights: rational source coordinates, weights over their common denominator, one rounding (docs/int8.md 8.8).
A sibling of ops.py (which re-exports it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import fixedpoint as fx

__all__ = ["LINEAR_COORDINATE_MODES", "ResizeLinear", "linear_axis_weights"]

LINEAR_COORDINATE_MODES = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")


def _source(o: int, size_in: int, size_out: int, scale: Fraction, mode: str) -> Fraction:
    """ONNX's source coordinate of output index ``o``, as an exact rational."""
    if mode == "align_corners":
        return Fraction(0) if size_out == 1 else Fraction(o * (size_in - 1), size_out - 1)
    if mode == "asymmetric":
        return o / scale
    if mode == "pytorch_half_pixel" and size_out == 1:
        return Fraction(0)
    return (o + Fraction(1, 2)) / scale - Fraction(1, 2)  # half_pixel


def linear_axis_weights(
    size_in: int, size_out: int, scale: Fraction, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(i0, i1, w0, w1, D) int64 (size_out,) each and the denominator: ``out[o] = (w0 x[i0] + w1 x[i1]) / D``.

    The source coordinate ``c`` is clamped to ``[0, size_in - 1]`` (onnxruntime's linear rule); ``i0 = floor(c)``,
    ``i1 = min(i0 + 1, size_in - 1)``, ``w1 = (c - i0) * D``, ``w0 = D - w1``, D the least common denominator of
    every ``c`` of the axis (exact: no weight is rounded)."""
    coords = [
        min(max(_source(o, size_in, size_out, scale, mode), Fraction(0)), Fraction(size_in - 1))
        for o in range(size_out)
    ]
    den = math.lcm(*(c.denominator for c in coords)) if coords else 1
    i0 = np.array([math.floor(c) for c in coords], dtype=np.int64)
    w1 = np.array([int((c - math.floor(c)) * den) for c in coords], dtype=np.int64)
    return i0, np.minimum(i0 + 1, size_in - 1), den - w1, w1, int(den)


@dataclass(frozen=True, eq=False)
class ResizeLinear:
    """Bilinear resize of H and W (docs/int8.md 8.8)::

        acc[y, x] = sum_{a, b in {0, 1}} wy_a[y] * wx_b[x] * (in[iy_a[y], ix_b[x]] - z_in)     int32, exact
        out = clamp(requantize(acc, m, shift) + z_out, lo, hi),  (m, shift) of s_in / (s_out * D_h * D_w)

    Exactly one of ``scales`` (exact rationals of the float32 H and W scales; output ``floor(in * scale)``) and
    ``sizes`` (NCHW output size; scales ``out / in``) is set.
    """

    name: str
    input: str
    output: str
    scales: tuple[Fraction, Fraction] | None
    sizes: tuple[int, int, int, int] | None
    coordinate_mode: str
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    bounds: tuple[int, int] = (-128, 127)

    def __post_init__(self):
        if (self.scales is None) == (self.sizes is None):
            raise ValueError(f"ResizeLinear {self.name}: exactly one of scales and sizes")
        if self.coordinate_mode not in LINEAR_COORDINATE_MODES:
            raise ValueError(f"ResizeLinear {self.name}: coordinate mode {self.coordinate_mode!r} is not supported")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        if self.sizes is not None:
            if tuple(self.sizes[:2]) != tuple(x[:2]):
                raise ValueError(f"ResizeLinear {self.name}: sizes {self.sizes} change N or C of {x}")
            return tuple(int(v) for v in self.sizes)
        return (x[0], x[1], math.floor(x[2] * self.scales[0]), math.floor(x[3] * self.scales[1]))

    def axis_scales(self, x: tuple[int, ...]) -> tuple[Fraction, Fraction]:
        if self.scales is not None:
            return self.scales
        return (Fraction(self.sizes[2], x[2]), Fraction(self.sizes[3], x[3]))

    def tables(self, x: tuple[int, ...]):
        """((i0, i1, w0, w1) along H, the same along W, multiplier, shift) for an NCHW input of shape ``x``;
        raises ValueError when ``255 * D_h * D_w`` leaves int32 (the accumulator bound)."""
        _, _, ho, wo = self.output_shape(x)
        sh, sw = self.axis_scales(x)
        *hy, dh = linear_axis_weights(x[2], ho, sh, self.coordinate_mode)
        *hx, dw = linear_axis_weights(x[3], wo, sw, self.coordinate_mode)
        if 255 * dh * dw > fx.INT32_MAX:
            raise ValueError(
                f"ResizeLinear {self.name}: weight denominators {dh} x {dw} overflow the int32 accumulator"
            )
        m, s = fx.quantize_multiplier(np.float64(self.input_scale) / (np.float64(self.output_scale) * (dh * dw)))
        return tuple(hy), tuple(hx), int(m), int(s)
