"""QDQ ONNX -> an ``IntGraph``: the integer ops with their integer constants (the reader of every executor).

Recognises exactly the QDQ patterns of docs/int8.md section 5; any other node makes ``parse_qdq`` raise one
``UnsupportedGraphError`` that lists every offending node with the reason. Only reads the protobuf (``onnx.load``,
``numpy_helper.to_array``, attribute values); no onnx computation is used.

Patterns (``DQ`` = DequantizeLinear, ``Q`` = QuantizeLinear, every zero point 0, activations int8 per-tensor):

==================  ==========================================================================================
op                  QDQ form
==================  ==========================================================================================
input               int8 graph input consumed by ``DQ(x, s)``; or float graph input -> ``Q(s)`` (int8)
Conv                ``DQ(x, s_in)``, ``DQ(W int8 const, s_w per-channel axis 0 or per-tensor)``,
                    [``DQ(B int32 const, s_in*s_w)``] -> ``Conv`` (any group, strides, pads, dilation 1)
                    -> [``Relu``] -> ``Q(s_out)``
head Conv (int32)   the same Conv whose float output is a graph output (no Relu, no Q): int32 ``acc``
Add                 ``DQ(a, s_a)``, ``DQ(b, s_b)`` -> ``Add`` -> [``Relu``] -> ``Q(s_out)``
Resize              ``DQ(x, s)`` -> ``Resize`` (mode nearest, const scales or sizes) -> ``Q(s)``; or on int8
MaxPool             ``DQ(x, s)`` -> ``MaxPool`` (dilation 1, ceil_mode 0) -> ``Q(s)``; or on int8
Concat              ``DQ(x_i, s_i)`` -> ``Concat`` -> ``Q(s)`` (an ``s_i != s`` is requantised); or on int8
                    tensors that share one scale
graph output        an int8 tensor (a Q output, or a DQ of one), or a head Conv's output
==================  ==========================================================================================
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import fixedpoint as fx
from .ops import (
    COORDINATE_MODES,
    NEAREST_MODES,
    Add,
    Concat,
    Conv,
    GraphInput,
    GraphOutput,
    IntGraph,
    IntOp,
    MaxPool,
    ResizeNearest,
)

__all__ = ["UnsupportedGraphError", "load_model", "parse_qdq"]

# Relative difference allowed between a stored bias scale and s_in * s_w[c]: the exporter rounds the product
# to float32 (half an ulp, 2**-24), possibly after a float32 multiply (another 2**-24).
_BIAS_SCALE_RTOL = 2.0**-20


class UnsupportedGraphError(ValueError):
    """The graph holds nodes outside the supported QDQ patterns.

    ``nodes``: every offending ``(node name, op_type)``; ``problems``: the same with the reason as a third
    item. The message lists all of them, one per line.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = list(problems)
        self.nodes = [(name, op) for name, op, _ in self.problems]
        lines = "\n".join(f"  - {name} ({op}): {why}" for name, op, why in self.problems)
        super().__init__(
            f"{len(self.problems)} node(s) outside the supported int8 QDQ patterns "
            f"(docs/int8.md section 5; fcos3d/int8/reader.py lists them):\n{lines}"
        )


# Nodes that only exist as parts of the patterns (never an op of their own).
_GLUE = ("QuantizeLinear", "DequantizeLinear", "Relu", "Constant")


class _Reject(Exception):
    """A pattern did not match; the message is the reason shown to the user."""


