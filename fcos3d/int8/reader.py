"""QDQ (or QOperator) ONNX -> an ``IntGraph``: the integer ops with their integer constants (every executor's reader).

``parse_qdq`` runs the front end (frontend.py: QOperator -> QDQ, fixed input shapes, folded shape subgraphs), then
one parse function per anchor node, found in the one dict ``PARSERS`` ({ONNX op_type: parse function}); any other
node makes it raise one ``UnsupportedGraphError`` that lists every offending node with the reason. Only reads the
protobuf; no onnx computation is used on the integer values.

Patterns (``DQ`` = DequantizeLinear, ``Q`` = QuantizeLinear; activations int8 or uint8 per tensor with any zero
point, a uint8 tensor read as int8 ``q - 128``; weights int8 symmetric, per output channel or per tensor):

==================  ==========================================================================================
op                  QDQ form
==================  ==========================================================================================
input               int8/uint8 graph input consumed by ``DQ(x, s, z)``; or float graph input -> ``Q(s, z)``
Conv                ``DQ(x)``, ``DQ(W int8 const, s_w per-channel axis 0 or per-tensor)``, [``DQ(B int32 const,
                    s_in*s_w)``] -> ``Conv`` (any group, strides, pads, dilations) -> [``Relu`` | ``Clip``]
                    -> ``Q(s_out, z_out)``
head Conv (int32)   the same Conv whose float output is a graph output (no Relu, no Q): int32 ``acc``
Add                 ``DQ(a)``, ``DQ(b)`` -> ``Add`` -> [``Relu`` | ``Clip``] -> ``Q``
Relu / Clip         ``DQ(x)`` -> ``Relu`` / ``Clip`` -> ``Q`` (after a Conv/Add/Gemm with the same (s, z): folded)
Resize              ``DQ(x, s, z)`` -> ``Resize`` (mode nearest, const scales or sizes) -> ``Q(s, z)``; or on int8
MaxPool             ``DQ(x, s, z)`` -> ``MaxPool`` (any kernel, stride, dilation, ceil_mode) -> ``Q(s, z)``; or on int8
AveragePool         ``DQ(x)`` -> ``AveragePool`` / ``GlobalAveragePool`` -> ``Q`` (integer mean, docs/int8.md 4.7)
Concat              ``DQ(x_i)`` -> ``Concat`` -> ``Q`` (inputs with another (s, z) requantised); or on int8 tensors
                    sharing one (s, z)
layout              ``DQ(x, s, z)`` -> ``Flatten`` / ``Reshape`` / ``Transpose`` / ``Squeeze`` / ``Unsqueeze`` ->
                    ``Q(s, z)``; or on int8 tensors
Gemm / MatMul       ``DQ(a)``, ``DQ(W int8 const)`` [, ``DQ(C int32 const)``] -> ``Gemm`` / ``MatMul`` ->
                    [``Relu`` | ``Clip``] -> ``Q``; MatMul also of two activations ``DQ(a)``, ``DQ(b)``
graph output        an int8 tensor (a Q output, or a DQ of one), or a head Conv's output
==================  ==========================================================================================

Adding an op family (another module): write ``parse_x(p: patterns.Parser, node)`` with the helpers of
patterns.py (check attributes and constants first, then read inputs with ``p.dq_view`` / ``p.view``, so that a
node downstream of a reported one still has its own attribute problems listed), and add it to ``PARSERS`` below
(``**other_module.PARSERS``): the dict is the one place the reader learns an op type. The core ops' parse
functions are in parse_ops.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from . import parse_lut
from .frontend import prepare
from .ops import GraphInput, GraphOutput, IntGraph, IntOp
from .parse_ops import (
    parse_add,
    parse_average_pool,
    parse_clip,
    parse_concat,
    parse_conv,
    parse_gemm,
    parse_global_average_pool,
    parse_layout,
    parse_matmul,
    parse_maxpool,
    parse_resize,
)
from .patterns import Downstream, ParseFn, Parser, Reject, UnsupportedGraphError

__all__ = ["PARSERS", "UnsupportedGraphError", "load_model", "parse_qdq"]

# Nodes that only exist as parts of the patterns (never an op of their own).
_GLUE = ("QuantizeLinear", "DequantizeLinear", "Constant")

# Why an op type is missing, where a generic "not supported" would not help.
_HINTS = {
    op: "a shape computation that was not folded to a constant: its input shape is symbolic "
    "(fix the input shapes: fcos3d-compile --input-shape NAME=1,3,H,W)"
    for op in ("Shape", "Gather", "Slice", "ConstantOfShape", "Range", "Size", "Cast")
}


def load_model(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    """An ONNX model from a path or an already loaded ModelProto."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model))


