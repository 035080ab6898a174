"""Simulator kernels of the op family of docs/int8.md 8 (tables, Mul, Softmax, ConvTranspose, linear Resize).

``KERNELS`` is merged into simulator._KERNELS.
"""

from __future__ import annotations

import numpy as np

from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.ops_convtranspose import ConvTranspose
from fcos3d.int8.ops_lut import Lut, Mul
from fcos3d.int8.ops_lut_pool import LutAveragePool
from fcos3d.int8.ops_resize_linear import ResizeLinear
from fcos3d.int8.ops_softmax import Softmax

__all__ = ["KERNELS"]


def _lut(op: Lut, x: np.ndarray) -> np.ndarray:
    """``table[x + 128]``; per channel (axis 1): ``table[c, x[:, c] + 128]``."""
    idx = x.astype(np.int64) + 128
    if not op.per_channel:
        return op.table[idx]
    c = np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return op.table[c, idx]


def _mul(op: Mul, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``clamp(requantize((a - z_a) * (b - z_b), m, shift) + z_out, lo, hi)``; the product is exact in int64
    (|product| <= 255 * 255)."""
    acc = (a.astype(np.int64) - op.zero_point_a) * (b.astype(np.int64) - op.zero_point_b)
    return fx.requantize_int8(acc, op.multiplier, op.shift, zero_point=op.output_zero_point, bounds=op.bounds)


def _softmax(op: Softmax, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 8.6: ``d = max - x``, ``E = T[d]``, ``S = sum E`` (int64), ``round_half_up(E M / (S 2**K))``
    as one floor division, + z_out, clamped. |2 E M + 2 (S << K)| < 2**63 (MAX_SOFTMAX_LENGTH)."""
    x64 = x.astype(np.int64)
    e = op.exp_table[x64.max(axis=-1, keepdims=True) - x64]  # (..., L) in [0, 2**24]
    den = e.sum(axis=-1, keepdims=True) << op.shift  # S << K
    q = (2 * e * op.multiplier + den) // (2 * den)
    return np.clip(q + op.output_zero_point, op.bounds[0], op.bounds[1]).astype(np.int8)


def _conv_transpose(op: ConvTranspose, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 8.7: scatter ``(x - z_in) * W[:, :, ky, kx]`` to ``(i*s + ky*d, j*s + kx*d)`` of the full
    output, crop the pads, + bias, requantise per output channel. Products summed in float64: exact (< 2**53)."""
    n, _, h, w = x.shape
    kh, kw = op.weight.shape[2:]
    (sh, sw), (dh, dw), (oph, opw) = op.strides, op.dilations, op.output_padding
    full = np.zeros(
        (n, op.weight.shape[1], sh * (h - 1) + dh * (kh - 1) + 1 + oph, sw * (w - 1) + dw * (kw - 1) + 1 + opw)
    )
    xc = x.astype(np.float64) - op.input_zero_point
    wf = op.weight.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            contrib = np.einsum("nchw,co->nohw", xc, wf[:, :, ky, kx])  # (N, O, H, W)
            full[:, :, ky * dh : ky * dh + sh * (h - 1) + 1 : sh, kx * dw : kx * dw + sw * (w - 1) + 1 : sw] += contrib
    _, _, ho, wo = op.output_shape(x.shape)
    pt, pl = op.pads[0], op.pads[1]
    acc = full[:, :, pt : pt + ho, pl : pl + wo].astype(np.int64) + op.bias.astype(np.int64).reshape(1, -1, 1, 1)
    return fx.requantize_int8(acc, op.multiplier, op.shift, axis=1, zero_point=op.output_zero_point, bounds=op.bounds)


def _resize_linear(op: ResizeLinear, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 8.8: along W ``t = wx0 (x[.., ix0] - z) + wx1 (x[.., ix1] - z)``, along H
    ``acc = wy0 t[iy0] + wy1 t[iy1]`` (int64, |acc| <= 255 D_h D_w < 2**31), one requantisation, + z_out."""
    (iy0, iy1, wy0, wy1), (ix0, ix1, wx0, wx1), m, sh = op.tables(x.shape)
    xc = x.astype(np.int64) - op.input_zero_point
    t = wx0 * xc[..., ix0] + wx1 * xc[..., ix1]  # (N, C, H, Wo)
    acc = wy0[:, None] * t[:, :, iy0, :] + wy1[:, None] * t[:, :, iy1, :]  # (N, C, Ho, Wo)
    return fx.requantize_int8(acc, m, sh, zero_point=op.output_zero_point, bounds=op.bounds)


def _table_lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    idx = x.astype(np.int64) + 128
    if table.ndim == 1:
        return table[idx]
    return table[np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2)), idx]


def _lut_average_pool(op: LutAveragePool, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 8.9: ``t = T[x + 128]`` (int32), window sums of t with zero padding (int64, checked to fit
    int32), one requantisation by ``2**-F / count`` per position, + z_out, clamped."""
    t = _table_lookup(op.table, x).astype(np.int64)
    (kh, kw), (sh, sw), (top, left, _, _) = op.pool.geometry(x.shape)
    _, _, ho, wo = op.output_shape(x.shape)
    n, c, h, w = x.shape
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    padded = np.zeros((n, c, max(hp, top + h), max(wp, left + w)), dtype=np.int64)
    padded[:, :, top : top + h, left : left + w] = t
    sums = np.zeros((n, c, ho, wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            sums += padded[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
    if np.abs(op.table).max() * kh * kw > fx.INT32_MAX:
        raise ValueError(f"{op.name}: table x window ({kh}x{kw}) can overflow int32")
    m, s = op.pool.requant_tables(x.shape)
    return fx.requantize_int8(sums, m, s, zero_point=op.output_zero_point, bounds=op.bounds)


KERNELS = {
    Lut: _lut,
    Mul: _mul,
    Softmax: _softmax,
    ConvTranspose: _conv_transpose,
    ResizeLinear: _resize_linear,
    LutAveragePool: _lut_average_pool,
}
