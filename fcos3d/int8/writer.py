"""An ``IntGraph`` -> int8 QDQ ONNX (opset 17), written node by node from the ops' integer constants.

The graph has exactly the patterns reader.py parses back (docs/int8.md section 5): int8 (or float + Q) input,
DQ -> Conv -> [Relu] -> Q, DQ -> Add -> [Relu] -> Q, DQ -> Resize/MaxPool/Concat -> Q, head convs without Q.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .dispatch import check_supported, implementation
from .ops import Add, Concat, Conv, IntGraph, MaxPool, ResizeNearest, infer_shapes

__all__ = ["OPSET", "write_qdq"]

OPSET = 17
_EXECUTOR = "the QDQ writer (fcos3d.int8.writer)"


class _Graph:
    """Nodes and initializers under unique names (a name taken twice gets ``_2``, ``_3``, ...)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()  # tensor names
        self._node_names: set[str] = set()
        self.zero_points: Mapping[str, int] = {}  # int8 tensor -> zero point (IntGraph.tensor_zero_points)

    @staticmethod
    def _unique(name: str, taken: set[str]) -> str:
        base, k = name, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    def uid(self, name: str) -> str:
        return self._unique(name, self._names)

    def const(self, name: str, value: np.ndarray) -> str:
        name = self.uid(name)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=self._unique(name, self._node_names), **attrs))
        return output

    def dq(self, tensor: str, scale: float, user: str, output: str | None = None, zero_point: int = 0) -> str:
        """A DequantizeLinear of an int8 activation for one consumer (as exporters emit)."""
        s = self.const(f"{user}.x_scale", np.array(scale, dtype=np.float32))
        z = self.const(f"{user}.x_zero_point", np.array(zero_point, dtype=np.int8))
        return self.node("DequantizeLinear", [tensor, s, z], self.uid(output or f"{user}.x_dq"), f"{user}.dq_x")

    def q(self, tensor: str, scale: float, output: str, user: str, zero_point: int = 0) -> str:
        s = self.const(f"{user}.y_scale", np.array(scale, dtype=np.float32))
        z = self.const(f"{user}.y_zero_point", np.array(zero_point, dtype=np.int8))
        return self.node("QuantizeLinear", [tensor, s, z], output, f"{user}.q")


def _no_clamp(op) -> None:
    """Quantised Clip bounds have no exact float form to write back: the writer writes Relu only."""
    if getattr(op, "clamp", None) is not None:
        raise ValueError(
            f"{op.name}: the QDQ writer writes ReLU but not Clip bounds {op.clamp} (an op read from another ONNX)"
        )


# Each writer: (graph, op, {int tensor: ONNX name}, {int8 tensor: scale}, {tensor: shape}) -> None; it sets
# names[op.output] to the ONNX tensor holding the op's integer output.


def _conv(g: _Graph, op: Conv, names: dict[str, str], scales: Mapping[str, float], shapes) -> None:
    _no_clamp(op)
    x = g.dq(names[op.input], scales[op.input], op.name, zero_point=op.input_zero_point)
    o = op.weight.shape[0]
    s_w = op.weight_scale.astype(np.float32)  # the stored float32 scales
    w = g.const(f"{op.name}.weight", op.weight.astype(np.int8))
    ws = g.const(f"{op.name}.weight_scale", s_w)
    wz = g.const(f"{op.name}.weight_zero_point", np.zeros(o, dtype=np.int8))
    wd = g.node("DequantizeLinear", [w, ws, wz], g.uid(f"{op.name}.weight_dq"), f"{op.name}.dq_w", axis=0)
    # The bias scale is implied (s_in * s_w); stored as its float32 rounding (reader.py allows 2**-20).
    b = g.const(f"{op.name}.bias", op.bias.astype(np.int32))
    bs = g.const(f"{op.name}.bias_scale", (np.float64(op.input_scale) * s_w.astype(np.float64)).astype(np.float32))
    bz = g.const(f"{op.name}.bias_zero_point", np.zeros(o, dtype=np.int32))
    bd = g.node("DequantizeLinear", [b, bs, bz], g.uid(f"{op.name}.bias_dq"), f"{op.name}.dq_b", axis=0)
    kh, kw = op.weight.shape[2:]
    attrs = dict(
        kernel_shape=[kh, kw],
        strides=list(op.strides),
        pads=list(op.pads),
        group=op.groups,
        dilations=list(op.dilations),
    )
    if op.int32_output:  # head: the float conv result is the graph output (int32 acc * s_in * s_w)
        g.node("Conv", [x, wd, bd], op.output, op.name, **attrs)
        names[op.output] = op.output
        return
    y = g.node("Conv", [x, wd, bd], g.uid(f"{op.name}.conv_out"), op.name, **attrs)
    if op.relu:
        y = g.node("Relu", [y], g.uid(f"{op.name}.relu_out"), f"{op.name}.relu")
    names[op.output] = g.q(y, op.output_scale, g.uid(op.output), op.name, op.output_zero_point)