# The one dispatch of the reader: ONNX op_type -> parse function. Other op families add their module's dict here.
PARSERS: dict[str, ParseFn] = {
    "Conv": parse_conv,
    "Add": parse_add,
    "Relu": parse_clip,
    "Clip": parse_clip,
    "Resize": parse_resize,
    "MaxPool": parse_maxpool,
    "AveragePool": parse_average_pool,
    "GlobalAveragePool": parse_global_average_pool,
    "Concat": parse_concat,
    "Flatten": parse_layout,
    "Reshape": parse_layout,
    "Transpose": parse_layout,
    "Squeeze": parse_layout,
    "Unsqueeze": parse_layout,
    "Gemm": parse_gemm,
    "MatMul": parse_matmul,
    **parse_lut.PARSERS,
}


# -- the whole graph -------------------------------------------------------------------------------------------


def _input_type(elem: int) -> tuple[str, int] | None:
    return {TensorProto.INT8: ("int8", 0), TensorProto.UINT8: ("uint8", -128)}.get(elem)


def parse_inputs(p: Parser) -> None:
    """Each graph input: an int8/uint8 tensor read by DQs with one (scale, zero point), or a float image
    quantised by Q nodes with one (scale, zero point). A bad input is one problem; its Q nodes are skipped."""
    for vi in p.graph_inputs:
        elem = vi.type.tensor_type.elem_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)
        users = p.consumers.get(vi.name, [])
        try:
            kind = _input_type(elem)
            if kind is not None:
                params = set()
                for u in users:
                    if u.op_type == "DequantizeLinear":
                        what = f"DequantizeLinear {p.name(u)}"
                        zp, _ = p.activation_zero_point(u, what, kind[0])
                        params.add((p.scalar_scale(u.input[1], f"{what} scale"), zp))
                if len(params) != 1:
                    shown = ", ".join(f"(scale {s!r}, zero point {z - kind[1]})" for s, z in sorted(params))
                    raise Reject(
                        f"an {kind[0]} input needs DequantizeLinear consumers with one shared scale and zero point, "
                        f"found {shown or 'none'}"
                    )
                scale, zp = params.pop()
                p.define_int8(vi.name, scale, zp, kind[0])
                p.inputs.append(GraphInput(vi.name, vi.name, scale, False, shape, zp, kind[0]))
            elif elem == TensorProto.FLOAT:
                if not users or any(u.op_type != "QuantizeLinear" for u in users):
                    raise Reject("a float input must feed QuantizeLinear nodes only (the int8/uint8 Q of the image)")
                params = {p.q_params(u) for u in users}
                if len(params) != 1:
                    shown = ", ".join(f"(scale {s!r}, {t} zero point {z + 128 * (t == 'uint8')})" for s, z, t in params)
                    raise Reject(f"the input's QuantizeLinear nodes must share one scale and zero point: {shown}")
                scale, zp, qtype = params.pop()
                tensor = users[0].output[0]
                for u in users:
                    p.alias[u.output[0]] = tensor
                    p.covered.add(id(u))
                p.define_int8(tensor, scale, zp, qtype)
                p.inputs.append(GraphInput(vi.name, tensor, scale, True, shape, zp, qtype))
            else:
                raise Reject(f"input type {TensorProto.DataType.Name(elem)} is not supported (int8, uint8 or float)")
        except (Reject, Downstream) as e:
            p.problems.append((vi.name, "graph input", str(e)))
            for u in users:  # not the Q's own fault: one problem per offending input
                p.problem(u, None)


def parse_outputs(p: Parser) -> tuple[GraphOutput, ...]:
    outputs = []
    for name in p.graph_outputs:
        t = p.resolve(name)
        if name in p.heads:
            head = p.heads[name]
            outputs.append(GraphOutput(name, name, "int32", head.accumulator_scale, 0, "int32"))
        elif t in p.int8:
            outputs.append(_int8_output(p, name, t, p.int8[t]))
        elif name in p.tainted:
            continue  # its producer is already reported
        else:
            prod = p.producer.get(name)
            if prod is not None and prod.op_type == "DequantizeLinear":
                try:
                    v = p.dq_view(name)
                except (Reject, Downstream) as e:
                    p.problem(prod, str(e) if isinstance(e, Reject) else None)
                    continue
                p.covered.add(id(v.node))
                outputs.append(_int8_output(p, name, v.src, v.scale))
                continue
            p.problems.append(
                (name, "graph output", "must be an int8 tensor (QuantizeLinear output) or a head Conv's output")
            )
    return tuple(outputs)


