"""QOperator ONNX -> QDQ ONNX: each QLinearX / QGemm node becomes DequantizeLinear -> float op -> QuantizeLinear.

ONNX and onnxruntime define these ops exactly that way (dequantize the inputs, run the float op, quantize the
result), so the rewrite changes no value and the one QDQ parser (reader.py) reads both formats. The float node
keeps the QOperator node's name, so problems name the user's node. Ops applied directly to quantised tensors
(MaxPool, Flatten, Reshape, Transpose on uint8/int8) need no rewrite: the parser reads them as scale-preserving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["QOPERATORS", "QOp", "has_qoperators", "rewrite_qoperators"]

_MS = "com.microsoft"


@dataclass(frozen=True)
class QOp:
    """How one QOperator node maps to QDQ: the float op, its quantised inputs as (value, scale, zero point)
    input indices, the output's (scale, zero point) indices, a bias input (int32, scale = input 0 scale x
    input 1 scale) and the attributes to drop. ``variadic``: QLinearConcat's (value, scale, zp) triples
    from input 2 on, output scale/zp at 0, 1."""

    float_op: str
    inputs: tuple[tuple[int, int, int], ...]
    output: tuple[int, int] | None
    bias: int | None = None
    drop_attrs: tuple[str, ...] = ()
    variadic: bool = False


# (domain, op_type) -> QOp. The domain "" ops are ONNX's; com.microsoft are onnxruntime's contrib ops.
QOPERATORS: dict[tuple[str, str], QOp] = {
    ("", "QLinearConv"): QOp("Conv", ((0, 1, 2), (3, 4, 5)), (6, 7), bias=8),
    ("", "QLinearMatMul"): QOp("MatMul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QLinearAdd"): QOp("Add", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QLinearMul"): QOp("Mul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QLinearGlobalAveragePool"): QOp("GlobalAveragePool", ((0, 1, 2),), (3, 4), drop_attrs=("channels_last",)),
    (_MS, "QLinearAveragePool"): QOp("AveragePool", ((0, 1, 2),), (3, 4), drop_attrs=("channels_last",)),
    (_MS, "QLinearConcat"): QOp("Concat", (), (0, 1), variadic=True),
    (_MS, "QLinearSigmoid"): QOp("Sigmoid", ((0, 1, 2),), (3, 4)),
    (_MS, "QLinearLeakyRelu"): QOp("LeakyRelu", ((0, 1, 2),), (3, 4)),
    (_MS, "QLinearSoftmax"): QOp("Softmax", ((0, 1, 2),), (3, 4), drop_attrs=("opset",)),
    (_MS, "QLinearReduceMean"): QOp("ReduceMean", ((0, 1, 2),), (3, 4)),
    (_MS, "QGemm"): QOp("Gemm", ((0, 1, 2), (3, 4, 5)), (7, 8), bias=6),
}
# onnxruntime's contrib Q/DQ (int8/uint8: the same as ONNX's).
_SAME_AS_ONNX = {(_MS, "QuantizeLinear"), (_MS, "DequantizeLinear")}


class _Keep(Exception):
    """A QOperator node this rewrite cannot express: it stays, and the parser lists it."""


def _key(node: onnx.NodeProto) -> tuple[str, str]:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return domain, node.op_type


def has_qoperators(model: onnx.ModelProto) -> bool:
    return any(_key(n) in QOPERATORS or _key(n) in _SAME_AS_ONNX for n in model.graph.node)


def _arg(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


class _Rewriter:
    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.taken = {t for n in self.graph.node for t in (*n.input, *n.output)} | set(self.inits)
        self.taken |= {v.name for v in (*self.graph.input, *self.graph.output)}

    def uid(self, name: str) -> str:
        base, k = name, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def const_array(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def add_const(self, name: str, value: np.ndarray) -> str:
        name = self.uid(name)
        t = numpy_helper.from_array(np.asarray(value), name)
        self.graph.initializer.append(t)
        self.inits[name] = t
        return name

    def dq(
        self, node_name: str, value: str, scale: str, zp: str, tag: str, axis: int | None
    ) -> tuple[str, onnx.NodeProto]:
        out = self.uid(f"{node_name}/{tag}_dq")
        inputs = [value, scale] + ([zp] if zp else [])
        attrs = {"axis": axis} if axis is not None else {}
        return out, helper.make_node("DequantizeLinear", inputs, [out], name=self.uid(f"{node_name}/dq_{tag}"), **attrs)

    def per_channel_axis(self, spec: QOp, node: onnx.NodeProto, scale: str) -> int | None:
        """The DQ axis of a per-channel scale (weights): Conv O (0), Gemm N (0 with transB, else 1), MatMul -1."""
        s = self.const_array(scale)
        if s is None or s.size <= 1:
            return None
        if spec.float_op == "Conv":
            return 0
        if spec.float_op == "Gemm":
            trans_b = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "transB"), 0)
            return 0 if trans_b else 1
        return -1

    def rewrite(self, node: onnx.NodeProto, spec: QOp) -> list[onnx.NodeProto]:
        name = node.name or self.uid(node.op_type)
        new: list[onnx.NodeProto] = []
        float_inputs: list[str] = []
        slots = spec.inputs
        if spec.variadic:
            slots = tuple((k, k + 1, k + 2) for k in range(2, len(node.input), 3))
        for i, (v, s, z) in enumerate(slots):
            axis = self.per_channel_axis(spec, node, _arg(node, s)) if i == 1 and not spec.variadic else None
            out, dq = self.dq(name, _arg(node, v), _arg(node, s), _arg(node, z), f"in{i}", axis)
            new.append(dq)
            float_inputs.append(out)
        if spec.bias is not None and _arg(node, spec.bias):
            float_inputs.append(self.bias(name, node, spec))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in spec.drop_attrs}
        quantised = spec.output is not None and _arg(node, spec.output[0])
        float_out = self.uid(f"{node.output[0]}/float") if quantised else node.output[0]
        new.append(helper.make_node(spec.float_op, float_inputs, [float_out], name=name, **attrs))
        if quantised:
            s, z = spec.output
            zp = _arg(node, z) or self.default_zero_point(name, _arg(node, slots[0][2]) if slots else "")
            new.append(
                helper.make_node(
                    "QuantizeLinear", [float_out, _arg(node, s), zp], [node.output[0]], name=self.uid(f"{name}/q")
                )
            )
        return new

    def bias(self, name: str, node: onnx.NodeProto, spec: QOp) -> str:
        """DQ(bias int32, s_x * s_w (float32, per channel), axis 0): the bias's implied scale, as QDQ stores it."""
        s_x = self.const_array(_arg(node, spec.inputs[0][1]))
        s_w = self.const_array(_arg(node, spec.inputs[1][1]))
        if s_x is None or s_w is None or s_x.size != 1:
            raise _Keep  # scales that are no constants: the node stays as it is, and the parser reports it
        scale = (np.float64(s_x.reshape(())) * s_w.astype(np.float64).reshape(-1)).astype(np.float32)
        scale_name = self.add_const(f"{name}/bias_scale", scale if scale.size > 1 else scale.reshape(()))
        out, dq = self.dq(name, _arg(node, spec.bias), scale_name, "", "bias", 0 if scale.size > 1 else None)
        self._pending.append(dq)
        return out

    def default_zero_point(self, name: str, like: str) -> str:
        """An explicit zero point 0 of the input's type (a Q without one would output uint8)."""
        z = self.const_array(like) if like else None
        dtype = z.dtype if z is not None else np.uint8
        return self.add_const(f"{name}/y_zero_point", np.zeros((), dtype=dtype))

    def run(self) -> None:
        nodes = list(self.graph.node)
        out: list[onnx.NodeProto] = []
        for node in nodes:
            key = _key(node)
            if key in _SAME_AS_ONNX:
                n = onnx.NodeProto()
                n.CopyFrom(node)
                n.domain = ""
                out.append(n)
            elif key in QOPERATORS:
                self._pending: list[onnx.NodeProto] = []
                try:
                    new = self.rewrite(node, QOPERATORS[key])
                except _Keep:
                    out.append(node)
                    continue
                out.extend([*self._pending, *new])
            else:
                out.append(node)
        del self.graph.node[:]
        self.graph.node.extend(out)


def rewrite_qoperators(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every QOperator node (``QOPERATORS``) as DQ -> float op -> Q, as a copy (``model`` itself
    when it has none); the default-domain opset is raised to 13 at least (per-axis DequantizeLinear)."""
    if not has_qoperators(model):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _Rewriter(m).run()
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < 13:
            o.version = 13
    return m