def _add(g: _Graph, op: Add, names: dict[str, str], scales: Mapping[str, float], shapes) -> None:
    _no_clamp(op)
    a = g.dq(names[op.a], scales[op.a], f"{op.name}.a", zero_point=op.zero_point_a)
    b = g.dq(names[op.b], scales[op.b], f"{op.name}.b", zero_point=op.zero_point_b)
    y = g.node("Add", [a, b], g.uid(f"{op.name}.add_out"), op.name)
    if op.relu:
        y = g.node("Relu", [y], g.uid(f"{op.name}.relu_out"), f"{op.name}.relu")
    names[op.output] = g.q(y, op.output_scale, g.uid(op.output), op.name, op.output_zero_point)


def _resize(g: _Graph, op: ResizeNearest, names: dict[str, str], scales: Mapping[str, float], shapes) -> None:
    """A ``like`` resize gets the fixed form of this input size: scales (1, 1, 2, 2) when it doubles, else sizes."""
    z = int(g.zero_points.get(op.input, 0))
    x = g.dq(names[op.input], scales[op.input], op.name, zero_point=z)
    n, c, h, w = shapes[op.input]
    oh, ow = shapes[op.output][2:]
    attrs = dict(mode="nearest", coordinate_transformation_mode=op.coordinate_mode, nearest_mode=op.nearest_mode)
    if op.scales is not None:
        factors = np.array([1, 1, *(float(s) for s in op.scales)], dtype=np.float32)  # exact: float32 rationals
        extra = ["", g.const(f"{op.name}.scales", factors)]
    elif op.sizes is None and (oh, ow) == (2 * h, 2 * w):
        extra = ["", g.const(f"{op.name}.scales", np.array([1, 1, 2, 2], dtype=np.float32))]
    else:
        extra = ["", "", g.const(f"{op.name}.sizes", np.array([n, c, oh, ow], dtype=np.int64))]
    y = g.node("Resize", [x, *extra], g.uid(f"{op.name}.resize_out"), op.name, **attrs)
    names[op.output] = g.q(y, scales[op.input], g.uid(op.output), op.name, z)


def _maxpool(g: _Graph, op: MaxPool, names: dict[str, str], scales: Mapping[str, float], shapes) -> None:
    z = int(g.zero_points.get(op.input, 0))
    x = g.dq(names[op.input], scales[op.input], op.name, zero_point=z)
    extra = {}  # written only when not the default, so the exporter's graphs stay as they were
    if op.ceil_mode:
        extra["ceil_mode"] = 1
    if op.dilations != (1, 1):
        extra["dilations"] = list(op.dilations)
    y = g.node(
        "MaxPool",
        [x],
        g.uid(f"{op.name}.pool_out"),
        op.name,
        kernel_shape=list(op.kernel),
        strides=list(op.strides),
        pads=list(op.pads),
        **extra,
    )
    names[op.output] = g.q(y, scales[op.input], g.uid(op.output), op.name, z)


