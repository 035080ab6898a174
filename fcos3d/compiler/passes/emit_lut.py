"""Relax emitters of the op family of docs/int8.md 8 (tables, Mul, Softmax, ConvTranspose, linear Resize).

``EMITTERS`` is merged into import_int_graph._EMITTERS; the tables and multipliers are the reader's own.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from fcos3d.int8.ops_convtranspose import ConvTranspose
from fcos3d.int8.ops_lut import Lut, Mul
from fcos3d.int8.ops_lut_pool import LutAveragePool
from fcos3d.int8.ops_resize_linear import ResizeLinear
from fcos3d.int8.ops_softmax import Softmax

from ..requantize import emit_output_int8, emit_requantize, emit_requantize_table

__all__ = ["EMITTERS"]


def _shape(x: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in x.ty.shape)


def _lut(bb: relax.BlockBuilder, op: Lut, x: relax.Expr) -> relax.Var:
    """``take(table, x + 128)``; per channel: ``take(table.ravel(), c * 256 + x + 128)`` (indices in [0, 256 C))."""
    idx = bb.emit(relax.op.add(relax.op.astype(x, "int32"), relax.const(np.int32(128), "int32")))
    table = op.table
    if op.per_channel:
        shape = _shape(x)
        offsets = (np.arange(shape[1], dtype=np.int32) * 256).reshape((1, -1) + (1,) * (len(shape) - 2))
        idx = bb.emit(relax.op.add(idx, relax.const(offsets, "int32")))
        table = table.reshape(-1)
    return bb.emit(relax.op.take(relax.const(table, "int8"), idx, axis=0, mode="clip"))


def _centred(bb: relax.BlockBuilder, x: relax.Expr, zero_point: int) -> relax.Var:
    x32 = bb.emit(relax.op.astype(x, "int32"))
    if zero_point:
        x32 = bb.emit(relax.op.subtract(x32, relax.const(np.int32(zero_point), "int32")))
    return x32


def _mul(bb: relax.BlockBuilder, op: Mul, a: relax.Expr, b: relax.Expr) -> relax.Var:
    """int32 ``(a - z_a) * (b - z_b)`` (|.| <= 255 * 255), requantised per tensor, + z_out, clamped."""
    acc = bb.emit(relax.op.multiply(_centred(bb, a, op.zero_point_a), _centred(bb, b, op.zero_point_b)))
    shape = _shape(acc)
    if len(shape) < 2:
        acc = bb.emit(relax.op.reshape(acc, (1, int(np.prod(shape, dtype=np.int64)))))
    y = emit_requantize(bb, acc, op.multiplier, op.shift, _shape(acc)[1])
    if len(shape) < 2:
        y = bb.emit(relax.op.reshape(y, shape))
    return emit_output_int8(bb, y, op.output_zero_point, op.bounds)


def _softmax(bb: relax.BlockBuilder, op: Softmax, x: relax.Expr) -> relax.Var:
    """int64: ``d = max - x``, ``E = take(T, d)``, ``den = sum(E) << K``, ``(2 E M + den) // (2 den)``, + z_out,
    clip, cast (docs/int8.md 8.6; the overflow bound is MAX_SOFTMAX_LENGTH's)."""
    x64 = bb.emit(relax.op.astype(x, "int64"))
    d = bb.emit(relax.op.subtract(relax.op.max(x64, axis=-1, keepdims=True), x64))
    e = bb.emit(relax.op.take(relax.const(op.exp_table.astype(np.int64), "int64"), d, axis=0, mode="clip"))
    den = bb.emit(
        relax.op.multiply(relax.op.sum(e, axis=-1, keepdims=True), relax.const(np.int64(1) << op.shift, "int64"))
    )
    two = relax.const(np.int64(2), "int64")
    num = bb.emit(relax.op.add(relax.op.multiply(e, relax.const(np.int64(2 * op.multiplier), "int64")), den))
    q = bb.emit(relax.op.floor_divide(num, relax.op.multiply(den, two)))
    if op.output_zero_point:
        q = bb.emit(relax.op.add(q, relax.const(np.int64(op.output_zero_point), "int64")))
    lo, hi = op.bounds
    return bb.emit(relax.op.astype(relax.op.clip(q, int(lo), int(hi)), "int8"))


def _conv_transpose(bb: relax.BlockBuilder, op: ConvTranspose, x: relax.Expr) -> relax.Var:
    """int32 ``conv2d_transpose(x - z_in, W)`` (IOHW, exact: |acc| bounded by the parser), + bias, requantised
    per output channel, + z_out, clamped (docs/int8.md 8.7)."""
    acc = bb.emit(
        relax.op.nn.conv2d_transpose(
            _centred(bb, x, op.input_zero_point),
            relax.const(op.weight.astype(np.int32), "int32"),
            strides=op.strides,
            padding=op.pads,
            output_padding=op.output_padding,
            dilation=op.dilations,
            kernel_layout="IOHW",
            out_dtype="int32",
        )
    )
    if np.any(op.bias != 0):
        acc = bb.emit(relax.op.add(acc, relax.const(op.bias.reshape(1, -1, 1, 1).astype(np.int32), "int32")))
    y = emit_requantize(bb, acc, op.multiplier, op.shift, op.weight.shape[1])
    return emit_output_int8(bb, y, op.output_zero_point, op.bounds)


def _resize_linear(bb: relax.BlockBuilder, op: ResizeLinear, x: relax.Expr) -> relax.Var:
    """int32: ``take`` the two source columns and rows with the reader's indices, weight them with its integer
    weights (|acc| <= 255 D_h D_w < 2**31), requantise per tensor, + z_out, clamp (docs/int8.md 8.8)."""
    (iy0, iy1, wy0, wy1), (ix0, ix1, wx0, wx1), m, sh = op.tables(_shape(x))
    xc = _centred(bb, x, op.input_zero_point)

    def i32(a, shape):
        return relax.const(np.asarray(a, dtype=np.int32).reshape(shape), "int32")

    def weighted(src, i0, i1, w0, w1, axis, shape):
        a = relax.op.multiply(relax.op.take(src, i32(i0, (-1,)), axis=axis, mode="clip"), i32(w0, shape))
        b = relax.op.multiply(relax.op.take(src, i32(i1, (-1,)), axis=axis, mode="clip"), i32(w1, shape))
        return bb.emit(relax.op.add(a, b))

    t = weighted(xc, ix0, ix1, wx0, wx1, 3, (1, 1, 1, -1))
    acc = weighted(t, iy0, iy1, wy0, wy1, 2, (1, 1, -1, 1))
    y = emit_requantize(bb, acc, m, sh, _shape(acc)[1])
    return emit_output_int8(bb, y, op.output_zero_point, op.bounds)


def _lut_average_pool(bb: relax.BlockBuilder, op: LutAveragePool, x: relax.Expr) -> relax.Var:
    """``take`` of the int32 table (per channel: offset 256 c), the average pool's TE window sums (zero padding),
    its per-position requantisation table, + z_out, clamp (docs/int8.md 8.9)."""
    from .import_int_graph import _window_sums  # the core average pool's sums (imported late: no import cycle)

    shape = _shape(x)
    idx = bb.emit(relax.op.add(relax.op.astype(x, "int32"), relax.const(np.int32(128), "int32")))
    table = op.table
    if op.per_channel:
        offsets = (np.arange(shape[1], dtype=np.int32) * 256).reshape(1, -1, 1, 1)
        idx = bb.emit(relax.op.add(idx, relax.const(offsets, "int32")))
        table = table.reshape(-1)
    t = bb.emit(relax.op.take(relax.const(table.astype(np.int32), "int32"), idx, axis=0, mode="clip"))
    kernel, strides, pads = op.pool.geometry(shape)
    if np.abs(op.table).max() * kernel[0] * kernel[1] > np.iinfo(np.int32).max:
        raise ValueError(f"{op.name}: table x window {kernel} can overflow int32")
    out_hw = op.output_shape(shape)[2:]
    sums = bb.emit_te(_window_sums, t, kernel, strides, pads[:2], out_hw, 0, primfunc_name_hint="pool_sum")
    m, sh = op.pool.requant_tables(shape)
    y = emit_requantize_table(bb, sums, m, sh, (2, 3))
    return emit_output_int8(bb, y, op.output_zero_point, op.bounds)


EMITTERS = {
    LutAveragePool: _lut_average_pool,
    Lut: _lut,
    Mul: _mul,
    Softmax: _softmax,
    ConvTranspose: _conv_transpose,
    ResizeLinear: _resize_linear,
}