def _int8_output(p: Parser, name: str, tensor: str, scale: float) -> GraphOutput:
    zp = p.zero_points.get(tensor, 0)
    return GraphOutput(name, tensor, "int8", np.array([scale], dtype=np.float64), zp, p.qtypes.get(tensor, "int8"))


def report_leftovers(p: Parser) -> None:
    """DequantizeLinear nodes that no pattern claimed, unless dead or next to an already reported node."""
    for node in p.nodes:
        if node.op_type != "DequantizeLinear" or id(node) in p.covered or id(node) in p.problem_nodes:
            continue
        users = p.consumers.get(node.output[0], [])
        if not users or any(id(u) in p.problem_nodes for u in users):
            continue
        p.problem(node, "DequantizeLinear must feed a supported op or be a graph output")


def check_order(p: Parser, ops: list[IntOp]) -> tuple[IntOp, ...]:
    """The ops in ONNX node order, checked to read only tensors computed before them."""
    ready = {i.tensor for i in p.inputs}
    for op in ops:
        missing = [t for t in op.inputs if t not in ready]
        if missing:
            raise ValueError(f"{op.name} reads {missing} before they are computed: is the ONNX graph sorted?")
        ready.add(op.output)
    return tuple(ops)


def parse_nodes(p: Parser, parsers: dict[str, ParseFn]) -> None:
    """Every node once, in order: its parse function, or one problem. A node downstream of a reported node is
    still parsed for its own attribute problems; its input problems are not its fault and stay silent."""
    for node in p.nodes:
        if node.op_type == "Constant":
            p.covered.add(id(node))
            continue
        if id(node) in p.covered or id(node) in p.problem_nodes:
            continue  # a Q or Relu already matched with its op, or a node skipped with its graph input
        fn = parsers.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if node.domain not in ("", "ai.onnx"):
            p.problem(node, f"custom domain {node.domain!r} op {node.op_type} is not supported")
        elif fn is None and node.op_type in _HINTS and any(t in p.tainted for t in node.input):
            p.problem(node, None)  # the rest of an unfolded shape computation: one problem, at its start
        elif fn is None and node.op_type not in _GLUE:
            p.problem(node, _HINTS.get(node.op_type, "op type not supported by the int8 reader"))  # always listed
        elif fn is not None:
            p.downstream = any(t in p.tainted for t in node.input)
            try:
                fn(p, node)
            except Reject as e:
                p.problem(node, str(e))
            except Downstream:
                p.problem(node, None)  # a supported op downstream of a reported node: not its fault
            finally:
                p.downstream = False
        elif any(t in p.tainted for t in node.input):
            p.problem(node, None)
        elif node.op_type == "QuantizeLinear":  # its op came earlier in node order and did not claim it
            p.problem(
                node,
                "QuantizeLinear must follow a supported op (Conv, Add, Gemm, pools, ...; optionally with Relu or "
                "Clip) or the float graph input",
            )
        # DequantizeLinear nodes are claimed by their consumers; report_leftovers checks the rest.


def parse_qdq(
    model: onnx.ModelProto | str | Path,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    parsers: dict[str, ParseFn] | None = None,
) -> IntGraph:
    """Parse a QDQ or QOperator ONNX model (path or ModelProto) into an ``IntGraph``.

    ``input_shapes``: ``{input name: shape}`` that fixes symbolic dims (frontend.prepare); ``parsers``: the
    dispatch table (default ``PARSERS``). Raises ``UnsupportedGraphError`` listing every node outside the
    supported patterns (module docstring), and ``frontend.InputShapeError`` for a bad ``input_shapes``.
    """
    p = Parser(prepare(load_model(model), input_shapes))
    parse_inputs(p)
    parse_nodes(p, PARSERS if parsers is None else parsers)
    outputs = parse_outputs(p)
    report_leftovers(p)
    if p.problems:
        raise UnsupportedGraphError(p.problems)
    tensors = set(p.int8)
    return IntGraph(
        tuple(p.inputs),
        check_order(p, p.ops),
        outputs,
        dict(p.int8),
        {t: z for t, z in p.zero_points.items() if z and t in tensors},
    )
