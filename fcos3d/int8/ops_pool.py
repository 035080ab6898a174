"""Average pools (AveragePool, GlobalAveragePool) as integer means, and the pool window geometry.

A sibling of ops.py (which re-exports these): the window rule ``pool_output_size`` is shared by MaxPool and
AveragePool; docs/int8.md 4.7 states the integer mean (formula, rounding, overflow bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fx

__all__ = ["AveragePool", "pool_output_size", "window_counts"]


def pool_output_size(
    size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, ceil_mode: bool = False, dilation: int = 1
) -> int:
    """Output length of a pool window along one axis, ONNX's rule (onnxruntime's and PyTorch's too).

    ``span = size + pads - dilation * (kernel - 1) - 1``; floor mode: ``span // stride + 1``; ceil mode:
    ``ceil(span / stride) + 1``, minus one when that last window would start in the right padding
    (``(out - 1) * stride >= size + pad_begin``). With ``ceil_mode`` False and ``dilation`` 1 this is
    ``ops.conv_output_size``.
    """
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0 or stride < 1 or dilation < 1:
        raise ValueError(
            f"window of {kernel} (stride {stride}, dilation {dilation}, pads {pad_begin}+{pad_end}) "
            f"does not fit an input of {size}"
        )
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def window_counts(
    size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, out: int, count_include_pad: bool
) -> np.ndarray:
    """Divisor of each output position of an average pool along one axis: int64 (out,).

    Window ``o`` covers input positions ``[o * stride - pad_begin, o * stride - pad_begin + kernel)``.
    ``count_include_pad``: the positions inside the padded input ``[-pad_begin, size + pad_end)`` (a ceil-mode
    window that runs past it is clipped there), else the real positions ``[0, size)``. onnxruntime's
    pool_functors and PyTorch count the same way.
    """
    start = np.arange(out, dtype=np.int64) * stride - pad_begin
    end = start + kernel
    if count_include_pad:
        return np.minimum(end, size + pad_end) - start
    return np.minimum(end, size) - np.maximum(start, 0)


@dataclass(frozen=True, eq=False)
class AveragePool:
    """Integer mean over windows (docs/int8.md 4.7); ``kernel`` None is GlobalAveragePool (the whole H x W).

    ``y = clamp(requantize(sum_{window} (x - z_in), m[p], shift[p]) + z_out)`` with ``(m, shift)`` of
    ``s_in / (count[p] * s_out)`` per output position ``p`` (``requant_tables``); padding adds nothing to the
    sum (it is the real zero). ``pads = (top, left, bottom, right)``.
    """

    name: str
    input: str
    output: str
    kernel: tuple[int, int] | None
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    ceil_mode: bool
    count_include_pad: bool
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def geometry(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
        """(kernel, strides, pads) for an NCHW input of ``shape`` (a global pool's kernel is its H x W)."""
        if self.kernel is None:
            return (int(shape[2]), int(shape[3])), (1, 1), (0, 0, 0, 0)
        return self.kernel, self.strides, self.pads

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = self.geometry(x)
        return (
            x[0],
            x[1],
            pool_output_size(x[2], kh, sh, pt, pb, self.ceil_mode),
            pool_output_size(x[3], kw, sw, pl, pr, self.ceil_mode),
        )

    def counts(self, shape: tuple[int, ...]) -> np.ndarray:
        """int64 (Ho, Wo): the divisor of every output position (``window_counts`` along H times along W)."""
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = self.geometry(shape)
        _, _, ho, wo = self.output_shape(shape)
        ch = window_counts(shape[2], kh, sh, pt, pb, ho, self.count_include_pad)
        cw = window_counts(shape[3], kw, sw, pl, pr, wo, self.count_include_pad)
        return ch[:, None] * cw[None, :]

    def requant_tables(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(multiplier, shift) int32 (Ho, Wo) for an input of ``shape``: ``quantize_multiplier(r)`` with
        ``r = s_in / (s_out * count)`` computed in float64 in this order (every executor calls this)."""
        counts = self.counts(shape).astype(np.float64)
        if np.any(counts < 1):
            raise ValueError(f"{self.name}: an average-pool window holds no element (pads >= kernel)")
        r = np.float64(self.input_scale) / (np.float64(self.output_scale) * counts)
        return fx.quantize_multiplier(r)