def load_model(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    """An ONNX model from a path or an already loaded ModelProto."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model))


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        raise _Reject("a Constant needs exactly one attribute")
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    raise _Reject(f"Constant attribute {attr.name!r} is not supported")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


def _as_int_pair(values, name: str) -> tuple[int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 2:
        raise _Reject(f"{name} {values} must have 2 entries (2-D NCHW op)")
    return values  # type: ignore[return-value]


def _spatial_attrs(attrs: dict, kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(strides, pads) of a 2-D Conv/MaxPool, checking auto_pad and dilations."""
    auto_pad = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "VALID"):
        raise _Reject(f"auto_pad={auto_pad} is not supported: export explicit pads")
    if tuple(attrs.get("dilations", (1, 1))) != (1, 1):
        raise _Reject(f"dilations {tuple(attrs['dilations'])} are not supported (only 1)")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:
        raise _Reject(f"kernel_shape {tuple(attrs['kernel_shape'])} differs from the weight's {kernel}")
    strides = _as_int_pair(attrs.get("strides", (1, 1)), "strides")
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0))) if auto_pad == "NOTSET" else (0, 0, 0, 0)
    if len(pads) != 4 or min(pads) < 0 or min(strides) < 1:
        raise _Reject(f"pads {pads} / strides {strides} are not valid 2-D values")
    return strides, pads  # type: ignore[return-value]


