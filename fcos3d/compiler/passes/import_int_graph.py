"""Pass 1: an ``IntGraph`` (fcos3d.int8) -> an integer-only Relax IRModule (one function per graph).

Built from the reader's frozen ops, so the compiled module uses the very integer constants the simulator
uses (weights, biases, multipliers, shifts, resize indices): no float scale is re-derived here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tvm import IRModule, relax, te, tirx, topi

from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.dispatch import check_supported, implementation
from fcos3d.int8.ops import (
    Add,
    AveragePool,
    Clip,
    Concat,
    Conv,
    IntGraph,
    MatMul,
    MaxPool,
    Reshape,
    ResizeNearest,
    Transpose,
)

from ..kernels import max_pool_split, pad_nchw, upsample_nearest
from ..requantize import (
    emit_output_int8,
    emit_requantize,
    emit_requantize_int32,
    emit_requantize_table,
    emit_saturate_int8,
)
from .emit_lut import EMITTERS as EMITTERS_LUT
from .legalize import emit_pad_split

__all__ = ["import_int_graph", "import_int_graphs"]


def _shape(x: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in x.ty.shape)


def _pad(bb: relax.BlockBuilder, x: relax.Expr, pads: tuple[int, int, int, int], value: int) -> relax.Var:
    """NCHW ``x`` padded by ``value`` (top, left, bottom, right): kernels.pad_nchw for one int8 image (row copies),
    else TOPI's pad."""
    top, left, bottom, right = pads
    dims = x.ty.shape
    static = all(isinstance(d, tirx.IntImm) for d in dims)
    if static and len(dims) == 4 and int(dims[0]) == 1 and str(x.ty.dtype) == "int8":
        _, c, h, w = _shape(x)
        gv = bb.add_func(pad_nchw(c, (h, w), pads, value), "pad")
        out = relax.TensorType((1, c, h + top + bottom, w + left + right), "int8")
        return bb.emit(relax.call_tir(gv, [x], out))
    return bb.emit_te(topi.nn.pad, x, [0, 0, top, left], [0, 0, bottom, right], value, primfunc_name_hint="pad")


def _conv(bb: relax.BlockBuilder, op: Conv, x: relax.Expr) -> relax.Var:
    """int8 x int8 -> int32 conv + int32 bias (exact, |acc| <= K*128*127 + |bias|, docs/int8.md 4.2);
    then requantise per output channel, + z_out, and saturate, or keep the int32 head output (4.3).
    A non-zero input zero point pads explicitly with it (the real 0) and is folded into the bias."""
    pads = op.pads
    if op.input_zero_point and any(pads):
        x = _pad(bb, x, pads, op.input_zero_point)
        pads = (0, 0, 0, 0)
    acc = bb.emit(
        relax.op.nn.conv2d(
            x,
            relax.const(op.weight, "int8"),
            strides=op.strides,
            padding=pads,  # (top, left, bottom, right)
            dilation=op.dilations,
            groups=op.groups,
            out_dtype="int32",  # the default out_dtype (the input's, int8) would overflow
        )
    )
    out_channels = op.weight.shape[0]
    bias = op.folded_bias
    if np.any(bias != 0):
        acc = bb.emit(relax.op.add(acc, relax.const(bias.reshape(1, -1, 1, 1).astype(np.int32), "int32")))
    if op.int32_output:
        return acc
    y = emit_requantize(bb, acc, op.multiplier, op.shift, out_channels, bound=_rows_bound(op.weight, op.folded_bias))
    if op.output_zero_point == 0 and op.clamp is None:  # the symmetric path
        return emit_saturate_int8(bb, y, op.relu)
    return emit_output_int8(bb, y, op.output_zero_point, op.output_bounds)


def _rows_bound(weight: np.ndarray, bias: np.ndarray) -> int:
    """A bound on ``|acc + bias|`` over the output channels (``weight``'s first axis) of a conv or matmul with
    int8 inputs: ``128 * sum|w| + |bias|`` (a conv's padding included: the input zero point, an int8 too)."""
    w = np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1)
    return int((128 * w + np.abs(np.asarray(bias, dtype=np.int64))).max())


