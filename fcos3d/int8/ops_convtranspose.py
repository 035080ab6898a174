"""ConvTranspose (2-D, groups 1) as an exact int32 scatter-accumulation then the conv requantisation
(docs/int8.md 8.7). A sibling of ops.py (which re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConvTranspose", "conv_transpose_size"]


def conv_transpose_size(
    size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, output_padding: int, dilation: int = 1
) -> int:
    """ONNX: ``stride * (size - 1) + output_padding + dilation * (kernel - 1) + 1 - pad_begin - pad_end``."""
    return stride * (size - 1) + output_padding + dilation * (kernel - 1) + 1 - pad_begin - pad_end


@dataclass(frozen=True, eq=False)
class ConvTranspose:
    """``acc[n, o, y, x] = bias[o] + sum_{c, i, j, ky, kx: i*s + ky*d - pad_top = y, ...} (x[n, c, i, j] - z_in)
    * W[c, o, ky, kx]`` (int32, exact), then ``clamp(requantize(acc, m[o], shift[o]) + z_out, lo, hi)``.

    ``weight`` int8 (C_in, C_out, kh, kw) (ONNX's layout, per-channel scales on axis 1); ``bias`` int32 (C_out,);
    ``pads = (top, left, bottom, right)``; ``(multiplier, shift)`` int32 (C_out,) of ``conv_multipliers``.
    """

    name: str
    input: str
    output: str
    weight: np.ndarray
    bias: np.ndarray
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    output_padding: tuple[int, int]
    dilations: tuple[int, int]
    input_zero_point: int
    output_zero_point: int
    multiplier: np.ndarray
    shift: np.ndarray
    bounds: tuple[int, int] = (-128, 127)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        kh, kw = self.weight.shape[2:]
        (sh, sw), (dh, dw), (oph, opw) = self.strides, self.dilations, self.output_padding
        pt, pl, pb, pr = self.pads
        return (
            x[0],
            self.weight.shape[1],
            conv_transpose_size(x[2], kh, sh, pt, pb, oph, dh),
            conv_transpose_size(x[3], kw, sw, pl, pr, opw, dw),
        )