def _concat(g: _Graph, op: Concat, names: dict[str, str], scales: Mapping[str, float], shapes) -> None:
    """Each input dequantised with its own scale; the reader turns a scale change back into ``rescales``."""
    xs = [
        g.dq(names[t], s, f"{op.name}.{i}", zero_point=z)
        for i, (t, s, z) in enumerate(zip(op.inputs, op.input_scales, op.zero_points_in, strict=True))
    ]
    y = g.node("Concat", xs, g.uid(f"{op.name}.concat_out"), op.name, axis=op.axis)
    names[op.output] = g.q(y, op.output_scale, g.uid(op.output), op.name, op.output_zero_point)


# One explicit dispatch table: op class -> writer.
_WRITERS = {Conv: _conv, Add: _add, ResizeNearest: _resize, MaxPool: _maxpool, Concat: _concat}


def _input_shapes(graph: IntGraph, input_shapes) -> dict[str, tuple[int, ...]]:
    if input_shapes is None:
        input_shapes = {i.name: i.shape for i in graph.inputs}
    elif not isinstance(input_shapes, Mapping):
        if len(graph.inputs) != 1:
            raise ValueError(f"the graph has inputs {[i.name for i in graph.inputs]}: give {{name: shape}}")
        input_shapes = {graph.inputs[0].name: input_shapes}
    shapes = {}
    for i in graph.inputs:
        shape = tuple(input_shapes.get(i.name, ()))
        if len(shape) != 4 or any(d is None for d in shape):
            raise ValueError(f"input {i.name!r} needs a static (N, C, H, W) shape to be written, got {shape}")
        shapes[i.name] = tuple(int(d) for d in shape)
    return shapes


def write_qdq(graph: IntGraph, input_shapes=None, metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """The QDQ ONNX ModelProto of ``graph`` for fixed input shapes; checked by onnx.checker.

    ``input_shapes``: one (N, C, H, W) when the graph has one input, or ``{input name: shape}``; default:
    the inputs' declared shapes. ``metadata``: written to ``metadata_props``.
    """
    check_supported(_WRITERS, graph.ops, _EXECUTOR)
    given = _input_shapes(graph, input_shapes)
    shapes = infer_shapes(graph, given)  # every tensor's shape at this input size
    scales = graph.tensor_scales
    g = _Graph()
    g.zero_points = graph.tensor_zero_points
    names: dict[str, str] = {}
    inputs = []
    for i in graph.inputs:
        if i.float_input:  # the float image, quantised by the graph's first node
            inputs.append(helper.make_tensor_value_info(g.uid(i.name), TensorProto.FLOAT, list(given[i.name])))
            names[i.tensor] = g.q(i.name, i.scale, g.uid(i.tensor), i.name, i.zero_point)
        else:
            names[i.tensor] = g.uid(i.tensor)
            inputs.append(helper.make_tensor_value_info(names[i.tensor], TensorProto.INT8, list(given[i.name])))
    for op in graph.ops:
        implementation(_WRITERS, op, _EXECUTOR)(g, op, names, scales, shapes)
    outputs = []
    for o in graph.outputs:
        shape = list(shapes[o.tensor])
        if o.dtype == "int32":  # a head conv: its float output is the graph output, under the output's name
            if names[o.tensor] != o.name:
                raise ValueError(f"int32 output {o.name!r} must be the name of its head conv's output {o.tensor!r}")
            outputs.append(helper.make_tensor_value_info(o.name, TensorProto.FLOAT, shape))
        elif names[o.tensor] == o.name:
            outputs.append(helper.make_tensor_value_info(o.name, TensorProto.INT8, shape))
        else:  # a float output: DQ of the int8 tensor
            name = g.dq(names[o.tensor], float(o.scales[0]), o.name, output=o.name, zero_point=o.zero_point)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    onnx_graph = helper.make_graph(g.nodes, "fcos3d_int8_qdq", inputs, outputs, g.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fcos3d")
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    return model
