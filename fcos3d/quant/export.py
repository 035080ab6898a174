"""Export the integer model as int8 QDQ ONNX (opset 17), written node by node from its integer constants.

The graph has exactly the patterns of fcos3d/runtime/reference/graph.py (docs/int8.md section 5): int8
image input, DQ -> Conv -> [Relu] -> Q, DQ -> Add -> Q, DQ -> Resize/MaxPool -> Q, head convs without Q.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from fcos3d.errors import Fcos3dError

from .intmodel import IntAdd, IntConv, IntMaxPool, IntModel, IntResize, QAT2Quantize

__all__ = ["OPSET", "INPUT_LAYOUT", "build_qdq_onnx", "export_qdq_onnx"]

OPSET = 17
INPUT_LAYOUT = "NCHW YUV444 int8 = byte - 128, scale 1/128"


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()  # tensor names
        self._node_names: set[str] = set()

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

    def dq(self, tensor: str, scale: float, user: str) -> str:
        """A DequantizeLinear of an int8 activation for one consumer (as exporters emit)."""
        s = self.const(f"{user}.x_scale", np.array(scale, dtype=np.float32))
        z = self.const(f"{user}.x_zero_point", np.array(0, dtype=np.int8))
        return self.node("DequantizeLinear", [tensor, s, z], self.uid(f"{user}.x_dq"), f"{user}.dq_x")

    def q(self, tensor: str, scale: float, output: str, user: str) -> str:
        s = self.const(f"{user}.y_scale", np.array(scale, dtype=np.float32))
        z = self.const(f"{user}.y_zero_point", np.array(0, dtype=np.int8))
        return self.node("QuantizeLinear", [tensor, s, z], output, f"{user}.q")


def _conv(g: _Graph, op: IntConv, names: dict[str, str], scales: dict[str, float]) -> None:
    x = g.dq(names[op.input], scales[op.input], op.name)
    o = op.weight.shape[0]
    s_w = op.weight_scale.astype(np.float32)
    w = g.const(f"{op.name}.weight", op.weight.numpy().astype(np.int8))
    ws = g.const(f"{op.name}.weight_scale", s_w)
    wz = g.const(f"{op.name}.weight_zero_point", np.zeros(o, dtype=np.int8))
    wd = g.node("DequantizeLinear", [w, ws, wz], g.uid(f"{op.name}.weight_dq"), f"{op.name}.dq_w", axis=0)
    # The bias scale is implied (s_in * s_w); stored as its float32 rounding (graph.py allows 2**-20).
    b = g.const(f"{op.name}.bias", op.bias.numpy().astype(np.int32))
    bs = g.const(f"{op.name}.bias_scale", (np.float64(op.input_scale) * s_w.astype(np.float64)).astype(np.float32))
    bz = g.const(f"{op.name}.bias_zero_point", np.zeros(o, dtype=np.int32))
    bd = g.node("DequantizeLinear", [b, bs, bz], g.uid(f"{op.name}.bias_dq"), f"{op.name}.dq_b", axis=0)
    kh, kw = op.weight.shape[2:]
    attrs = dict(kernel_shape=[kh, kw], strides=list(op.stride), pads=list(op.pads), group=op.groups, dilations=[1, 1])
    if op.output_scale is None:  # head: the float conv result is the graph output (int32 acc * s_in * s_w)
        g.node("Conv", [x, wd, bd], op.output, op.name, **attrs)
        names[op.output] = op.output
        return
    y = g.node("Conv", [x, wd, bd], g.uid(f"{op.name}.conv_out"), op.name, **attrs)
    if op.relu:
        y = g.node("Relu", [y], g.uid(f"{op.name}.relu_out"), f"{op.name}.relu")
    names[op.output] = g.q(y, op.output_scale, g.uid(op.output), op.name)


def _add(g: _Graph, op: IntAdd, names: dict[str, str], scales: dict[str, float]) -> None:
    a = g.dq(names[op.a], scales[op.a], f"{op.name}.a")
    b = g.dq(names[op.b], scales[op.b], f"{op.name}.b")
    y = g.node("Add", [a, b], g.uid(f"{op.name}.add_out"), op.name)
    if op.relu:
        y = g.node("Relu", [y], g.uid(f"{op.name}.relu_out"), f"{op.name}.relu")
    names[op.output] = g.q(y, op.output_scale, g.uid(op.output), op.name)


def _resize(g: _Graph, op: IntResize, names, scales, shapes) -> None:
    x = g.dq(names[op.input], scales[op.input], op.name)
    n, c, h, w = shapes[op.input]
    oh, ow = shapes[op.like][2:]
    attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if (oh, ow) == (2 * h, 2 * w):
        extra = ["", g.const(f"{op.name}.scales", np.array([1, 1, 2, 2], dtype=np.float32))]
    else:
        extra = ["", "", g.const(f"{op.name}.sizes", np.array([n, c, oh, ow], dtype=np.int64))]
    y = g.node("Resize", [x, *extra], g.uid(f"{op.name}.resize_out"), op.name, **attrs)
    names[op.output] = g.q(y, scales[op.input], g.uid(op.output), op.name)


def _maxpool(g: _Graph, op: IntMaxPool, names, scales) -> None:
    x = g.dq(names[op.input], scales[op.input], op.name)
    ph, pw = op.padding
    y = g.node("MaxPool", [x], g.uid(f"{op.name}.pool_out"), op.name, kernel_shape=list(op.kernel),
               strides=list(op.stride), pads=[ph, pw, ph, pw])
    names[op.output] = g.q(y, scales[op.input], g.uid(op.output), op.name)


def build_qdq_onnx(int_model: IntModel, input_shape, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The QDQ ONNX of ``int_model`` for a fixed ``input_shape`` (N, 3, H, W); checked by onnx.checker."""
    x = torch.zeros(tuple(input_shape), dtype=torch.int8)
    env = int_model.run(x, keep_intermediates=True)  # every tensor's shape at this input size
    shapes = {k: tuple(v.shape) for k, v in env.items()}
    scales = int_model.tensor_scales
    g = _Graph()
    names = {int_model.input_name: g.uid(int_model.input_name)}
    for op in int_model.ops:
        if isinstance(op, IntConv):
            _conv(g, op, names, scales)
        elif isinstance(op, IntAdd):
            _add(g, op, names, scales)
        elif isinstance(op, IntResize):
            _resize(g, op, names, scales, shapes)
        elif isinstance(op, IntMaxPool):
            _maxpool(g, op, names, scales)
        else:
            raise Fcos3dError(f"{op.name}: no QDQ form for {type(op).__name__}")
    inputs = [helper.make_tensor_value_info(names[int_model.input_name], TensorProto.INT8, list(input_shape))]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shapes[n])) for n in int_model.output_names]
    graph = helper.make_graph(g.nodes, "fcos3d_int8_qdq", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fcos3d")
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    return model


def _qdq_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def simplify_keeping_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim (shape inference, dead-code removal) keeping every Q/DQ: no constant folding (it would turn
    DQ(int8 weight) into float weights) and no common-subexpression elimination (it would merge the
    per-consumer DQs that QDQ consumers expect). Raises if the op counts still change."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model, skip_constant_folding=True, skip_fuse_bn=True,
                                      skipped_optimizers=["eliminate_common_subexpression"])
    if not ok:
        raise Fcos3dError("onnxsim could not validate the simplified QDQ graph; export with simplify=False")
    if _qdq_counts(simplified) != _qdq_counts(model):
        raise Fcos3dError(f"onnxsim changed the QDQ graph ({_qdq_counts(model)} -> {_qdq_counts(simplified)}); "
                          "export with simplify=False")
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(model.metadata_props)
    onnx.checker.check_model(simplified)
    return simplified


def export_qdq_onnx(model, input_shape, path: str | Path, *, class_names=None, simplify: bool = True) -> onnx.ModelProto:
    """Write the int8 QDQ ONNX of an IntModel (or a QAT QuantFCOS3D, converted first) to ``path``.

    metadata_props: ``class_names`` (JSON list), ``strides`` (JSON), ``output_scales`` (JSON {output:
    [per-channel float64]}: float = int32 * scale), ``input_layout``. Returns the saved ModelProto.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if not isinstance(model, IntModel):
        model = QAT2Quantize(input_shape)(model)
    if class_names is None:
        from fcos3d.data.classes import CLASSES

        class_names = list(CLASSES)
    meta = {
        "class_names": json.dumps(list(class_names)),
        "strides": json.dumps(list(model.strides)),
        "output_scales": json.dumps({n: [float(v) for v in model.output_scales[n]] for n in model.output_names}),
        "input_layout": INPUT_LAYOUT,
        "input_scale": json.dumps(model.input_scale),
    }
    onnx_model = build_qdq_onnx(model, input_shape, meta)
    if simplify:
        onnx_model = simplify_keeping_qdq(onnx_model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(onnx_model, str(tmp))
    tmp.replace(path)
    return onnx_model