def _to_int32(bb: relax.BlockBuilder, x: relax.Expr, zero_point: int) -> relax.Var:
    """int8 -> int32 ``x - zero_point`` (|result| <= 255)."""
    x32 = bb.emit(relax.op.astype(x, "int32"))
    if zero_point:
        x32 = bb.emit(relax.op.subtract(x32, relax.const(np.int32(zero_point), "int32")))
    return x32


def _to_common(bb: relax.BlockBuilder, x: relax.Expr, multiplier: int, shift: int, zero_point: int) -> relax.Var:
    """int8 -> int32 in the add's common domain: ``requantize(x - z, m, shift)``, |result| <= 255 * 2**20 + 1; in
    int32 arithmetic where exact (emit_requantize_int32: ``x - z`` lies in [-128 - z, 127 - z])."""
    lo, hi = fx.INT8_MIN - zero_point, fx.INT8_MAX - zero_point
    return emit_requantize_int32(bb, _to_int32(bb, x, zero_point), multiplier, shift, lo, hi, _shape(x)[1])


def _add(bb: relax.BlockBuilder, op: Add, a: relax.Expr, b: relax.Expr) -> relax.Var:
    """docs/int8.md 4.4 (= fixedpoint.add_requantize): two rescales, an int32 add (|sum| < 2**29), one
    requantisation, + z_out, saturation."""
    r = op.rescale
    a32 = _to_common(bb, a, r.multiplier_a, r.shift_a, op.zero_point_a)
    b32 = _to_common(bb, b, r.multiplier_b, r.shift_b, op.zero_point_b)
    total = bb.emit(relax.op.add(a32, b32))  # broadcasts as ONNX Add
    y = emit_requantize(bb, total, r.multiplier_out, r.shift_out, _shape(total)[1])
    if op.output_zero_point == 0 and op.clamp is None:  # the symmetric path
        return emit_saturate_int8(bb, y, op.relu)
    return emit_output_int8(bb, y, op.output_zero_point, op.output_bounds)


