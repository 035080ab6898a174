"""Pass 1: an ``IntGraph`` (fcos3d.int8) -> an integer-only Relax IRModule (one function per graph).

Built from the reader's frozen ops, so the compiled module uses the very integer constants the simulator
uses (weights, biases, multipliers, shifts, resize indices): no float scale is re-derived here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tvm import IRModule, relax

from fcos3d.int8.dispatch import check_supported, implementation
from fcos3d.int8.ops import Add, Concat, Conv, IntGraph, MaxPool, ResizeNearest

from ..requantize import emit_requantize, emit_saturate_int8

__all__ = ["import_int_graph", "import_int_graphs"]


def _shape(x: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in x.ty.shape)


def _conv(bb: relax.BlockBuilder, op: Conv, x: relax.Expr) -> relax.Var:
    """int8 x int8 -> int32 conv + int32 bias (exact, |acc| <= K*128*127 + |bias|, docs/int8.md 4.2);
    then requantise per output channel and saturate, or keep the int32 head output (4.3)."""
    acc = bb.emit(
        relax.op.nn.conv2d(
            x,
            relax.const(op.weight, "int8"),
            strides=op.strides,
            padding=op.pads,  # (top, left, bottom, right)
            groups=op.groups,
            out_dtype="int32",  # the default out_dtype (the input's, int8) would overflow
        )
    )
    out_channels = op.weight.shape[0]
    if np.any(op.bias != 0):
        acc = bb.emit(relax.op.add(acc, relax.const(op.bias.reshape(1, -1, 1, 1).astype(np.int32), "int32")))
    if op.int32_output:
        return acc
    y = emit_requantize(bb, acc, op.multiplier, op.shift, out_channels)
    return emit_saturate_int8(bb, y, op.relu)


def _to_common(bb: relax.BlockBuilder, x: relax.Expr, multiplier: int, shift: int) -> relax.Var:
    """int8 -> int32 in the add's common domain: ``requantize(x, m, shift)``, |result| <= 2**27 + 1."""
    x32 = bb.emit(relax.op.astype(x, "int32"))
    return emit_requantize(bb, x32, multiplier, shift, _shape(x)[1])


def _add(bb: relax.BlockBuilder, op: Add, a: relax.Expr, b: relax.Expr) -> relax.Var:
    """docs/int8.md 4.4 (= fixedpoint.add_requantize): two rescales, an int32 add (|sum| <= 2**28 + 2), one
    requantisation, saturation."""
    r = op.rescale
    a32 = _to_common(bb, a, r.multiplier_a, r.shift_a)
    b32 = _to_common(bb, b, r.multiplier_b, r.shift_b)
    total = bb.emit(relax.op.add(a32, b32))  # broadcasts as ONNX Add
    y = emit_requantize(bb, total, r.multiplier_out, r.shift_out, _shape(total)[1])
    return emit_saturate_int8(bb, y, op.relu)


def _resize(bb: relax.BlockBuilder, op: ResizeNearest, x: relax.Expr, *like: relax.Expr) -> relax.Var:
    """Nearest resize as two gathers with the simulator's exact-rational index maps (no rounding: a copy);
    a ``like`` input only lends its static shape."""
    index_h, index_w = op.index_maps(_shape(x), *(_shape(t) for t in like))
    # The indices are in range by construction; mode "clip" (not the default "fast") keeps TVM from warning
    # once per gather at build time, and clipping in-range indices changes nothing.
    y = bb.emit(relax.op.take(x, relax.const(np.asarray(index_h, dtype=np.int64)), axis=2, mode="clip"))
    return bb.emit(relax.op.take(y, relax.const(np.asarray(index_w, dtype=np.int64)), axis=3, mode="clip"))


def _maxpool(bb: relax.BlockBuilder, op: MaxPool, x: relax.Expr) -> relax.Var:
    """int8 max pool, floor output size; TOPI pads a max pool with the dtype's minimum, -128, as the
    simulator does (checked against it in tests/compiler/passes/test_import_int_graph.py)."""
    return bb.emit(relax.op.nn.max_pool2d(x, pool_size=op.kernel, strides=op.strides, padding=op.pads, ceil_mode=False))


def _concat(bb: relax.BlockBuilder, op: Concat, *xs: relax.Expr) -> relax.Var:
    """Inputs with another scale are requantised (per-tensor) and saturated first; then a copy."""
    parts = []
    for x, r in zip(xs, op.rescales, strict=True):
        if r is not None:
            x32 = bb.emit(relax.op.astype(x, "int32"))
            x = emit_saturate_int8(bb, emit_requantize(bb, x32, r[0], r[1], _shape(x)[1]), relu=False)
        parts.append(x)
    return bb.emit(relax.op.concat(parts, axis=op.axis))


# One explicit dispatch table: IntGraph op class -> emitter(bb, op, *inputs).
_EMITTERS = {Conv: _conv, Add: _add, ResizeNearest: _resize, MaxPool: _maxpool, Concat: _concat}
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