class _Parser:
    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = list(g.node)
        self.names = {id(n): n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for t in n.output:
                if t:
                    self.producer[t] = n
            for t in n.input:
                if t:
                    self.consumers[t].append(n)
        self.graph_inputs = [v for v in g.input if v.name not in self.consts]
        self.graph_outputs = [v.name for v in g.output]
        self.output_set = set(self.graph_outputs)
        self.problems: list[tuple[str, str, str]] = []
        self.problem_nodes: set[int] = set()  # reported, or skipped as downstream of a reported node
        self.tainted: set[str] = set()  # tensors computed by those nodes
        self.covered: set[int] = set()
        self.int8: dict[str, float] = {}  # int8 activation tensor -> scale
        self.alias: dict[str, str] = {}  # extra Q outputs of the float input -> the one input tensor
        self.ops: list[IntOp] = []
        self.heads: dict[str, Conv] = {}
        self.inputs: list[GraphInput] = []

    # -- small helpers ------------------------------------------------------------------------------------

    def name(self, node: onnx.NodeProto) -> str:
        return self.names[id(node)]

    def problem(self, node: onnx.NodeProto, reason: str | None) -> None:
        """Report ``node`` (``reason`` None: skip it silently) and taint its outputs."""
        if reason is not None:
            self.problems.append((self.name(node), node.op_type, reason))
        self.problem_nodes.add(id(node))
        self.tainted.update(t for t in node.output if t)

    def resolve(self, tensor: str) -> str:
        return self.alias.get(tensor, tensor)

    def const(self, tensor: str, what: str) -> np.ndarray:
        if tensor in self.consts:
            return self.consts[tensor]
        p = self.producer.get(tensor)
        if p is not None and p.op_type == "Constant":
            value = _constant_node_value(p)
            self.consts[tensor] = value
            return value
        raise _Reject(f"{what} {tensor!r} must be a constant (initializer or Constant)")

    def is_const(self, tensor: str) -> bool:
        p = self.producer.get(tensor)
        return tensor in self.consts or (p is not None and p.op_type == "Constant")

    def scalar_scale(self, tensor: str, what: str) -> float:
        s = np.asarray(self.const(tensor, what))
        if s.size != 1 or s.dtype != np.float32:
            raise _Reject(f"{what} must be one float32 value (per-tensor int8), got {s.dtype} shape {s.shape}")
        v = float(s.reshape(()))
        if not (np.isfinite(v) and v > 0):
            raise _Reject(f"{what} {v!r} must be finite and > 0")
        return v

    def zero_point_is_zero(self, node: onnx.NodeProto, dtype: np.dtype, what: str) -> None:
        if len(node.input) < 3 or not node.input[2]:
            return
        zp = np.asarray(self.const(node.input[2], f"{what} zero point"))
        if zp.dtype != dtype:
            raise _Reject(f"{what} zero point has dtype {zp.dtype}, expected {np.dtype(dtype)}")
        if np.any(zp != 0):
            raise _Reject(f"{what} zero point must be 0 (symmetric quantisation), got {zp.ravel()[:4]}")

    def check_block_size(self, node: onnx.NodeProto) -> None:
        if int(_attrs(node).get("block_size", 0)) != 0:
            raise _Reject(f"{node.op_type} {self.name(node)}: blocked quantisation is not supported")

    def single_consumer(self, tensor: str) -> onnx.NodeProto:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.output_set:
            raise _Reject(f"its float result {tensor!r} must feed exactly one node (Relu or QuantizeLinear)")
        return users[0]

    # -- Q and DQ ------------------------------------------------------------------------------------------

    def q_scale(self, q: onnx.NodeProto) -> float:
        """Scale of a QuantizeLinear that makes an int8 per-tensor symmetric tensor."""
        self.check_block_size(q)
        attrs = _attrs(q)
        if len(q.input) >= 3 and q.input[2]:
            self.zero_point_is_zero(q, np.int8, f"QuantizeLinear {self.name(q)}")
        elif int(attrs.get("output_dtype", TensorProto.UINT8)) != TensorProto.INT8:
            raise _Reject(f"QuantizeLinear {self.name(q)} has no int8 zero point, so it outputs uint8")
        return self.scalar_scale(q.input[1], f"QuantizeLinear {self.name(q)} scale")

    def dq_view(self, tensor: str) -> tuple[str, float, onnx.NodeProto]:
        """``tensor = DQ(src int8 activation, s)`` -> (src, s, dq node)."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            raise _Reject(f"input {tensor!r} must come from DequantizeLinear of an int8 activation")
        src = self.resolve(dq.input[0])
        if src not in self.int8:
            raise _Reject(f"DequantizeLinear {self.name(dq)} reads {src!r}, which is not an int8 activation")
        self.check_block_size(dq)
        self.zero_point_is_zero(dq, np.int8, f"DequantizeLinear {self.name(dq)}")
        scale = self.scalar_scale(dq.input[1], f"DequantizeLinear {self.name(dq)} scale")
        known = self.int8[src]
        if np.float32(known) != np.float32(scale):
            raise _Reject(f"DequantizeLinear {self.name(dq)} reads {src!r} (scale {known!r}) with scale {scale!r}")
        return src, scale, dq

    def dq_const(self, tensor: str, dtype: type, what: str) -> tuple[np.ndarray, np.ndarray, onnx.NodeProto]:
        """``tensor = DQ(const, scale, axis 0)`` -> (values, float64 per-channel scales (O,), dq node)."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear" or not self.is_const(dq.input[0]):
            raise _Reject(f"{what} {tensor!r} must be DequantizeLinear of a constant {np.dtype(dtype)} tensor")
        self.check_block_size(dq)
        values = np.asarray(self.const(dq.input[0], what))
        if values.dtype != dtype:
            raise _Reject(f"{what} is {values.dtype}, expected {np.dtype(dtype)}")
        self.zero_point_is_zero(dq, dtype, f"{what} DequantizeLinear")
        scale = np.asarray(self.const(dq.input[1], f"{what} scale"))
        if scale.dtype != np.float32 or scale.ndim > 1:
            raise _Reject(f"{what} scale must be a float32 scalar or 1-D, got {scale.dtype} {scale.shape}")
        channels = values.shape[0] if values.ndim else 1
        if scale.ndim == 1 and scale.size != 1:
            axis = int(_attrs(dq).get("axis", 1))
            if values.ndim == 0 or axis % values.ndim != 0 or scale.size != channels:
                raise _Reject(f"{what} scales must be per output channel: axis 0 with {channels} entries")
        scales = np.broadcast_to(scale.astype(np.float64).reshape(-1), (channels,)).copy()
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise _Reject(f"{what} scales must be finite and > 0")
        return values, scales, dq

    def follow_to_q(self, tensor: str, allow_relu: bool) -> tuple[bool, str, float, list[onnx.NodeProto]]:
        """float result -> [Relu] -> Q: (relu, int8 output tensor, scale, nodes)."""
        user = self.single_consumer(tensor)
        nodes = []
        relu = False
        if user.op_type == "Relu" and allow_relu:
            relu = True
            nodes.append(user)
            user = self.single_consumer(user.output[0])
        if user.op_type != "QuantizeLinear":
            raise _Reject(
                f"its result must go to {'[Relu] -> ' if allow_relu else ''}QuantizeLinear, not {user.op_type}"
            )
        nodes.append(user)
        scale = self.q_scale(user)
        if allow_relu and not relu:
            folded = self.standalone_relu(user.output[0], scale)
            if folded is not None:  # Q(s) -> DQ(s) -> Relu -> Q(s): the same integers as a fused Relu
                nodes.extend(folded)
                return True, folded[-1].output[0], scale, nodes
        return relu, user.output[0], scale, nodes

    def standalone_relu(self, q_out: str, scale: float) -> list[onnx.NodeProto] | None:
        """The DQ(s) -> Relu -> Q(s) chain that onnxruntime's quantize_static writes after a Conv/Add, if any.

        With the same scale s on both sides, Q(max(DQ(y), 0)) = max(y, 0) exactly for int8 y, and
        max(saturate(v), 0) = saturate_to_[0, 127](v): folding it into the op as a fused Relu computes the
        same integers. Only taken when every tensor of the chain has exactly one consumer.
        """
        if q_out in self.output_set or len(self.consumers.get(q_out, [])) != 1:
            return None
        dq = self.consumers[q_out][0]
        if dq.op_type != "DequantizeLinear" or dq.output[0] in self.output_set:
            return None
        relu = self.consumers.get(dq.output[0], [])
        if len(relu) != 1 or relu[0].op_type != "Relu" or relu[0].output[0] in self.output_set:
            return None
        q2 = self.consumers.get(relu[0].output[0], [])
        if len(q2) != 1 or q2[0].op_type != "QuantizeLinear":
            return None
        try:
            self.zero_point_is_zero(dq, np.int8, f"DequantizeLinear {self.name(dq)}")
            same = np.float32(self.scalar_scale(dq.input[1], "DequantizeLinear scale")) == np.float32(
                scale
            ) and np.float32(self.q_scale(q2[0])) == np.float32(scale)
        except _Reject:
            return None
        return [dq, relu[0], q2[0]] if same else None

    def define_int8(self, tensor: str, scale: float) -> None:
        self.int8[tensor] = float(scale)

    # -- inputs --------------------------------------------------------------------------------------------

    def parse_inputs(self) -> None:
        for vi in self.graph_inputs:
            elem = vi.type.tensor_type.elem_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)
            users = self.consumers.get(vi.name, [])
            try:
                if elem == TensorProto.INT8:
                    scales = set()
                    for u in users:
                        if u.op_type == "DequantizeLinear":
                            scales.add(self.scalar_scale(u.input[1], f"DequantizeLinear {self.name(u)} scale"))
                    if len(scales) != 1:
                        raise _Reject(
                            "an int8 input needs DequantizeLinear consumers with one shared scale, "
                            f"found {sorted(scales)}"
                        )
                    scale = scales.pop()
                    self.define_int8(vi.name, scale)
                    self.inputs.append(GraphInput(vi.name, vi.name, scale, False, shape))
                elif elem == TensorProto.FLOAT:
                    if not users or any(u.op_type != "QuantizeLinear" for u in users):
                        raise _Reject("a float input must feed QuantizeLinear nodes only (int8 Q of the image)")
                    scales = {self.q_scale(u) for u in users}
                    if len(scales) != 1:
                        raise _Reject(f"the input's QuantizeLinear nodes use different scales {sorted(scales)}")
                    scale = scales.pop()
                    tensor = users[0].output[0]
                    for u in users:
                        self.alias[u.output[0]] = tensor
                        self.covered.add(id(u))
                    self.define_int8(tensor, scale)
                    self.inputs.append(GraphInput(vi.name, tensor, scale, True, shape))
                else:
                    raise _Reject(f"input type {TensorProto.DataType.Name(elem)} is not supported (int8 or float)")
            except _Reject as e:
                self.problems.append((vi.name, "graph input", str(e)))

    # -- anchors -------------------------------------------------------------------------------------------

    def parse_conv(self, node: onnx.NodeProto) -> None:
        src, s_in, dq_x = self.dq_view(node.input[0])
        weight, s_w, dq_w = self.dq_const(node.input[1], np.int8, "weight")
        if weight.ndim != 4:
            raise _Reject(f"only 2-D convs are supported (weight shape {weight.shape})")
        o = weight.shape[0]
        nodes = [node, dq_x, dq_w]
        bias = np.zeros(o, dtype=np.int32)
        if len(node.input) >= 3 and node.input[2]:
            bias, s_b, dq_b = self.dq_const(node.input[2], np.int32, "bias")
            if bias.shape != (o,):
                raise _Reject(f"bias shape {bias.shape} must be ({o},)")
            implied = np.float64(s_in) * s_w
            if np.any(np.abs(s_b - implied) > _BIAS_SCALE_RTOL * implied):
                raise _Reject("bias scale must equal input scale x weight scale per channel (docs/int8.md 4.2)")
            nodes.append(dq_b)
        attrs = _attrs(node)
        groups = int(attrs.get("group", 1))
        strides, pads = _spatial_attrs(attrs, tuple(weight.shape[2:]))
        if groups < 1 or o % groups:
            raise _Reject(f"group={groups} does not divide the {o} output channels")
        fan_in = int(np.prod(weight.shape[1:]))
        max_w = int(np.abs(weight.astype(np.int16)).max()) if weight.size else 0
        bound = fx.accumulator_bound(fan_in, int(np.abs(bias.astype(np.int64)).max()), max_w)
        if bound > fx.INT32_MAX:
            raise _Reject(f"accumulator bound {bound} exceeds int32 (fan-in {fan_in}, |bias| too large)")
        out = node.output[0]
        if out in self.output_set and not self.consumers.get(out):
            op = Conv(
                self.name(node), src, out, weight, bias, strides, pads, groups, False, s_in, s_w, None, None, None
            )
            self.heads[out] = op  # also in self.ops, in node order
        else:
            relu, q_out, s_out, tail = self.follow_to_q(out, allow_relu=True)
            try:
                m, sh = fx.conv_multipliers(s_in, s_w, s_out)
            except ValueError as e:
                raise _Reject(str(e)) from None
            op = Conv(self.name(node), src, q_out, weight, bias, strides, pads, groups, relu, s_in, s_w, s_out, m, sh)
            self.define_int8(q_out, s_out)
            nodes += tail
        self.accept(op, nodes)

    def parse_add(self, node: onnx.NodeProto) -> None:
        a, s_a, dq_a = self.dq_view(node.input[0])
        b, s_b, dq_b = self.dq_view(node.input[1])
        relu, q_out, s_out, tail = self.follow_to_q(node.output[0], allow_relu=True)
        rescale = fx.add_multipliers(s_a, s_b, s_out)
        self.define_int8(q_out, s_out)
        self.accept(Add(self.name(node), a, b, q_out, s_a, s_b, s_out, rescale, relu), [node, dq_a, dq_b, *tail])

    def scale_preserving(self, node: onnx.NodeProto) -> tuple[str, str, float, list[onnx.NodeProto]]:
        """Input/output of a Resize/MaxPool: DQ(x, s) -> op -> Q(s), or the op straight on an int8 tensor."""
        x = self.resolve(node.input[0])
        if x in self.int8:  # int8 passthrough: the op moves int8 values and keeps the scale
            scale = self.int8[x]
            self.define_int8(node.output[0], scale)
            return x, node.output[0], scale, [node]
        src, s_in, dq = self.dq_view(node.input[0])
        _, q_out, s_out, tail = self.follow_to_q(node.output[0], allow_relu=False)
        if np.float32(s_in) != np.float32(s_out):
            raise _Reject(f"{node.op_type} must keep the scale (input {s_in!r}, output {s_out!r})")
        self.define_int8(q_out, s_out)
        return src, q_out, s_out, [node, dq, *tail]

    def parse_resize(self, node: onnx.NodeProto) -> None:
        attrs = {k: _decode(v) for k, v in _attrs(node).items()}
        mode = attrs.get("mode", "nearest")
        coord = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        if mode != "nearest":
            raise _Reject(f"mode={mode!r}: only nearest resize is integer-exact")
        if coord not in COORDINATE_MODES or nearest not in NEAREST_MODES:
            raise _Reject(f"coordinate_transformation_mode={coord!r} / nearest_mode={nearest!r} not supported")
        if "axes" in attrs or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise _Reject("the axes / keep_aspect_ratio_policy attributes are not supported")
        scales = sizes = None
        if len(node.input) >= 4 and node.input[3]:
            raw = np.asarray(self.const(node.input[3], "Resize sizes")).astype(np.int64).ravel()
            if raw.size != 4 or np.any(raw < 1):
                raise _Reject(f"Resize sizes {raw.tolist()} must be 4 positive NCHW sizes")
            sizes = tuple(int(v) for v in raw)
        elif len(node.input) >= 3 and node.input[2]:
            raw = np.asarray(self.const(node.input[2], "Resize scales")).ravel()
            if raw.dtype != np.float32 or raw.size != 4 or raw[0] != 1 or raw[1] != 1 or np.any(raw[2:] <= 0):
                raise _Reject(f"Resize scales {raw.tolist()} must be float32 (1, 1, s_h, s_w) with s > 0")
            scales = (Fraction(float(raw[2])), Fraction(float(raw[3])))
        else:
            raise _Reject("Resize needs constant scales or sizes")
        src, out, _, nodes = self.scale_preserving(node)
        self.accept(ResizeNearest(self.name(node), src, out, scales, sizes, coord, nearest), nodes)

    def parse_maxpool(self, node: onnx.NodeProto) -> None:
        attrs = _attrs(node)
        if len([t for t in node.output if t]) != 1:
            raise _Reject("MaxPool with an Indices output is not supported")
        if int(attrs.get("ceil_mode", 0)) != 0:
            raise _Reject("ceil_mode=1 is not supported (export with ceil_mode=False)")
        kernel = _as_int_pair(attrs.get("kernel_shape", ()), "kernel_shape")
        strides, pads = _spatial_attrs(attrs, kernel)
        src, out, _, nodes = self.scale_preserving(node)
        self.accept(MaxPool(self.name(node), src, out, kernel, strides, pads), nodes)

    def parse_concat(self, node: onnx.NodeProto) -> None:
        axis = int(_attrs(node).get("axis", 1))
        axis = axis + 4 if axis < 0 else axis  # NCHW tensors
        if not 0 <= axis < 4:
            raise _Reject(f"axis {axis} is not an NCHW axis")
        xs = [self.resolve(t) for t in node.input]
        if all(x in self.int8 for x in xs):  # int8 passthrough: only without any scale change
            scales = {np.float32(self.int8[x]) for x in xs}
            if len(scales) != 1:
                raise _Reject("a Concat of int8 tensors needs one shared (known) scale")
            scale = float(scales.pop())
            self.define_int8(node.output[0], scale)
            op = Concat(self.name(node), tuple(xs), node.output[0], axis, (scale,) * len(xs), scale, (None,) * len(xs))
            self.accept(op, [node])
            return
        views = [self.dq_view(t) for t in node.input]
        _, q_out, s_out, tail = self.follow_to_q(node.output[0], allow_relu=False)
        rescales = []
        for _, s_i, _ in views:
            if np.float32(s_i) == np.float32(s_out):
                rescales.append(None)
            else:
                m, sh = fx.quantize_multiplier(np.float64(s_i) / np.float64(s_out))
                rescales.append((int(m), int(sh)))
        self.define_int8(q_out, s_out)
        op = Concat(
            self.name(node), tuple(v[0] for v in views), q_out, axis, tuple(v[1] for v in views), s_out, tuple(rescales)
        )
        self.accept(op, [node, *(v[2] for v in views), *tail])

    def accept(self, op: IntOp, nodes: list[onnx.NodeProto]) -> None:
        self.ops.append(op)
        self.covered.update(id(n) for n in nodes)

    # -- the whole graph -----------------------------------------------------------------------------------

    def parse(self) -> IntGraph:
        self.parse_inputs()
        handlers = {
            "Conv": self.parse_conv,
            "Add": self.parse_add,
            "Resize": self.parse_resize,
            "MaxPool": self.parse_maxpool,
            "Concat": self.parse_concat,
        }
        for node in self.nodes:
            if node.op_type == "Constant":
                self.covered.add(id(node))
            elif id(node) in self.covered:
                continue  # a Q or Relu already matched with its op, or a Q of the float input
            elif node.domain not in ("", "ai.onnx"):
                self.problem(node, f"custom domain {node.domain!r} is not supported")
            elif node.op_type not in handlers and node.op_type not in _GLUE:
                self.problem(node, "op type not supported by the int8 reader")  # always listed
            elif any(t in self.tainted for t in node.input):
                self.problem(node, None)  # a supported op downstream of a reported node: not its fault
            elif node.op_type in handlers:
                try:
                    handlers[node.op_type](node)
                except _Reject as e:
                    self.problem(node, str(e))
            elif node.op_type == "QuantizeLinear":  # its op came earlier in node order and did not claim it
                self.problem(
                    node,
                    "QuantizeLinear must follow a supported op (Conv/Add/Resize/MaxPool/Concat, "
                    "optionally with Relu for Conv/Add) or the float graph input",
                )
            elif node.op_type == "Relu":
                self.problem(node, "a Relu is supported only fused between Conv/Add and QuantizeLinear")
            # DequantizeLinear nodes are claimed by their consumers; report_leftovers checks the rest.
        outputs = self.parse_outputs()
        self.report_leftovers()
        if self.problems:
            raise UnsupportedGraphError(self.problems)
        return IntGraph(tuple(self.inputs), self.check_order(self.ops), outputs, dict(self.int8))

    def parse_outputs(self) -> tuple[GraphOutput, ...]:
        outputs = []
        for name in self.graph_outputs:
            t = self.resolve(name)
            if name in self.heads:
                head = self.heads[name]
                outputs.append(GraphOutput(name, name, "int32", head.accumulator_scale))
            elif t in self.int8:
                outputs.append(GraphOutput(name, t, "int8", np.array([self.int8[t]], dtype=np.float64)))
            elif name in self.tainted:
                continue  # its producer is already reported
            else:
                p = self.producer.get(name)
                if p is not None and p.op_type == "DequantizeLinear":
                    try:
                        src, scale, dq = self.dq_view(name)
                    except _Reject as e:
                        self.problem(p, str(e))
                        continue
                    self.covered.add(id(dq))
                    outputs.append(GraphOutput(name, src, "int8", np.array([scale], dtype=np.float64)))
                    continue
                self.problems.append(
                    (name, "graph output", "must be an int8 tensor (QuantizeLinear output) or a head Conv's output")
                )
        return tuple(outputs)

    def report_leftovers(self) -> None:
        """DequantizeLinear nodes that no pattern claimed, unless dead or next to an already reported node."""
        for node in self.nodes:
            if node.op_type != "DequantizeLinear" or id(node) in self.covered or id(node) in self.problem_nodes:
                continue
            users = self.consumers.get(node.output[0], [])
            if not users or any(id(u) in self.problem_nodes for u in users):
                continue
            self.problem(node, "DequantizeLinear must feed a supported op or be a graph output")

    def check_order(self, ops: list[IntOp]) -> tuple[IntOp, ...]:
        """The ops in ONNX node order, checked to read only tensors computed before them."""
        ready = {i.tensor for i in self.inputs}
        for op in ops:
            missing = [t for t in op.inputs if t not in ready]
            if missing:
                raise ValueError(f"{op.name} reads {missing} before they are computed: is the ONNX graph sorted?")
            ready.add(op.output)
        return tuple(ops)


def parse_qdq(model: onnx.ModelProto | str | Path) -> IntGraph:
    """Parse a QDQ ONNX model (path or ModelProto) into an ``IntGraph``.

    Raises ``UnsupportedGraphError`` listing every node outside the supported patterns (module docstring).
    """
    return _Parser(load_model(model)).parse()