def _resize(bb: relax.BlockBuilder, op: ResizeNearest, x: relax.Expr, *like: relax.Expr) -> relax.Var:
    """Nearest resize as two gathers with the simulator's exact-rational index maps (no rounding: a copy);
    a ``like`` input only lends its static shape."""
    index_h, index_w = op.index_maps(_shape(x), *(_shape(t) for t in like))
    n, c, h, w = _shape(x)
    fh, fw = len(index_h) // h, len(index_w) // w
    whole = len(index_h) == h * fh and len(index_w) == w * fw and fh >= 1 and fw >= 1
    if (
        whole
        and n == 1
        and np.array_equal(index_h, np.arange(h * fh) // fh)
        and np.array_equal(index_w, np.arange(w * fw) // fw)
    ):  # whole factors (BiFPN's 2x): a row copy with a byte-repeating shuffle instead of two gathers
        gv = bb.add_func(upsample_nearest(c, (h, w), (fh, fw)), "upsample_nearest")
        return bb.emit(relax.call_tir(gv, [x], relax.TensorType((1, c, h * fh, w * fw), "int8")))
    # The indices are in range by construction; mode "clip" (not the default "fast") keeps TVM from warning
    # once per gather at build time, and clipping in-range indices changes nothing.
    y = bb.emit(relax.op.take(x, relax.const(np.asarray(index_h, dtype=np.int64)), axis=2, mode="clip"))
    return bb.emit(relax.op.take(y, relax.const(np.asarray(index_w, dtype=np.int64)), axis=3, mode="clip"))


def _maxpool(bb: relax.BlockBuilder, op: MaxPool, x: relax.Expr) -> relax.Var:
    """int8 max pool, padded with the dtype's minimum, -128, as the simulator pads (checked against it in
    tests/compiler/passes/test_import_int_graph.py and tests/compiler/test_compiler_kernels.py). Without dilation:
    kernels.pad_split (-128, columns split by the stride) and kernels.max_pool_split (a vector max per tap), the
    output size ours (ops.pool_output_size; ceil mode: extra -128 rows/columns at the bottom/right). Dilated:
    TOPI's max_pool2d, the ceil size made with extra padding and, if TOPI's floor size is then larger (a pad
    longer than the window), a crop."""
    n, c, h, w = _shape(x)
    _, _, ho, wo = op.output_shape((n, c, h, w))
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.strides, op.dilations
    top, left, bottom, right = op.pads
    if op.dilations == (1, 1) and n == 1:
        bottom = max(bottom, (ho - 1) * sh + kh - h - top, 0)
        right = max(right, (wo - 1) * sw + kw - w - left, 0)
        padded = emit_pad_split(bb, x, (top, left, bottom, right), sw, value=fx.INT8_MIN)
        pool = bb.add_func(max_pool_split(c, _shape(padded)[1:], op.kernel, op.strides, (ho, wo)), "max_pool_split")
        return bb.emit(relax.call_tir(pool, [padded], relax.TensorType((1, c, ho, wo), "int8")))
    if op.ceil_mode:
        bottom = max(bottom, (ho - 1) * sh + dh * (kh - 1) + 1 - h - top)
        right = max(right, (wo - 1) * sw + dw * (kw - 1) + 1 - w - left)
    y = bb.emit(
        relax.op.nn.max_pool2d(
            x, pool_size=op.kernel, strides=op.strides, padding=(top, left, bottom, right), dilation=op.dilations
        )
    )
    if _shape(y)[2:] != (ho, wo):
        y = bb.emit(relax.op.strided_slice(y, axes=[2, 3], begin=[0, 0], end=[ho, wo]))
    return y


def _concat(bb: relax.BlockBuilder, op: Concat, *xs: relax.Expr) -> relax.Var:
    """Inputs with another scale or zero point are requantised (per-tensor), + z_out, saturated first; then a copy."""
    parts = []
    for x, r, z in zip(xs, op.rescales, op.zero_points_in, strict=True):
        if r is not None:
            y = emit_requantize(bb, _to_int32(bb, x, z), r[0], r[1], _shape(x)[1], bound=255)
            x = emit_output_int8(bb, y, op.output_zero_point, (fx.INT8_MIN, fx.INT8_MAX))
        parts.append(x)
    return bb.emit(relax.op.concat(parts, axis=op.axis))


def _clip(bb: relax.BlockBuilder, op: Clip, x: relax.Expr) -> relax.Var:
    """docs/int8.md 4.6: ``clamp(x, lo, hi)`` on int8, or ``clamp(requantize(x - z_in) + z_out, lo, hi)``."""
    if op.rescale is None:
        return bb.emit(relax.op.clip(x, op.lo, op.hi))
    y = emit_requantize(bb, _to_int32(bb, x, op.input_zero_point), *op.rescale, _shape(x)[1], bound=255)
    return emit_output_int8(bb, y, op.output_zero_point, (op.lo, op.hi))


def _window_sums(x: te.Tensor, kernel, strides, top_left, out_hw, zero_point: int) -> te.Tensor:
    """TE: ``sum_{window} (x - z)`` in int32 with zero padding (docs/int8.md 4.7; = kernels.window_sum_int32).
    |sum| <= kh * kw * 255."""
    n, c, h, w = (int(d) for d in x.shape)
    (kh, kw), (sh, sw), (top, left), (ho, wo) = kernel, strides, top_left, out_hw
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    padded = te.compute(
        (n, c, hp, wp),
        lambda b, ch, i, j: tirx.if_then_else(
            tirx.all(i >= top, i < top + h, j >= left, j < left + w),
            x[b, ch, tirx.min(tirx.max(i - top, 0), h - 1), tirx.min(tirx.max(j - left, 0), w - 1)].astype("int32")
            - zero_point,
            tirx.const(0, "int32"),
        ),
        name="pool_pad",
    )
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (n, c, ho, wo),
        lambda b, ch, y, xx: te.sum(padded[b, ch, y * sh + ry, xx * sw + rx], axis=[ry, rx]),
        name="pool_sum",
    )


def _average_pool(bb: relax.BlockBuilder, op: AveragePool, x: relax.Expr) -> relax.Var:
    """docs/int8.md 4.7: integer window sums, requantised per output position with the simulator's table
    (``op.requant_tables``: s_in / (count * s_out)), + z_out, saturation."""
    shape = _shape(x)
    kernel, strides, pads = op.geometry(shape)
    out_hw = op.output_shape(shape)[2:]
    sums = bb.emit_te(
        _window_sums, x, kernel, strides, pads[:2], out_hw, int(op.input_zero_point), primfunc_name_hint="pool_sum"
    )
    m, sh = op.requant_tables(shape)
    y = emit_requantize_table(bb, sums, m, sh, (2, 3), bound=255 * kernel[0] * kernel[1])
    return emit_output_int8(bb, y, op.output_zero_point, (fx.INT8_MIN, fx.INT8_MAX))


def _reshape(bb: relax.BlockBuilder, op: Reshape, x: relax.Expr) -> relax.Var:
    return bb.emit(relax.op.reshape(x, op.output_shape(_shape(x))))


def _transpose(bb: relax.BlockBuilder, op: Transpose, x: relax.Expr) -> relax.Var:
    return bb.emit(relax.op.permute_dims(x, list(op.perm) if op.perm else None))


def _matmul(bb: relax.BlockBuilder, op: MatMul, a: relax.Expr, *b: relax.Expr) -> relax.Var:
    """docs/int8.md 4.9: int32 ``a @ W^T + folded bias`` (or ``(a - z_a) @ (b - z_b)``), exact (|acc| <=
    K*128*127 + |bias|, or K*255*255), requantised along the last axis, + z_out, saturated."""
    if op.weight is not None:
        a32 = bb.emit(relax.op.astype(a, "int32"))
        w = relax.const(np.ascontiguousarray(op.weight.T).astype(np.int32), "int32")  # (K, N)
        acc = bb.emit(relax.op.matmul(a32, w, out_dtype="int32"))
        bias = op.folded_bias
        if np.any(bias != 0):
            acc = bb.emit(relax.op.add(acc, relax.const(bias.astype(np.int32), "int32")))
        bound = _rows_bound(op.weight, bias)
    else:
        a32 = _to_int32(bb, a, op.a_zero_point)
        b32 = _to_int32(bb, b[0], op.b_zero_point)
        acc = bb.emit(relax.op.matmul(a32, b32, out_dtype="int32"))
        bound = _shape(a)[-1] * 255 * 255
    shape = _shape(acc)
    y = emit_requantize(bb, acc, op.multiplier, op.shift, shape[-1], axis=len(shape) - 1, bound=bound)
    return emit_output_int8(bb, y, op.output_zero_point, op.bounds)


# One explicit dispatch table: IntGraph op class -> emitter(bb, op, *inputs).
_EMITTERS = {
    Conv: _conv,
    Add: _add,
    ResizeNearest: _resize,
    MaxPool: _maxpool,
    Concat: _concat,
    Clip: _clip,
    AveragePool: _average_pool,
    Reshape: _reshape,
    Transpose: _transpose,
    MatMul: _matmul,
    **EMITTERS_LUT,
}
_EXECUTOR = "the TVM import (fcos3d.compiler.passes.import_int_graph)"


def _emit_function(bb: relax.BlockBuilder, graph: IntGraph, name: str) -> None:
    check_supported(_EMITTERS, graph.ops, _EXECUTOR)
    params, env = [], {}
    for i in graph.inputs:
        if any(d is None for d in i.shape):
            raise ValueError(
                f"input {i.name!r} has a symbolic shape {i.shape}: the compiler needs static shapes "
                "(fix them in the ONNX, e.g. onnxsim --overwrite-input-shape)"
            )
        var = relax.Var(i.name, relax.TensorType(shape=i.shape, dtype="int8"))
        params.append(var)
        env[i.tensor] = var
    with bb.function(name, params):
        with bb.dataflow():
            for op in graph.ops:
                env[op.output] = implementation(_EMITTERS, op, _EXECUTOR)(bb, op, *(env[t] for t in op.inputs))
            # Always a tuple, in graph.outputs order: execute.run names the fields from meta.json.
            out = bb.emit_output(relax.Tuple([env[o.tensor] for o in graph.outputs]))
        bb.emit_func_output(out)


def import_int_graphs(graphs: Mapping[str, IntGraph]) -> IRModule:
    """Several graphs -> one IRModule with one Relax function per name (tests compile many at once)."""
    bb = relax.BlockBuilder()
    for name, graph in graphs.items():
        _emit_function(bb, graph, name)
    return bb.get()


def import_int_graph(graph: IntGraph, name: str = "main") -> IRModule:
    """One graph -> an IRModule whose ``main`` takes the int8 input(s) and returns a tuple of the outputs
    (int8 activations, int32 head outputs) in ``graph.outputs`` order."""
    return import_int_graphs({name: graph})
